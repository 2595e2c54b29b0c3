"""Manual masks of BIDS images: which derivative names count as a cord, lesion or disc-label mask, in which order of
preference, and which mask belongs to which image (the one place that knows mask names; every converter reads it).

A mask's name is its image's stem followed by a suffix (``sub-01_T2w`` → ``sub-01_T2w_label-SC_seg``), looked up in
``<root>/derivatives/labels/<unit dir>/`` and beside the image (:mod:`nnunet_spine.core.bids` for the layout).
Nothing here reads voxels; a bad ``--mask-suffix`` raises :class:`~nnunet_spine.core.io.InputError`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from nnunet_spine.core.bids import CORD_SEG, LESION_SEG, BidsImage, Unit, nifti_stem, parse_name
from nnunet_spine.core.io import NIFTI_SUFFIXES, InputError

#: Rater placeholder in :data:`MASK_SUFFIXES`: any ``desc-<label>`` value (``_desc-rater1_label-SC_seg``).
RATER = "*"
#: Mask kind → derivative suffixes (appended to the image's stem) in order of preference; the first that
#: exists is picked. Named manual masks of today's naming first, then SCT's older ``-manual`` naming, then one
#: rater's mask (``desc-<rater>``, raters alphabetically), and last the bare ``_seg``, which is also the name of
#: SCT's automatic segmentations (``sct_deepseg_sc`` writes ``<image>_seg``). ``_gmseg-manual`` (grey matter)
#: is no cord mask and never matches.
MASK_SUFFIXES: dict[str, tuple[str, ...]] = {
    "cord": (CORD_SEG, "_seg-manual", f"_desc-{RATER}{CORD_SEG}", "_seg"),
    "lesion": (LESION_SEG, "_lesion-manual", f"_desc-{RATER}{LESION_SEG}"),
    "discs": ("_label-discs_dlabel", "_labels-disc-manual", f"_desc-{RATER}_label-discs_dlabel"),
}


@dataclass(frozen=True)
class MaskPick:
    """The mask picked for one image, and the other candidates it was preferred to."""

    path: Path
    suffix: str  #: the suffix found (``_seg-manual``; a rater's own, ``_desc-rater1_label-SC_seg``)
    others: tuple[Path, ...] = ()  #: other masks of the same image and kind, not used

    def note(self) -> str:
        """``picked X (suffix S) over Y, Z`` when there was a choice, else ``""``."""
        if not self.others:
            return ""
        return f"picked {self.path.name} over {', '.join(p.name for p in self.others)} (--mask-suffix chooses)"


def mask_suffixes(kind: str, suffix: str | None = None) -> tuple[str, ...]:
    """The suffixes looked up for a mask ``kind`` (:data:`MASK_SUFFIXES`) in order, or just ``suffix`` when the
    user chose one (``--mask-suffix``; ``*`` stands for any rater label). :class:`InputError` for a suffix that
    does not start with ``_``."""
    if suffix is None:
        return MASK_SUFFIXES[kind]
    if not suffix.startswith("_") or len(suffix) < 2 or "/" in suffix:
        raise InputError(f"--mask-suffix: {suffix!r} is not a mask suffix (e.g. _seg-manual, _label-SC_seg)")
    return (suffix,)


def _suffix_pattern(suffix: str) -> str:
    """Regular expression of a mask suffix (:data:`RATER` → one BIDS label)."""
    return re.escape(suffix).replace(re.escape(RATER), "[A-Za-z0-9]+")


def _matching(paths: Sequence[Path], stem: str, suffix: str) -> list[tuple[Path, str]]:
    """``(path, suffix found)`` of the files among ``paths`` named ``<stem><suffix>.nii.gz``, then ``.nii``, in the
    order given."""
    found = []
    for ending in NIFTI_SUFFIXES:
        rx = re.compile(re.escape(stem) + f"({_suffix_pattern(suffix)})" + re.escape(ending))
        for p in paths:
            m = rx.fullmatch(p.name)
            if m and p.is_file():
                found.append((p, m.group(1)))
    return found


def _candidates(folder: Path, stem: str, suffix: str) -> list[tuple[Path, str]]:
    """``(path, suffix found)`` of the files ``<stem><suffix>.nii.gz`` then ``.nii`` in ``folder``, sorted."""
    return _matching(sorted(folder.iterdir()), stem, suffix) if folder.is_dir() else []


def find_mask(
    root: str | Path, image: BidsImage, kind: str = "cord", suffix: str | None = None, pipeline: str = "labels"
) -> MaskPick | None:
    """The manual mask of ``image``: the first of :func:`mask_suffixes` found under
    ``<root>/derivatives/<pipeline>/<unit dir>/`` (else beside the image), with the other candidates it was
    preferred to; ``None`` when there is none."""
    folders = (Path(root) / "derivatives" / pipeline / image.unit.rel_dir, image.path.parent)
    found: list[tuple[Path, str]] = []
    for s in mask_suffixes(kind, suffix):
        for folder in folders:
            found += [c for c in _candidates(folder, image.stem, s) if c[0] not in {p for p, _ in found}]
    if not found:
        return None
    (path, picked), rest = found[0], found[1:]
    return MaskPick(path=path, suffix=picked, others=tuple(p for p, _ in rest))


def find_mask_under(folder: str | Path, stem: str, kind: str = "cord") -> Path | None:
    """The first mask of the image ``stem`` anywhere under ``folder`` (a flat folder or a BIDS tree): suffixes in
    the order of :func:`mask_suffixes`, ``.nii.gz`` before ``.nii``, sorted paths; ``None`` when there is none."""
    paths = sorted(Path(folder).rglob(f"{stem}*"))
    for s in mask_suffixes(kind):
        hits = _matching(paths, stem, s)
        if hits:
            return hits[0][0]
    return None


def mask_image_stem(path: str | Path, kind: str = "cord", suffix: str | None = None) -> str | None:
    """The image stem a mask file names (its name without the first matching suffix of :func:`mask_suffixes`,
    where what is left is an image's BIDS name); ``None`` for files that are no mask of that kind."""
    stem = nifti_stem(Path(path))
    if stem is None:
        return None
    for s in mask_suffixes(kind, suffix):
        m = re.search(_suffix_pattern(s) + "$", stem)
        left = parse_name(stem[: m.start()]) if m else None
        if left is not None and left.source is None:
            return stem[: m.start()]
    return None


def orphan_masks(
    root: str | Path, unit: Unit, images: Sequence[BidsImage], kind: str = "cord", suffix: str | None = None
) -> list[tuple[Path, str]]:
    """Masks of ``kind`` under ``<root>/derivatives/labels/<unit dir>/`` (and in the unit's folder) that name an
    image of the unit which does not exist: ``[(mask path, image stem it names)]``, sorted."""
    stems = {im.stem for im in images}
    out = []
    for folder in (Path(root) / "derivatives" / "labels" / unit.rel_dir, unit.folder):
        if not folder.is_dir():
            continue
        for p in sorted(folder.iterdir()):
            named = mask_image_stem(p, kind, suffix) if p.is_file() else None
            if named is not None and named.startswith(unit.name + "_") and named not in stems:
                out.append((p, named))
    return out
