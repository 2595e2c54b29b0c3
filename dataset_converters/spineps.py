"""``nnspine convert spineps`` / :func:`convert`: images with SPINEPS-format semantic masks → an nnU-Net raw dataset.

Input: a BIDS dataset (``sub-XX[/ses-YY]/anat/<image>.nii.gz``) or a flat folder of BIDS-named files side by
side, with one SPINEPS semantic mask per image, found by :func:`nnunet_spine.core.bids.find_spineps_masks`
under ``derivatives/<pipeline>/`` or beside the image: ``<image stem>_seg-spine_msk.nii.gz`` or SPINEPS' own
naming (``sub-01_seg-spine_msk``, ``sub-01_mod-T2w_seg-spine_msk``; older ``seg-subreg``). Values are the
SPINEPS semantic labels (:data:`nnunet_spine.core.labels.SEMANTIC_LABELS`: 41-49, 26, 60-62, 100; and SPINEPS 2.x /
TPTBox's 50-53, :data:`~nnunet_spine.core.labels.EXTENDED_SEMANTIC_LABELS`, each kept as its own class).

Output: ``$nnUNet_raw/DatasetXXX_NAME`` with one case per image of the first ``channels`` spec; the case
identifier is the image's BIDS stem (``sub-01_T2w``). Further channels are the same unit's images of the other
specs (``--channels T2w T1w``), on the same grid. Labels are renumbered 1..n in SPINEPS-value order over the
labels present in the dataset (nnU-Net needs consecutive labels); ``dataset.json`` names them after SPINEPS
(``Arcus_Vertebrae``...) and keeps the mapping under :data:`~nnunet_spine.core.dataset_json.LABEL_MAP_KEY`
(convention ``"spineps"``), which ``nnspine relabel`` reads to map predictions back. Voxels and orientation are
written unchanged (the image's grid and header); nnU-Net reads the orientation from the header and the trainer
:mod:`nnunet_spine.trainers.spine_semantic` derives the left-right axis from it.

Every mask is checked (SPINEPS semantic values only, with a hint when it looks like an instance mask; same
grid as its image) before anything is written, and the dataset is written all-or-nothing
(:func:`~nnunet_spine.dataset_converters.nnunet_raw.staged_dataset`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnunet_spine.core import bids
from nnunet_spine.core.dataset_json import LABEL_MAP_KEY, label_map_entry
from nnunet_spine.core.io import Image, InputError, check_same_grid, load_image, read_geometry, require_folder
from nnunet_spine.core.labels import ACCEPTED_SEMANTIC_LABELS, semantic_value_problem
from nnunet_spine.core.qc_yml import CaseList
from nnunet_spine.dataset_converters import nnunet_raw
from nnunet_spine.dataset_converters.defaults import JOBS, SPINEPS_CHANNELS
from nnunet_spine.dataset_converters.parallel import process_pool, run_all
from nnunet_spine.dataset_converters.protocol import (
    ConversionReport,
    bids_subject,
    check_grouping,
    check_jobs,
    output_folder,
    select_cases,
    write_dataset_splits,
)

__all__ = [
    "convert",
    "discover",
    "label_mapping",
    "to_nnunet_labels",
    "load_semantic_mask",
    "SpinepsCase",
    "SpinepsReport",
    "CONVENTION",
]

#: Convention name stored with the label mapping in ``dataset.json`` (read by ``nnspine relabel --to spineps``).
CONVENTION = "spineps"


@dataclass(frozen=True)
class SpinepsCase:
    """One training case: its identifier (the first channel's BIDS stem), channel images and semantic mask."""

    case: str
    images: tuple[Path, ...]
    mask: Path


@dataclass
class SpinepsReport(ConversionReport):
    """What :func:`convert` wrote: cases, ``dataset.json`` labels, the mapping, channels (and the protocol's
    dataset folder, split and warnings)."""

    cases: list[str]
    labels: dict[str, int]
    values: dict[int, int]  #: nnU-Net label → SPINEPS value
    channels: list[str]

    def lines(self) -> list[str]:
        """Human-readable summary."""
        mapping = ", ".join(f"{k}={v}" for k, v in self.values.items() if k)
        return [
            f"channels {', '.join(self.channels)}",
            f"labels (nnU-Net=SPINEPS): {mapping}; stored in dataset.json '{LABEL_MAP_KEY}'",
            *self.dataset_lines(),
        ]


# ------------------------------------------------------------------------------------------- discovery
def _units(root: Path) -> list[bids.Unit]:
    """BIDS units of a dataset root, or the subjects of a flat folder of side-by-side files."""
    if any(p.is_dir() for p in root.glob("sub-*")):
        return bids.find_units(root)
    return bids.flat_units(root)


def _partner(images: Sequence[bids.BidsImage], primary: bids.BidsImage, spec: str) -> bids.BidsImage | None:
    """The image of channel ``spec`` that goes with ``primary``: the only match, else the one with the same
    entities (``sub-01_acq-sag_T1w`` for ``sub-01_acq-sag_T2w``)."""
    matches = [im for im in bids.select_images(images, spec) if im.path != primary.path]
    if len(matches) == 1:
        return matches[0]
    same = [im for im in matches if dict(im.parsed.entities) == dict(primary.parsed.entities)]
    return same[0] if len(same) == 1 else None


def discover(
    dataset: str | Path,
    channels: Sequence[str] = SPINEPS_CHANNELS,
    segs: Sequence[str] = bids.SPINEPS_SEMANTIC_SEGS,
) -> tuple[list[SpinepsCase], list[str]]:
    """Cases (images of ``channels[0]`` with a SPINEPS semantic mask and every other channel) and warnings
    (images left out and why). No voxel is read. :class:`InputError` for a bad channel spec, a missing folder,
    several semantic masks for one image or no case at all. ``segs``: the masks' ``seg`` entity
    (:data:`~nnunet_spine.core.bids.SPINEPS_INSTANCE_SEGS` for instance masks, ``_seg-vert_msk``)."""
    kind = "instance" if tuple(segs) == tuple(bids.SPINEPS_INSTANCE_SEGS) else "semantic"
    example = f"<image>_seg-{segs[0]}_msk.nii.gz"
    root = require_folder(dataset, "dataset folder")
    specs = list(channels) or list(SPINEPS_CHANNELS)
    for spec in specs:
        try:
            bids.ImageSpec.parse(spec)
        except ValueError as exc:
            raise InputError(f"--channels: {exc}") from None
    cases: list[SpinepsCase] = []
    warnings: list[str] = []
    for unit in _units(root):
        images, unit_warnings = bids.list_images(unit)
        warnings += unit_warnings
        for primary in bids.select_images(images, specs[0]):
            masks = bids.find_spineps_masks(root, primary, segs)
            if not masks:
                warnings.append(
                    f"{primary.path}: no SPINEPS {kind} mask ({example} under derivatives/ or beside the image); "
                    "not used"
                )
                continue
            best = [
                m
                for m in masks
                if bids.parse_name(bids.nifti_stem(m)).get("seg")
                == bids.parse_name(bids.nifti_stem(masks[0])).get("seg")
            ]
            if len(best) > 1:
                raise InputError(f"{primary.path}: several {kind} masks ({', '.join(str(m) for m in best)}); keep one")
            others = []
            for spec in specs[1:]:
                other = _partner(images, primary, spec)
                if other is None:
                    warnings.append(f"{primary.path}: no single {spec} image beside it for channel {spec}; not used")
                    break
                others.append(other.path)
            else:
                cases.append(SpinepsCase(primary.stem, (primary.path, *others), best[0]))
    if not cases:
        raise InputError(
            f"{root}: no {specs[0]} image with a SPINEPS {kind} mask ({example})"
            + (f" and {', '.join(specs[1:])} images" if specs[1:] else "")
        )
    ids = [c.case for c in cases]
    dup = sorted({c for c in ids if ids.count(c) > 1})
    if dup:
        raise InputError(f"{root}: case identifier {dup[0]} occurs twice (images with the same name)")
    return cases, warnings


# ---------------------------------------------------------------------------------------------- labels
def load_semantic_mask(path: str | Path) -> Image:
    """Read a SPINEPS semantic mask: integer labels, 3-D, values in
    :data:`~nnunet_spine.core.labels.ACCEPTED_SEMANTIC_LABELS` (SPINEPS 2.x's 50-53 are kept as classes of
    their own, so that ``nnspine relabel`` gives them back exactly)
    (:class:`InputError` naming the file and the bad values, saying when it looks like an instance mask)."""
    mask = load_image(path, "labels")
    problem = semantic_value_problem(np.unique(mask.data).tolist())
    if problem:
        raise InputError(f"{mask.name}: {problem}")
    return mask


def label_mapping(values: Iterable[int]) -> dict[int, int]:
    """nnU-Net label → SPINEPS value for the SPINEPS labels ``values`` (0 ignored): consecutive 1..n in SPINEPS
    value order, plus background 0 → 0. ``ValueError`` for a value that is not a SPINEPS semantic label."""
    present = sorted({int(v) for v in values} - {0})
    bad = [v for v in present if v not in ACCEPTED_SEMANTIC_LABELS]
    if bad:
        raise ValueError(f"values {bad} are not SPINEPS semantic labels")
    return {0: 0, **{i + 1: v for i, v in enumerate(present)}}


def to_nnunet_labels(semantic: np.ndarray, mapping: Mapping[int, int]) -> np.ndarray:
    """SPINEPS semantic array → nnU-Net labels (uint8) with ``mapping`` (nnU-Net label → SPINEPS value).
    ``ValueError`` when the array holds a value the mapping lacks."""
    lut = np.zeros(256, np.uint8)
    known = np.zeros(256, bool)
    for label, value in mapping.items():
        lut[int(value)] = int(label)
        known[int(value)] = True
    data = np.asarray(semantic)
    if data.size and (data.min() < 0 or data.max() > 255 or not known[data.astype(np.int64)].all()):
        extra = sorted(set(np.unique(data).tolist()) - {int(v) for v in mapping.values()})
        raise ValueError(f"values {extra} have no nnU-Net label")
    return lut[data.astype(np.int64)]


def dataset_labels(mapping: Mapping[int, int]) -> dict[str, int]:
    """``dataset.json`` labels: ``background`` 0 and each SPINEPS structure name with its nnU-Net label."""
    return {"background": 0, **{ACCEPTED_SEMANTIC_LABELS[v]: k for k, v in sorted(mapping.items()) if k}}


# --------------------------------------------------------------------------------------------- convert
def _validate(case: SpinepsCase, _: object = None) -> set[int]:
    """Check one case without keeping voxels: mask values and grids; returns the mask's label values."""
    mask = load_semantic_mask(case.mask)
    first = read_geometry(case.images[0])
    check_same_grid(first, mask)
    for other in case.images[1:]:
        check_same_grid(first, read_geometry(other))
    return set(np.unique(mask.data).tolist())


def _write(case: SpinepsCase, target: tuple[Path, dict[int, int]]) -> str:
    """Write one case into the staging folder ``target[0]`` with the label mapping ``target[1]``."""
    stage, mapping = target
    images = [load_image(p, "image") for p in case.images]
    mask = load_image(case.mask, "labels")
    nnunet_raw.write_case(stage, case.case, images, to_nnunet_labels(mask.data, mapping))
    return case.case


def convert(
    source: str | Path,
    *,
    nnunet_dataset: int,
    name: str,
    raw_root: str | Path | None = None,
    overwrite: bool = False,
    jobs: int = JOBS,
    progress: bool = False,
    channels: Sequence[str] = SPINEPS_CHANNELS,
    group_by: str | None = None,
    exclude: CaseList | None = None,
    include: CaseList | None = None,
) -> SpinepsReport:
    """Write ``<raw_root or $nnUNet_raw>/DatasetXXX_NAME`` from images and SPINEPS semantic masks (module docstring;
    the converter protocol: :mod:`nnunet_spine.dataset_converters.protocol`).

    Every case is validated before anything is written; :class:`InputError` (one line naming the file) for
    masks with non-SPINEPS values or on another grid than their image, and for an existing dataset without
    ``overwrite``. Cases are grouped by BIDS subject in ``splits_final.json`` (by person with ``group_by``,
    :func:`nnunet_spine.dataset_converters.splits.subject_groups`).
    ``exclude`` / ``include``: case lists that leave images out
    (:func:`~nnunet_spine.dataset_converters.protocol.select_cases`). Returns a :class:`SpinepsReport`.
    """
    from tqdm.auto import tqdm

    check_jobs(jobs)
    folder = output_folder(source, nnunet_dataset, name, raw_root)
    cases, warnings = discover(source, channels)
    cases, excluded = select_cases(cases, exclude, include, lambda c: c.images[0], source)
    warnings += check_grouping((bids_subject(c.case) for c in cases), group_by)
    specs = list(channels) or list(SPINEPS_CHANNELS)
    with process_pool(jobs, len(cases)) as pool:
        bar = tqdm(total=len(cases), desc="check masks", unit="case", disable=not progress)
        try:
            present = set().union(*run_all(_validate, cases, None, pool, bar))
        finally:
            bar.close()
        if not present - {0}:
            raise InputError(f"{source}: every semantic mask is empty (no label to train)")
        mapping = label_mapping(present)
        labels = dataset_labels(mapping)
        with nnunet_raw.staged_dataset(folder, overwrite=overwrite) as stage:
            nnunet_raw.prepare_folder(stage)
            bar = tqdm(total=len(cases), desc="write cases", unit="case", disable=not progress)
            try:
                run_all(_write, cases, (stage, mapping), pool, bar)
            finally:
                bar.close()
            nnunet_raw.write_dataset_json(
                stage,
                channel_names=specs,
                labels=labels,
                num_training=len(cases),
                name=folder.name,
                description=f"SPINEPS semantic masks from {Path(source).resolve()} (nnspine convert spineps)",
                **{LABEL_MAP_KEY: label_map_entry(CONVENTION, mapping)},
            )
            splits = write_dataset_splits(stage, folder, {c.case: bids_subject(c.case) for c in cases}, group_by)
    return SpinepsReport(
        nnunet_dataset=str(folder),
        num_cases=len(cases),
        splits=splits,
        cases=[c.case for c in cases],
        labels=labels,
        values=mapping,
        channels=specs,
        warnings=warnings,
        excluded=excluded,
    )
