"""``nnspine convert softgt`` / :func:`convert`: soft (partial-volume) spinal-cord ground truth for every
subject of a BIDS dataset (files in, files out).

Input: a BIDS dataset with one or several contrasts per subject and a binary cord mask per image under
``derivatives/labels/sub-XX[/ses-YY]/anat/<image><suffix>.nii.gz`` (or beside the image), found by
:func:`core.manual_masks.find_mask`: ``_label-SC_seg`` (spine-generic), SCT's older ``_seg-manual``, a rater's
``_desc-<rater>_label-SC_seg`` or ``_seg``, in that order of preference (``mask_suffix`` chooses one). Images without
a mask (e.g. a second run) are never training cases; they are listed in the report. Per subject (or session), every
mask is validated (binary, finite, 3-D, on its image's grid), the masks are averaged by
:func:`~nnunet_spine.dataset_converters.softgt_algorithm.soft_ground_truth`
(the method: see :mod:`nnunet_spine.dataset_converters.softgt_algorithm`; with one contrast nothing is averaged: the
soft mask is that mask's partial volume on its own grid) and the soft masks are written with a report.
Subjects are processed in worker processes with ``jobs > 1`` (:mod:`nnunet_spine.dataset_converters.parallel`).

Outputs (in a new pipeline folder: outside the input dataset or under its ``derivatives/``; the input files are
never modified and existing outputs are refused unless ``overwrite``):

* ``<derivatives_out>/labels_softseg/sub-XX/anat/<image>_label-SC_softseg.nii.gz`` (float32, the image's
  grid and header) + ``.json`` sidecar (sources, reference, method, offsets, package version), and
  ``<derivatives_out>/labels_softseg/dataset_description.json``;
* optionally an nnU-Net raw dataset ``$nnUNet_raw/DatasetXXX_NAME``: every (subject, contrast) image is
  one single-channel training case ``<image stem>`` (e.g. ``sub-01_T2w``), ``labelsTr`` = soft ≥ 0.5 (uint8),
  ``labelsTr_soft/<case>.nii.gz`` = the soft mask (float32, same grid): the input of ``nnspine
  preprocess-soft``.
"""

from __future__ import annotations

import contextlib
import json
import math
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from scipy import ndimage

from nnunet_spine.core import bids, manual_masks
from nnunet_spine.core.dataset_json import FILE_ENDING, LABELS_TR_SOFT
from nnunet_spine.core.geometry import si_axis
from nnunet_spine.core.io import (
    Image,
    InputError,
    OutputExistsError,
    check_same_grid,
    load_image,
    read_geometry,
    require_folder,
    save_image,
    write_text,
)
from nnunet_spine.core.qc_yml import CaseList
from nnunet_spine.dataset_converters import nnunet_raw
from nnunet_spine.dataset_converters.defaults import JOBS, SOFTGT_REFERENCE, SOFTGT_RESOLUTION_MM
from nnunet_spine.dataset_converters.parallel import process_pool, run_all
from nnunet_spine.dataset_converters.protocol import (
    check_jobs,
    everything_left_out,
    is_inside,
    output_folder,
    select_cases,
    write_dataset_splits,
)
from nnunet_spine.dataset_converters.softgt_algorithm import (
    ALIGN_SMOOTHING_MM,
    SUBSAMPLE_MM,
    SoftResult,
    soft_ground_truth,
)
from nnunet_spine.dataset_converters.softgt_report import ContrastReport, SoftGTReport, SubjectReport
from nnunet_spine.dataset_converters.splits import grouping_warning, subject_groups

__all__ = [
    "convert",
    "discover",
    "soft_ground_truth",
    "SoftResult",
    "SoftGTReport",
    "SubjectReport",
    "ContrastReport",
    "SoftGTWarning",
]

#: Pipeline folder of the soft masks inside ``derivatives_out``.
PIPELINE = "labels_softseg"
#: Input masks: ``derivatives/labels/<anat dir>/<image stem><suffix>``, today's naming (the others, in order of
#: preference: :data:`core.manual_masks.MASK_SUFFIXES` ``["cord"]``).
MASK_SUFFIX = bids.CORD_SEG
#: Mask kind looked up (:func:`core.manual_masks.find_mask`).
MASK_KIND = "cord"
#: Outputs: ``<derivatives_out>/labels_softseg/<anat dir>/<image stem><SOFT_SUFFIX>``.
SOFT_SUFFIX = bids.CORD_SOFTSEG


METHOD_NAME = "multi-contrast linear mask averaging with slice-wise centre-of-mass alignment"
#: What the sidecar and dataset.json say when a subject has one labelled contrast.
SINGLE_CONTRAST_NOTE = (
    "one contrast: no averaging across contrasts took place; the soft mask is that mask's partial volume on "
    "its image's grid (the 0.5 surface of its linear interpolation, integrated over each voxel)"
)


class SoftGTWarning(UserWarning):
    """A subject or contrast was skipped (missing reference, missing mask, empty mask...)."""


# ============================================================================================ dataset I/O
@dataclass(frozen=True)
class _Contrast:
    entities: str  # BIDS name after "sub-XX_" (e.g. "T2w", "flip-1_mt-on_MTS")
    stem: str  # image file name without ending, e.g. "sub-01_T2w"
    image: Path
    mask: Path
    parsed: bids.BidsName | None = None  # the image's parsed name (matched against --reference)
    mask_suffix: str = MASK_SUFFIX  # the suffix of the mask picked (e.g. "_seg-manual")


@dataclass
class _SubjectPlan:
    subject: str  # "sub-01" or "sub-01_ses-01"
    rel_dir: str  # "sub-01/anat" or "sub-01/ses-01/anat"
    reference: str | None = None
    contrasts: list[_Contrast] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    skip: str | None = None
    unlabelled: list[str] = field(default_factory=list)  # images without a mask (relative to the dataset root)


@dataclass(frozen=True)
class _Settings:
    bids_root: Path
    soft_root: Path  # <derivatives_out>/labels_softseg
    reference: str
    align: bool
    resolution_mm: float
    nnunet_folder: Path | None
    overwrite: bool


def discover(
    bids_root: Path,
    reference: str | None = None,
    mask_suffix: str | None = None,
    exclude: CaseList | None = None,
    include: CaseList | None = None,
) -> tuple[list[_SubjectPlan], list[str]]:
    """List subjects (and sessions) with their images, masks and reference contrast (no image is read), and the
    images the ``exclude`` / ``include`` case lists leave out (:func:`protocol.select_cases`; an image left out
    is neither converted nor a reference).

    Masks are found by :func:`core.manual_masks.find_mask` (order of preference, or ``mask_suffix``); images
    without one are the plan's ``unlabelled``. A mask that names an image the subject does not have, in a
    subject with an image that has no mask (a mask named for the wrong run?), is :class:`InputError`."""
    if reference is not None:
        try:
            bids.ImageSpec.parse(reference)
        except ValueError as exc:
            raise InputError(f"--reference: {exc}") from None
    manual_masks.mask_suffixes(MASK_KIND, mask_suffix)  # checks --mask-suffix
    root = require_folder(bids_root, "dataset folder")
    labels_root = root / "derivatives" / "labels"
    if not labels_root.is_dir():
        raise InputError(
            f"{labels_root}: no cord masks folder (expected derivatives/labels/sub-*/anat/<image>{MASK_SUFFIX}.nii.gz)"
        )
    plans, excluded = [], []
    for unit in bids.find_units(root):
        plan = _SubjectPlan(subject=unit.name, rel_dir=unit.rel_dir)
        images, plan.warnings = bids.list_images(unit)
        selected, left_out = select_cases(images, exclude, include, lambda im: im.path, root, every=False)
        excluded += left_out
        for img in selected:
            pick = manual_masks.find_mask(root, img, MASK_KIND, mask_suffix)
            if pick is None:
                plan.unlabelled.append(img.path.relative_to(root).as_posix())
                continue
            if pick.others:
                plan.warnings.append(f"{unit.name}: {pick.note()}")
            plan.contrasts.append(
                _Contrast(
                    entities=img.contrast,
                    stem=img.stem,
                    image=img.path,
                    mask=pick.path,
                    parsed=img.parsed,
                    mask_suffix=pick.suffix,
                )
            )
        _check_orphan_masks(root, unit, images, plan, mask_suffix)
        if not plan.contrasts and not plan.unlabelled and (not plan.warnings or not selected):
            continue  # an anat folder without images (e.g. only sessions hold data), or all left out
        _choose_reference(plan, reference, mask_suffix)
        plans.append(plan)
    if not plans and excluded:
        raise everything_left_out(excluded, exclude, include)
    if not plans:
        raise InputError(f"{root}: no sub-*/anat images found")
    return plans, excluded


def _check_orphan_masks(
    root: Path, unit: bids.Unit, images: list[bids.BidsImage], plan: _SubjectPlan, mask_suffix: str | None
) -> None:
    """A cord mask naming an image the unit lacks: :class:`InputError` when the unit has an image without a mask
    (the mask is probably named for the wrong run or acquisition), else a warning."""
    for mask, named in manual_masks.orphan_masks(root, unit, images, MASK_KIND, mask_suffix):
        if plan.unlabelled:
            without = ", ".join(Path(u).name for u in plan.unlabelled)
            raise InputError(
                f"{mask}: cord mask of {named}, which is not an image of {unit.rel_dir} (images without a cord "
                f"mask there: {without}); rename the mask after its image"
            )
        plan.warnings.append(f"{mask}: cord mask of {named}, which is not an image of {unit.rel_dir}; not used")


def _choose_reference(plan: _SubjectPlan, reference: str | None, mask_suffix: str | None = None) -> None:
    """The contrast named exactly ``reference``, else the one image matching it as a spec (``T2w`` matches
    ``acq-sag_T2w``); several matches or none skip the subject. ``reference`` None: the subject's only labelled
    contrast, else :data:`~nnunet_spine.dataset_converters.defaults.SOFTGT_REFERENCE`."""
    names = [c.entities for c in plan.contrasts]
    tried = f"--mask-suffix {mask_suffix}" if mask_suffix else " / ".join(manual_masks.MASK_SUFFIXES[MASK_KIND])
    if not names:
        plan.skip = f"no image with a cord mask ({tried})"
        return
    if reference is None:
        if len(names) == 1:
            plan.reference = names[0]
            return
        reference = SOFTGT_REFERENCE
    if reference in names:
        plan.reference = reference
        return
    spec = bids.ImageSpec.parse(reference)
    by_spec = [c.entities for c in plan.contrasts if c.parsed is not None and spec.matches(c.parsed)]
    if len(by_spec) == 1:
        plan.reference = by_spec[0]
    elif len(by_spec) > 1:
        plan.skip = f"several {reference} images with masks ({', '.join(by_spec)}); choose one with --reference"
    else:
        plan.skip = (
            f"no {reference} image with a cord mask ({tried}; contrasts with masks: {', '.join(names) or 'none'})"
        )


def _load_contrast(c: _Contrast, full_image: bool) -> tuple[Image, Image]:
    """(image, mask) validated: the mask is binary, finite, 3-D and on its image's grid."""
    image = load_image(c.image, "image") if full_image else read_geometry(c.image)
    mask = load_image(c.mask, "binary")
    check_same_grid(image, mask)
    return image, mask


def _validate(plan: _SubjectPlan, full_image: bool) -> _SubjectPlan:
    """Read and check every mask (and image header, or whole image) of a subject; drop empty masks."""
    if plan.skip:
        return plan
    kept = []
    for c in plan.contrasts:
        _, mask = _load_contrast(c, full_image)
        if not np.any(mask.data):
            plan.warnings.append(f"{c.mask}: mask is empty; {c.entities} not used")
            if c.entities == plan.reference:
                plan.skip = f"the reference mask {c.mask.name} is empty"
            continue
        kept.append(c)
    plan.contrasts = kept
    return plan


def _outputs(plan: _SubjectPlan, st: _Settings) -> list[Path]:
    out = []
    for c in plan.contrasts:
        base = st.soft_root / plan.rel_dir / f"{c.stem}{SOFT_SUFFIX}"
        out += [base.with_name(base.name + ".nii.gz"), base.with_name(base.name + ".json")]
    return out


def _boundary(mask: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """In-plane boundary of a binary mask: voxels in it with a 4-neighbour outside, and outside with one in it."""
    s = si_axis(affine)
    structure = ndimage.generate_binary_structure(3, 1)
    for end in (0, 2):  # drop the two neighbours along S-I
        centre = [1, 1, 1]
        centre[s] = end
        structure[tuple(centre)] = False
    inner = mask & ~ndimage.binary_erosion(mask, structure, border_value=1)
    outer = ndimage.binary_dilation(mask, structure) & ~mask
    return inner | outer


def _subject_sources(plan: _SubjectPlan, bids_root: Path) -> list[str]:
    """The subject's images, then its masks, relative to the dataset root (the sidecars' ``Sources``)."""
    sources = [c.image.relative_to(bids_root).as_posix() for c in plan.contrasts]
    sources += [c.mask.relative_to(bids_root).as_posix() for c in plan.contrasts]
    return sources


def _contrast_report(
    c: _Contrast, image: Image, binary: np.ndarray, soft: np.ndarray, result: SoftResult, out_nii: Path, bids_root: Path
) -> ContrastReport:
    """Report of one contrast: its alignment (world mm), the mean soft value on the binary mask's in-plane
    boundary voxels and the soft and binary volumes (mm³, from the native voxel size)."""
    voxel_mm3 = float(np.prod(image.zooms))
    bnd = _boundary(binary, image.affine)
    return ContrastReport(
        entities=c.entities,
        image=c.image.relative_to(bids_root).as_posix(),
        output=str(out_nii),
        offset_mm=result.offsets_mm[c.entities],
        aligned_slices=result.aligned_slices[c.entities],
        boundary_mean=round(float(soft[bnd].mean()) if bnd.any() else float("nan"), 4),
        boundary_voxels=int(bnd.sum()),
        soft_volume_mm3=round(float(soft.sum(dtype=np.float64)) * voxel_mm3, 2),
        binary_volume_mm3=round(float(binary.sum()) * voxel_mm3, 2),
        mask=c.mask.relative_to(bids_root).as_posix(),
        mask_suffix=c.mask_suffix,
    )


def _sidecar(
    plan: _SubjectPlan,
    c: _Contrast,
    report: ContrastReport,
    result: SoftResult,
    sources: list[str],
    bids_root: Path,
    align: bool,
) -> dict:
    """The ``.json`` sidecar of one soft mask: sources, reference, method (spacings and offsets in mm) and
    the package version."""
    from nnunet_spine import __version__

    single = len(plan.contrasts) == 1
    return {
        "Description": "Soft (partial-volume) spinal cord mask: fraction of each voxel inside the consensus "
        "cord boundary of the subject's cord masks from all contrasts"
        if not single
        else "Soft (partial-volume) spinal cord mask: fraction of each voxel inside the cord boundary of the "
        "subject's one cord mask",
        "Sources": sources,
        "SpatialReference": report.image,
        "InputMask": c.mask.relative_to(bids_root).as_posix(),
        "InputMaskSuffix": c.mask_suffix,
        "Reference": plan.reference,
        "ContrastsUsed": [x.entities for x in plan.contrasts],
        "AveragedAcrossContrasts": not single,
        "ContrastAveraging": SINGLE_CONTRAST_NOTE if single else f"{len(plan.contrasts)} contrasts averaged",
        "Method": {
            "Name": METHOD_NAME,
            "Interpolation": "linear (masks into the averaging space, through world coordinates)",
            "AveragingSpacingMM": list(result.spacing_mm),
            "Alignment": (
                "slice-wise in-plane centre of mass vs the reference mask, Gaussian-smoothed along "
                f"S-I (sigma {ALIGN_SMOOTHING_MM} mm)"
            )
            if align
            else "none (--no-align)",
            "Weighting": "per-voxel mean over the contrasts whose field of view covers the voxel",
            "PartialVolume": "fraction of each native voxel inside the 0.5 iso-surface of the average "
            f"(sub-voxel samples {SUBSAMPLE_MM[0]} mm in-plane, {SUBSAMPLE_MM[1]} mm S-I)",
            "VolumePreservation": "one outward normal shift of the consensus surface per subject so that the "
            "soft volumes, summed over contrasts, equal the binary ones",
        },
        "BoundaryOffsetMM": result.boundary_offset_mm,
        "AlignmentOffsetMM": report.offset_mm,
        "AlignedSlices": report.aligned_slices,
        "BoundaryMeanSoftValue": report.boundary_mean,
        "GeneratedBy": [{"Name": "nnunet-spine", "Version": __version__, "Description": "nnspine convert softgt"}],
    }


def _write_nnunet_case(st: _Settings, c: _Contrast, image: Image, soft: np.ndarray) -> None:
    """The contrast's nnU-Net training case ``<image stem>``: the full image (float64 written as float32),
    ``labelsTr`` = soft ≥ 0.5 (uint8) and ``labelsTr_soft`` = the soft mask (float32), on the image's grid."""
    full = load_image(c.image, "image")
    data = full.data.astype(np.float32) if full.data.dtype == np.float64 else full.data
    nnunet_raw.write_case(
        st.nnunet_folder,
        c.stem,
        [Image(data=data, affine=image.affine, path=c.image, meta=full.meta)],
        (soft >= 0.5).astype(np.uint8),
        extra={LABELS_TR_SOFT: (soft, np.float32)},
        overwrite=st.overwrite,
    )


def _process(plan: _SubjectPlan, st: _Settings) -> SubjectReport:
    """Compute and write the soft masks (and nnU-Net cases) of one subject."""
    loaded = {c.entities: _load_contrast(c, full_image=False) for c in plan.contrasts}
    result = soft_ground_truth(
        {n: (mask.data, image.affine) for n, (image, mask) in loaded.items()},
        plan.reference,
        align=st.align,
        resolution_mm=st.resolution_mm,
    )
    sources = _subject_sources(plan, st.bids_root)
    reports = []
    for c in plan.contrasts:
        image, mask = loaded[c.entities]
        soft = result.soft[c.entities]
        base = st.soft_root / plan.rel_dir / f"{c.stem}{SOFT_SUFFIX}"
        out_nii = base.with_name(base.name + ".nii.gz")
        report = _contrast_report(c, image, mask.data > 0, soft, result, out_nii, st.bids_root)
        sidecar = _sidecar(plan, c, report, result, sources, st.bids_root, st.align)
        save_image(soft, image.affine, out_nii, overwrite=st.overwrite, dtype=np.float32, like=image)
        write_text(base.with_name(base.name + ".json"), json.dumps(sidecar, indent=2) + "\n", overwrite=st.overwrite)
        if st.nnunet_folder is not None:
            _write_nnunet_case(st, c, image, soft)
            report.case = c.stem
        reports.append(report)
    return SubjectReport(
        subject=plan.subject,
        reference=plan.reference,
        contrasts=reports,
        warnings=list(plan.warnings),
        boundary_offset_mm=result.boundary_offset_mm,
        averaged_across_contrasts=len(plan.contrasts) > 1,
    )


def _check_options(reference_resolution: float, nnunet_dataset: int | None, name: str | None) -> None:
    """``--reference-resolution`` a positive, finite number of mm; the nnU-Net dataset's ID and name given
    together (or neither); :class:`InputError` otherwise."""
    if not reference_resolution > 0 or not math.isfinite(reference_resolution):
        raise InputError(f"--reference-resolution must be a positive number of mm, got {reference_resolution}")
    if (nnunet_dataset is None) != (name is None):
        raise InputError("the nnU-Net dataset needs both an ID (--nnunet-dataset) and a name (--name)")


def _soft_root(derivatives_out: Path, bids_root: Path) -> Path:
    """``<derivatives_out>/labels_softseg``, checked: folders (not files), outside the input dataset or under its
    ``derivatives/``; :class:`InputError` otherwise."""
    for folder in (derivatives_out, derivatives_out / PIPELINE):
        if folder.exists() and not folder.is_dir():
            raise InputError(f"{folder}: is a file, expected a folder")
    soft_root = derivatives_out / PIPELINE
    # BIDS keeps derivatives inside the dataset: a new pipeline folder under <bids_root>/derivatives adds files
    # and never touches existing ones (outputs that exist are refused unless overwrite); elsewhere inside the
    # input dataset is refused.
    if is_inside(soft_root, bids_root) and not is_inside(soft_root, bids_root / "derivatives"):
        raise InputError(
            f"{derivatives_out}: is inside the input dataset {bids_root} but not under its derivatives/ "
            "folder; choose <dataset>/derivatives or a folder outside the dataset"
        )
    return soft_root


def _split_plans(plans: list[_SubjectPlan], bids_root: Path) -> tuple[list[_SubjectPlan], dict[str, str], list[str]]:
    """The validated plans to convert, the skipped subjects (→ reason) and every warning (the plans', then one per
    skipped subject); :class:`InputError` when every subject is skipped."""
    todo = [p for p in plans if not p.skip]
    skipped = {p.subject: p.skip for p in plans if p.skip}
    all_warnings = [w for p in plans for w in p.warnings]
    all_warnings += [f"{sub}: skipped ({why})" for sub, why in skipped.items()]
    if not todo:
        first, why = next(iter(skipped.items()))
        more = f"; {len(skipped) - 1} more subject(s) skipped" if len(skipped) > 1 else ""
        raise InputError(f"{bids_root}: nothing to convert, every subject was skipped ({first}: {why}{more})")
    return todo, skipped, all_warnings


def _refuse_existing_outputs(todo: list[_SubjectPlan], settings: _Settings) -> None:
    """:class:`OutputExistsError` naming the first soft mask or sidecar that exists already."""
    for p in todo:
        for out in _outputs(p, settings):
            if out.exists():
                raise OutputExistsError(f"{out}: output exists (use --overwrite to replace it)")


def _process_subjects(
    todo: list[_SubjectPlan], settings: _Settings, pool: object | None, progress: bool
) -> list[SubjectReport]:
    """Compute and write every subject (in ``pool``'s workers, results in ``todo``'s order), with a tqdm bar over
    subjects (stderr) when ``progress``."""
    from tqdm.auto import tqdm

    bar = tqdm(total=len(todo), desc="softgt", unit="subject", disable=not progress)
    try:
        return run_all(_process, todo, settings, pool, bar)
    finally:
        bar.close()


def _finish_nnunet_dataset(report: SoftGTReport, stage: Path, nn_folder: Path, bids_root: Path) -> None:
    """``dataset.json`` and ``splits_final.json`` (all contrasts of a subject, or with ``--group-by`` of a person,
    in one fold) of the staged nnU-Net dataset; records its folder, split and number of cases in ``report``."""
    subjects = report.subjects
    cases = {c.case: c.image for s in subjects for c in s.contrasts if c.case}
    _write_dataset_json(stage, nn_folder.name, cases, bids_root, report)
    subject_of = {c.case: s.subject.split("_", 1)[0] for s in subjects for c in s.contrasts if c.case}
    report.splits = write_dataset_splits(stage, nn_folder, subject_of, report.group_by)
    report.nnunet_dataset = str(nn_folder)
    report.num_cases = len(cases)


def convert(
    source: Path,
    *,
    nnunet_dataset: int | None = None,
    name: str | None = None,
    raw_root: Path | None = None,
    overwrite: bool = False,
    jobs: int = JOBS,
    progress: bool = False,
    derivatives_out: Path,
    reference: str | None = None,
    align: bool = True,
    reference_resolution: float = SOFTGT_RESOLUTION_MM,
    mask_suffix: str | None = None,
    group_by: str | None = None,
    exclude: CaseList | None = None,
    include: CaseList | None = None,
) -> SoftGTReport:
    """Soft cord ground truth for every subject of a BIDS dataset (see the module docstring for the method).

    Parameters
    ----------
    source : Path
        BIDS dataset: ``sub-XX[/ses-YY]/anat/<image>.nii.gz`` and binary cord masks
        ``derivatives/labels/sub-XX[/ses-YY]/anat/<image><suffix>.nii.gz`` (or beside the image) on each image's
        grid, ``<suffix>`` in the order of :data:`core.manual_masks.MASK_SUFFIXES` ``["cord"]``. Never modified.
    nnunet_dataset, name : int, str
        With both: also write the nnU-Net raw dataset ``<raw_root>/DatasetXXX_NAME`` (ID zero-padded to 3
        digits): one single-channel case per (subject, contrast), ``labelsTr`` = soft ≥ 0.5,
        ``labelsTr_soft`` = soft (float32); all contrasts of a subject in one fold of ``splits_final.json``.
    raw_root : Path, optional
        nnU-Net raw folder (default: ``$nnUNet_raw``).
    overwrite : bool
        Replace existing outputs (otherwise refused before anything is computed).
    jobs : int
        Worker processes (subjects in parallel); results are identical to ``jobs=1``.
    progress : bool
        tqdm progress bar over subjects (stderr).
    derivatives_out : Path
        Folder playing the role of ``derivatives/``: the soft masks go to
        ``derivatives_out/labels_softseg/sub-XX/anat/<image>_label-SC_softseg.nii.gz`` (float32 fractions
        0..1 on the image's grid) with a ``.json`` sidecar. Must lie outside ``source`` or under its
        ``derivatives/``.
    reference : str, optional
        Contrast defining the averaging space and the alignment target: the BIDS name after ``sub-XX_``
        (e.g. ``T2w``), or a suffix matching exactly one image. Subjects without it are skipped (warning).
        None: a subject's only labelled contrast, or ``T2w`` when it has several (``SOFTGT_REFERENCE``).
    align : bool
        Slice-wise centre-of-mass alignment of each contrast onto the reference (corrects inter-scan shifts
        of a few mm, in-plane).
    reference_resolution : float
        In-plane spacing of the averaging space in mm (along S-I the reference's slices, subdivided to at most
        1 mm: thick slices are integrated over their whole thickness).
    mask_suffix : str, optional
        Use only masks ``<image><mask_suffix>`` (e.g. ``_seg-manual``; ``*`` stands for a rater label) instead of
        the order of preference.
    group_by : str, optional
        Regular expression whose first capture group, searched in the subject label without ``sub-``, names the
        person: the split keeps a person's subjects (sessions written into labels) in one fold.
    exclude, include : CaseList, optional
        ``--exclude-yml`` / ``--include-yml`` case lists: images they leave out are not converted (listed in the
        report's ``excluded``).

    Returns
    -------
    SoftGTReport
        Per subject: contrasts used, alignment shifts (mm), mean soft value at the mask boundary, volumes (mm³).

    Raises
    ------
    InputError
        Missing dataset folder (or a file in its place), unreadable/4-D/NaN/non-binary mask, mask on a grid
        different from its image, existing outputs without ``overwrite``, bad nnU-Net ID/name, an nnU-Net raw
        folder that cannot be created, no subject left to convert (e.g. no image of the ``reference`` contrast
        anywhere): one-line message naming the file; nothing is written.
    """
    bids_root = Path(source)
    derivatives_out = Path(derivatives_out)
    check_jobs(jobs)
    _check_options(reference_resolution, nnunet_dataset, name)
    nn_folder = output_folder(bids_root, nnunet_dataset, name, raw_root) if nnunet_dataset is not None else None
    plans, excluded = discover(bids_root, reference, mask_suffix, exclude, include)
    subject_groups({p.subject.split("_", 1)[0] for p in plans}, group_by)  # a bad --group-by stops here
    soft_root = _soft_root(derivatives_out, bids_root)
    settings = _Settings(
        bids_root=bids_root,
        soft_root=soft_root,
        reference=reference,
        align=align,
        resolution_mm=float(reference_resolution),
        nnunet_folder=None,
        overwrite=overwrite,
    )

    with process_pool(jobs, len(plans)) as pool:
        # 1. validate every input before writing anything
        plans = run_all(_validate, plans, nn_folder is not None, pool)
        todo, skipped, all_warnings = _split_plans(plans, bids_root)
        if nn_folder is not None:
            ungrouped = grouping_warning(sorted({p.subject.split("_", 1)[0] for p in todo}), group_by)
            all_warnings += [ungrouped] if ungrouped else []
        for w in all_warnings:
            warnings.warn(w, SoftGTWarning, stacklevel=2)
        if not overwrite:
            _refuse_existing_outputs(todo, settings)

        # 2. compute and write, subject by subject; the nnU-Net dataset all-or-nothing through a staging folder
        staging = (
            nnunet_raw.staged_dataset(nn_folder, overwrite=overwrite)
            if nn_folder is not None
            else contextlib.nullcontext(None)
        )
        with staging as stage:
            if stage is not None:
                nnunet_raw.prepare_folder(stage, extra_folders=(LABELS_TR_SOFT,))
            _write_description(soft_root, bids_root, overwrite)
            subjects = _process_subjects(todo, replace(settings, nnunet_folder=stage), pool, progress)
            report = SoftGTReport(
                bids_root=str(bids_root),
                derivatives=str(soft_root),
                reference=reference,
                align=align,
                subjects=subjects,
                skipped=skipped,
                warnings=all_warnings,
                unlabelled=[u for p in plans for u in p.unlabelled],
                excluded=excluded,
                mask_suffix=mask_suffix,
                group_by=group_by,
            )
            if stage is not None:
                _finish_nnunet_dataset(report, stage, nn_folder, bids_root)
    return report


def _write_description(soft_root: Path, bids_root: Path, overwrite: bool) -> None:
    """``dataset_description.json`` of the soft-mask derivative (BIDS), unless one exists (or with overwrite)."""
    from nnunet_spine import __version__

    soft_root.mkdir(parents=True, exist_ok=True)
    desc = soft_root / "dataset_description.json"
    if overwrite or not desc.exists():
        content = {
            "Name": "Soft (partial-volume) spinal cord masks averaged across contrasts",
            "BIDSVersion": "1.9.0",
            "DatasetType": "derivative",
            "GeneratedBy": [{"Name": "nnunet-spine", "Version": __version__, "Description": "nnspine convert softgt"}],
            "SourceDatasets": [{"URL": bids_root.resolve().as_uri()}],
        }
        write_text(desc, json.dumps(content, indent=2) + "\n", overwrite=True)


def _write_dataset_json(
    stage: Path, dataset_name: str, cases: dict[str, str], bids_root: Path, report: SoftGTReport
) -> None:
    """nnU-Net's ``dataset.json`` with our facts under ``nnspine``: sources per case, the masks picked (per case),
    the images left out for want of a mask, and per case whether masks were averaged across contrasts."""
    from nnunet_spine import __version__

    masks = {c.case: c.mask for s in report.subjects for c in s.contrasts if c.case}
    averaged = {c.case: s.averaged_across_contrasts for s in report.subjects for c in s.contrasts if c.case}
    nnunet_raw.write_dataset_json(
        stage,
        channel_names={"0": "MRI"},
        labels={"background": 0, "cord": 1},
        num_training=len(cases),
        file_ending=FILE_ENDING,
        name=dataset_name,
        description=(
            "Contrast-agnostic spinal cord segmentation: every (subject, contrast) image is a case; "
            "labelsTr = soft mask >= 0.5, labelsTr_soft = soft (partial-volume) mask, float32"
        ),
        nnspine={
            "converter": "softgt",
            "version": __version__,
            "soft_labels_folder": LABELS_TR_SOFT,
            "reference": report.reference or f"per subject: its only labelled contrast, else {SOFTGT_REFERENCE}",
            "align": report.align,
            "source_dataset": str(bids_root.resolve()),
            "cases": cases,
            "masks": masks,
            "mask_suffix": report.mask_suffix,
            "masks_by_suffix": report.mask_counts(),
            "averaged_across_contrasts": averaged,
            "contrast_averaging": (
                SINGLE_CONTRAST_NOTE
                if not any(averaged.values())
                else "per subject, see averaged_across_contrasts (false: " + SINGLE_CONTRAST_NOTE + ")"
            ),
            "unlabelled_images": report.unlabelled,
            "group_by": report.group_by,
        },
    )
