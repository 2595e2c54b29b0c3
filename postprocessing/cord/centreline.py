"""Smooth cord centreline through per-slice centres of mass: a least-squares cubic B-spline in mm.

Used by :mod:`nnunet_spine.postprocessing.cord.csa` for the obliquity (angle) correction and reusable wherever a smooth
S-I curve through slice centres is needed (e.g. projecting points onto the cord).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

#: Approximate distance (mm) between the knots of the centreline spline. A 55 mm cervical segment gets
#: one cubic; a whole spine a smooth piecewise cubic that still follows the lordosis/kyphosis.
KNOT_SPACING_MM = 40.0


def fit_centreline(
    z: np.ndarray,
    xy: np.ndarray,
    weights: np.ndarray | None = None,
    knot_spacing_mm: float = KNOT_SPACING_MM,
) -> tuple[np.ndarray, np.ndarray]:
    """Smooth centreline through per-slice centres: least-squares cubic B-spline of ``xy`` (N×2, mm)
    against ``z`` (N, mm), uniform knots about ``knot_spacing_mm`` apart (fewer when few slices).

    Returns the fitted positions (N×2) and the tangent slopes ``d(xy)/dz`` (N×2) at ``z``. Straight lines
    are reproduced exactly, cubics to ~1e-6 mm (a tiny smoothing penalty bridges knot intervals without
    data). With fewer than 4 slices a straight line is fitted; with one slice the slope is 0.
    """
    z = np.asarray(z, float)
    xy = np.asarray(xy, float)
    n = z.size
    w = np.ones(n) if weights is None else np.asarray(weights, float)
    if n == 1:
        return xy.copy(), np.zeros_like(xy)
    if n < 4:
        sw = np.sqrt(w)[:, None]
        basis = np.stack([np.ones(n), z - z.mean()], 1)
        coef = np.linalg.lstsq(basis * sw, xy * sw, rcond=None)[0]
        return basis @ coef, np.repeat(coef[1:2], n, axis=0)
    z0, span = float(z.min()), float(np.ptp(z))
    n_int = max(1, min(int(round(span / knot_spacing_mm)), n - 3))
    h = span / n_int
    u = (z - z0) / h
    idx = np.clip(np.floor(u).astype(int), 0, n_int - 1)
    t = u - idx
    b = np.stack([(1 - t) ** 3, 3 * t**3 - 6 * t**2 + 4, -3 * t**3 + 3 * t**2 + 3 * t + 1, t**3], 1) / 6.0
    db = np.stack([-((1 - t) ** 2) / 2, (3 * t**2 - 4 * t) / 2, (-3 * t**2 + 2 * t + 1) / 2, t**2 / 2], 1) / h
    m = n_int + 3
    basis = np.zeros((n, m))
    dbasis = np.zeros((n, m))
    rows = np.arange(n)[:, None]
    cols = idx[:, None] + np.arange(4)[None, :]
    basis[rows, cols] = b
    dbasis[rows, cols] = db
    # A whisper of second-difference penalty keeps knot intervals without data determined; it is zero for
    # straight lines, so tilted cords stay exact.
    d2 = np.diff(np.eye(m), 2, axis=0)
    lam = 1e-9 * float((w[:, None] * basis**2).sum())
    sw = np.sqrt(w)[:, None]
    a = np.vstack([basis * sw, math.sqrt(lam) * d2])
    rhs = np.vstack([xy * sw, np.zeros((d2.shape[0], xy.shape[1]))])
    coef = np.linalg.lstsq(a, rhs, rcond=None)[0]
    return basis @ coef, dbasis @ coef


def slice_weights(slice_sums: np.ndarray) -> np.ndarray:
    """Weights of the per-slice centres in the centreline fit: ``min(1, s / median(s))²`` of each slice's
    summed mask ``s`` (voxel fractions), so that partial end slices count less."""
    s = np.asarray(slice_sums, float)
    return np.minimum(1.0, s / np.median(s)) ** 2


def cord_centreline(
    weights: np.ndarray, zooms_mm: Sequence[float], near_zero: float = 1e-6
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Smooth centreline of a cord mask in RPI voxel order (slices last), in RPI voxel-aligned mm.

    ``weights``: mask values (fractions in [0, 1]); ``zooms_mm``: voxel size along the three axes.
    Returns ``slices`` (indices of the slices holding cord, I→S), ``centres`` (ns×3 mm: the fitted x, y and
    the slice's z = index × dz) and ``step`` (ns×3 mm: the centreline's displacement per slice,
    ``(dx/dk, dy/dk, dz)``). Coordinates are ``index × voxel size`` along each RPI axis (an isometry of
    world space: distances in mm are true).
    """
    dx, dy, dz = (float(v) for v in zooms_mm)
    data = np.asarray(weights)
    ii, jj, kk = np.nonzero(data > near_zero)
    f = np.asarray(data[ii, jj, kk], float)
    s0_all = np.bincount(kk, f, minlength=data.shape[2])
    slices = np.flatnonzero(s0_all > near_zero)
    if slices.size == 0:
        raise ValueError("cord_centreline: mask is empty")
    pos = np.full(data.shape[2], -1)
    pos[slices] = np.arange(slices.size)
    sl = pos[kk]
    s0 = s0_all[slices]
    cx = np.bincount(sl, f * ii * dx, slices.size) / s0
    cy = np.bincount(sl, f * jj * dy, slices.size) / s0
    z = slices * dz
    fit, slope = fit_centreline(z, np.stack([cx, cy], 1), slice_weights(s0))
    centres = np.column_stack([fit, z])
    step = np.column_stack([slope * dz, np.full(slices.size, dz)])
    return slices, centres, step


def project_onto_centreline(
    points_mm: np.ndarray, slices: np.ndarray, centres: np.ndarray, step: np.ndarray
) -> np.ndarray:
    """Fractional slice index of the centreline point nearest each point (N×3 mm, same frame as
    :func:`cord_centreline`'s output): the nearest centreline sample, refined along its local tangent.
    Points beyond the cord's ends are placed on the end tangent's extension (index below the first or
    above the last cord slice)."""
    p = np.atleast_2d(np.asarray(points_mm, float))
    d2 = ((p[:, None, :] - centres[None, :, :]) ** 2).sum(-1)
    near = d2.argmin(1)
    off = p - centres[near]
    t = step[near]
    return slices[near] + (off * t).sum(1) / (t * t).sum(1)
