"""The hand-written geometry under ``nnspine csa`` against library implementations on random input:
the convex hull behind ``solidity`` (``scipy.spatial.ConvexHull`` of scikit-image's marching-squares
contour) and the centreline fit (``scipy.interpolate.make_lsq_spline`` with the same knots)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from scipy.interpolate import make_lsq_spline
from scipy.spatial import ConvexHull
from skimage.measure import find_contours

from nnunet_spine.postprocessing.cord.centreline import KNOT_SPACING_MM, fit_centreline, project_onto_centreline
from nnunet_spine.postprocessing.cord.csa import _hull_areas, convex_hull_area


# ============================================================================================ convex hull
def _random_slices(rng: np.random.Generator, shape=(40, 36), n=6, soft=True) -> np.ndarray:
    """``n`` slices of random blobs: smoothed noise, thresholded or kept soft (values in [0, 1])."""
    out = np.zeros((*shape, n))
    for k in range(n):
        field = ndimage.gaussian_filter(rng.normal(size=shape), sigma=rng.uniform(2.0, 4.0))
        field[:3], field[-3:], field[:, :3], field[:, -3:] = -1, -1, -1, -1  # keep the blobs inside
        level = np.quantile(field, rng.uniform(0.75, 0.95))
        blob = 1.0 / (1.0 + np.exp(-(field - level) / (0.05 * field.std()))) if soft else (field > level) * 1.0
        blob[blob < 1e-3] = 0.0
        out[:, :, k] = blob
    return out


def _scipy_hull_area(slice2d: np.ndarray, dx: float, dy: float) -> float:
    """Area (mm²) of the convex hull of the slice's 0.5 iso-contour, by scikit-image + SciPy."""
    padded = np.pad(slice2d, 1)
    points = np.concatenate(find_contours(padded, 0.5)) - 1.0  # marching squares, back to unpadded indices
    return float(ConvexHull(points * [dx, dy]).volume)  # a 2-D hull's "volume" is its area


@pytest.mark.parametrize("soft", [True, False], ids=["soft", "binary"])
@pytest.mark.parametrize("seed", range(4))
def test_hull_areas_match_scipy_convex_hull(seed, soft):
    rng = np.random.default_rng(seed)
    data = _random_slices(rng, soft=soft)
    dx, dy = rng.uniform(0.3, 1.2, size=2)
    slices = np.arange(data.shape[2])
    ours = _hull_areas(data, slices, dx, dy)
    truth = np.array([_scipy_hull_area(data[:, :, k], dx, dy) for k in slices])
    np.testing.assert_allclose(ours, truth, rtol=1e-6)  # float32 crossings: ~1e-7


@pytest.mark.parametrize("seed", range(20))
def test_convex_hull_area_equals_qhull_on_random_point_sets(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 400))
    points = rng.normal(size=(n, 2)) * rng.uniform(0.1, 10, size=2)
    if seed % 4 == 0:  # repeated points and points on the hull's edges
        points = np.vstack([points, points[:5], np.round(points[:20])])
    assert convex_hull_area(points) == pytest.approx(ConvexHull(points).volume, rel=1e-12)


def test_convex_hull_area_of_degenerate_sets():
    assert convex_hull_area(np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0], [1.0, 1.0]])) == 0.0  # collinear
    assert convex_hull_area(np.array([[0.0, 0.0], [1.0, 0.0]])) == 0.0
    square = np.array([[0, 0], [2, 0], [2, 2], [0, 2], [1, 1], [1, 0], [0, 1]], float)  # inner and edge points
    assert convex_hull_area(square) == 4.0


def test_hull_areas_of_a_subset_and_an_empty_slice():
    data = _random_slices(np.random.default_rng(9), n=4)
    data[:, :, 2] = 0.0
    ours = _hull_areas(data, np.array([0, 2, 3]), 0.5, 0.5)
    assert np.isnan(ours[1])
    np.testing.assert_allclose(ours[[0, 2]], [_scipy_hull_area(data[:, :, k], 0.5, 0.5) for k in (0, 3)], rtol=1e-6)


# ============================================================================================ centreline
def _knots(z: np.ndarray, knot_spacing_mm: float) -> np.ndarray:
    """The uniform cubic knot vector fit_centreline's documentation describes (intervals about
    ``knot_spacing_mm`` long, at most n - 3 of them), extended by three knots at each end."""
    span = float(z.max() - z.min())
    n_int = max(1, min(int(round(span / knot_spacing_mm)), z.size - 3))
    return z.min() + span / n_int * np.arange(-3, n_int + 4)


@pytest.mark.parametrize("seed", range(5))
def test_fit_centreline_is_the_least_squares_spline(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(30, 300))
    spacing = float(rng.uniform(0.5, 4.0))
    z = np.arange(n) * spacing + rng.uniform(-0.2, 0.2, n) * spacing  # irregular, increasing slices (mm)
    z.sort()
    xy = np.cumsum(rng.normal(size=(n, 2)), axis=0) + rng.normal(0, 0.5, (n, 2))  # a wandering noisy path (mm)
    w = rng.uniform(0.1, 1.0, n)
    knot_spacing = float(rng.uniform(10.0, 60.0)) if seed else KNOT_SPACING_MM
    fit, slope = fit_centreline(z, xy, w, knot_spacing)
    spline = make_lsq_spline(z, xy, _knots(z, knot_spacing), k=3, w=np.sqrt(w))  # minimises Σ w (s - xy)²
    scale = float(np.ptp(xy))
    np.testing.assert_allclose(fit, spline(z), atol=1e-5 * scale)  # the smoothing whisper: ~1e-6 of the scale
    np.testing.assert_allclose(slope, spline.derivative()(z), atol=1e-5 * scale)


def test_fit_centreline_few_slices_is_a_weighted_line():
    z = np.array([0.0, 3.0, 7.0])
    xy = np.array([[1.0, 2.0], [2.5, 2.0], [2.0, 5.0]])
    w = np.array([1.0, 0.25, 0.5])
    fit, slope = fit_centreline(z, xy, w)
    for c in range(2):
        b, a = np.polyfit(z, xy[:, c], 1, w=np.sqrt(w))
        np.testing.assert_allclose(fit[:, c], a + b * z, atol=1e-12)
        np.testing.assert_allclose(slope[:, c], b, atol=1e-12)
    one, flat = fit_centreline(z[:1], xy[:1])
    np.testing.assert_array_equal(one, xy[:1]) and np.testing.assert_array_equal(flat, 0.0)


def test_projection_onto_a_tilted_centreline():
    slices = np.arange(10, 20)
    step = np.tile([0.5, 0.0, 1.0], (10, 1))  # x advances 0.5 mm per 1 mm slice
    centres = np.column_stack([0.5 * (slices - 10), np.zeros(10), slices * 1.0])
    tangent = step[0] / np.linalg.norm(step[0])
    normal = np.array([tangent[2], 0.0, -tangent[0]])
    points = np.array(
        [
            centres[3] + 4.0 * normal,  # beside slice 13: projects onto it
            centres[5] + 1.5 * np.linalg.norm(step[0]) * tangent,  # 1.5 slices further up
            centres[0] - 3.0 * np.linalg.norm(step[0]) * tangent + normal,
        ]
    )  # below the cord's end
    np.testing.assert_allclose(project_onto_centreline(points, slices, centres, step), [13.0, 16.5, 7.0])
