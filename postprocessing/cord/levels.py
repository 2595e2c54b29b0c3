"""Which vertebral level each axial slice of a cord mask belongs to (the one home of that rule).

All arrays are in SCT's RPI voxel order (axis 0 R→L, axis 1 P→A, axis 2 I→S: slices last), as
:mod:`nnunet_spine.postprocessing.cord.csa` measures them; levels are **SCT level numbers** (C1=1 … L5=24, S1=25, see
:mod:`nnunet_spine.core.labels`), 0 meaning "no level known".

Level sources:

* a labelled-level image (SCT's ``*_labeled`` cord, ``PAM50_levels``): a slice takes the level its cord
  voxels mostly carry;
* disc point labels (SCT convention: disc value ``n`` is the top of vertebra ``n``), read by SCT's rule
  (:func:`levels_from_discs`: each label projected onto the cord centreline, slices between projected discs);
* a vertebra instance mask (SPINEPS ``seg-vert``, VerSe ids): a slice takes the SCT level of the vertebra
  at its height along the cord (:func:`levels_from_instance_mask`).

A ``--vertfile`` may be either of the first or the last kind; :func:`level_file_kind` decides which (from an
explicit choice, the SPINEPS instance-mask name or the values) and :func:`check_level_file_on_cord` refuses
the cases where the decision would silently read one numbering as the other.

All rules are reached through :func:`assign_slice_levels`. :func:`select_levels` keeps the rows of a per-slice table
that belong to chosen levels. Library functions never print or exit; bad input raises
:class:`~nnunet_spine.core.io.InputError` naming the file.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from nnunet_spine.core.io import Image, InputError, check_same_grid, load_image

#: Voxel values at or below this count as background (resampling leaves ~1e-16 noise).
NEAR_ZERO = 1e-6

#: How a ``--vertfile`` is read: ``sct`` = labelled vertebral levels in SCT numbering (``*_labeled`` cord,
#: ``PAM50_levels``); ``spineps`` = vertebra instance mask in VerSe numbering (SPINEPS ``_seg-vert_msk``);
#: ``auto`` = decide from the file's name and values (:func:`level_file_kind`).
VERTFILE_KINDS: tuple[str, ...] = ("auto", "sct", "spineps")
VertfileKind = Literal["auto", "sct", "spineps"]
#: Highest SCT vertebral level (coccyx = 30): larger values cannot be SCT levels.
MAX_SCT_LEVEL = 30


def load_levels(path: str | os.PathLike, ref: Image) -> Image:
    """Read a level or disc label file: non-negative integer labels on ``ref``'s grid."""
    img = load_image(path, "labels")
    check_same_grid(ref, img)
    return img


def is_spineps_instance_name(path: str | os.PathLike | None) -> bool:
    """True when ``path`` is named as a SPINEPS vertebra instance mask: BIDS suffix ``msk`` with
    ``seg-vert`` (``sub-01_T2w_seg-vert_msk.nii.gz``, SPINEPS' own ``sub-01_seg-vert_label-6_msk.nii.gz``)."""
    from nnunet_spine.core.bids import SPINEPS_INSTANCE_SEGS, spineps_seg

    return spineps_seg(path) in SPINEPS_INSTANCE_SEGS


def refuse_unlabelled_instances(img: Image) -> None:
    """Raise :class:`InputError` when the instance mask's sidecar (``<mask stem>.json``, written by ``nnspine
    fuse`` / ``nnspine instances``) says its ids are not anatomical (1..n from the top): such ids are no
    vertebral levels. A mask without a sidecar (SPINEPS', a reference) is taken as it is."""
    import json

    from nnunet_spine.core.io import split_suffix

    if img.path is None:
        return
    stem, _ = split_suffix(img.path)
    sidecar = Path(img.path).with_name(Path(stem).name + ".json")
    if not sidecar.is_file():
        return
    try:
        info = json.loads(sidecar.read_text())
    except ValueError:
        return
    if isinstance(info, dict) and info.get("anatomically_labelled") is False:
        raise InputError(
            f"{img.name}: not anatomically labelled ({sidecar.name}: ids 1..n from the top are no vertebral "
            "levels); fuse again with --top-vertebra NAME, or with the sacrum or dens in the semantic mask"
        )


def level_file_kind(img: Image, requested: str = "auto") -> tuple[str, str]:
    """How to read a level file (``--vertfile``): returns ``(kind, reason)``, ``kind`` being ``"sct"``
    (labelled levels, SCT numbering: C1=1 … L5=24, S1=25 … Co=30) or ``"spineps"`` (vertebra instance mask,
    VerSe ids: L6=25, sacrum=26, T13=28, discs 100+X, endplates 200+X), ``reason`` a few words saying why.

    ``requested`` ``"sct"`` or ``"spineps"`` is checked against the values; ``"auto"`` decides:

    1. a SPINEPS instance-mask name (:func:`is_spineps_instance_name`, ``..._seg-vert_msk``) → spineps;
    2. values above 30 that are all SPINEPS instance ids (discs 101–128, endplates 201–228; SCT levels stop
       at 30) → spineps;
    3. otherwise (values 1–30) → sct. Such a file may still be an instance mask without discs and
       endplates: :func:`check_level_file_on_cord` refuses it when no cord voxel carries a label.

    Raises :class:`InputError` naming the file when the values fit no kind (e.g. a SPINEPS *semantic* mask)
    or contradict the requested kind, and for an instance mask whose sidecar marks it not anatomically
    labelled (:func:`refuse_unlabelled_instances`).
    """
    kind, reason = _level_file_kind(img, requested)
    if kind == "spineps":
        refuse_unlabelled_instances(img)
    return kind, reason


def _level_file_kind(img: Image, requested: str) -> tuple[str, str]:
    from nnunet_spine.core.labels import (
        instance_value_problem,
    )

    if requested not in VERTFILE_KINDS:
        raise ValueError(f"vertfile kind must be one of {VERTFILE_KINDS}, not {requested!r}")
    values = [int(v) for v in np.unique(np.rint(np.asarray(img.data))) if v > 0]
    if not values:
        raise InputError(f"{img.name}: level file holds no label (all zero)")
    above_sct = [v for v in values if v > MAX_SCT_LEVEL]
    instance_problem = instance_value_problem(values)
    spineps_hint = "it looks like a SPINEPS instance mask (discs 100+X, endplates 200+X): use --vertfile-kind spineps"
    if requested == "sct":
        if above_sct:
            hint = f"; {spineps_hint}" if instance_problem is None else ""
            raise InputError(
                f"{img.name}: values {above_sct[:5]} are not SCT vertebral levels (1-{MAX_SCT_LEVEL}){hint}"
            )
        return "sct", "--vertfile-kind sct"
    if requested == "spineps":
        if instance_problem is not None:
            raise InputError(f"{img.name}: not a SPINEPS vertebra instance mask: {instance_problem}")
        return "spineps", "--vertfile-kind spineps"
    if is_spineps_instance_name(img.path):
        if instance_problem is not None:
            raise InputError(f"{img.name}: named as a SPINEPS instance mask (_seg-vert_msk) but {instance_problem}")
        return "spineps", "named _seg-vert_msk"
    if above_sct:
        if instance_problem is not None:
            raise InputError(
                f"{img.name}: neither SCT vertebral levels (1-{MAX_SCT_LEVEL}) nor a SPINEPS instance "
                f"mask: {instance_problem}"
            )
        return "spineps", f"values {above_sct[0]}... >= 100 are SPINEPS disc/endplate ids"
    return "sct", f"values 1-{MAX_SCT_LEVEL}: SCT levels"


def check_level_file_on_cord(
    weights: np.ndarray, labels: np.ndarray, kind: str, *, auto: bool, name: str = "<levels>"
) -> None:
    """Refuse level files whose kind contradicts where their labels lie relative to the cord (both arrays
    on the same grid; ``weights``: cord mask values, ``labels``: the level file's values).

    SCT labelled-level files label the cord itself; SPINEPS instance masks leave cord and canal 0. So:

    * ``kind == "sct"`` chosen by ``auto`` while no cord voxel carries a label: the file may be an instance
      mask without discs/endplates (VerSe and SCT numbers differ from 25 on): :class:`InputError` asking
      for an explicit ``--vertfile-kind`` (with an explicit ``sct`` the slice's labelled voxels decide, as
      :func:`assign_slice_levels` documents);
    * ``kind == "spineps"`` while labels cover more than half of the cord's weight: an SCT labelled-level
      file read as vertebrae: :class:`InputError`.
    """
    cord = np.asarray(weights) > NEAR_ZERO
    labelled = np.rint(np.asarray(labels)) > 0
    if kind == "sct" and auto and not (cord & labelled).any():
        raise InputError(
            f"{name}: no cord voxel carries a level label, so this may be a vertebra instance mask "
            "(SPINEPS leaves the cord 0; VerSe and SCT numbers differ from 25 on): "
            "say how to read it with --vertfile-kind sct or --vertfile-kind spineps"
        )
    if kind == "spineps":
        w = np.asarray(weights, float)
        covered = float(w[cord & labelled].sum()) / max(float(w[cord].sum()), NEAR_ZERO)
        if covered > 0.5:
            raise InputError(
                f"{name}: its labels cover {100 * covered:.0f} % of the cord, as an SCT labelled-level "
                "file does (SPINEPS instance masks leave cord and canal 0): use --vertfile-kind sct"
            )


def assign_slice_levels(
    weights: np.ndarray,
    *,
    level_data: np.ndarray | None = None,
    disc_data: np.ndarray | None = None,
    instance_data: np.ndarray | None = None,
    zooms_mm: Sequence[float] | None = None,
    name: str = "<levels>",
) -> np.ndarray:
    """The slice → vertebral level rule (one place for it). All arrays in RPI voxel order (slices last).

    * ``level_data`` (labelled levels, e.g. SCT's ``*_labeled`` cord or ``PAM50_levels``): a slice belongs to
      the level that its cord voxels mostly carry, weighted by the mask value. A slice whose cord voxels
      carry no level at all takes the level most of the slice's labelled voxels carry.
    * ``disc_data`` (disc point labels, SCT convention: value ``n`` marks the top of vertebra ``n``; needs
      ``zooms_mm``): SCT's rule, see :func:`levels_from_discs`.
    * ``instance_data`` (a SPINEPS / VerSe vertebra instance mask; needs ``zooms_mm``, the RPI voxel size):
      see :func:`levels_from_instance_mask`.

    Returns one integer per slice, 0 where no level is known. ``name`` is used in error messages.
    """
    nz = weights.shape[2]
    if disc_data is not None:
        if zooms_mm is None:
            raise ValueError("disc_data needs zooms_mm (the RPI voxel size)")
        return levels_from_discs(weights, disc_data, zooms_mm, name=name)
    if instance_data is not None:
        if zooms_mm is None:
            raise ValueError("instance_data needs zooms_mm (the RPI voxel size)")
        return levels_from_instance_mask(weights, instance_data, zooms_mm, name=name)
    if level_data is None:
        return np.zeros(nz, np.int64)
    labels = np.rint(np.asarray(level_data)).astype(np.int64)
    n_labels = int(labels.max()) + 1 if labels.size else 1
    i, j, k = np.nonzero(weights > NEAR_ZERO)
    lab = labels[i, j, k]
    keep = lab > 0
    votes = np.bincount(
        k[keep] * n_labels + lab[keep], weights=np.asarray(weights[i, j, k], float)[keep], minlength=nz * n_labels
    ).reshape(nz, n_labels)
    out = np.where(votes.sum(1) > 0, votes.argmax(1), 0)
    missing = out == 0
    if missing.any():  # fall back on the slice's labelled voxels (level file not drawn on this cord mask)
        li, lj, lk = np.nonzero(labels > 0)
        counts = np.bincount(lk * n_labels + labels[li, lj, lk], minlength=nz * n_labels).reshape(nz, n_labels)
        fallback = np.where(counts.sum(1) > 0, counts.argmax(1), 0)
        out[missing] = fallback[missing]
    return out.astype(np.int64)


#: SCT landmark labels that are not discs (pontomedullary groove 49, junction 50; SCT's
#: ``labeling-conventions.rst``): ignored when reading a disc file.
SCT_NON_DISC_LABELS: tuple[int, ...] = (49, 50)


#: SCT's default centreline smoothing (``ParamCenterline(smooth=20)``, ``spinalcordtoolbox/centerline/core.py``).
SCT_CENTRELINE_SMOOTH = 20.0


def sct_centreline(weights: np.ndarray, zooms_mm: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """The cord centreline as SCT's ``get_centerline`` draws it by default (``algo_fitting='bspline'``,
    ``minmax=True``; ``spinalcordtoolbox/centerline/core.py`` and ``curve_fitting.bspline``): the centre of mass of
    the nonzero voxels of each slice (unweighted, ``find_and_sort_coord``), fitted in voxel units by a cubic
    smoothing spline (``scipy.interpolate.splrep``) with SCT's smoothing budget
    ``s = (n_slices_with_cord / n_slices_spanned)² · smooth · dz / 3`` and evaluated on every slice from the
    lowest to the highest cord slice. RPI voxel order (slices last), ``zooms_mm`` its voxel size.

    Returns the slice indices (I→S) and their centreline points (N×3, RPI voxel-aligned mm: index × voxel size).
    """
    from scipy import interpolate

    i, j, k = np.nonzero(np.asarray(weights) > NEAR_ZERO)
    ks = np.unique(k)
    cx = np.bincount(k, i, ks.max() + 1)[ks] / np.bincount(k, None, ks.max() + 1)[ks]
    cy = np.bincount(k, j, ks.max() + 1)[ks] / np.bincount(k, None, ks.max() + 1)[ks]
    k_line = np.arange(ks[0], ks[-1] + 1)
    deg = 3 if ks.size > 3 else 1
    if ks.size < 2:
        fx, fy = np.full(k_line.size, cx[0]), np.full(k_line.size, cy[0])
    else:
        smooth = (ks.size / k_line.size) ** 2 * SCT_CENTRELINE_SMOOTH * float(zooms_mm[2]) / 3.0
        fx = interpolate.splev(k_line, interpolate.splrep(ks, cx, s=smooth, k=deg))
        fy = interpolate.splev(k_line, interpolate.splrep(ks, cy, s=smooth, k=deg))
    zooms = np.asarray([float(z) for z in zooms_mm])
    return k_line, np.column_stack([fx, fy, k_line]) * zooms


def levels_from_discs(
    weights: np.ndarray, disc_data: np.ndarray, zooms_mm: Sequence[float], *, name: str = "<discs>"
) -> np.ndarray:
    """SCT level of each axial slice from disc point labels, by SCT's rule (``sct_process_segmentation
    -discfile``: ``spinalcordtoolbox/labels.py`` ``project_centerline`` then ``label_regions_from_reference``
    with ``centerline=True``; the slice's level is the value of its centreline voxel,
    ``template.py`` ``get_vertebral_level_from_slice``). Both arrays on one RPI grid (slices last),
    ``zooms_mm`` its voxel size (mm).

    1. Centreline: :func:`sct_centreline`, one point per slice from the cord's lowest to its highest slice.
    2. Each nonzero disc voxel goes to the slice of the centreline point nearest to it in physical space (mm).
    3. Sorted by that slice index ``k``, a slice ``j`` takes the value of the first label with ``k >= j``
       (``np.searchsorted``): a slice at or below disc ``n`` and above disc ``n + 1`` is level ``n``, slices
       at or below the lowest disc take its value, and slices above the highest disc ``t`` take ``t - 1``.
       A missing disc is not interpolated: its level's slices take the level above it.

    SCT's landmarks 49/50 (:data:`SCT_NON_DISC_LABELS`) are ignored. Returns one level per slice, 0 outside the
    cord's slice range. Raises :class:`InputError` naming ``name`` when no disc label is left or the discs are
    not ordered superior (small values) to inferior along the cord.
    """
    labels = np.rint(np.asarray(disc_data)).astype(np.int64)
    labels[np.isin(labels, SCT_NON_DISC_LABELS)] = 0
    vox = np.argwhere(labels > 0)
    if vox.shape[0] == 0:
        raise InputError(f"{name}: disc file holds no disc label (all zero)")
    values = labels[tuple(vox.T)]
    nz = labels.shape[2]
    out = np.zeros(nz, np.int64)
    if not np.any(np.asarray(weights) > NEAR_ZERO):
        return out
    zooms = np.asarray([float(z) for z in zooms_mm])
    k_line, line = sct_centreline(weights, zooms)
    from scipy.spatial import cKDTree

    k_disc = k_line[cKDTree(line).query(vox * zooms)[1]]  # nearest centreline point (SCT: KDTree as well)
    order = np.lexsort((-values, k_disc))  # along the cord, upwards; two discs on one slice: lower one first
    k_sorted, v_sorted = k_disc[order], values[order]
    if np.any(np.diff(v_sorted) > 0):
        raise InputError(
            f"{name}: disc labels are not ordered from superior to inferior along the cord "
            "(disc n must lie above disc n+1)"
        )
    region_values = np.append(v_sorted, v_sorted[-1] - 1)
    out[k_line] = region_values[np.searchsorted(k_sorted, k_line)]
    return out


def _levels_between(bounds: np.ndarray, levels: Sequence[int], nz: int) -> np.ndarray:
    """Slice ``k`` gets ``levels[i]`` when ``bounds[i + 1] < k <= bounds[i]`` (bounds: fractional slice
    indices, decreasing, one more than ``levels``); other slices get 0."""
    s = np.arange(nz)
    out = np.zeros(nz, np.int64)
    for n, k_top, k_bottom in zip(levels, bounds[:-1], bounds[1:]):
        out[(s <= k_top) & (s > k_bottom)] = n
    return out


def levels_from_instance_mask(
    weights: np.ndarray,
    instance: np.ndarray,
    zooms_mm: Sequence[float],
    *,
    name: str = "<instances>",
) -> np.ndarray:
    """SCT level of each axial slice from a vertebra instance mask (SPINEPS ``seg-vert``: vertebrae by
    VerSe id 1–28, discs ``100 + X`` below vertebra X, endplates ``200 + X``), both arrays on the same RPI
    grid (slices last), ``zooms_mm`` its voxel size (mm).

    Rule: each cord slice belongs to the vertebra at its height *along the cord*. Positions are fractional
    slice indices on the cord's smooth centreline (:func:`nnunet_spine.postprocessing.cord.centreline.cord_centreline`);
    a point is placed at the centreline point nearest to it, as SCT projects disc labels. A vertebra spans
    from the disc above it to the disc below it, each disc placed at its instance's centre of mass; where
    the instance mask has no disc between two neighbouring vertebrae, the boundary lies midway between the
    vertebrae's centres of mass (vertebra ``X``'s own voxels: SPINEPS gives the endplates below ``X`` the id
    ``200 + X`` and the one above it the id of the vertebra above, so endplates would pull centres off). The
    first and last vertebra, whose outer disc is missing, span symmetrically about their centre of mass, or, when the
    image's top (bottom) slice cuts them, at least to their farthest voxel along the cord (a lone vertebra:
    the extent of its voxels). VerSe ids become SCT levels via
    :func:`nnunet_spine.core.labels.verse_to_sct_level` (sacrum 26 → S1 = 25).

    Returns one SCT level per slice, 0 for slices without cord or outside every vertebra. Raises
    :class:`InputError` naming ``name`` when the mask holds values that are not SPINEPS instances, no
    vertebra, or a vertebra without an SCT level number (L6, T13).
    """
    from nnunet_spine.core.labels import (
        endplate_instance,
        instance_kind,
        verse_to_sct_level,
    )
    from nnunet_spine.postprocessing.cord.centreline import cord_centreline, project_onto_centreline

    inst = np.rint(np.asarray(instance)).astype(np.int64)
    nz = inst.shape[2]
    values = [int(v) for v in np.unique(inst) if v]
    bad = [v for v in values if not _is_instance_value(v)]
    if bad:
        raise InputError(
            f"{name}: not a vertebra instance mask: values {bad[:5]} are not SPINEPS instances "
            "(vertebrae 1-28, discs 101-128, endplates 201-228)"
        )
    kinds = {v: instance_kind(v) for v in values}
    vertebrae = [v for v, (kind, _) in kinds.items() if kind == "vertebra"]
    if not vertebrae:
        raise InputError(f"{name}: instance mask holds no vertebra (values 1-28)")
    sct = {}
    for v in vertebrae:
        try:
            sct[v] = verse_to_sct_level(v)
        except ValueError as exc:  # L6 / T13: no SCT number, and the vertebrae below it would shift by one
            raise InputError(
                f"{name}: {exc} (a transitional vertebra: SCT's numbering has no L6/T13, so CSA per "
                "level would mix the two numberings; rename the vertebrae in the mask, or give an "
                "SCT level file)"
            ) from None
    zooms = np.asarray([float(z) for z in zooms_mm])
    slices, centres, step = cord_centreline(weights, zooms, NEAR_ZERO)

    def centre_of_mass(members: Sequence[int]) -> np.ndarray:
        return np.argwhere(np.isin(inst, members)).mean(0) * zooms

    verts = {v: centre_of_mass([v]) for v in vertebrae}
    discs = {kinds[v][1]: centre_of_mass([v]) for v in values if kinds[v][0] == "disc"}
    k_vert = dict(zip(verts, project_onto_centreline(np.array(list(verts.values())), slices, centres, step)))
    k_disc = {}
    if discs:
        k_disc = dict(zip(discs, project_onto_centreline(np.array(list(discs.values())), slices, centres, step)))
    order = sorted(vertebrae, key=lambda v: -k_vert[v])  # superior first
    ks = np.array([k_vert[v] for v in order])
    inner = []
    for upper, lower in zip(order[:-1], order[1:]):
        k = k_disc.get(upper)
        inner.append(
            k if k is not None and k_vert[lower] < k < k_vert[upper] else 0.5 * (k_vert[upper] + k_vert[lower])
        )

    def extent(v: int) -> tuple[float, float]:  # lowest and highest position of vertebra v's voxels along the cord
        members = [v, endplate_instance(v)]
        pts = np.argwhere(np.isin(inst, members)) * zooms
        k_pts = np.concatenate(
            [
                project_onto_centreline(chunk, slices, centres, step)
                for chunk in np.array_split(pts, max(1, pts.shape[0] // 4096))
            ]
        )
        return float(k_pts.min()), float(k_pts.max())

    def cut_by_border(v: int, k_border: int) -> bool:  # vertebra v reaches the image's top or bottom slice
        return bool(np.isin(inst[:, :, k_border], [v, endplate_instance(v)]).any())

    if inner:
        above = [k for k in k_disc.values() if k > ks[0]]
        below = [k for k in k_disc.values() if k < ks[-1]]
        top = min(above) if above else ks[0] + (ks[0] - inner[0])
        bottom = max(below) if below else ks[-1] - (inner[-1] - ks[-1])
        # an end vertebra cut by the image border: its outer disc is outside the image and its centre of
        # mass pulled inwards, so it spans at least to its farthest voxel along the cord
        if not above and cut_by_border(order[0], nz - 1):
            top = max(top, extent(order[0])[1])
        if not below and cut_by_border(order[-1], 0):
            bottom = min(bottom, extent(order[-1])[0])
    else:  # a lone vertebra without neighbours: the extent of its own voxels along the cord
        bottom, top = extent(order[0])
    bounds = np.array([top, *inner, bottom])
    out = _levels_between(bounds, [sct[v] for v in order], nz)
    has_cord = np.zeros(nz, bool)
    has_cord[slices] = True
    return np.where(has_cord, out, 0)


def _is_instance_value(value: int) -> bool:
    from nnunet_spine.core.labels import (
        instance_kind,
    )

    try:
        instance_kind(value)
    except ValueError:
        return False
    return True


def select_levels(per_slice, vert: Sequence[int] | None):
    """Rows of a per-slice table (DataFrame or dict of arrays) whose level is in ``vert`` (all if None)."""
    if vert is None:
        return per_slice
    keep = np.isin(np.asarray(per_slice["level"]), [int(v) for v in vert])
    if hasattr(per_slice, "loc"):
        return per_slice.loc[keep]
    return {key: np.asarray(value)[keep] for key, value in per_slice.items()}
