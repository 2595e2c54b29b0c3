"""SCT's lesion measures (``nnspine lesions --cord``) as ``sct_analyze_lesion -s`` defines them: of lesion ∩ cord.

SCT's ``measure()`` zeroes the lesion voxels outside the cord mask before measuring; so a lesion straddling the cord
edge is measured by its part inside. The phantom: a cylinder cord (radius 4 mm, tilted by θ in the sagittal plane)
on anisotropic voxels (0.5 × 0.7 × 2 mm, RPI storage) and one lesion whose core straddles the cord's right edge on
slices 10-17 and whose tail, entirely outside the cord, runs over slices 6-21. The expected values are SCT's
formulas evaluated here on the arrays (``n_k`` = lesion ∩ cord voxels counted with numpy on slice ``k``) and the
analytic angle θ, not with the code under test.
"""

from __future__ import annotations

import math
import subprocess

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from nnunet_spine.postprocessing.lesion.lesions import analyze_lesions

ZOOMS = (0.5, 0.7, 2.0)
SHAPE = (40, 60, 30)
RADIUS = 4.0


def straddling_phantom(theta_deg: float):
    """Cord (distance to the tilted axis ≤ 4 mm), lesion and RPI affine. The axis passes through the origin with
    direction (0, sin θ, cos θ); x (R-L) is perpendicular to the tilt plane, so a voxel whose x lies beyond the
    radius is outside the cord whatever θ."""
    t = math.radians(theta_deg)
    i, j, k = np.meshgrid(*(np.arange(n) for n in SHAPE), indexing="ij")
    x, y, z = i * ZOOMS[0] - 10.0, j * ZOOMS[1] - 8.0, k * ZOOMS[2]
    along = y * math.sin(t) + z * math.cos(t)
    cord = np.sqrt(x**2 + (y - along * math.sin(t)) ** 2 + (z - along * math.cos(t)) ** 2) <= RADIUS
    dy = y - z * math.tan(t)  # A-P offset from the axis on the voxel's slice
    near = np.abs(dy) <= 1.5
    core = near & (x >= RADIUS - 2.0) & (x <= RADIUS + 3.0) & (k >= 10) & (k <= 17)  # straddles the edge
    tail = near & (x >= RADIUS + 1.0) & (x <= RADIUS + 3.0) & (k >= 6) & (k <= 21)  # outside the cord
    affine = np.diag([-ZOOMS[0], ZOOMS[1], ZOOMS[2], 1.0])  # RPI storage: +i towards the left
    return cord, core | tail, affine, t


def sct_expected(cord: np.ndarray, lesion: np.ndarray, t: float) -> dict[str, float]:
    """SCT's three measures of lesion ∩ cord (sct_analyze_lesion ``_measure_volume``, ``_measure_length``,
    ``_measure_diameter``) with the analytic cord angle θ on every slice."""
    dx, dy, dz = ZOOMS
    n_k = (lesion & cord).sum(axis=(0, 1))  # voxels of lesion ∩ cord per axial slice
    return {
        "volume_in_cord_mm3": float(n_k.sum() * dx * dy * dz),
        "length_along_cord_mm": float(np.count_nonzero(n_k) * dz / math.cos(t)),
        "max_equivalent_diameter_mm": 2 * math.sqrt(n_k.max() * dx * dy * math.cos(t) / math.pi),
    }


@pytest.mark.parametrize("theta", [0.0, 20.0])
def test_lesion_straddling_the_cord_edge_is_measured_inside_the_cord(theta):
    cord, lesion, affine, t = straddling_phantom(theta)
    inside = lesion & cord
    assert inside.any() and (lesion & ~cord).any()  # really straddles the edge
    # the part inside the cord lies on slices 10-17 only; the whole lesion spans 6-21
    assert np.flatnonzero(inside.any(axis=(0, 1))).tolist() == list(range(10, 18))
    assert np.flatnonzero(lesion.any(axis=(0, 1))).tolist() == list(range(6, 22))
    a = analyze_lesions(lesion, affine, cord=cord, connectivity=18)
    (row,) = a.rows  # one lesion: core and tail are connected
    expected = sct_expected(cord, lesion, t)
    for column, value in expected.items():
        assert row[column] == pytest.approx(value, rel=0.03), column
    assert row["volume_in_cord_mm3"] == pytest.approx(inside.sum() * np.prod(ZOOMS))  # exact: no angle in it
    # by hand at θ = 0: 8 slices × 2 mm; the whole lesion would give 16 slices × 2 mm (SCT does not)
    if theta == 0.0:
        assert row["length_along_cord_mm"] == pytest.approx(16.0)
    whole_length = 16 * ZOOMS[2] / math.cos(t)
    whole_area = lesion.sum(axis=(0, 1)).max() * ZOOMS[0] * ZOOMS[1] * math.cos(t)
    assert abs(row["length_along_cord_mm"] - whole_length) > 0.3 * whole_length
    assert 2 * math.sqrt(whole_area / math.pi) > 1.1 * row["max_equivalent_diameter_mm"]
    assert row["volume_mm3"] == pytest.approx(lesion.sum() * np.prod(ZOOMS))  # ours stays the whole lesion


def test_cli_table_holds_the_in_cord_measures(tmp_path):
    cord, lesion, affine, t = straddling_phantom(20.0)
    for name, data in (("cord", cord), ("lesion", lesion)):
        nib.save(nib.Nifti1Image(data.astype(np.uint8), affine), str(tmp_path / f"{name}.nii.gz"))
    table = tmp_path / "t.csv"
    r = subprocess.run(
        ["nnspine", "lesions", "-i", str(tmp_path / "lesion.nii.gz"), "--cord", str(tmp_path / "cord.nii.gz"),
         "-o", str(tmp_path / "out.nii.gz"), "--table", str(table), "-q"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    row = pd.read_csv(table).iloc[0]
    for column, value in sct_expected(cord, lesion, t).items():
        assert row[column] == pytest.approx(value, rel=0.03), column


def test_lesion_entirely_outside_the_cord_measures_zero():
    """The intersection is empty: volume, length and diameter of lesion ∩ cord are all 0 (not the lesion's own
    4 slices × 2 mm, not NaN); kept in the table (generous dilation) so the columns are visible."""
    cord, _, affine, _ = straddling_phantom(0.0)
    outside = np.zeros_like(cord)
    outside[35:39, 5:9, 10:14] = True  # x ≥ 7.5 mm, beyond the 4 mm radius
    assert not (outside & cord).any()
    (row,) = analyze_lesions(outside, affine, cord=cord, cord_dilation_mm=100.0).rows
    assert row["removed"] == ""
    assert (row["volume_in_cord_mm3"], row["length_along_cord_mm"], row["max_equivalent_diameter_mm"]) == (0, 0, 0)
    assert row["volume_mm3"] == pytest.approx(64 * np.prod(ZOOMS))
    (plain,) = analyze_lesions(outside, affine).rows  # without a cord mask the columns are empty
    assert plain["length_along_cord_mm"] is None and plain["volume_in_cord_mm3"] is None
