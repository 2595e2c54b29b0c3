"""Anatomical vertebra ids for a fused column: anchors from the masks, gaps reported, never a silent guess.

The fused vertebrae are ordered top to bottom by their body centroids (world RAS mm). Their ids come from, in
this order of precedence:

1. ``top_vertebra`` (``--top-vertebra NAME``): the user names the top vertebra; ids run down from it
   (:func:`nnunet_extensions.core.labels.verse_sequence`, L5 followed by L6 = 25).
2. **anchors found in the masks** (``mode="auto"``, the default):

   * the **sacrum** (26) directly below the lowest vertebra — the nearest sacrum voxel lies within
     :data:`SACRUM_ADJACENCY` × the typical body-centroid spacing of the lowest body centroid — makes that
     vertebra the last lumbar one: L5, or L4 / L6 with ``lumbar=4`` / ``6``; ids run up from it;
   * the **dens** (SPINEPS 2.x label 51, TPTBox's ``Dens_axis``) makes the vertebra holding most of it C2;
     ids run down from it (C1 above, when present).

   With both anchors the count between them is checked: C2 … L5 are 23 vertebrae with 7 cervical, 12 thoracic
   and 5 lumbar ones. One more or one fewer is **reported** as a transitional candidate (T13 = 28 or L6 = 25;
   11 thoracic or 4 lumbar vertebrae), not guessed: the ids then follow the sacrum anchor. (SPINEPS and
   TotalSpineSeg decide such cases with a labelling network; this rule has none.)
3. **no anchor** (or ``mode="none"``): ids 1, 2, … from the top, marked *not anatomically labelled*
   (:attr:`Labelling.anatomical` False), never SPINEPS' silent "top vertebra = C2".

**Gaps.** A vertebra missing from the column (a missed cutout, an unsegmented vertebra) shows as a body-centroid
spacing well above its neighbours' (more than :data:`GAP_FACTOR` × the median of the up to four neighbouring
spacings). Gaps are reported, and an anchored numbering skips the ids of the missing vertebrae instead of
shifting every id beyond the gap (``round(spacing / median) − 1`` ids skipped).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from nnunet_extensions.core.io import InputError
from nnunet_extensions.core.labels import VERSE_IDS, verse_sequence, vertebra_name

#: A spacing above this multiple of the neighbouring spacings' median is a gap (a missing vertebra).
GAP_FACTOR = 1.6
#: The sacrum anchors the lowest vertebra when its nearest voxel lies within this multiple of the typical
#: body-centroid spacing of the lowest body centroid (a lumbar body centre is ~0.6 spacings above S1).
SACRUM_ADJACENCY = 1.0
#: Typical lumbar body-centroid spacing (mm), used when fewer than two vertebrae give a spacing.
FALLBACK_SPACING_MM = 35.0
#: Lumbar vertebrae assumed above the sacrum unless told otherwise.
DEFAULT_LUMBAR = 5
#: Fewer vertebrae than this give too few spacings to tell a gap from variation: no gap is looked for.
MIN_VERTEBRAE_FOR_GAPS = 4
#: Labelling modes of ``fuse`` / ``instances`` (``--labelling``).
LABELLING_MODES = ("auto", "none")
#: Said wherever ids are 1..n from the top.
NOT_LABELLED = "not anatomically labelled"


@dataclass
class Gap:
    """A spacing between two consecutive vertebrae (``above``, ``above + 1``, 0-based top to bottom) that
    suggests ``missing`` vertebrae; spacing and the neighbours' median in mm."""

    above: int
    missing: int
    spacing_mm: float
    median_mm: float


@dataclass
class Labelling:
    """Ids of the vertebrae top to bottom and how they were found."""

    ids: list[int]
    anatomical: bool
    method: str
    anomalies: list[str] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "anatomical": self.anatomical,
            "method": self.method,
            "ids": self.ids,
            "names": [vertebra_name(v) if self.anatomical else f"#{v}" for v in self.ids],
            "anomalies": self.anomalies,
            "gaps": [g.__dict__ for g in self.gaps],
        }


def canonical_column(lumbar: int = DEFAULT_LUMBAR) -> list[int]:
    """VerSe ids C1 … the last lumbar vertebra, top to bottom (``lumbar`` 4, 5 or 6; L6 = 25)."""
    if lumbar not in (4, 5, 6):
        raise InputError(f"--lumbar-vertebrae {lumbar}: choose 4, 5 or 6")
    lumbar_ids = [VERSE_IDS[f"L{n}"] for n in range(1, lumbar + 1)]
    return list(range(1, 20)) + lumbar_ids


def find_gaps(centroids_mm: np.ndarray) -> list[Gap]:
    """Gaps in a column of body centroids (n × 3 world mm, top to bottom): see the module docstring."""
    c = np.asarray(centroids_mm, float).reshape(-1, 3)
    if len(c) < MIN_VERTEBRAE_FOR_GAPS:
        return []
    spacing = np.linalg.norm(np.diff(c, axis=0), axis=1)
    gaps = []
    for k, s in enumerate(spacing):
        others = [spacing[j] for j in range(max(0, k - 2), min(len(spacing), k + 3)) if j != k]
        median = float(np.median(others))
        if median > 0 and s > GAP_FACTOR * median:
            gaps.append(Gap(k, max(1, int(round(s / median)) - 1), round(float(s), 2), round(median, 2)))
    return gaps


def _slots(n: int, gaps: Sequence[Gap]) -> list[int]:
    """Position of each vertebra in the column counting the missing ones (0 = top)."""
    skip = {g.above: g.missing for g in gaps}
    pos, out = 0, []
    for k in range(n):
        out.append(pos)
        pos += 1 + skip.get(k, 0)
    return out


def _fits(top: int, n: int) -> bool:
    """Whether ``n`` vertebrae counted down from ``top`` stay within C1 … L6."""
    try:
        verse_sequence(top, n)
    except ValueError:
        return False
    return True


def sacrum_adjacent(lowest_mm: np.ndarray, sacrum_mm: np.ndarray, spacing_mm: float) -> bool:
    """Whether the sacrum (voxel centres, m × 3 world mm) lies directly below the lowest body centroid."""
    if len(sacrum_mm) == 0:
        return False
    d = float(np.min(np.linalg.norm(np.asarray(sacrum_mm, float) - np.asarray(lowest_mm, float), axis=1)))
    below = float(np.median(np.asarray(sacrum_mm, float)[:, 2])) < float(lowest_mm[2])
    return below and d <= SACRUM_ADJACENCY * spacing_mm


def typical_spacing(centroids_mm: np.ndarray, at_bottom: bool = True) -> float:
    """Median of the last (or first) three body-centroid spacings, mm (:data:`FALLBACK_SPACING_MM` alone)."""
    c = np.asarray(centroids_mm, float).reshape(-1, 3)
    if len(c) < 2:
        return FALLBACK_SPACING_MM
    s = np.linalg.norm(np.diff(c, axis=0), axis=1)
    return float(np.median(s[-3:] if at_bottom else s[:3]))


def label_column(
    centroids_mm: np.ndarray,
    *,
    top_vertebra: int | None = None,
    sacrum_mm: np.ndarray | None = None,
    dens_index: int | None = None,
    lumbar: int = DEFAULT_LUMBAR,
    mode: str = "auto",
) -> Labelling:
    """Ids for the vertebrae whose body centroids (n × 3 world mm) are given top to bottom (module docstring).

    ``sacrum_mm``: sacrum voxel centres (world mm; None or empty when absent); ``dens_index``: the vertebra
    (0-based, top to bottom) holding most of the dens. Raises :class:`InputError` when ``top_vertebra`` runs
    past L6."""
    if mode not in LABELLING_MODES:
        raise InputError(f"--labelling {mode}: choose one of {', '.join(LABELLING_MODES)}")
    c = np.asarray(centroids_mm, float).reshape(-1, 3)
    n = len(c)
    gaps = find_gaps(c)
    slots = _slots(n, gaps)
    anomalies = [
        f"gap between vertebrae #{g.above + 1} and #{g.above + 2}: body centres {g.spacing_mm:.0f} mm apart "
        f"(neighbours {g.median_mm:.0f} mm): {g.missing} vertebra(e) missing"
        for g in gaps
    ]
    if n == 0:
        return Labelling([], False, NOT_LABELLED, anomalies, gaps)
    if top_vertebra is not None:
        if gaps and not _fits(top_vertebra, slots[-1] + 1):
            anomalies.append("the gaps would run the ids past L6 from the given top vertebra: ids not skipped")
            slots = list(range(n))
        try:
            seq = verse_sequence(top_vertebra, slots[-1] + 1)
        except ValueError as exc:
            raise InputError(f"--top-vertebra {vertebra_name(top_vertebra)}: {exc} ({n} vertebrae found)") from None
        return Labelling(
            [seq[p] for p in slots], True, f"top vertebra {vertebra_name(top_vertebra)} given", anomalies, gaps
        )
    if mode == "none":
        return Labelling(list(range(1, n + 1)), False, f"{NOT_LABELLED} (--labelling none)", anomalies, gaps)
    column = canonical_column(lumbar)
    sacrum = sacrum_mm is not None and sacrum_adjacent(c[-1], sacrum_mm, typical_spacing(c))
    if sacrum:
        bottom = len(column) - 1
        idx = [bottom - (slots[-1] - p) for p in slots]
        if idx[0] < 0 and gaps and bottom - (n - 1) >= 0:
            anomalies.append("the gaps would run the ids above C1 from the sacrum: ids not skipped")
            slots = list(range(n))
            idx = [bottom - (n - 1 - p) for p in slots]
        if idx[0] < 0:
            anomalies.append(f"{n} vertebrae above the sacrum: more than C1-{vertebra_name(column[-1])}")
            return Labelling(list(range(1, n + 1)), False, f"{NOT_LABELLED} (too many vertebrae)", anomalies, gaps)
        ids = [column[i] for i in idx]
        method = f"sacrum below the lowest vertebra ({vertebra_name(column[-1])})"
        if dens_index is not None:
            got = ids[dens_index]
            if got == VERSE_IDS["C2"]:
                method += " and dens (C2): count checked"
            else:
                extra = VERSE_IDS["C2"] - got  # > 0: one more vertebra than C2..L5 hold
                what = (
                    "a transitional vertebra (T13 or L6) is likely"
                    if extra > 0
                    else "11 thoracic or 4 lumbar vertebrae are likely"
                )
                anomalies.append(
                    f"the dens vertebra would be {vertebra_name(got) if got > 0 else '(above C1)'} counting from the "
                    f"sacrum: {abs(extra)} vertebra(e) {'more' if extra > 0 else 'fewer'} than C2-"
                    f"{vertebra_name(column[-1])} hold; {what} (ids follow the sacrum anchor)"
                )
                method += " (dens disagrees, see anomalies)"
        return Labelling(ids, True, method, anomalies, gaps)
    if dens_index is not None:
        first = 1 - (slots[dens_index] - slots[0])  # canonical index of the top vertebra (C2 has index 1)
        if first < 0:
            anomalies.append("vertebrae above the dens vertebra beyond C1")
            return Labelling(list(range(1, n + 1)), False, f"{NOT_LABELLED} (dens too low)", anomalies, gaps)
        try:
            seq = verse_sequence(column[first], slots[-1] + 1)
        except ValueError as exc:
            anomalies.append(f"counting from the dens: {exc}")
            return Labelling(list(range(1, n + 1)), False, f"{NOT_LABELLED} (too many vertebrae)", anomalies, gaps)
        return Labelling([seq[p] for p in slots], True, "dens (C2)", anomalies, gaps)
    return Labelling(
        list(range(1, n + 1)),
        False,
        f"{NOT_LABELLED}: no anchor (no sacrum below the lowest vertebra, no dens; --top-vertebra names the top one)",
        anomalies,
        gaps,
    )
