"""Where a predicted cord area comes from: the part inside the true cord, and a halo of low values outside it.

For a prediction ``p`` (soft fractions in [0, 1], or a binary mask) and the true partial-volume cord ``t`` (a
phantom's exact fractions) on the same grid, per axial slice (SCT's RPI frame, slices last):

* ``inside_mm2  = Σ p·t · a`` — predicted area that lies inside the true cord (at most the true area);
* ``halo_mm2    = Σ p·(1 − t) · a`` — predicted area outside it (over-segmentation, or a soft halo);
* ``true_mm2    = Σ t · a`` — the true area; ``inside_mm2 + halo_mm2`` is the predicted area,

with ``a`` the in-plane voxel area (mm²). These are areas in the slice plane, without the obliquity correction of
:mod:`nnunet_spine.postprocessing.cord.csa` (the same factor multiplies all three, so their ratios are those of the
corrected CSA). A prediction that overestimates the CSA by a halo has ``inside ≈ true`` and ``halo > 0``; one that is
too wide everywhere has both ``inside ≈ true`` and a large halo of high values — the radial profile tells them apart:
:func:`radial_profile` is the mean predicted value in bins of signed distance (mm) from the true cord edge
(the 0.5 surface of ``t``; negative inside).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from nnunet_spine.core.geometry import reorient
from nnunet_spine.core.io import Image, check_same_grid, voxel_sizes

#: Default bin edges (mm) of the radial profile: from 3 mm inside to 5 mm outside the true cord edge.
PROFILE_EDGES_MM: tuple[float, ...] = tuple(np.round(np.arange(-3.0, 5.0001, 0.25), 2))


def _rpi(img: Image) -> tuple[np.ndarray, np.ndarray]:
    data, affine = reorient(np.asarray(img.data, np.float64), np.asarray(img.affine, float))
    return np.clip(data, 0.0, 1.0), affine


def halo_split(pred: Image, truth: Image, slices: Sequence[int] | None = None) -> dict[str, float]:
    """Mean over ``slices`` (RPI slice indices, I→S; default: every slice the true cord crosses) of
    ``inside_mm2``, ``halo_mm2`` and ``true_mm2`` (module docstring), and ``n_slices``."""
    check_same_grid(pred, truth)
    p, affine = _rpi(pred)
    t, _ = _rpi(truth)
    area = float(np.prod(voxel_sizes(affine)[:2]))
    inside = (p * t).sum(axis=(0, 1)) * area
    halo = (p * (1.0 - t)).sum(axis=(0, 1)) * area
    true = t.sum(axis=(0, 1)) * area
    chosen = np.flatnonzero(true > 0) if slices is None else np.asarray(list(slices), int)
    if chosen.size == 0:
        nan = float("nan")
        return {"inside_mm2": nan, "halo_mm2": nan, "true_mm2": nan, "n_slices": 0}
    return {
        "inside_mm2": float(inside[chosen].mean()),
        "halo_mm2": float(halo[chosen].mean()),
        "true_mm2": float(true[chosen].mean()),
        "n_slices": int(chosen.size),
    }


def signed_edge_distance_mm(truth: Image) -> np.ndarray:
    """Signed distance (mm, world units from the voxel size) of every voxel centre to the true cord edge: the
    boundary of ``truth >= 0.5``, negative inside; same voxel order as ``truth``."""
    from scipy import ndimage

    inside = np.asarray(truth.data) >= 0.5
    zooms = voxel_sizes(truth.affine)
    if not inside.any():
        return np.full(inside.shape, np.inf)
    outside_d = ndimage.distance_transform_edt(~inside, sampling=zooms)
    inside_d = ndimage.distance_transform_edt(inside, sampling=zooms)
    # half a voxel step puts the edge between the last inside and the first outside voxel centre
    return np.where(inside, -(inside_d - 0.5 * min(zooms)), outside_d - 0.5 * min(zooms))


def radial_profile(
    pred: Image, truth: Image, edges_mm: Sequence[float] = PROFILE_EDGES_MM, mask: np.ndarray | None = None
) -> np.ndarray:
    """Mean predicted value in each bin ``[edges[i], edges[i+1])`` of signed distance to the true cord edge
    (:func:`signed_edge_distance_mm`), over the voxels where ``mask`` is true (default: all); NaN for an empty
    bin. Same grid for ``pred``, ``truth`` and ``mask``."""
    check_same_grid(pred, truth)
    d = signed_edge_distance_mm(truth)
    p = np.clip(np.asarray(pred.data, np.float64), 0.0, 1.0)
    keep = np.isfinite(d) if mask is None else (np.asarray(mask, bool) & np.isfinite(d))
    edges = np.asarray(edges_mm, float)
    which = np.digitize(d[keep], edges) - 1
    ok = (which >= 0) & (which < len(edges) - 1)
    sums = np.bincount(which[ok], weights=p[keep][ok], minlength=len(edges) - 1)
    counts = np.bincount(which[ok], minlength=len(edges) - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / counts, np.nan)
