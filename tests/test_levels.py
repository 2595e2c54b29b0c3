"""``nnunet_spine.postprocessing.cord.levels``: slice → SCT level from a vertebra instance mask (SPINEPS
``seg-vert``)."""

from __future__ import annotations

import numpy as np
import pytest

from nnunet_spine.core.geometry import SCT_RPI, reorient
from nnunet_spine.core.io import Image, InputError
from nnunet_spine.phantoms.spine import build_spine_model, render_spine, slice_levels_truth
from nnunet_spine.postprocessing.cord import csa
from nnunet_spine.postprocessing.cord.levels import levels_from_instance_mask


def _column(nz: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """A straight vertical cord (one voxel column at x=1, y=1) on a 6×6×nz RPI grid, and an empty instance mask."""
    cord = np.zeros((6, 6, nz), np.float32)
    cord[1, 1, :] = 1.0
    return cord, np.zeros((6, 6, nz), np.uint8)


def test_instance_levels_by_hand():
    cord, inst = _column()
    inst[3:5, 2:5, 20:28] = 3  # C3, centre of mass at slice 23.5
    inst[3:5, 2:5, 17:19] = 103  # C3-C4 disc, centre at slice 17.5
    inst[3:5, 2:5, 8:17] = 4  # C4, centre at slice 12
    got = levels_from_instance_mask(cord, inst, (1.0, 1.0, 1.0))
    # disc at 17.5 splits C3/C4; C3 spans 17.5..29.5 (symmetric about 23.5), C4 6.5..17.5 (about 12)
    expected = np.zeros(30, int)
    expected[18:30] = 3
    expected[7:18] = 4
    np.testing.assert_array_equal(got, expected)
    inst[inst == 103] = 0  # without the disc: midway between the centres of mass, 17.75
    np.testing.assert_array_equal(levels_from_instance_mask(cord, inst, (1.0, 1.0, 1.0)), expected)
    inst[3:5, 2:5, 0:5] = 26  # sacrum (VerSe 26) → SCT S1 = 25; C4 now ends midway to it, at (12 + 2) / 2 = 7
    got = levels_from_instance_mask(cord, inst, (1.0, 1.0, 2.0))  # voxel size scales positions alike
    assert got[7] == 25 and got[8] == 4 and got[0] == 25


def test_instance_levels_follow_slice_thickness_and_missing_cord():
    cord, inst = _column()
    inst[3:5, 2:5, 20:28] = 3
    inst[3:5, 2:5, 8:17] = 4
    cord[:, :, 25:] = 0  # cord ends at slice 24: the slices above it have no level
    got = levels_from_instance_mask(cord, inst, (0.5, 0.5, 3.0))
    assert (got[25:] == 0).all() and got[24] == 3 and got[10] == 4


@pytest.mark.parametrize(
    "values, expect", [((7, 300), "not a vertebra instance mask"), ((105,), "no vertebra"), ((25,), "L6")]
)
def test_instance_levels_bad_masks(values, expect):
    cord, inst = _column()
    inst = inst.astype(np.int16)
    for n, v in enumerate(values):
        inst[3, 3, 5 + 10 * n : 10 + 10 * n] = v
    with pytest.raises(InputError, match=expect) as err:
        levels_from_instance_mask(cord, inst, (1.0, 1.0, 1.0), name="vert.nii.gz")
    assert str(err.value).startswith("vert.nii.gz: ")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_instance_levels_on_spine_phantom(seed):
    model = build_spine_model(5, seed=seed)  # L1-L5 on a sacrum; the cord ends mid-L5
    r = render_spine(model)
    cord = (r["semantic"] == 60).astype(np.float32)
    df = csa.compute_csa(Image(cord, r["affine"]), instances=Image(r["instance"], r["affine"]))
    cord_rpi, aff_rpi = reorient(cord, r["affine"], SCT_RPI)
    slices, got = df["slice"].to_numpy(), df["level"].to_numpy()
    truth = slice_levels_truth(model, cord_rpi, aff_rpi, slices)
    inner = truth != 20  # L2-L5: both boundaries are discs the model places
    differ = np.flatnonzero(inner & (got != truth))
    boundaries = np.flatnonzero(np.diff(truth) != 0)
    assert len(differ) <= 1 and all(np.min(np.abs(boundaries + 0.5 - k)) <= 1.5 for k in differ)
    assert got[0] == 24  # the cord's lowest slice is in L5
    # L1 (the top, no disc above it in the mask) spans about one vertebra above the L1-L2 disc
    l1 = slices[got == 20]
    l2_height = (got == 21).sum()
    assert np.count_nonzero(truth[got == 20] != 20) <= 1  # at most the boundary slice with L2
    assert abs(len(l1) - l2_height) <= 0.2 * l2_height
    assert (got[slices > l1.max()] == 0).all()
    ins = r["instance"].copy()
    ins[(ins > 100) & (ins < 200)] = 0  # no discs: boundaries midway between the vertebrae's centres
    no_discs = csa.compute_csa(Image(cord, r["affine"]), instances=Image(ins, r["affine"]))["level"].to_numpy()
    assert np.count_nonzero(inner & (no_discs != truth)) <= 4
