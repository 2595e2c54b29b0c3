"""Cord cross-sectional area (CSA) and shape metrics per axial slice, compatible with SCT's
``sct_process_segmentation``.

Everything is computed in SCT's RPI frame: the mask is reoriented without interpolation
(:func:`nnunet_spine.core.geometry.reorient`) so that voxel axis 0 runs R→L, axis 1 P→A and axis 2 I→S;
the slice axis is therefore the voxel axis closest to the subject's S-I axis, and slices are numbered from
inferior to superior whatever the orientation on disk. Any orientation of the same image gives the same
numbers.

Per slice (``compute_csa``):

* ``area`` (mm²): sum of voxel fractions × in-plane voxel area × cos θ, where θ is the angle between the
  cord centreline and the slice normal. Binary and soft (partial-volume) masks are both measured this way,
  so partial volume counts. The centreline is a least-squares cubic B-spline
  (:func:`nnunet_spine.postprocessing.cord.centreline.fit_centreline`) through the per-slice centres of mass in mm, and
  θ comes from its exact tangent: for a straight tilted tube the correction is exact.
* ``angle_AP``, ``angle_RL`` (degrees), as SCT names them: ``angle_AP`` is the rotation about the A-P axis,
  i.e. the centreline's inclination in the coronal plane, positive when the cord runs toward the subject's
  Left going up (RPI +x); ``angle_RL`` is the rotation about the R-L axis, the inclination in the sagittal
  plane, positive when the cord runs Anterior going up (RPI +y).
* ``diameter_RL`` (mm): the axis of the cord's equivalent ellipse (same second moments, measured in the
  plane perpendicular to the centreline) closest to R-L. ``diameter_AP`` (mm): as SCT ≥ 7: the mean A-P
  extent of the cord across a 3 mm wide band through its centre of mass, the band running along that
  R-L-like axis. ``diameter_AP_ellipse`` (mm): the other axis of the equivalent ellipse (the one closest
  to A-P; SCT's pre-7 ``diameter_AP``).
* ``length_anterior``, ``length_posterior`` (mm), as SCT 7.x: the parts of ``diameter_AP`` in front of
  and behind the line through the centre of mass along the band (they add up to ``diameter_AP``).
* ``eccentricity`` (0..1) of the equivalent ellipse; ``orientation`` (degrees, -90..90): angle from the
  image's R-L axis (RPI +x, toward Left) to the ellipse's major axis, positive toward Anterior (SCT's sign:
  scikit-image's ``regionprops`` orientation of the RPI slice).
* ``solidity``: mask area / area of the convex hull of the mask's 0.5 iso-contour in the slice.
* ``length`` (mm): length of the centreline inside the slice, ``dz / cos θ``.

Soft masks are partial-volume fractions, i.e. the true shape blurred by the voxel; the second moments
(diameters, eccentricity, orientation) are corrected for that blur. Areas need no correction.

Aggregation into SCT's CSV rows and columns (``summarize``, :data:`SCT_COLUMNS`) is
:mod:`nnunet_spine.postprocessing.cord.csa_table`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from nnunet_spine.core.io import (
    Image,
    InputError,
    check_3d,
    check_same_grid,
    check_values,
    load_image,
    voxel_sizes,
)
from nnunet_spine.postprocessing.cord.centreline import fit_centreline, slice_weights
from nnunet_spine.postprocessing.cord.levels import (
    NEAR_ZERO,
    VertfileKind,
    assign_slice_levels,
    check_level_file_on_cord,
    level_file_kind,
    load_levels,
)

if TYPE_CHECKING:  # annotations only: the CLI path avoids importing pandas
    import pandas

#: SCT's per-slice metrics (``KEYS_DEFAULT`` of ``sct_process_segmentation``, SCT 7.x), in column order.
METRICS = [
    "area",
    "angle_AP",
    "angle_RL",
    "diameter_AP",
    "diameter_AP_ellipse",
    "diameter_RL",
    "length_anterior",
    "length_posterior",
    "eccentricity",
    "orientation",
    "solidity",
    "length",
]
#: Width (mm) of the band across which ``diameter_AP`` is averaged (SCT: 3 mm).
AP_BAND_MM = 3.0


# ============================================================================================ loading
def prepare_mask(img: Image, threshold: float | None = None) -> Image:
    """Validate a cord mask (3-D, finite, values in [0, 1], not empty) and binarize it at ``threshold``.

    ``threshold``: voxels ``>= threshold`` become 1, the others 0 (``None`` keeps soft values).
    Returns a new :class:`Image` with float32 data. Raises :class:`InputError` naming the file.
    """
    check_values(check_3d(img), "soft")
    data = np.asarray(img.data)
    if threshold is not None:
        if not 0.0 < threshold <= 1.0:
            raise InputError(f"{img.name}: threshold must be in (0, 1], got {threshold}")
        data = (data >= threshold).astype(np.float32)
        if not data.any():
            raise InputError(f"{img.name}: no voxel reaches the threshold {threshold} (mask empty after binarizing)")
    else:
        data = data.astype(np.float32, copy=False)
        if not (data > NEAR_ZERO).any():
            raise InputError(f"{img.name}: mask is empty (no non-zero voxel)")
    return Image(data=data, affine=img.affine, path=img.path, meta=img.meta)


def cord_from_labels(img: Image, label: int) -> Image:
    """The cord as the voxels equal to ``label`` of a label mask (e.g. 60 in a SPINEPS semantic mask),
    as a binary float32 mask. Raises :class:`InputError` when no voxel carries the label."""
    check_values(check_3d(img), "labels")
    data = (np.rint(np.asarray(img.data)) == int(label)).astype(np.float32)
    if not data.any():
        found = [int(v) for v in np.unique(np.rint(np.asarray(img.data))) if v][:12]
        raise InputError(f"{img.name}: no voxel has label {label} (labels present: {found})")
    return Image(data=data, affine=img.affine, path=img.path, meta=img.meta)


def load_mask(path: str | os.PathLike, threshold: float | None = None, label: int | None = None) -> Image:
    """Read a cord mask file and validate it with :func:`prepare_mask`; with ``label``, the cord is the
    voxels of that label of a label mask (:func:`cord_from_labels`)."""
    img = load_image(path)
    if label is not None:
        if threshold is not None:
            raise ValueError("give threshold or label, not both")
        img = cord_from_labels(img, label)
    return prepare_mask(img, threshold)


# ============================================================================================ measuring
def _to_rpi(img: Image) -> tuple[np.ndarray, np.ndarray]:
    from nnunet_spine.core.geometry import SCT_RPI, reorient

    data, affine = reorient(np.asarray(img.data), img.affine, SCT_RPI)
    return data, affine


def per_slice_columns(
    img: Image,
    *,
    levels: Image | None = None,
    discs: Image | None = None,
    instances: Image | None = None,
    vertfile: Image | None = None,
    vertfile_kind: VertfileKind = "auto",
    threshold: float | None = None,
    angle_correction: bool = True,
) -> dict[str, np.ndarray]:
    """:func:`compute_csa` without pandas: a dict of equal-length 1-D arrays, one entry per column."""
    mask = prepare_mask(img, threshold)
    if vertfile is not None:  # either kind of level file: decide, then read it as levels or as instances
        check_values(check_3d(vertfile), "labels")
        check_same_grid(mask, vertfile)
        kind, _ = level_file_kind(vertfile, vertfile_kind)
        check_level_file_on_cord(mask.data, vertfile.data, kind, auto=vertfile_kind == "auto", name=vertfile.name)
        if kind == "spineps":
            instances = vertfile
        else:
            levels = vertfile
    given = [x for x in (levels, discs, instances) if x is not None]
    if len(given) > 1:
        raise ValueError("give one level source: levels, discs, instances or vertfile")
    label_img = given[0] if given else None
    if label_img is not None:
        check_values(check_3d(label_img), "labels")
        check_same_grid(mask, label_img)
    data, affine = _to_rpi(mask)
    columns = measure_rpi(data, affine, angle_correction=angle_correction)
    label_rpi = _to_rpi(label_img)[0] if label_img is not None else None
    slice_level = assign_slice_levels(
        data,
        level_data=label_rpi if levels is not None else None,
        disc_data=label_rpi if discs is not None else None,
        instance_data=label_rpi if instances is not None else None,
        zooms_mm=voxel_sizes(affine),
        name=label_img.name if label_img is not None else "<levels>",
    )
    columns["level"] = slice_level[columns["slice"]]
    return {key: columns[key] for key in ("slice", "level", "z_mm", *METRICS)}


def compute_csa(
    img: Image,
    *,
    levels: Image | None = None,
    discs: Image | None = None,
    instances: Image | None = None,
    vertfile: Image | None = None,
    vertfile_kind: VertfileKind = "auto",
    threshold: float | None = None,
    angle_correction: bool = True,
) -> pandas.DataFrame:  # noqa: F821
    """Per-slice CSA and shape metrics of a cord mask (binary or soft).

    Parameters
    ----------
    img : Image
        Cord mask, values in [0, 1] (validated here), any orientation.
    levels : Image, optional
        Labelled vertebral levels on the same grid (e.g. SCT's ``*_labeled.nii.gz``).
    discs : Image, optional
        Disc point labels on the same grid (SCT convention, see
        :func:`nnunet_spine.postprocessing.cord.levels.assign_slice_levels`).
    instances : Image, optional
        Vertebra instance mask on the same grid (SPINEPS ``seg-vert``, VerSe ids), see
        :func:`nnunet_spine.postprocessing.cord.levels.levels_from_instance_mask`.
    vertfile, vertfile_kind : Image, "auto" | "sct" | "spineps"
        A level file of either kind (``--vertfile``): read as ``levels`` (``sct``) or ``instances``
        (``spineps``), ``auto`` deciding from its name and values
        (:func:`nnunet_spine.postprocessing.cord.levels.level_file_kind`,
        :func:`~nnunet_spine.postprocessing.cord.levels.check_level_file_on_cord`).
    threshold : float, optional
        Binarize the mask first (voxels ``>= threshold`` become 1).
    angle_correction : bool
        Correct for the centreline's obliquity (default). Without it, angles are 0 and ``length`` is the
        slice thickness.

    Returns
    -------
    pandas.DataFrame
        One row per slice that holds cord, in I→S order, with columns ``slice`` (RPI slice index),
        ``level`` (vertebral level, 0 if unknown), ``z_mm`` (scanner S coordinate of the cord centre, mm)
        and the metrics of :data:`METRICS` (see the module docstring for units and signs).
        ``df.attrs["filename"]`` holds the mask's name.
    """
    import pandas as pd

    df = pd.DataFrame(
        per_slice_columns(
            img,
            levels=levels,
            discs=discs,
            instances=instances,
            vertfile=vertfile,
            vertfile_kind=vertfile_kind,
            threshold=threshold,
            angle_correction=angle_correction,
        )
    )
    df.attrs["filename"] = img.name
    return df


def measure_rpi(data: np.ndarray, affine: np.ndarray, *, angle_correction: bool = True) -> dict[str, np.ndarray]:
    """Core of :func:`compute_csa` on an RPI array (validated values in [0, 1]) and its affine.

    Returns a dict of equal-length 1-D arrays, one entry per slice holding cord: ``slice``, ``z_mm`` and
    the metrics of :data:`METRICS`.
    """
    dx, dy, dz = (float(v) for v in voxel_sizes(affine))
    nz = data.shape[2]
    ii, jj, kk = np.nonzero(data > NEAR_ZERO)
    f = np.asarray(data[ii, jj, kk], float)
    soft = bool(np.any(f < 1.0))
    x = ii * dx
    y = jj * dy
    s0_all = np.bincount(kk, f, minlength=nz)
    slices = np.flatnonzero(s0_all > NEAR_ZERO)
    pos = np.full(nz, -1)
    pos[slices] = np.arange(slices.size)
    sl = pos[kk]  # each voxel's row in the per-slice arrays
    ns = slices.size
    s0 = s0_all[slices]
    cx = np.bincount(sl, f * x, ns) / s0
    cy = np.bincount(sl, f * y, ns) / s0
    xc = x - cx[sl]
    yc = y - cy[sl]
    cxx = np.bincount(sl, f * xc * xc, ns) / s0
    cyy = np.bincount(sl, f * yc * yc, ns) / s0
    cxy = np.bincount(sl, f * xc * yc, ns) / s0

    # ---- centreline and obliquity
    z = slices * dz
    if angle_correction:
        _, slope = fit_centreline(z, np.stack([cx, cy], 1), slice_weights(s0))
        tx, ty = slope[:, 0], slope[:, 1]
    else:
        tx = ty = np.zeros(ns)
    norm = np.sqrt(1.0 + tx**2 + ty**2)
    cos = 1.0 / norm
    area = s0 * dx * dy * cos

    # ---- basis of the plane perpendicular to the centreline: e1 = RPI x (toward L) projected, e2 = t × e1
    t_hat = np.stack([tx, ty, np.ones(ns)], 1) / norm[:, None]
    e1 = np.zeros((ns, 3))
    e1[:, 0] = 1.0
    e1 -= t_hat[:, :1] * t_hat
    e1 /= np.linalg.norm(e1, axis=1, keepdims=True)
    e2 = np.cross(t_hat, e1)
    proj = np.stack([e1, e2], 1)  # (ns, 2, 3): 3-D offsets → perpendicular-plane coordinates
    bmat = proj[:, :, :2]  # in-slice offsets (x, y, 0) → perpendicular plane
    c_slice = np.stack([np.stack([cxx, cxy], 1), np.stack([cxy, cyy], 1)], 1)
    m = bmat @ c_slice @ np.transpose(bmat, (0, 2, 1))
    if soft:  # partial-volume fractions are the shape blurred by the voxel: remove the voxel's spread
        box = np.diag([dx * dx, dy * dy, dz * dz]) / 12.0
        m = m - proj @ box @ np.transpose(proj, (0, 2, 1))
    a_, b_, c_ = m[:, 0, 0], m[:, 0, 1], m[:, 1, 1]
    half_diff = np.sqrt(((a_ - c_) / 2) ** 2 + b_**2)
    lam1 = (a_ + c_) / 2 + half_diff
    lam2 = np.maximum((a_ + c_) / 2 - half_diff, 0.0)
    lam1 = np.maximum(lam1, 0.0)
    phi = 0.5 * np.arctan2(2 * b_, a_ - c_)  # major axis, from e1 (R→L) toward e2 (P→A)
    major, minor = 4 * np.sqrt(lam1), 4 * np.sqrt(lam2)
    rl_is_major = np.abs(phi) < np.pi / 4
    diameter_rl = np.where(rl_is_major, major, minor)
    with np.errstate(invalid="ignore", divide="ignore"):
        eccentricity = np.sqrt(np.clip(1.0 - lam2 / lam1, 0.0, 1.0))
    eccentricity[lam1 <= 0] = np.nan

    # ---- diameter_AP: mean extent across a 3 mm band along the R-L-like ellipse axis
    r = np.where(
        rl_is_major[:, None], np.stack([np.cos(phi), np.sin(phi)], 1), np.stack([-np.sin(phi), np.cos(phi)], 1)
    )
    r_slice = np.einsum("si,sij->sj", r, bmat)  # the band axis expressed on in-slice offsets
    u = r_slice[sl, 0] * xc + r_slice[sl, 1] * yc
    half = 0.5 * (np.abs(r_slice[:, 0]) * dx + np.abs(r_slice[:, 1]) * dy)[sl]  # voxel footprint on the axis
    hb = AP_BAND_MM / 2
    overlap = np.clip(np.minimum(u + half, hb) - np.maximum(u - half, -hb), 0.0, None) / (2 * half)
    diameter_ap = np.bincount(sl, f * overlap, ns) * dx * dy * cos / AP_BAND_MM
    # ---- length_anterior / length_posterior: the band's A-P extent in front of / behind the line through
    # the centre of mass along the band axis (they add up to diameter_AP)
    a_axis = np.stack([-r[:, 1], r[:, 0]], 1)
    a_axis *= np.where(a_axis[:, 1] < 0, -1.0, 1.0)[:, None]  # pointing anterior (+e2)
    a_slice = np.einsum("si,sij->sj", a_axis, bmat)
    v = a_slice[sl, 0] * xc + a_slice[sl, 1] * yc
    half_v = 0.5 * (np.abs(a_slice[:, 0]) * dx + np.abs(a_slice[:, 1]) * dy)[sl]
    front = np.clip((v + half_v) / (2 * half_v), 0.0, 1.0)  # share of the voxel's footprint in front
    length_anterior = np.bincount(sl, f * overlap * front, ns) * dx * dy * cos / AP_BAND_MM
    length_posterior = diameter_ap - length_anterior

    solidity = np.minimum(s0 * dx * dy / _hull_areas(data, slices, dx, dy), 1.0)

    # scanner S coordinate of each slice's cord centre
    centre_vox = np.stack([cx / dx, cy / dy, slices.astype(float), np.ones(ns)], 1)
    z_mm = centre_vox @ np.asarray(affine, float)[2]

    return {
        "slice": slices,
        "z_mm": z_mm,
        "area": area,
        "angle_AP": np.degrees(np.arctan(tx)),
        "angle_RL": np.degrees(np.arctan(ty)),
        "diameter_AP": diameter_ap,
        "diameter_AP_ellipse": np.where(rl_is_major, minor, major),
        "diameter_RL": diameter_rl,
        "length_anterior": length_anterior,
        "length_posterior": length_posterior,
        "eccentricity": eccentricity,
        "orientation": np.degrees(phi),
        "solidity": solidity,
        "length": dz * norm,
    }


def _hull_areas(data: np.ndarray, slices: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """In-slice area (mm²) of the convex hull of each slice's 0.5 iso-contour (marching-squares crossings).

    Hull vertices are among the outermost crossings of each voxel row and column; the hull of those
    candidates is exact (:func:`convex_hull_area`; ``tests/test_csa_geometry.py`` checks it against Qhull).
    """
    ns = slices.size
    # crop to the mask's bounding box, one background voxel around it, slices first: (slice, i, j)
    i_any = np.flatnonzero(data.any(axis=(1, 2)))
    j_any = np.flatnonzero(data.any(axis=(0, 2)))
    i0, j0 = i_any[0], j_any[0]
    sub = np.asarray(data[i0 : i_any[-1] + 1, j0 : j_any[-1] + 1][:, :, slices], np.float32)
    vol = np.pad(np.ascontiguousarray(np.transpose(sub, (2, 0, 1))), ((0, 0), (1, 1), (1, 1)))
    inside = vol >= 0.5
    xs, ys, ss = [], [], []
    # crossings between j and j+1 (fixed row i): extremes of each (slice, i) group; nonzero is (s, i, j)-sorted
    s, i, j = np.nonzero(inside[:, :, :-1] != inside[:, :, 1:])
    if s.size:
        v0, v1 = vol[s, i, j], vol[s, i, j + 1]
        yv = j + (0.5 - v0) / (v1 - v0)
        for sel in _group_ends(s * vol.shape[1] + i):
            xs.append(i[sel].astype(float))
            ys.append(yv[sel])
            ss.append(s[sel])
    # crossings between i and i+1 (fixed column j): group by (slice, j), sorted by i within the group
    edge = (inside[:, :-1, :] != inside[:, 1:, :]).transpose(0, 2, 1)
    s, j, i = np.nonzero(edge)
    if s.size:
        v0, v1 = vol[s, i, j], vol[s, i + 1, j]
        xv = i + (0.5 - v0) / (v1 - v0)
        for sel in _group_ends(s * vol.shape[2] + j):
            xs.append(xv[sel])
            ys.append(j[sel].astype(float))
            ss.append(s[sel])
    if not ss:
        return np.full(ns, np.nan)
    px = np.concatenate(xs) * dx
    py = np.concatenate(ys) * dy
    ps = np.concatenate(ss)
    order = np.argsort(ps, kind="stable")
    px, py, ps = px[order], py[order], ps[order]
    counts = np.bincount(ps, minlength=ns)
    # centred per slice for precision; the crossings around any inside voxel span a 2-D hull
    safe = np.maximum(counts, 1)
    pts = np.stack([px - (np.bincount(ps, px, ns) / safe)[ps], py - (np.bincount(ps, py, ns) / safe)[ps]], 1)
    bounds = np.concatenate([[0], np.cumsum(counts)]).tolist()
    area = np.full(ns, np.nan)
    for k in np.flatnonzero(counts).tolist():
        area[k] = convex_hull_area(pts[bounds[k] : bounds[k + 1]])
    return area


def convex_hull_area(points: np.ndarray) -> float:
    """Area of the convex hull of 2-D ``points`` (N×2, any units; the area in those units squared).

    Andrew's monotone chain (sort by x then y; lower and upper chains keep only counter-clockwise turns), then the
    shoelace formula. Exact for any point set, including collinear and repeated points (area 0). Written here
    rather than taken from ``scipy.spatial.ConvexHull`` because importing ``scipy.spatial`` costs about half a
    second, more than measuring a whole cord; the tests compare the two."""
    pts = np.unique(np.asarray(points, float), axis=0)  # sorted by x, then y
    if len(pts) < 3:
        return 0.0
    xs, ys = pts[:, 0].tolist(), pts[:, 1].tolist()

    def chain(indices) -> list[int]:
        out: list[int] = []
        for i in indices:
            while len(out) >= 2:
                a, b = out[-2], out[-1]
                if (xs[b] - xs[a]) * (ys[i] - ys[a]) - (ys[b] - ys[a]) * (xs[i] - xs[a]) > 0:
                    break
                out.pop()
            out.append(i)
        return out

    lower, upper = chain(range(len(xs))), chain(range(len(xs) - 1, -1, -1))
    hull = lower[:-1] + upper[:-1]
    hx, hy = np.array([xs[i] for i in hull]), np.array([ys[i] for i in hull])
    return float(0.5 * abs(np.dot(hx, np.roll(hy, -1)) - np.dot(hy, np.roll(hx, -1))))


def _group_ends(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the first and last element of each run of equal values in a sorted key array."""
    change = np.flatnonzero(np.diff(keys)) + 1
    first = np.concatenate([[0], change])
    last = np.concatenate([change - 1, [keys.size - 1]])
    return first, last


def measure_file_columns(
    path: str | os.PathLike,
    *,
    vertfile: str | os.PathLike | None = None,
    vertfile_kind: VertfileKind = "auto",
    discfile: str | os.PathLike | None = None,
    threshold: float | None = None,
    label: int | None = None,
    angle_correction: bool = True,
) -> dict[str, np.ndarray]:
    """Read a mask (and optionally a level or disc file on its grid) and return :func:`per_slice_columns`.

    ``vertfile``: labelled levels (SCT) or a SPINEPS vertebra instance mask, read as ``vertfile_kind``
    says (``auto``: :func:`nnunet_spine.postprocessing.cord.levels.level_file_kind`). ``label``: the cord is that label
    of a label mask (e.g. 60 of a SPINEPS semantic mask). Raises :class:`InputError` naming the offending file.
    """
    mask = load_mask(path, threshold, label)
    vert = load_levels(vertfile, mask) if vertfile is not None else None
    discs = load_levels(discfile, mask) if discfile is not None else None
    return per_slice_columns(
        mask, vertfile=vert, vertfile_kind=vertfile_kind, discs=discs, angle_correction=angle_correction
    )


def measure_file(
    path: str | os.PathLike,
    *,
    vertfile: str | os.PathLike | None = None,
    vertfile_kind: VertfileKind = "auto",
    discfile: str | os.PathLike | None = None,
    threshold: float | None = None,
    label: int | None = None,
    angle_correction: bool = True,
) -> pandas.DataFrame:  # noqa: F821
    """:func:`measure_file_columns` as :func:`compute_csa`'s table; ``attrs["filename"]`` is the path as given."""
    import pandas as pd

    df = pd.DataFrame(
        measure_file_columns(
            path,
            vertfile=vertfile,
            vertfile_kind=vertfile_kind,
            discfile=discfile,
            threshold=threshold,
            label=label,
            angle_correction=angle_correction,
        )
    )
    df.attrs["filename"] = str(path)
    return df


def expand_inputs(paths: Sequence[str | os.PathLike], exclude: Iterable[str | os.PathLike] = ()) -> list[Path]:
    """Files given directly, plus the NIfTI files (``.nii``, ``.nii.gz``) of given folders, sorted by name.

    Paths in ``exclude`` (e.g. the level file sitting in the same folder) are left out. A folder without
    NIfTI files raises :class:`InputError`.
    """
    from nnunet_spine.core.io import is_nifti

    skip = {Path(p).resolve() for p in exclude}
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(c for c in p.iterdir() if c.is_file() and is_nifti(c) and c.resolve() not in skip)
            if not found:
                raise InputError(f"{p}: folder holds no NIfTI file (.nii or .nii.gz)")
            out.extend(found)
        else:
            out.append(p)
    return out
