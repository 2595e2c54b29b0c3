"""``nnspine convert cutouts``: the instance-phase (cutout) nnU-Net training dataset from SPINEPS masks.

Input: a folder holding pairs of SPINEPS masks on one grid, the semantic ``<stem>_seg-spine_msk.nii.gz``
(or TPTBox's ``_seg-subreg``) and the instance ``<stem>_seg-vert_msk.nii.gz`` beside it (any depth, e.g.
``derivatives/labels/sub-XX/anat``). Per vertebral body of each semantic mask, the same cutout as
``nnspine cutouts`` makes (:mod:`nnunet_spine.core.cutouts`: size, spacing, centres, one-hot input channels),
plus ``shifts`` copies whose centre is moved by a random vector of at most ``max_shift_mm`` (uniform in
that ball; seeded, so reruns give the same dataset). Targets, on the cutout grid (nearest neighbour from
the instance mask, vertebra voxels only): 1 = the vertebra above the centre one, 2 = the centre vertebra
(the instance holding the body the cutout is centred on), 3 = the vertebra below, 0 elsewhere; "above"
and "below" are the neighbours in the S-I order of the vertebrae's body centroids (world z), whatever
their ids.

Output: ``$nnUNet_raw/DatasetXXX_NAME`` with ``imagesTr/<case>_<NNN>[s<k>]_<CCCC>.nii.gz`` (9 uint8
channels, nnU-Net channel name ``noNorm``), ``labelsTr/<case>_<NNN>[s<k>].nii.gz`` and ``dataset.json``
(``channel_labels`` records which semantic label each channel holds). Cutouts of one subject share the
``<case>_`` prefix, and ``splits_final.json`` keeps every cutout of a subject (all its masks and shifted copies)
in one fold, so validation is on unseen subjects.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nnunet_spine.core.cutouts import (
    CHANNEL_NAME,
    CUTOUT_ORIENTATION,
    DEFAULT_SIZE,
    DEFAULT_SPACING_MM,
    Bodies,
    case_name,
    check_size,
    cut_case,
    cutout_affine,
    load_instance,
    load_semantic,
    one_hot,
    sample_labels,
    semantic_files,
    to_pir,
)
from nnunet_spine.core.io import Image, InputError, require_folder
from nnunet_spine.core.labels import (
    CORPUS,
    CUTOUT_CHANNEL_LABELS,
    CUTOUT_TARGET_LABELS,
    SACRUM,
    VERSE_NAMES,
    is_vertebra,
)
from nnunet_spine.dataset_converters.defaults import CUTOUT_MAX_SHIFT_MM, CUTOUT_SEED, CUTOUT_SHIFTS, JOBS
from nnunet_spine.dataset_converters.nnunet_raw import (
    check_case_id,
    prepare_folder,
    staged_dataset,
    write_case,
    write_dataset_json,
)
from nnunet_spine.dataset_converters.parallel import process_pool, run_all
from nnunet_spine.dataset_converters.protocol import (
    ConversionReport,
    bids_subject,
    check_jobs,
    output_folder,
    write_dataset_splits,
)


class CutoutWarning(UserWarning):
    """A pair skipped or an oddity found while converting (reported, not fatal)."""


def instance_partner(semantic: Path) -> Path | None:
    """The instance mask beside a semantic mask (``seg-spine``/``seg-subreg`` → ``seg-vert``), if present."""
    name = semantic.name
    for key in ("_seg-spine", "_seg-subreg"):
        if key in name:
            p = semantic.with_name(name.replace(key, "_seg-vert", 1))
            return p if p.is_file() else None
    return None


def find_pairs(root: str | os.PathLike) -> tuple[list[tuple[str, Path, Path]], list[str]]:
    """(case, semantic, instance) for every semantic mask under ``root`` with its instance mask, and one
    warning per semantic mask without one."""
    root = require_folder(root, "dataset folder")
    pairs, notes = [], []
    for sem in semantic_files(root):
        inst = instance_partner(sem)
        if inst is None:
            notes.append(f"{sem}: no instance mask (_seg-vert_msk) beside it, skipped")
            continue
        pairs.append((case_name(sem), sem, inst))
    if not pairs:
        raise InputError(f"{root}: no pair of semantic (_seg-spine_msk) and instance (_seg-vert_msk) masks found")
    return pairs, notes


def vertebra_order(sem_pir: np.ndarray, inst_pir: np.ndarray, affine_pir: np.ndarray) -> list[int]:
    """Vertebra ids (sacrum excluded) from superior to inferior by the world z of their body centroid
    (of the whole instance when it has no body voxel)."""
    from scipy import ndimage

    ids = [int(v) for v in np.unique(inst_pir) if is_vertebra(v) and v != SACRUM]
    if not ids:
        return []
    body = np.where(sem_pir == CORPUS, inst_pir, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        cb = ndimage.center_of_mass(np.ones(body.shape, np.uint8), body, ids)
        cw = ndimage.center_of_mass(np.ones(body.shape, np.uint8), inst_pir, ids)
    z = {}
    for v, a, b in zip(ids, cb, cw):
        c = np.asarray(a if np.all(np.isfinite(a)) else b, float)
        z[v] = float(c @ affine_pir[2, :3] + affine_pir[2, 3])
    return sorted(ids, key=lambda v: -z[v])


def centre_vertebra(bodies: Bodies, index: int, inst_pir: np.ndarray) -> int | None:
    """The vertebra instance holding most of body component ``index`` (0-based), None when it has none."""
    vals = inst_pir[bodies.components == index + 1]
    vals = vals[np.isin(vals, [v for v in VERSE_NAMES if v != SACRUM])]
    return int(np.bincount(vals).argmax()) if vals.size else None


def target_lut(order: Sequence[int], centre: int) -> np.ndarray:
    """Lookup table instance id → cutout target (1 above, 2 centre, 3 below, 0 otherwise)."""
    lut = np.zeros(256, np.uint8)
    k = list(order).index(centre)
    if k > 0:
        lut[order[k - 1]] = CUTOUT_TARGET_LABELS["above"]
    lut[centre] = CUTOUT_TARGET_LABELS["centre"]
    if k + 1 < len(order):
        lut[order[k + 1]] = CUTOUT_TARGET_LABELS["below"]
    return lut


def random_shifts(n: int, max_shift_mm: float, rng: np.random.Generator) -> np.ndarray:
    """``n`` world shift vectors (mm), uniform in the ball of radius ``max_shift_mm``."""
    d = rng.normal(size=(n, 3))
    d /= np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)
    return d * (max_shift_mm * rng.uniform(size=(n, 1)) ** (1.0 / 3.0))


@dataclass
class CutoutDatasetReport(ConversionReport):
    """What :func:`convert` wrote: per mask pair (case) the vertebrae used as cutout centres (and the protocol's
    dataset folder, split and warnings)."""

    vertebrae: dict[str, int] = field(default_factory=dict)  #: case → vertebrae (cutout centres) used

    def lines(self) -> list[str]:
        out = [f"{case}: {n} vertebra cutout(s)" for case, n in self.vertebrae.items()]
        return out + self.dataset_lines()


@dataclass(frozen=True)
class _Settings:
    stage: Path
    shifts: int
    max_shift_mm: float
    seed: int
    size: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]


def _pair_rng(seed: int, case: str) -> np.random.Generator:
    """The shifts' random generator of one mask pair: from the seed and the case name, so a pair gets the same
    shifts whatever the other pairs and the number of jobs."""
    return np.random.default_rng([seed, int(hashlib.sha256(case.encode()).hexdigest()[:12], 16)])


def _check(pair: tuple[str, Path, Path], _: object = None) -> None:
    case, sem_path, inst_path = pair
    check_case_id(case)
    load_instance(inst_path, like=load_semantic(sem_path))


def _write(pair: tuple[str, Path, Path], st: _Settings) -> tuple[list[str], list[str], int]:
    """Write every cutout (and shifted copy) of one mask pair into the stage: (case names, warnings, vertebrae
    used as centres)."""
    case, sem_path, inst_path = pair
    sem = load_semantic(sem_path)
    inst = load_instance(inst_path, like=sem)
    record, bodies, sem_pir = cut_case(sem, case, st.size, st.spacing_mm)
    inst_pir, aff_pir = to_pir(inst)
    order = vertebra_order(sem_pir, inst_pir, aff_pir)
    rng = _pair_rng(st.seed, case)
    written, notes, used = [], [], 0
    for cut in record.cutouts:
        centre = centre_vertebra(bodies, cut.index, inst_pir)
        if centre is None or centre not in order:
            notes.append(
                f"{inst_path}: body at ({', '.join(f'{v:.1f}' for v in cut.centre_mm)}) mm "
                "belongs to no vertebra instance, skipped"
            )
            continue
        lut = target_lut(order, centre)
        offsets = np.vstack([np.zeros((1, 3)), random_shifts(st.shifts, st.max_shift_mm, rng)])
        for k, off in enumerate(offsets):
            cname = cut.name if k == 0 else f"{cut.name}s{k}"
            aff = cutout_affine(aff_pir, cut.centre_mm + off, st.size, st.spacing_mm)
            labels = sample_labels(sem_pir, aff_pir, aff, cut.shape)
            target = lut[sample_labels(inst_pir, aff_pir, aff, cut.shape)]
            images = [Image(ch, aff) for ch in one_hot(labels)]
            write_case(st.stage, cname, images, target)
            written.append(cname)
        used += 1
    return written, notes, used


def convert(
    source: str | os.PathLike,
    *,
    nnunet_dataset: int,
    name: str,
    raw_root: str | os.PathLike | None = None,
    overwrite: bool = False,
    jobs: int = JOBS,
    progress: bool = False,
    shifts: int = CUTOUT_SHIFTS,
    max_shift_mm: float = CUTOUT_MAX_SHIFT_MM,
    seed: int = CUTOUT_SEED,
    size: Sequence[int] = DEFAULT_SIZE,
    spacing_mm: Sequence[float] = DEFAULT_SPACING_MM,
) -> CutoutDatasetReport:
    """Write the cutout training dataset (see the module doc; the converter protocol:
    :mod:`nnunet_spine.dataset_converters.protocol`); returns what was written.

    Every pair is read and checked (mask kinds, grids, a body in every semantic mask) before anything is written;
    the dataset is written all-or-nothing, every cutout of a subject (all its masks, all shifted copies) in one
    fold of ``splits_final.json``. A body whose voxels belong to no vertebra instance is skipped with a
    warning."""
    from tqdm.auto import tqdm

    check_jobs(jobs)
    check_size(size, spacing_mm)
    if shifts < 0:
        raise InputError(f"--shifts must be 0 or more, got {shifts}")
    if not max_shift_mm >= 0:
        raise InputError(f"--max-shift-mm must be 0 or more, got {max_shift_mm}")
    folder = output_folder(source, nnunet_dataset, name, raw_root)
    pairs, notes = find_pairs(source)
    seen: dict[str, Path] = {}
    for case, sem_path, _ in pairs:
        if case in seen:
            raise InputError(f"{sem_path}: case name {case} also comes from {seen[case]} (rename one of them)")
        seen[case] = sem_path
    report = CutoutDatasetReport(nnunet_dataset=str(folder), warnings=list(notes))
    with process_pool(jobs, len(pairs)) as pool:
        run_all(_check, pairs, None, pool)  # check everything first
        with staged_dataset(folder, overwrite=overwrite) as stage:
            prepare_folder(stage)
            settings = _Settings(stage, int(shifts), float(max_shift_mm), int(seed), tuple(size), tuple(spacing_mm))
            bar = tqdm(total=len(pairs), desc="convert cutouts", unit="subject", disable=not progress)
            try:
                results = run_all(_write, pairs, settings, pool, bar)
            finally:
                bar.close()
            written: dict[str, str] = {}
            for (case, _, _), (names, pair_notes, used) in zip(pairs, results):
                report.vertebrae[case] = used
                report.warnings += pair_notes
                written.update({n: bids_subject(case) for n in names})
            if not written:
                raise InputError(f"{source}: no vertebral body belongs to a vertebra instance: nothing to train")
            n_ch = len(CUTOUT_CHANNEL_LABELS)
            write_dataset_json(
                stage,
                channel_names={str(c): CHANNEL_NAME for c in range(n_ch)},
                labels=dict(CUTOUT_TARGET_LABELS),
                num_training=len(written),
                channel_labels={str(c): int(lab) for c, lab in enumerate(CUTOUT_CHANNEL_LABELS)},
                description="nnunet-spine instance-phase cutouts: one-hot vertebra subregions 41-49 in, "
                "vertebra above (1) / centre (2) / below (3) out",
                cutout_size=[int(n) for n in size],
                cutout_spacing_mm=[float(s) for s in spacing_mm],
                cutout_orientation="".join(CUTOUT_ORIENTATION),
                shifts=int(shifts),
                max_shift_mm=float(max_shift_mm),
                seed=int(seed),
            )
            report.splits = write_dataset_splits(stage, folder, written)
    report.num_cases = len(written)
    for w in report.warnings:
        warnings.warn(w, CutoutWarning, stacklevel=2)
    return report
