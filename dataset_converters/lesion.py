"""``nnspine convert lesion`` / :func:`convert`: a multi-sequence BIDS lesion dataset → an nnU-Net raw dataset.

Input (found by :mod:`nnunet_spine.core.bids`): per subject (or session) one image per requested sequence
(``channels``: image specs such as ``T2w``, ``T1w``, ``acq-sag_T2w``, ``ce-gd_T1w``) and a binary lesion
mask ``derivatives/labels/sub-XX[/ses-YY]/anat/<image stem><suffix>.nii.gz`` (or beside the image) on its image's
grid, ``<suffix>`` the first found of ``_label-lesion_seg``, SCT's older ``_lesion-manual`` and a rater's
``_desc-<rater>_label-lesion_seg`` (:func:`core.manual_masks.find_mask`; ``label_suffix`` chooses one; the cord
masks of ``regions`` likewise, ``cord_suffix``). The mask is looked up for the channels' images in channel order, so
it may have been drawn on any of the sequences.

Output: ``$nnUNet_raw/DatasetXXX_NAME`` with one case per subject (or session), named after the *first*
channel's image (its BIDS stem, e.g. ``sub-01_T2w``):

* ``imagesTr/<case>_0000.nii.gz``, ``_0001``, … one file per channel, in the order given; the first
  channel is the reference grid. Another sequence on a different grid is resampled to it through world
  coordinates (the image affines, :func:`nnunet_spine.core.geometry.resample_to_grid`) with *linear*
  interpolation (float32; 0 outside its field of view); the report says which were resampled.
* ``labelsTr/<case>.nii.gz``: the lesion mask on the reference grid (resampled with *nearest neighbour*
  when it was drawn on another channel's grid). Labels ``{"background": 0, "lesion": 1}``; with
  ``regions=True`` region-based labels: 1 = cord, 2 = lesion, ``{"background": 0, "cord": [1, 2],
  "lesion": 2}`` with ``regions_class_order: [1, 2]`` (nnU-Net then learns "cord including its lesions"
  and "lesion"). Lesion voxels outside the cord mask are still lesion (label 2); the report counts them.
* ``dataset.json`` with ``channel_names`` (the channel specs, in order) and, under ``nnspine``, the
  converter's settings and per case the source files and which channels were resampled.

A subject missing a requested sequence, or its lesion mask, or (with ``regions``) its cord mask, is skipped
with a one-line warning naming what is missing; with ``allow_missing`` a missing lesion mask is written as
an empty mask (a negative case). Every image and mask is checked before anything is written (3-D, finite;
masks binary and on their image's grid): a bad file raises :class:`~nnunet_spine.core.io.InputError`
naming it, and nothing is written. The input dataset is never modified.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nnunet_spine.core import bids, manual_masks
from nnunet_spine.core.io import (
    Image,
    InputError,
    OutputExistsError,
    check_same_grid,
    load_image,
    read_geometry,
    require_folder,
    same_grid,
)
from nnunet_spine.core.lesion_matching import label_lesions  # the one lesion definition (tests/test_layers.py)
from nnunet_spine.core.qc_yml import CaseList
from nnunet_spine.dataset_converters import nnunet_raw
from nnunet_spine.dataset_converters.defaults import (
    JOBS,
    LESION_CORD_SUFFIX,
    LESION_LABEL_SUFFIX,
)
from nnunet_spine.dataset_converters.lesion_report import (
    RESAMPLING_COLUMNS,
    RESAMPLING_CSV,
    CaseReport,
    LesionConversionReport,
    resampling_rows,
)
from nnunet_spine.dataset_converters.parallel import process_pool, run_all
from nnunet_spine.dataset_converters.protocol import (
    bids_subject,
    check_grouping,
    check_jobs,
    output_folder,
    select_cases,
    write_dataset_splits,
)

#: Labels of ``labelsTr``: plain, and region-based (``--regions``).
LABELS = {"background": 0, "lesion": 1}
REGION_LABELS = {"background": 0, "cord": [1, 2], "lesion": 2}
REGIONS_CLASS_ORDER = [1, 2]


class LesionConversionWarning(UserWarning):
    """A subject was skipped or a file ignored (missing sequence, missing mask, stray file...)."""


# ============================================================================================== plans
@dataclass(frozen=True)
class _Channel:
    spec: str  # the channel as the user named it, e.g. "T1w"
    image: Path


@dataclass
class _CasePlan:
    unit: str  # "sub-01" or "sub-01_ses-01"
    case: str = ""  # the first channel's image stem
    channels: list[_Channel] = field(default_factory=list)
    lesion: tuple[Path, Path] | None = None  # (mask, the image it belongs to); None: empty mask (allow_missing)
    cord: tuple[Path, Path] | None = None
    skip: str | None = None
    notes: list[str] = field(default_factory=list)  # which mask was picked over others


@dataclass(frozen=True)
class _Settings:
    bids_root: Path
    folder: Path  # the staging folder of the nnU-Net dataset
    regions: bool


# ========================================================================================== discovery
def parse_channels(channels: str | Sequence[str]) -> list[str]:
    """``"T1w,T2w"`` or ``["T1w", "T2w"]`` → checked channel specs (:class:`~nnunet_spine.core.bids.ImageSpec`),
    in order; :class:`InputError` for an empty list, a bad spec or a repeated one."""
    items = [c.strip() for c in (channels.split(",") if isinstance(channels, str) else channels)]
    if not items or any(not c for c in items):
        raise InputError(
            f"--channels: give one or more image specs separated by commas (e.g. T1w,T2w), got {channels!r}"
        )
    for c in items:
        try:
            bids.ImageSpec.parse(c)
        except ValueError as exc:
            raise InputError(f"--channels: {exc}") from None
    if len(set(items)) != len(items):
        raise InputError(f"--channels: a sequence is named twice in {','.join(items)}")
    return items


def _find_mask(
    root: Path, images: Sequence[bids.BidsImage], kind: str, suffix: str | None, notes: list[str]
) -> tuple[Path, Path] | None:
    """The first channel image (in order) that has a ``kind`` mask (:func:`core.manual_masks.find_mask`, only
    ``<stem><suffix>`` when ``suffix`` is given): (mask, image); a note when it was picked over other masks."""
    for im in images:
        pick = manual_masks.find_mask(root, im, kind, suffix)
        if pick is not None:
            if pick.others:
                notes.append(f"{im.unit.name}: {pick.note()}")
            return pick.path, im.path
    return None


def _expected(stem: str, kind: str, suffix: str | None) -> str:
    """The file names looked for (``<stem>_label-lesion_seg.nii.gz or ...``) for a message."""
    return " or ".join(f"{stem}{s}.nii.gz" for s in manual_masks.mask_suffixes(kind, suffix))


def _plan_unit(
    root: Path,
    unit: bids.Unit,
    images: list[bids.BidsImage],
    channels: Sequence[str],
    label_suffix: str | None,
    cord_suffix: str | None,
    allow_missing: bool,
    regions: bool = False,
) -> _CasePlan:
    """Which files make the case of one unit, or why it is skipped."""
    plan = _CasePlan(unit=unit.name)
    chosen: list[bids.BidsImage] = []
    for spec in channels:
        found = bids.select_images(images, spec)
        if not found:
            have = ", ".join(im.contrast for im in images) or "none"
            plan.skip = f"no {spec} image (images: {have})"
            return plan
        if len(found) > 1:
            plan.skip = (
                f"several {spec} images ({', '.join(im.contrast for im in found)}); "
                "name one in --channels with its entities"
            )
            return plan
        if found[0] in chosen:
            plan.skip = f"{found[0].path.name} matches two channels"
            return plan
        chosen.append(found[0])
    plan.case = chosen[0].stem
    plan.channels = [_Channel(spec, im.path) for spec, im in zip(channels, chosen)]
    expected = _expected(chosen[0].stem, "lesion", label_suffix)
    plan.lesion = _find_mask(root, chosen, "lesion", label_suffix, plan.notes)
    if plan.lesion is None and not allow_missing:
        plan.skip = (
            f"no lesion mask (expected derivatives/labels/{unit.rel_dir}/{expected}; "
            "--allow-missing writes an empty one)"
        )
        return plan
    if regions:
        plan.cord = _find_mask(root, chosen, "cord", cord_suffix, plan.notes)
        if plan.cord is None:
            plan.skip = (
                f"no cord mask for --regions (expected derivatives/labels/{unit.rel_dir}/"
                f"{_expected(chosen[0].stem, 'cord', cord_suffix)})"
            )
    return plan


def discover(
    bids_root: Path,
    channels: Sequence[str],
    *,
    label_suffix: str | None = LESION_LABEL_SUFFIX,
    cord_suffix: str | None = LESION_CORD_SUFFIX,
    allow_missing: bool = False,
    regions: bool = False,
) -> tuple[list[_CasePlan], list[str]]:
    """Plans of every subject/session (files chosen, or the reason to skip) and warnings about stray files.
    No image is read."""
    root = require_folder(bids_root, "dataset folder")
    plans, stray = [], []
    for unit in bids.find_units(root):
        images, warns = bids.list_images(unit)
        stray += warns
        if not images and not warns:
            continue  # an anat folder without images (e.g. only sessions hold data)
        plans.append(_plan_unit(root, unit, images, channels, label_suffix, cord_suffix, allow_missing, regions))
    if not plans:
        raise InputError(f"{root}: no sub-*/anat images found")
    return plans, stray


# ========================================================================================= validation
def _check_mask(mask: Path, image: Path) -> Image:
    """A binary, finite, 3-D mask on its image's grid."""
    m = load_image(mask, "binary")
    check_same_grid(read_geometry(image), m)
    return m


def _validate(plan: _CasePlan, _: object = None) -> _CasePlan:
    """Read every file of a case: images 3-D and finite, masks binary and on their image's grid."""
    for ch in plan.channels:
        load_image(ch.image, "image")
    for pair in (plan.lesion, plan.cord):
        if pair is not None:
            _check_mask(*pair)
    return plan


# ========================================================================================= conversion
def _on_reference(img: Image, ref: Image, order: int) -> tuple[np.ndarray, bool]:
    """``img``'s voxels on ``ref``'s grid (world coordinates; order 1 linear, 0 nearest) and whether it was
    resampled."""
    if same_grid(ref, img):
        return img.data, False
    from nnunet_spine.core.geometry import resample_to_grid

    return resample_to_grid(img.data, img.affine, ref.shape, ref.affine, order=order, cval=0), True


def _as_written(data: np.ndarray) -> np.ndarray:
    return data.astype(np.float32) if data.dtype == np.float64 else data


def _process(plan: _CasePlan, st: _Settings) -> CaseReport:
    """Build and write the case of one unit; returns its report."""
    ref = load_image(plan.channels[0].image, "image")
    images = [Image(data=_as_written(ref.data), affine=ref.affine, path=ref.path, meta=ref.meta)]
    resampled = []
    for ch in plan.channels[1:]:
        data, moved = _on_reference(load_image(ch.image, "image"), ref, order=1)
        if moved:
            resampled.append(ch.spec)
            data = data.astype(np.float32)
        images.append(Image(data=_as_written(data), affine=ref.affine, path=ch.image))
    lesion_resampled = cord_resampled = False
    source_lesions, source_volume = 0, 0.0
    if plan.lesion is None:
        lesion = np.zeros(ref.shape, bool)
    else:
        source = load_image(plan.lesion[0], "binary")
        source_lesions = label_lesions(source.data > 0)[1]
        source_volume = float((source.data > 0).sum()) * float(np.prod(source.zooms))
        data, lesion_resampled = _on_reference(source, ref, order=0)
        lesion = data > 0
    label = lesion.astype(np.uint8)
    outside = 0
    if plan.cord is not None:
        data, cord_resampled = _on_reference(load_image(plan.cord[0], "binary"), ref, order=0)
        cord = data > 0
        outside = int((lesion & ~cord).sum())
        label = np.where(lesion, 2, np.where(cord, 1, 0)).astype(np.uint8)
    nnunet_raw.write_case(st.folder, plan.case, images, label)
    rel = lambda p: p.relative_to(st.bids_root).as_posix() if p.is_relative_to(st.bids_root) else str(p)  # noqa: E731
    voxel_mm3 = float(np.prod(ref.zooms))
    return CaseReport(
        case=plan.case,
        unit=plan.unit,
        channels=[c.spec for c in plan.channels],
        resampled=resampled,
        lesion_mask=rel(plan.lesion[0]) if plan.lesion else "",
        lesion_resampled=lesion_resampled,
        lesion_voxels=int(lesion.sum()),
        lesion_volume_mm3=round(float(lesion.sum()) * voxel_mm3, 3),
        cord_mask=rel(plan.cord[0]) if plan.cord else "",
        cord_resampled=cord_resampled,
        lesion_voxels_outside_cord=outside,
        source_lesions=source_lesions,
        source_volume_mm3=round(source_volume, 3),
        lesions=label_lesions(lesion)[1],
    )


def _check_suffixes(label_suffix: str | None, cord_suffix: str | None) -> None:
    """``--label-suffix`` and ``--cord-suffix`` are file-name suffixes starting with ``_`` (no folder) or None (the
    order of preference); :class:`InputError` naming the option otherwise."""
    for option, suffix in (("--label-suffix", label_suffix), ("--cord-suffix", cord_suffix)):
        if suffix is None:
            continue
        if not suffix or not suffix.startswith("_") or "/" in suffix:
            raise InputError(
                f"{option}: expected a file-name suffix starting with '_' (e.g. _label-lesion_seg), got {suffix!r}"
            )


def _split_plans(plans: Sequence[_CasePlan], bids_root: Path) -> tuple[list[_CasePlan], dict[str, str]]:
    """The plans to convert and the skipped units (unit → reason); :class:`InputError` when every unit is
    skipped."""
    todo = [p for p in plans if not p.skip]
    skipped = {p.unit: p.skip for p in plans if p.skip}
    if not todo:
        first, why = next(iter(skipped.items()))
        more = f"; {len(skipped) - 1} more subject(s) skipped" if len(skipped) > 1 else ""
        raise InputError(f"{bids_root}: nothing to convert, every subject was skipped ({first}: {why}{more})")
    return todo, skipped


def _convert_cases(
    todo: Sequence[_CasePlan], settings: _Settings, pool: object | None, progress: bool
) -> list[CaseReport]:
    """Build and write every case into the staging folder (in ``pool``'s workers, results in ``todo``'s order),
    with a tqdm bar over cases (stderr) when ``progress``."""
    from tqdm.auto import tqdm

    bar = tqdm(total=len(todo), desc="convert lesion", unit="case", disable=not progress)
    try:
        return run_all(_process, todo, settings, pool, bar)
    finally:
        bar.close()


def _case_sources(cases: Sequence[CaseReport], todo: Sequence[_CasePlan], bids_root: Path) -> dict[str, dict]:
    """Per case (``dataset.json``'s ``nnspine.cases``): its source files relative to the dataset root and which
    channels and masks were resampled to the reference grid."""
    return {
        c.case: {
            "images": [p.image.relative_to(bids_root).as_posix() for p in plan.channels],
            "lesion_mask": c.lesion_mask,
            "cord_mask": c.cord_mask or None,
            "resampled": c.resampled,
            "lesion_mask_resampled": c.lesion_resampled,
        }
        for c, plan in zip(cases, todo)
    }


def _check_lesion_loss(cases: Sequence[CaseReport], bids_root: Path, reference: str) -> None:
    """:class:`InputError` naming the first case whose lesion mask lost lesions when resampled onto the
    ``reference`` channel's grid (``--allow-lesion-loss`` skips this check)."""
    lossy = [c for c in cases if c.lost_lesions]
    if lossy:
        first = lossy[0]
        more = f" (and {len(lossy) - 1} more case(s))" if len(lossy) > 1 else ""
        raise InputError(
            f"{bids_root / first.lesion_mask}: resampling onto the {reference} grid loses "
            f"{first.lost_lesions} of {first.source_lesions} lesions{more}; use --allow-lesion-loss to "
            "convert anyway"
        )


def _write_resampling_csv(stage: Path, cases: Sequence[CaseReport]) -> None:
    """:data:`RESAMPLING_CSV` in the staging folder, when a lesion mask was resampled (volumes in mm³)."""
    moved = resampling_rows(cases)
    if moved:
        import pandas as pd

        text = pd.DataFrame(moved, columns=RESAMPLING_COLUMNS).to_csv(index=False)
        (stage / RESAMPLING_CSV).write_text(text)


def _write_dataset_json(
    stage: Path,
    dataset_name: str,
    specs: list[str],
    num_cases: int,
    sources: dict[str, dict],
    *,
    bids_root: Path,
    label_suffix: str | None,
    cord_suffix: str | None,
    regions: bool,
    allow_missing: bool,
) -> None:
    """``dataset.json`` of the staged dataset: channels, (region) labels and the converter's settings and
    per-case ``sources`` under ``nnspine``."""
    from nnunet_spine import __version__

    extra = {"regions_class_order": REGIONS_CLASS_ORDER} if regions else {}
    nnunet_raw.write_dataset_json(
        stage,
        channel_names=specs,
        labels=REGION_LABELS if regions else LABELS,
        num_training=num_cases,
        **extra,
        name=dataset_name,
        description=(
            "Lesion segmentation: one channel per sequence (" + ", ".join(specs) + "), resampled to the "
            f"{specs[0]} grid; "
            + (
                "region labels: 1 cord, 2 lesion (lesions outside the cord are still 2)"
                if regions
                else "labels: 1 lesion"
            )
        ),
        nnspine={
            "converter": "lesion",
            "version": __version__,
            "channels": specs,
            "label_suffix": label_suffix or list(manual_masks.MASK_SUFFIXES["lesion"]),
            "cord_suffix": (cord_suffix or list(manual_masks.MASK_SUFFIXES["cord"])) if regions else None,
            "regions": regions,
            "allow_missing": allow_missing,
            "resampling": "other channels: linear, masks: nearest; through world coordinates onto the first channel",
            "source_dataset": str(bids_root.resolve()),
            "cases": sources,
        },
    )


def convert(
    source: Path,
    *,
    nnunet_dataset: int,
    name: str,
    raw_root: Path | None = None,
    overwrite: bool = False,
    jobs: int = JOBS,
    progress: bool = False,
    channels: str | Sequence[str],
    label_suffix: str | None = LESION_LABEL_SUFFIX,
    cord_suffix: str | None = LESION_CORD_SUFFIX,
    regions: bool = False,
    allow_missing: bool = False,
    allow_lesion_loss: bool = False,
    group_by: str | None = None,
    exclude: CaseList | None = None,
    include: CaseList | None = None,
) -> LesionConversionReport:
    """Convert a BIDS lesion dataset into ``<nnUNet_raw>/DatasetXXX_NAME`` (see the module docstring; the
    converter protocol: :mod:`nnunet_spine.dataset_converters.protocol`).

    Parameters
    ----------
    source : Path
        BIDS dataset (never modified): images ``sub-XX[/ses-YY]/anat/<image>.nii.gz``, lesion masks
        ``derivatives/labels/.../<image><label_suffix>.nii.gz`` (or beside the image).
    nnunet_dataset, name : int, str
        Dataset ID (1..999) and name: ``DatasetXXX_NAME``.
    raw_root : Path, optional
        nnU-Net raw folder (default ``$nnUNet_raw``).
    overwrite : bool
        Replace an existing dataset (otherwise a non-empty folder is refused).
    jobs : int
        Worker processes (cases in parallel); the result equals ``jobs=1``.
    progress : bool
        tqdm progress bar over cases (stderr).
    channels : str or list of str
        Sequences, one nnU-Net channel each, in order (``"T1w,T2w"``); the first is the reference grid and
        names the case. Each is an image spec: a BIDS suffix, optionally after entities (``acq-sag_T2w``).
    label_suffix : str, optional
        Suffix of the binary lesion masks; None: the first found of ``_label-lesion_seg``, ``_lesion-manual``,
        ``_desc-<rater>_label-lesion_seg`` (:data:`core.manual_masks.MASK_SUFFIXES`).
    cord_suffix : str, optional
        Suffix of the binary cord masks, used with ``regions``; None: the order of preference for cord masks.
    regions : bool
        Region-based labels: 1 cord, 2 lesion; ``labels = {"background": 0, "cord": [1, 2], "lesion": 2}``,
        ``regions_class_order = [1, 2]``.
    allow_missing : bool
        Write an empty lesion mask for a subject without one (instead of skipping it).
    allow_lesion_loss : bool
        Keep going when resampling a lesion mask onto the reference grid loses a lesion (otherwise
        :class:`InputError`, nothing written). Resampled masks are accounted for in ``lesion_resampling.csv``.

    group_by : str, optional
        Regular expression whose first capture group in the subject label (without ``sub-``) names the person:
        a person's subjects share a fold (:func:`nnunet_spine.dataset_converters.splits.subject_groups`).
    exclude, include : CaseList, optional
        ``--exclude-yml`` / ``--include-yml`` case lists: cases left out by their first channel's image
        (:func:`~nnunet_spine.dataset_converters.protocol.select_cases`), listed in the report's ``excluded``.

    The sessions of one subject share a fold of ``splits_final.json``.

    Raises
    ------
    InputError
        Missing dataset (or a file in its place), bad ``channels``, an unreadable/4-D/NaN image, a non-binary
        mask or one on a grid other than its image's, no subject left to convert, an existing dataset without
        ``overwrite``, a bad ID/name or an nnU-Net raw folder that cannot be created (one line naming the file or
        option); nothing is written then.
    """
    bids_root = Path(source)
    specs = parse_channels(channels)
    check_jobs(jobs)
    _check_suffixes(label_suffix, cord_suffix)
    folder = output_folder(bids_root, nnunet_dataset, name, raw_root)
    plans, stray = discover(
        bids_root,
        specs,
        label_suffix=label_suffix,
        cord_suffix=cord_suffix,
        allow_missing=allow_missing,
        regions=regions,
    )
    plans, excluded = select_cases(plans, exclude, include, lambda plan: _plan_path(plan, bids_root), bids_root)
    todo, skipped = _split_plans(plans, bids_root)
    if folder.exists() and any(folder.iterdir()) and not overwrite:
        raise OutputExistsError(f"{folder}: nnU-Net dataset exists (use --overwrite to replace it)")
    all_warnings = stray + [n for p in todo for n in p.notes]
    all_warnings += [f"{unit}: skipped ({why})" for unit, why in skipped.items()]
    all_warnings += check_grouping((bids_subject(p.case) for p in todo), group_by)

    with process_pool(jobs, len(todo)) as pool:
        run_all(_validate, todo, None, pool)  # every file checked before anything is written
        for w in all_warnings:
            warnings.warn(w, LesionConversionWarning, stacklevel=2)
        with nnunet_raw.staged_dataset(folder, overwrite=overwrite) as stage:
            nnunet_raw.prepare_folder(stage)
            settings = _Settings(bids_root=bids_root, folder=stage, regions=regions)
            cases = _convert_cases(todo, settings, pool, progress)
            sources = _case_sources(cases, todo, bids_root)
            if not allow_lesion_loss:
                _check_lesion_loss(cases, bids_root, specs[0])
            _write_resampling_csv(stage, cases)
            _write_dataset_json(
                stage,
                folder.name,
                specs,
                len(cases),
                sources,
                bids_root=bids_root,
                label_suffix=label_suffix,
                cord_suffix=cord_suffix,
                regions=regions,
                allow_missing=allow_missing,
            )
            splits = write_dataset_splits(stage, folder, {c.case: bids_subject(c.case) for c in cases}, group_by)
    return LesionConversionReport(
        bids_root=str(bids_root),
        nnunet_dataset=str(folder),
        num_cases=len(cases),
        splits=splits,
        channels=specs,
        regions=regions,
        cases=cases,
        skipped=skipped,
        warnings=all_warnings,
        excluded=excluded,
    )


def _plan_path(plan: _CasePlan, root: Path) -> Path:
    """What a case list matches a plan by: its first channel's image, or (a plan without images) its unit's name
    (``sub-01_ses-01``) under ``root``."""
    return plan.channels[0].image if plan.channels else root / plan.unit


__all__ = [
    "convert",
    "discover",
    "parse_channels",
    "CaseReport",
    "RESAMPLING_COLUMNS",
    "RESAMPLING_CSV",
    "resampling_rows",
    "LesionConversionReport",
    "LesionConversionWarning",
    "LABELS",
    "REGION_LABELS",
    "REGIONS_CLASS_ORDER",
]
