"""Voxel losses of the lesion trainer variants (:mod:`nnunet_spine.trainers.lesion_losses`) against numpy written from
the definitions (focal: Lin et al. 2017, FL = −(1 − p_t)^γ log p_t; top-k: mean of the k % largest voxel losses)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nnunet_spine.trainers.lesion_losses import FocalBCEWithLogitsLoss, FocalCELoss, TopKBCEWithLogitsLoss, TopKCELoss


def _softmax_ce(z: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Per-voxel cross-entropy of logits ``z`` (B, C, N) against labels ``t`` (B, N), numpy."""
    e = np.exp(z - z.max(1, keepdims=True))
    p = e / e.sum(1, keepdims=True)
    pt = np.take_along_axis(p, t[:, None].astype(int), 1)[:, 0]
    return -np.log(pt)


def _bce(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    p = 1 / (1 + np.exp(-z))
    return -np.log(np.where(y > 0, p, 1 - p))


@pytest.fixture
def plain():
    rng = np.random.default_rng(0)
    z = rng.normal(0, 2, size=(2, 3, 4, 5, 6))
    t = rng.integers(0, 3, size=(2, 4, 5, 6))
    return z, t


def test_focal_ce_by_hand_and_against_numpy(plain):
    # one voxel, logits (0, 0), true class 1: p_t = 0.5, CE = ln 2, FL = 0.25 ln 2 = 0.1732868
    one = FocalCELoss(gamma=2)(torch.zeros(1, 2, 1, 1, 1), torch.ones(1, 1, 1, 1, dtype=torch.long))
    assert float(one) == pytest.approx(0.25 * np.log(2), rel=1e-6)
    z, t = plain
    ce = _softmax_ce(z.reshape(2, 3, -1), t.reshape(2, -1))
    expected = np.mean((1 - np.exp(-ce)) ** 2 * ce)
    got = FocalCELoss(gamma=2)(torch.from_numpy(z), torch.from_numpy(t)[:, None])
    assert float(got) == pytest.approx(expected, rel=1e-6)
    # γ = 0 is the cross-entropy
    assert float(FocalCELoss(gamma=0)(torch.from_numpy(z), torch.from_numpy(t))) == pytest.approx(ce.mean(), rel=1e-6)


def test_focal_ce_averages_over_voxels_that_are_not_ignored(plain):
    z, t = plain
    t = t.copy()
    t[0, :2] = 7  # ignore label
    valid = t != 7
    ce = _softmax_ce(z.reshape(2, 3, -1), np.where(valid, t, 0).reshape(2, -1)).reshape(t.shape)
    expected = ((1 - np.exp(-ce)) ** 2 * ce)[valid].mean()
    got = FocalCELoss(gamma=2, ignore_index=7)(torch.from_numpy(z), torch.from_numpy(t))
    assert float(got) == pytest.approx(expected, rel=1e-6)


def test_top_k_ce_is_the_mean_of_the_hardest_ten_percent(plain):
    z, t = plain
    ce = np.sort(_softmax_ce(z.reshape(2, 3, -1), t.reshape(2, -1)).ravel())[::-1]
    n = int(ce.size * 10 / 100)  # 240 voxels -> 24
    assert n == 24
    got = TopKCELoss(k=10)(torch.from_numpy(z), torch.from_numpy(t)[:, None])
    assert float(got) == pytest.approx(ce[:n].mean(), rel=1e-6)


def test_region_losses_against_numpy():
    rng = np.random.default_rng(1)
    z = rng.normal(0, 2, size=(2, 2, 4, 5, 6))
    y = (rng.uniform(size=z.shape) < 0.3).astype(np.float32)
    bce = _bce(z, y)
    focal = (1 - np.exp(-bce)) ** 2 * bce
    zt, yt = torch.from_numpy(z), torch.from_numpy(y)
    assert float(FocalBCEWithLogitsLoss(gamma=2)(zt, yt)) == pytest.approx(focal.mean(), rel=1e-6)
    np.testing.assert_allclose(FocalBCEWithLogitsLoss(gamma=2, reduction="none")(zt, yt).numpy(), focal, rtol=1e-6)
    top = np.sort(bce.ravel())[::-1][: int(bce.size * 10 / 100)]
    assert float(TopKBCEWithLogitsLoss(k=10)(zt, yt)) == pytest.approx(top.mean(), rel=1e-6)
    with pytest.raises(ValueError, match="reduction"):
        FocalBCEWithLogitsLoss(reduction="sum")
