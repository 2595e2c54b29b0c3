"""``nnspine convert spider`` / :func:`convert`: the public SPIDER lumbar MRI dataset → an nnU-Net semantic dataset
(vertebra, disc, canal) and, on request, SPINEPS-format instance masks.

SPIDER layout (van der Graaf et al. 2024, Zenodo / spider.grand-challenge.org)::

    SPIDER_ROOT/images/<id>_t1.mha, <id>_t2.mha, <id>_t2_SPACE.mha     sagittal series of patient <id>
    SPIDER_ROOT/masks/<id>_t1.mha, ...                                 one mask per series, same grid

Mask values (SPIDER's documentation): 1-25 vertebrae numbered from the bottom (the lowest visible vertebra,
normally L5, is 1), 100 spinal canal, 101-125 partially visible vertebrae (100 + the vertebra's number),
201-225 intervertebral discs numbered like the vertebra above them (L5/S1 = 201). The sacrum is not labelled.

Each series is one single-channel case named after its file (``12_t2``); images are read with SimpleITK and
written as NIfTI with the same voxels and geometry (ITK's LPS converted to RAS by :mod:`nnunet_spine.core.io`).

* ``labelsTr``: 1 vertebra (1-25; with ``keep_partial`` also 101-125, otherwise those are background),
  2 disc (201-225), 3 canal (100).
* ``instancesTr`` (``instances=True``): SPINEPS-format instance masks (:mod:`nnunet_spine.core.labels`): vertebra
  ids, the disc below vertebra X as 100 + X, canal 0 (as SPINEPS' cord and canal); partial vertebrae as in
  ``labelsTr``. Without ``lowest`` the ids count from the top: the highest vertebra number in the mask gets 1
  (not anatomical, like SPINEPS' own unlabelled output). With ``lowest`` (e.g. ``"L5"``, the VerSe name of
  SPIDER's vertebra 1) they are VerSe ids counted upwards from it (L5 = 24, L4 = 23, ...; ``"L6"`` for a
  lumbarised S1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from nnunet_spine.core.dataset_json import INSTANCES_TR
from nnunet_spine.core.io import InputError, check_same_grid, load_image, read_image, split_suffix
from nnunet_spine.core.labels import (
    VERSE_NAMES,
    disc_instance,
    instance_value_problem,
    semantic_value_problem,
    verse_sequence,
    vertebra_name,
    vertebra_number,
)
from nnunet_spine.dataset_converters import nnunet_raw
from nnunet_spine.dataset_converters.defaults import JOBS
from nnunet_spine.dataset_converters.parallel import process_pool, run_all
from nnunet_spine.dataset_converters.protocol import ConversionReport, check_jobs, output_folder, write_dataset_splits

__all__ = [
    "convert",
    "discover",
    "semantic_from_spider",
    "instances_from_spider",
    "spider_value_problem",
    "verse_ids_upwards",
    "SpiderCase",
    "SpiderReport",
    "SEMANTIC_LABELS",
]

IMAGES, MASKS = "images", "masks"
MASK_ENDING = ".mha"
CANAL = 100  #: SPIDER's spinal canal
VERTEBRAE = range(1, 26)  #: fully visible vertebrae, numbered from the bottom
PARTIAL = range(101, 126)  #: partially visible vertebrae (100 + number)
DISCS = range(201, 226)  #: discs (200 + number of the vertebra above)
#: ``dataset.json`` labels of the semantic dataset.
SEMANTIC_LABELS: dict[str, int] = {"background": 0, "vertebra": 1, "disc": 2, "canal": 3}


@dataclass(frozen=True)
class SpiderCase:
    """One SPIDER series: case identifier (file stem), image and mask."""

    case: str
    image: Path
    mask: Path


@dataclass
class SpiderReport(ConversionReport):
    """What :func:`convert` wrote (and the protocol's dataset folder, split and warnings)."""

    cases: list[str]
    keep_partial: bool
    instances: str | None  #: None, "top-down" or "VerSe ids, lowest L5"

    def lines(self) -> list[str]:
        out = [
            f"labels vertebra 1, disc 2, canal 3; partially visible vertebrae "
            f"{'kept as vertebra' if self.keep_partial else 'as background'}"
        ]
        if self.instances:
            out.append(f"instance masks ({self.instances}): {Path(self.nnunet_dataset) / INSTANCES_TR}")
        return out + self.dataset_lines()


def spider_subject(case: str) -> str:
    """The SPIDER patient of a series (``12_t2_SPACE`` → ``12``): all series of a patient share one fold."""
    return case.split("_", 1)[0]


# --------------------------------------------------------------------------------------------- values
def spider_value_problem(values) -> str | None:
    """Why a set of voxel values is not a SPIDER mask (``None`` when it is one); says when it looks like a
    SPINEPS semantic or instance mask instead."""
    vals = sorted(int(v) for v in values if int(v) != 0)
    allowed = set(VERTEBRAE) | set(PARTIAL) | set(DISCS) | {CANAL}
    bad = [v for v in vals if v not in allowed]
    if not bad:
        return None
    hint = ""
    if semantic_value_problem(vals) is None:
        hint = " (looks like a SPINEPS semantic mask _seg-spine_msk: use 'nnspine convert spineps')"
    elif instance_value_problem(vals) is None:
        hint = " (looks like a SPINEPS instance mask _seg-vert_msk)"
    return (
        f"values {bad[:8]} are not SPIDER labels (vertebrae 1-25, canal 100, partial vertebrae 101-125, "
        f"discs 201-225){hint}"
    )


def semantic_from_spider(mask: np.ndarray, keep_partial: bool = False) -> np.ndarray:
    """SPIDER mask → semantic labels (uint8): vertebra 1, disc 2, canal 3 (:data:`SEMANTIC_LABELS`); partially
    visible vertebrae are vertebra with ``keep_partial``, else background."""
    m = np.asarray(mask)
    out = np.zeros(m.shape, np.uint8)
    vert = (m >= VERTEBRAE.start) & (m < VERTEBRAE.stop)
    if keep_partial:
        vert |= (m >= PARTIAL.start) & (m < PARTIAL.stop)
    out[vert] = SEMANTIC_LABELS["vertebra"]
    out[(m >= DISCS.start) & (m < DISCS.stop)] = SEMANTIC_LABELS["disc"]
    out[m == CANAL] = SEMANTIC_LABELS["canal"]
    return out


def verse_ids_upwards(lowest: int, n: int) -> list[int]:
    """VerSe ids of ``n`` vertebrae counted upwards from ``lowest`` (a mobile vertebra C1-L6):
    ``verse_ids_upwards(24, 3)`` → [24, 23, 22] (L5, L4, L3). ``ValueError`` past C1 or for another id."""
    chain = verse_sequence(1, 25)  # C1 ... L5, L6 (the usual order, no T13)
    if int(lowest) not in chain:
        raise ValueError(f"the lowest vertebra must be one of C1-L6, got {VERSE_NAMES.get(int(lowest), lowest)}")
    i = chain.index(int(lowest))
    if n > i + 1:
        raise ValueError(f"{n} vertebrae counted upwards from {vertebra_name(lowest)} run past C1")
    return chain[i::-1][:n] if n > 0 else []


def _number(value: int) -> int:
    """Bottom-up vertebra number of a SPIDER vertebra, partial vertebra or disc (disc: the vertebra above)."""
    return value % 100


def instances_from_spider(mask: np.ndarray, keep_partial: bool = False, lowest: int | None = None) -> np.ndarray:
    """SPIDER mask → SPINEPS-format instance mask (uint8): vertebrae by id, the disc below vertebra X = 100 + X,
    canal 0. Ids: VerSe counted upwards from ``lowest`` (SPIDER's vertebra 1), else top-down (the highest
    vertebra number present, partial ones and discs' upper vertebrae included, gets 1). Partial vertebrae are
    kept only with ``keep_partial``. ``ValueError`` when ``lowest`` leaves too few names."""
    m = np.asarray(mask).astype(np.int64)
    values = [v for v in np.unique(m).tolist() if v and v != CANAL]
    numbers = sorted({_number(v) for v in values})
    if not numbers:
        return np.zeros(m.shape, np.uint8)
    if lowest is not None:
        ids = verse_ids_upwards(lowest, max(numbers))
        vid = {n: ids[n - 1] for n in numbers}
    else:
        top = max(numbers)
        vid = {n: top - n + 1 for n in numbers}
    lut = np.zeros(int(m.max()) + 1, np.uint8)
    for v in values:
        if v in VERTEBRAE or (keep_partial and v in PARTIAL):
            lut[v] = vid[_number(v)]
        elif v in DISCS:
            lut[v] = disc_instance(vid[_number(v)])
    return lut[m]


# ------------------------------------------------------------------------------------------ discovery
def discover(root: str | Path, sequences: Sequence[str] | None = None) -> tuple[list[SpiderCase], list[str]]:
    """Series of ``root/images`` with a mask of the same name in ``root/masks`` (``sequences``: keep only names
    ending in ``_<sequence>``, e.g. ``t2``); warnings name images without a mask. No voxel is read."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(
            f"{root}: {'is a file, expected the SPIDER folder' if root.exists() else 'SPIDER folder not found'}"
        )
    images_dir, masks_dir = root / IMAGES, root / MASKS
    for d in (images_dir, masks_dir):
        if not d.is_dir():
            raise InputError(f"{d}: folder not found (SPIDER layout: images/<id>_t2.mha and masks/<id>_t2.mha)")
    cases, warnings = [], []
    for image in sorted(images_dir.iterdir()):
        stem, ending = split_suffix(image)
        if ending.lower() != MASK_ENDING or not image.is_file() or image.name.startswith("."):
            continue
        if sequences and not any(stem.endswith(f"_{s}") for s in sequences):
            continue
        mask = masks_dir / image.name
        if not mask.is_file():
            warnings.append(f"{image}: no mask {mask}; not used")
            continue
        try:
            nnunet_raw.check_case_id(stem)
        except InputError:
            raise InputError(f"{image}: file name {stem!r} cannot be an nnU-Net case identifier") from None
        cases.append(SpiderCase(stem, image, mask))
    if not cases:
        which = f" ({', '.join(sequences)})" if sequences else ""
        raise InputError(f"{images_dir}: no .mha series{which} with a mask in {masks_dir}")
    return cases, warnings


def _load_mask(case: SpiderCase):
    mask = load_image(case.mask, "labels")
    problem = spider_value_problem(np.unique(mask.data).tolist())
    if problem:
        raise InputError(f"{case.mask}: {problem}")
    return mask


# --------------------------------------------------------------------------------------------- convert
@dataclass(frozen=True)
class _Settings:
    keep_partial: bool
    lowest_id: int | None
    stage: Path | None = None
    instances: bool = False


def _check(case: SpiderCase, st: _Settings) -> None:
    """Every check of one series: SPIDER values, same grid as the image, enough names above ``lowest``."""
    mask = _load_mask(case)
    check_same_grid(read_image(case.image), mask)
    if st.lowest_id is not None:
        n = max([_number(v) for v in np.unique(mask.data).tolist() if v and v != CANAL], default=0)
        try:
            verse_ids_upwards(st.lowest_id, n)
        except ValueError as exc:
            raise InputError(f"{case.mask}: {exc}") from None


def _write(case: SpiderCase, st: _Settings) -> str:
    image = load_image(case.image, "image")
    mask = load_image(case.mask, "labels")
    maps = {}
    if st.instances:
        maps[INSTANCES_TR] = (instances_from_spider(mask.data, st.keep_partial, st.lowest_id), np.uint8)
    nnunet_raw.write_case(st.stage, case.case, [image], semantic_from_spider(mask.data, st.keep_partial), extra=maps)
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
    keep_partial: bool = False,
    instances: bool = False,
    lowest: str | None = None,
    sequences: Sequence[str] | None = None,
) -> SpiderReport:
    """Write ``<raw_root or $nnUNet_raw>/DatasetXXX_NAME`` from a SPIDER folder (module docstring; the converter
    protocol: :mod:`nnunet_spine.dataset_converters.protocol`).

    ``lowest`` (a vertebra name such as ``"L5"``) needs ``instances``. Every mask is checked (SPIDER values,
    same grid as its image, enough names above ``lowest``) before anything is written; the dataset is written
    all-or-nothing, with the series of one patient in one fold of ``splits_final.json``. :class:`InputError`
    (one line naming the file) otherwise.
    """
    from tqdm.auto import tqdm

    check_jobs(jobs)
    lowest_id = None
    if lowest is not None:
        if not instances:
            raise InputError("--lowest names SPIDER's vertebra 1 for the instance masks: use it with --instances")
        try:
            lowest_id = vertebra_number(lowest)
            verse_ids_upwards(lowest_id, 1)
        except (KeyError, ValueError):
            raise InputError(
                f"--lowest {lowest}: expected a mobile vertebra name C1-L6 (SPIDER does not label the sacrum), e.g. L5"
            ) from None
    folder = output_folder(source, nnunet_dataset, name, raw_root)
    cases, warnings = discover(source, sequences)
    settings = _Settings(keep_partial, lowest_id)
    extra = [INSTANCES_TR] if instances else []
    mode = None if not instances else (f"VerSe ids, lowest {lowest.upper()}" if lowest else "top-down ids")
    with process_pool(jobs, len(cases)) as pool:
        bar = tqdm(total=len(cases), desc="check masks", unit="case", disable=not progress)
        try:
            run_all(_check, cases, settings, pool, bar)
        finally:
            bar.close()
        with nnunet_raw.staged_dataset(folder, overwrite=overwrite) as stage:
            nnunet_raw.prepare_folder(stage, extra_folders=extra)
            bar = tqdm(total=len(cases), desc="write cases", unit="case", disable=not progress)
            try:
                run_all(_write, cases, replace(settings, stage=stage, instances=instances), pool, bar)
            finally:
                bar.close()
            nnunet_raw.write_dataset_json(
                stage,
                channel_names={"0": "MRI"},
                labels=SEMANTIC_LABELS,
                num_training=len(cases),
                name=folder.name,
                description=f"SPIDER lumbar MRI from {Path(source).resolve()} (nnspine convert spider)",
                nnspine_spider={
                    "source_values": {
                        "vertebra": "1-25" + (", 101-125 (partial)" if keep_partial else ""),
                        "disc": "201-225",
                        "canal": "100",
                    },
                    "keep_partial": keep_partial,
                    "instances": mode,
                },
            )
            splits = write_dataset_splits(stage, folder, {c.case: spider_subject(c.case) for c in cases})
    return SpiderReport(
        nnunet_dataset=str(folder),
        num_cases=len(cases),
        splits=splits,
        cases=[c.case for c in cases],
        keep_partial=keep_partial,
        instances=mode,
        warnings=warnings,
    )
