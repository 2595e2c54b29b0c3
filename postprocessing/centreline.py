"""Smooth cord centreline through per-slice centres of mass: a least-squares cubic B-spline in mm.

Used by :mod:`postprocessing.csa` for the obliquity (angle) correction and reusable wherever a smooth
S-I curve through slice centres is needed (e.g. projecting points onto the cord).
"""

from __future__ import annotations

import math

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
