"""Anatomical vertebra ids for a fused column: anchors from the masks, gaps reported, never a silent guess.

The fused vertebrae are ordered top to bottom by their body centroids (world RAS mm). Their ids come from, in
this order of precedence:

1. ``top_vertebra`` (``--top-vertebra NAME``): the user names the top vertebra; ids run down from it
   (:func:`nnunet_spine.core.labels.verse_sequence`, L5 followed by L6 = 25).
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
   * **landmark discs** (``--landmarks``: a landmark model's prediction, TotalSpineSeg's idea: the discs C2-C3,
     C7-T1, T12-L1 and L5-S1, :data:`~nnunet_spine.core.labels.LANDMARK_NAMES`): a landmark disc lying
     between two vertebrae names the one above it (C2, C7, T12, L5), so cervical-only, thoracic-only and
     lumbar crops without the sacrum get ids. They anchor when neither the sacrum nor the dens does (the lowest
     landmark first) and are checked against whatever anchors: a landmark one vertebra off is reported as a
     transitional candidate, like the dens; one more than one vertebra off is a wrong landmark (reported; with
     landmarks alone the column is then not labelled, since which landmark is wrong cannot be told).
3. **no anchor** (or ``mode="none"``): ids 1, 2, … from the top, marked *not anatomically labelled*
   (:attr:`Labelling.anatomical` False), never SPINEPS' silent "top vertebra = C2".

**Gaps.** A vertebra missing from the column (a missed cutout, an unsegmented vertebra) shows as a body-centroid
spacing well above its neighbours' (more than :data:`GAP_FACTOR` × the median of the up to four neighbouring
spacings). Gaps are reported, and an anchored numbering skips the ids of the missing vertebrae instead of
shifting every id beyond the gap (``round(spacing / median) − 1`` ids skipped).

**Verified or not** (:attr:`Labelling.verified`, :func:`verify_labelling`). An anchor fixes one junction of the
column (:func:`anchor_kind`): the dens, C2-C3, C7-T1 and any disc or ``--top-vertebra`` naming C1 … T11 fix where C1
is (``top``: counted from the skull, seven cervical vertebrae taken as fixed); the T12-L1 disc and discs naming
L1 … L4 fix the thoracolumbar junction (``tl``); the sacrum and L5-S1 the lumbosacral one (``ls``). Which pairs
constrain which count: ``top`` + ``tl`` count the thoracic vertebrae; ``tl`` + ``ls`` the lumbar ones; ``top`` +
``ls`` only their sum (C2 … L5 = 23 verifies both when it is the usual one, since a T13 or L6 adds one either
way); ``tl`` alone names L1 … L6 below it exactly but T12 above it only by assuming 12 thoracic vertebrae. An id is
*pinned* (:func:`~nnunet_spine.postprocessing.spine.verification.pinned`) when the junctions the agreeing anchors fix
give it without assuming a region's usual count. Anatomical ids are *verified* only when

1. anchors on at least two different vertebrae put the same id on their vertebra and none disagrees (an unusual
   count between two anchors, e.g. six lumbar vertebrae between T12-L1 and the sacrum, is a disagreement:
   transitional anatomy and a wrong anchor cannot be told apart);
2. every id is pinned: two anchors that agree only by assuming the usual count across a junction — the sacrum and
   the T12-L1 disc naming the thoracic vertebrae above the junction — never verify (a T13 or 11-thoracic column
   would be one off there); :attr:`Labelling.verified_ids` lists what they do pin;
3. every gap lies between two agreeing anchors;
4. no flaw finding of :mod:`.flaws` is doubtful (a merged instance kept whole, a small body, an implausible
   sacrum).

Ids numbered from one anchor alone are ``verified: false`` with the reason; ids 1..n from the top are never
verified (:data:`NOT_LABELLED`). :attr:`Labelling.reason` says why in either case.

**Transitional columns with a thoracolumbar anchor.** When the sacrum and a ``tl`` anchor count 4 or 6 lumbar
vertebrae between them, the lumbar ids follow the thoracolumbar junction (L1 below it; the usual definition of L1
as the first vertebra without ribs), T12 and up above it, and the sacrum's "L5" is reported as disagreeing.

**SCT disc labels** (:func:`~nnunet_spine.postprocessing.spine.anchors.find_disc_anchors`, ``--discfile``): a disc
of value N lying just below a body centre names that vertebra SCT level N − 1 (its VerSe id by
:func:`~nnunet_spine.core.labels.sct_level_to_verse`) and anchors as a landmark disc does. Landmark discs and SCT disc
labels become anchors in :mod:`nnunet_spine.postprocessing.spine.anchors`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from nnunet_spine.core.io import InputError
from nnunet_spine.core.labels import VERSE_IDS, verse_sequence, vertebra_name

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
#: A landmark this many vertebrae off its anchor is a transitional candidate; more is a wrong landmark.
MAX_TRANSITIONAL_OFFSET = 1
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
    #: two independent anchors agree on the ids (module docstring); False for one anchor and when not anatomical
    verified: bool = False
    #: why the ids are verified or not (one line)
    reason: str = ""
    #: the anchors that agree with the ids (``sacrum``, ``dens``, ``landmark T12-L1``, ``--top-vertebra C2``)
    anchors: list[str] = field(default_factory=list)
    #: the ids two agreeing anchors pin without assuming a region's usual count (:func:`pinned`); all of them when
    #: ``verified``, a part (e.g. L1-L5 between a T12-L1 disc and the sacrum) or none otherwise
    verified_ids: list[int] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "anatomical": self.anatomical,
            "verified": self.verified,
            "reason": self.reason,
            "anchors": self.anchors,
            "verified_ids": [vertebra_name(v) for v in self.verified_ids] if self.anatomical else [],
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


def find_gaps(centroids_mm: np.ndarray, unreliable: Sequence[int] = ()) -> list[Gap]:
    """Gaps in a column of body centroids (n × 3 world mm, top to bottom): see the module docstring.
    ``unreliable``: vertebrae (0-based) whose centre says nothing about the spacing (cut by the field of view, or
    holding two vertebrae: :mod:`.flaws`): the spacings next to them are neither gaps nor compared with."""
    c = np.asarray(centroids_mm, float).reshape(-1, 3)
    if len(c) - len(set(unreliable)) < MIN_VERTEBRAE_FOR_GAPS:
        return []
    spacing = np.linalg.norm(np.diff(c, axis=0), axis=1)
    bad = {k for k in range(len(spacing)) if k in unreliable or k + 1 in unreliable}
    gaps = []
    for k, s in enumerate(spacing):
        if k in bad:
            continue
        others = [spacing[j] for j in range(max(0, k - 2), min(len(spacing), k + 3)) if j != k and j not in bad]
        if not others:
            continue
        median = float(np.median(others))
        if median > 0 and s > GAP_FACTOR * median:
            gaps.append(Gap(k, max(1, int(round(s / median)) - 1), round(float(s), 2), round(median, 2)))
    return gaps


def _slots(n: int, gaps: Sequence[Gap], double: Sequence[int] = ()) -> list[int]:
    """Position of each vertebra in the column counting the missing ones (0 = top); a ``double`` vertebra (an
    instance holding two, :mod:`.flaws`) takes two positions (its id is the upper one's)."""
    skip = {g.above: g.missing for g in gaps}
    for d in double:
        skip[d] = skip.get(d, 0) + 1
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


def landmark_disagreements(
    ids: Sequence[int], landmarks: Sequence[tuple[int, int, str]], anchor: str
) -> tuple[list[str], bool]:
    """Anomalies for the landmarks whose vertebra got another id than the landmark names, and whether one is off by
    more than :data:`MAX_TRANSITIONAL_OFFSET`. One vertebra more or fewer between the landmark and ``anchor`` is a
    transitional candidate (reported, not renumbered); more than that is a wrong landmark, not anatomy."""
    out, wrong = [], False
    column = canonical_column(6)  # C1 ... L6: positions to count the difference
    for index, vid, name in landmarks:
        got = ids[index]
        if got == vid:
            continue
        diff = column.index(vid) - column.index(got) if got in column and vid in column else None
        if diff is not None and abs(diff) <= MAX_TRANSITIONAL_OFFSET:
            out.append(
                f"{anchor_label(name)} lies below the vertebra counted as {vertebra_name(got)} from {anchor}, not "
                f"{vertebra_name(vid)}: {abs(diff)} vertebra(e) {'more' if diff > 0 else 'fewer'} than usual between "
                "them; a transitional vertebra (T13, L6, 11 thoracic or 4 lumbar) is likely (ids follow the anchor)"
            )
        else:
            wrong = True
            off = f"{abs(diff)} vertebrae" if diff is not None else "an unknown number of vertebrae"
            out.append(
                f"{anchor_label(name)} lies below the vertebra counted as {vertebra_name(got)} from {anchor}, not "
                f"{vertebra_name(vid)}: {off} off, more than a transitional vertebra explains (a wrong landmark)"
            )
    return out, wrong


def _landmark_top(vid: int, index: int, slots: Sequence[int]) -> int:
    """VerSe id of the top vertebra when vertebra ``index`` (0-based, top to bottom) has id ``vid``; ``ValueError``
    when the column would run above C1 or past L6."""
    full = canonical_column(6)
    first = full.index(vid) - (slots[index] - slots[0])
    if first < 0:
        raise ValueError(f"{slots[index] - slots[0]} vertebrae above {vertebra_name(vid)} run above C1")
    verse_sequence(full[first], slots[-1] + 1)  # raises past L6
    return full[first]


#: The last lumbar vertebra's id → the number of lumbar vertebrae (L4 = 23, L5 = 24, L6 = 25).
LUMBAR_COUNT = {VERSE_IDS["L4"]: 4, VERSE_IDS["L5"]: 5, VERSE_IDS["L6"]: 6}


def _thoracolumbar_ids(landmarks: Sequence[tuple[int, int, str]], slots: Sequence[int]) -> tuple[list[int], str] | None:
    """Ids counted from the lowest fitting anchor that fixes the thoracolumbar junction (:func:`anchor_kind`
    ``tl``: the T12-L1 disc, an SCT disc of L1-L2 … L4-L5): L1 below the junction and down (L6 after L5), T12 above
    it and up; with its name. None without such an anchor."""
    fitting, _ = _fitting_landmarks([t for t in landmarks if anchor_kind(t[1]) == "tl"], slots)
    if not fitting:
        return None
    index, vid, name = max(fitting, key=lambda t: t[0])
    seq = verse_sequence(_landmark_top(vid, index, slots), slots[-1] + 1)
    return [seq[p] for p in slots], name


def _fitting_landmarks(
    landmarks: Sequence[tuple[int, int, str]], slots: Sequence[int]
) -> tuple[list[tuple[int, int, str]], list[str]]:
    """The landmarks whose vertebra id leaves every vertebra of the column an id between C1 and L6, and one anomaly
    for each that does not (a landmark no anatomy explains: a wrong landmark, ignored)."""
    fitting, said = [], []
    for index, vid, name in landmarks:
        try:
            _landmark_top(vid, index, slots)
        except ValueError as exc:
            said.append(f"{anchor_label(name)} below vertebra #{index + 1} does not fit the column ({exc}): a wrong "
                        "landmark, ignored")  # fmt: skip
            continue
        fitting.append((index, vid, name))
    return fitting, said


def label_column(
    centroids_mm: np.ndarray,
    *,
    top_vertebra: int | None = None,
    sacrum_mm: np.ndarray | None = None,
    dens_index: int | None = None,
    landmarks: Sequence[tuple[int, int, str]] = (),
    lumbar: int = DEFAULT_LUMBAR,
    mode: str = "auto",
    partial: Sequence[int] = (),
    double: Sequence[int] = (),
    doubts: Sequence[str] = (),
) -> Labelling:
    """Ids for the vertebrae whose body centroids (n × 3 world mm) are given top to bottom (module docstring),
    with :attr:`Labelling.verified` / :attr:`Labelling.reason` from
    :func:`~nnunet_spine.postprocessing.spine.verification.verify_labelling`.

    ``sacrum_mm``: sacrum voxel centres (world mm; None or empty when absent); ``dens_index``: the vertebra
    (0-based, top to bottom) holding most of the dens; ``landmarks``: ``(index, VerSe id, name)`` of each
    plausible landmark disc or SCT disc label (the 0-based index of the vertebra directly above it and that
    vertebra's id, e.g. ``(3, 19, "T12-L1")``). From :mod:`.flaws`: ``partial``: vertebrae cut by the field of view
    (no gap looked for next to them), ``double``: instances holding two vertebrae (two positions each),
    ``doubts``: findings that may make the ids wrong (never verified). Raises :class:`InputError` when
    ``top_vertebra`` runs past L6."""
    lab = _label_ids(
        centroids_mm,
        top_vertebra=top_vertebra,
        sacrum_mm=sacrum_mm,
        dens_index=dens_index,
        landmarks=landmarks,
        lumbar=lumbar,
        mode=mode,
        unreliable=sorted(set(partial) | set(double)),
        double=double,
    )
    from nnunet_spine.postprocessing.spine.verification import verify_labelling  # it imports this module

    c = np.asarray(centroids_mm, float).reshape(-1, 3)
    sacrum = bool(len(c)) and sacrum_mm is not None and sacrum_adjacent(c[-1], sacrum_mm, typical_spacing(c))
    return verify_labelling(
        lab,
        top_vertebra=top_vertebra,
        sacrum=sacrum,
        dens_index=dens_index,
        landmarks=landmarks,
        lumbar=lumbar,
        doubts=doubts,
    )


#: What an anchor fixes (module docstring, "Verified or not"): ``top`` the position of C1 (counting from the skull:
#: the dens, C2-C3, C7-T1 and any disc or vertebra named C1-T11 — seven cervical vertebrae taken as fixed); ``tl``
#: the thoracolumbar junction (T12-L1, and L1-L4 counted from it); ``ls`` the lumbosacral junction (the sacrum,
#: L5-S1).
ANCHOR_KINDS = ("top", "tl", "ls")


def anchor_kind(vid: int) -> str:
    """Which junction (:data:`ANCHOR_KINDS`) an anchor naming vertebra ``vid`` fixes: C1 … T11 and T13 count from
    the skull (``top``), T12 (the vertebra above the T12-L1 disc) and L1 … L4, L6 from the thoracolumbar
    junction (``tl``), L5 (above L5-S1) the lumbosacral junction (``ls``)."""
    v = int(vid)
    if v <= VERSE_IDS["T11"] or v == VERSE_IDS["T13"]:
        return "top"
    if v == VERSE_IDS["L5"]:
        return "ls"
    return "tl"


def anchor_label(name: str) -> str:
    """How a landmark or disc anchor is named: ``landmark T12-L1``, ``SCT disc 21 (L1-L2)``."""
    return name if name.startswith("SCT disc") else f"landmark {name}"


def _label_ids(
    centroids_mm: np.ndarray,
    *,
    top_vertebra: int | None = None,
    sacrum_mm: np.ndarray | None = None,
    dens_index: int | None = None,
    landmarks: Sequence[tuple[int, int, str]] = (),
    lumbar: int = DEFAULT_LUMBAR,
    mode: str = "auto",
    unreliable: Sequence[int] = (),
    double: Sequence[int] = (),
) -> Labelling:
    """The ids of :func:`label_column`, not yet verified."""
    if mode not in LABELLING_MODES:
        raise InputError(f"--labelling {mode}: choose one of {', '.join(LABELLING_MODES)}")
    c = np.asarray(centroids_mm, float).reshape(-1, 3)
    n = len(c)
    gaps = find_gaps(c, unreliable)
    slots = _slots(n, gaps, double)
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
        junction = _thoracolumbar_ids(landmarks, slots)
        if junction is not None and junction[0] != ids and junction[0][-1] in LUMBAR_COUNT:
            found = LUMBAR_COUNT[junction[0][-1]]
            ids, name = junction
            anomalies.append(
                f"{anchor_label(name)} and the sacrum: {abs(found - lumbar)} vertebra(e) "
                f"{'more' if found > lumbar else 'fewer'} than usual between them ({found} lumbar vertebrae); a "
                "transitional vertebra (L6 or 4 lumbar) is likely, or a wrong anchor: the lumbar ids follow the "
                "thoracolumbar junction (L1 below it), the sacrum anchor disagrees"
            )
            method = f"{anchor_label(name)} and the sacrum below {vertebra_name(ids[-1])} ({found} lumbar vertebrae)"
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
        anomalies += landmark_disagreements(ids, landmarks, "the sacrum")[0]
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
        ids = [seq[p] for p in slots]
        return Labelling(
            ids, True, "dens (C2)", anomalies + landmark_disagreements(ids, landmarks, "the dens")[0], gaps
        )
    if landmarks:
        fitting, said = _fitting_landmarks(landmarks, slots)
        anomalies += said
        if not fitting:
            names = ", ".join(t[2] for t in landmarks)
            return Labelling(list(range(1, n + 1)), False, f"{NOT_LABELLED} (landmark {names} does not fit)",
                             anomalies, gaps)  # fmt: skip
        index, vid, name = max(fitting, key=lambda t: t[0])  # the lowest landmark that fits anchors
        seq = verse_sequence(_landmark_top(vid, index, slots), slots[-1] + 1)
        ids = [seq[p] for p in slots]
        others = [t for t in fitting if t[2] != name]
        said, wrong = landmark_disagreements(ids, others, anchor_label(name))
        anomalies += said
        if wrong:  # which landmark is wrong cannot be told: no guess
            return Labelling(list(range(1, n + 1)), False, f"{NOT_LABELLED} (landmarks disagree)", anomalies, gaps)
        return Labelling(ids, True, f"{anchor_label(name)} ({vertebra_name(vid)} above it)", anomalies, gaps)
    return Labelling(
        list(range(1, n + 1)),
        False,
        f"{NOT_LABELLED}: no anchor (no sacrum below the lowest vertebra, no dens, no landmark disc; "
        "--top-vertebra names the top one)",
        anomalies,
        gaps,
    )
