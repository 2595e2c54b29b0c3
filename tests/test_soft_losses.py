"""Soft-target losses and per-epoch metrics (:mod:`nnunet_spine.trainers.soft_losses`) against independently computed
values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from nnunet_helpers import soft_blob

from nnunet_spine.trainers.soft_losses import (
    SoftTargetLoss,
    adaptive_wing_loss,
    foreground_probability,
    soft_dice_loss,
    soft_metric_sums,
    soft_metrics_from_sums,
)


def _logits_for(p: torch.Tensor) -> torch.Tensor:
    """2-channel logits whose softmax foreground probability is exactly ``p``."""
    p = p.clamp(1e-6, 1 - 1e-6)
    return torch.cat([torch.zeros_like(p), torch.log(p) - torch.log1p(-p)], 1)


@pytest.mark.parametrize(
    "weights",
    [
        dict(weight_mse=1, weight_dice=1),
        dict(weight_mse=1, weight_dice=0),
        dict(weight_mse=0, weight_dice=0, weight_adapwing=1),
        dict(weight_mse=0, weight_dice=1),
    ],
)
def test_losses_are_zero_and_minimal_at_perfect_prediction(weights):
    s = soft_blob()
    assert ((s > 0.05) & (s < 0.95)).float().mean() > 0.02  # fractional targets
    loss = SoftTargetLoss(**weights)
    perfect = float(loss(_logits_for(s), s))
    assert abs(perfect) < 1e-4
    g = torch.Generator().manual_seed(1)
    for scale in (0.02, 0.1, 0.3):
        noisy = torch.clamp(s + scale * torch.randn(s.shape, generator=g), 0, 1)
        assert float(loss(_logits_for(noisy), s)) > perfect + 1e-5
    # binarizing the prediction (what a hard-label loss would push towards) is worse than the soft truth
    assert float(loss(_logits_for((s > 0.5).float()), s)) > perfect + 1e-3
    # gradients are finite at and near the optimum
    logits = _logits_for(s).requires_grad_(True)
    loss(logits, s).backward()
    assert torch.isfinite(logits.grad).all()


def test_soft_dice_loss_by_hand():
    """p = (0.5, 0.5), s = (1, 0): Σps = 0.5, Σp² = 0.5, Σs² = 1, so 1 - 2·0.5 / 1.5 = 1/3 (no smoothing); per
    sample, then averaged: with a second sample p = s = (1, 1) (loss 0) the mean is 1/6; as one batch
    (batch Dice) Σps = 2.5, Σp² = 2.5, Σs² = 3, so 1 - 5 / 5.5 = 1/11."""
    p = torch.tensor([[[0.5, 0.5]], [[1.0, 1.0]]])
    s = torch.tensor([[[1.0, 0.0]], [[1.0, 1.0]]])
    assert float(soft_dice_loss(p[:1], s[:1], smooth=0)) == pytest.approx(1 / 3)
    assert float(soft_dice_loss(p, s, smooth=0)) == pytest.approx(1 / 6)
    assert float(soft_dice_loss(p, s, batch_dice=True, smooth=0)) == pytest.approx(1 / 11)


def test_squared_denominator_soft_dice_vs_classic_form():
    """Why the loss uses Σp²+Σs²: the classic 2Σps/(Σp+Σs) is below 1 at p = s for fractional s."""
    s = soft_blob()
    classic = float(2 * (s * s).sum() / (s.sum() + s.sum()))
    assert classic < 0.97
    assert float(soft_dice_loss(s, s)) == pytest.approx(0.0, abs=1e-6)


def test_mse_against_soft_target_differs_from_mse_against_binarized_target():
    s = soft_blob()
    b = (s > 0.5).float()
    logits = _logits_for(0.1 + 0.8 * s)
    mse = SoftTargetLoss(weight_mse=1, weight_dice=0)
    l_soft, l_bin = float(mse(logits, s)), float(mse(logits, b))
    p = (0.1 + 0.8 * s).double().numpy()
    assert l_soft == pytest.approx(np.mean((p - s.double().numpy()) ** 2), rel=1e-4)
    assert l_bin == pytest.approx(np.mean((p - b.double().numpy()) ** 2), rel=1e-4)
    assert abs(l_soft - l_bin) > 1e-3
    # the perfect soft prediction has zero loss against the soft target, not against the binarized one
    assert float(mse(_logits_for(s), s)) < 1e-8 < float(mse(_logits_for(s), b))
    sums = soft_metric_sums(_logits_for(s), s, b.to(torch.int16))
    m = soft_metrics_from_sums(sums)
    assert m["mse_soft"] < 1e-8 and m["mse_binary"] > 1e-3
    # the logged soft Dice is the one `nnspine evaluate softseg` reports (2 Σps / (Σp + Σs))
    from nnunet_spine.postprocessing.cord.soft_metrics import soft_dice

    p_np = foreground_probability(_logits_for(s)).double().numpy().reshape(s.shape)
    assert m["soft_dice"] == pytest.approx(soft_dice(p_np, s.double().numpy()), rel=1e-5)
    assert m["soft_dice"] < 0.999  # fractional targets: below 1 even for the perfect prediction


def _awing_by_hand(y: float, y_hat: float, omega=14.0, theta=0.5, epsilon=1.0, alpha=2.1) -> float:
    """Wang, Bo & Fuxin (ICCV 2019), eq. 8, written out for one voxel with the math module."""
    d = abs(y - y_hat)
    a = alpha - y
    if d < theta:
        return omega * math.log(1 + (d / epsilon) ** a)
    big_a = omega * (1 / (1 + (theta / epsilon) ** a)) * a * (theta / epsilon) ** (a - 1) * (1 / epsilon)
    big_c = theta * big_a - omega * math.log(1 + (theta / epsilon) ** a)
    return big_a * d - big_c


# (target y, prediction ŷ): differences 0.1, 0.4, 0.3 below θ = 0.5 and 0.8, 0.9, 0.6 above it
AWING_PAIRS = [(0.0, 0.1), (0.3, 0.7), (0.3, 0.0), (1.0, 0.2), (0.0, 0.9), (0.7, 0.1)]


def test_adaptive_wing_loss_equals_the_papers_formula_on_both_branches():
    y = torch.tensor([t for t, _ in AWING_PAIRS], dtype=torch.float64).view(1, 1, -1, 1)
    p = torch.tensor([q for _, q in AWING_PAIRS], dtype=torch.float64).view(1, 1, -1, 1)
    got = float(adaptive_wing_loss(p, y, loss_map_weight=0))
    expected = sum(_awing_by_hand(t, q) for t, q in AWING_PAIRS) / len(AWING_PAIRS)
    assert got == pytest.approx(expected, rel=1e-9)
    # one voxel worked out on paper: ω ln(1 + 0.1^2.1) = 14 ln(1.0079433) = 0.110767
    one = adaptive_wing_loss(torch.tensor([[[[0.1]]]]), torch.tensor([[[[0.0]]]]), loss_map_weight=0)
    assert float(one) == pytest.approx(0.110767, abs=2e-6)


def test_adaptive_wing_loss_is_continuous_at_theta():
    for y in (0.0, 0.3, 1.0):
        below = _awing_by_hand(y, y + 0.5 - 1e-7 if y < 0.5 else y - 0.5 + 1e-7)
        above_t = adaptive_wing_loss(
            torch.tensor([[[[y + 0.5 + 1e-7 if y < 0.5 else y - 0.5 - 1e-7]]]], dtype=torch.float64),
            torch.tensor([[[[y]]]], dtype=torch.float64),
            loss_map_weight=0,
        )
        assert float(above_t) == pytest.approx(below, rel=1e-5)


def test_adaptive_wing_loss_map_weights_the_dilated_foreground():
    """Section 4.3: loss × (10·M + 1), M = (target ≥ 0.2) dilated by one voxel (3×3×3), computed with scipy."""
    from scipy import ndimage

    rng = np.random.default_rng(0)
    y = np.zeros((1, 1, 5, 6, 7))
    y[0, 0, 2, 3, 3] = 0.6
    y[0, 0, 2, 3, 4] = 0.1  # below the threshold: only inside M through dilation
    p = np.clip(y + rng.uniform(-0.7, 0.7, size=y.shape), 0, 1)
    m = ndimage.binary_dilation(y[0, 0] >= 0.2, structure=np.ones((3, 3, 3)))
    per_voxel = np.vectorize(_awing_by_hand)(y[0, 0], p[0, 0])
    expected = float(np.mean(per_voxel * (10 * m + 1)))
    got = float(adaptive_wing_loss(torch.from_numpy(p), torch.from_numpy(y)))
    assert m.sum() == 27 and got == pytest.approx(expected, rel=1e-9)
