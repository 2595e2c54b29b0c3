"""``nnspine convert landmarks`` / :func:`convert`: images with SPINEPS instance masks (VerSe ids) → an nnU-Net raw
dataset of **landmark discs**, for a stock nnU-Net landmark model whose prediction anchors the vertebra ids
(``nnspine fuse`` / ``instances --landmarks``).

TotalSpineSeg's first step predicts a few discs as landmark classes and labels the column from them; here the
landmarks are the discs C2-C3, C7-T1, T12-L1 and L5-S1 (:data:`~nnunet_spine.core.labels.LANDMARK_NAMES`,
classes 1-4): in an instance mask with VerSe ids the disc below vertebra X is ``100 + X``, so the targets are
the voxels of discs 102, 107, 119 and 124 (:data:`~nnunet_spine.core.labels.LANDMARK_UPPER`); every other
voxel is background. A case showing none of them stays in the dataset (it teaches where no landmark is).

Input: as ``nnspine convert spineps`` (a BIDS dataset or a folder of BIDS-named files; ``--channels``), with one
instance mask per image (``<image>_seg-vert_msk.nii.gz`` or SPINEPS' own naming) under ``derivatives/`` or
beside the image: the phantom's masks, SPINEPS' or ``nnspine fuse``'s. A mask whose sidecar
(``<mask>.json``, written by ``nnspine fuse``) says it is *not anatomically labelled* is left out with a
warning: its ids are positions, not vertebrae, and would teach wrong landmarks. Values other than SPINEPS
instance values (1-28, 101-128, 201-228), another grid than the image, or an existing dataset without
``overwrite``: :class:`InputError`, nothing written.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nnunet_spine.core import bids
from nnunet_spine.core.io import InputError, check_same_grid, load_image, read_geometry
from nnunet_spine.core.labels import LANDMARK_NAMES, LANDMARK_UPPER, disc_instance, instance_kind
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
from nnunet_spine.dataset_converters.spineps import SpinepsCase, discover

__all__ = ["convert", "landmark_targets", "LandmarksReport"]


@dataclass(kw_only=True)
class LandmarksReport(ConversionReport):
    """What ``convert landmarks`` wrote: cases, and per landmark the number of cases that show it."""

    cases: list[str] = field(default_factory=list)
    cases_with: dict[str, int] = field(default_factory=dict)

    def lines(self) -> list[str]:
        shown = ", ".join(f"{name} in {n}" for name, n in self.cases_with.items())
        return [f"{len(self.cases)} cases; landmark discs: {shown}"] + self.dataset_lines()


def landmark_targets(instance: np.ndarray) -> np.ndarray:
    """Landmark classes (uint8: 1 C2-C3 … 4 L5-S1, 0 elsewhere) from an instance mask with VerSe ids."""
    inst = np.rint(np.asarray(instance)).astype(np.int64)
    out = np.zeros(inst.shape, np.uint8)
    for k, upper in LANDMARK_UPPER.items():
        out[inst == disc_instance(upper)] = k
    return out


def _not_labelled(mask: Path) -> bool:
    """The mask's sidecar (``nnspine fuse``'s ``<mask>.json``) says its ids are not anatomical."""
    side = mask.with_name(mask.name[: -len(".gz")] if mask.name.endswith(".gz") else mask.name).with_suffix(".json")
    if not side.is_file():
        return False
    try:
        labelling = json.loads(side.read_text()).get("labelling") or {}
    except (ValueError, AttributeError):
        return False
    return labelling.get("anatomical") is False


def _validate(case: SpinepsCase, _: object = None) -> list[int]:
    """Check one case (instance values, grids); returns the landmark classes it shows."""
    mask = load_image(case.mask, "labels")
    first = read_geometry(case.images[0])
    check_same_grid(first, mask)
    for other in case.images[1:]:
        check_same_grid(first, read_geometry(other))
    values = [int(v) for v in np.unique(mask.data) if v]
    bad = []
    for v in values:
        try:
            instance_kind(v)
        except ValueError:
            bad.append(v)
    if bad:
        hint = " (a semantic mask? give the _seg-vert_msk instance masks)" if set(bad) & {41, 49, 60, 61, 62} else ""
        raise InputError(
            f"{case.mask}: values {bad[:5]} are not SPINEPS instance values (1-28, 101-128, 201-228){hint}"
        )
    return [k for k, upper in LANDMARK_UPPER.items() if disc_instance(upper) in values]


def _write(case: SpinepsCase, stage: Path) -> str:
    images = [load_image(p, "image") for p in case.images]
    nnunet_raw.write_case(stage, case.case, images, landmark_targets(load_image(case.mask, "labels").data))
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
) -> LandmarksReport:
    """Write ``<raw_root or $nnUNet_raw>/DatasetXXX_NAME`` (module docstring; the converter protocol:
    :mod:`nnunet_spine.dataset_converters.protocol`). Cases are grouped by BIDS subject in ``splits_final.json``
    (by person with ``group_by``, :func:`nnunet_spine.dataset_converters.splits.subject_groups`).
    ``exclude`` / ``include``: case lists that leave images out
    (:func:`~nnunet_spine.dataset_converters.protocol.select_cases`)."""
    from tqdm.auto import tqdm

    check_jobs(jobs)
    folder = output_folder(source, nnunet_dataset, name, raw_root)
    found, warnings = discover(source, channels, bids.SPINEPS_INSTANCE_SEGS)
    found, excluded = select_cases(found, exclude, include, lambda c: c.images[0], source)
    cases = []
    for c in found:
        if _not_labelled(c.mask):
            warnings.append(f"{c.mask}: its sidecar says it is not anatomically labelled (ids are positions); not used")
        else:
            cases.append(c)
    if not cases:
        raise InputError(
            f"{source}: every instance mask ({len(found)}) is marked not anatomically labelled in its sidecar "
            "(ids are positions, not vertebrae): label them first (nnspine fuse with an anchor or --top-vertebra)"
        )
    warnings += check_grouping((bids_subject(c.case) for c in cases), group_by)
    specs = list(channels) or list(SPINEPS_CHANNELS)
    with process_pool(jobs, len(cases)) as pool:
        bar = tqdm(total=len(cases), desc="check masks", unit="case", disable=not progress)
        try:
            shown = run_all(_validate, cases, None, pool, bar)
        finally:
            bar.close()
        if not any(shown):
            raise InputError(
                f"{source}: no mask shows a landmark disc ({', '.join(LANDMARK_NAMES.values())}: instances "
                f"{', '.join(str(disc_instance(u)) for u in LANDMARK_UPPER.values())}); nothing to train"
            )
        with nnunet_raw.staged_dataset(folder, overwrite=overwrite) as stage:
            nnunet_raw.prepare_folder(stage)
            bar = tqdm(total=len(cases), desc="write cases", unit="case", disable=not progress)
            try:
                run_all(_write, cases, stage, pool, bar)
            finally:
                bar.close()
            nnunet_raw.write_dataset_json(
                stage,
                channel_names=specs,
                labels={"background": 0, **{name: k for k, name in LANDMARK_NAMES.items()}},
                num_training=len(cases),
                name=folder.name,
                description=f"landmark discs from {Path(source).resolve()} (nnspine convert landmarks)",
            )
            splits = write_dataset_splits(stage, folder, {c.case: bids_subject(c.case) for c in cases}, group_by)
    return LandmarksReport(
        nnunet_dataset=str(folder),
        num_cases=len(cases),
        splits=splits,
        cases=[c.case for c in cases],
        cases_with={name: sum(k in s for s in shown) for k, name in LANDMARK_NAMES.items()},
        warnings=warnings,
        excluded=excluded,
    )
