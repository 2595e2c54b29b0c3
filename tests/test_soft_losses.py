"""Soft-target losses and per-epoch metrics (:mod:`trainers.soft_losses`) against independently computed values."""

from __future__ import annotations

import pytest
import torch

from nnunet_helpers import soft_blob

from trainers import soft_losses as losses


def _logits_for(p: torch.Tensor) -> torch.Tensor:
    """2-channel logits whose softmax foreground probability is exactly ``p``."""
    p = p.clamp(1e-6, 1 - 1e-6)
    return torch.cat([torch.zeros_like(p), torch.log(p) - torch.log1p(-p)], 1)


@pytest.mark.parametrize("weights", [dict(weight_mse=1, weight_dice=1), dict(weight_mse=1, weight_dice=0),
                                     dict(weight_mse=0, weight_dice=0, weight_adapwing=1),
                                     dict(weight_mse=0, weight_dice=1)])
def test_losses_are_zero_and_minimal_at_perfect_prediction(weights):
    s = soft_blob()
    assert ((s > 0.05) & (s < 0.95)).float().mean() > 0.02  # fractional targets
    loss = losses.SoftTargetLoss(**weights)
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


def test_squared_denominator_soft_dice_vs_classic_form():
    """Why the loss uses Σp²+Σs²: the classic 2Σps/(Σp+Σs) is below 1 at p = s for fractional s."""
    s = soft_blob()
    classic = float(2 * (s * s).sum() / (s.sum() + s.sum()))
    assert classic < 0.97
    assert float(losses.soft_dice_loss(s, s)) == pytest.approx(0.0, abs=1e-6)


def test_mse_against_soft_target_differs_from_mse_against_binarized_target():
    s = soft_blob()
    b = (s > 0.5).float()
    logits = _logits_for(0.1 + 0.8 * s)
    mse = losses.SoftTargetLoss(weight_mse=1, weight_dice=0)
    l_soft, l_bin = float(mse(logits, s)), float(mse(logits, b))
    assert abs(l_soft - l_bin) > 1e-3
    # the perfect soft prediction has zero loss against the soft target, not against the binarized one
    assert float(mse(_logits_for(s), s)) < 1e-8 < float(mse(_logits_for(s), b))
    sums = losses.soft_metric_sums(_logits_for(s), s, b.to(torch.int16))
    m = losses.soft_metrics_from_sums(sums)
    assert m["mse_soft"] < 1e-8 and m["mse_binary"] > 1e-3
    # the logged soft Dice is the one `nnspine evaluate softseg` reports (2 Σps / (Σp + Σs))
    from postprocessing.metrics import soft_dice

    p_np = losses.foreground_probability(_logits_for(s)).double().numpy().reshape(s.shape)
    assert m["soft_dice"] == pytest.approx(soft_dice(p_np, s.double().numpy()), rel=1e-5)
    assert m["soft_dice"] < 0.999  # fractional targets: below 1 even for the perfect prediction


def test_adaptive_wing_loss_matches_formula_and_is_continuous_at_theta():
    """Wang et al. 2019: ω ln(1+(d/ε)^(α−y)) below θ, A d − C above, continuous at d = θ."""
    y = torch.tensor([0.0, 0.3, 1.0])
    for d in (0.1, 0.49999, 0.50001, 0.9):
        p = torch.clamp(y + d, max=1.0) if d < 0.5 else (1 - y)
        got = losses.adaptive_wing_loss(p.view(1, 1, 3, 1), y.view(1, 1, 3, 1), loss_map_weight=0)
        dd = (y - p).abs()
        a = 2.1 - y
        A = 14 * (1 / (1 + 0.5 ** a)) * a * 0.5 ** (a - 1)
        C = 0.5 * A - 14 * torch.log1p(0.5 ** a)
        ref = torch.where(dd < 0.5, 14 * torch.log1p(dd ** a), A * dd - C).mean()
        assert float(got) == pytest.approx(float(ref), rel=1e-5)
    below = losses.adaptive_wing_loss(torch.tensor([0.5 - 1e-5]).view(1, 1, 1, 1), torch.zeros(1, 1, 1, 1),
                                  loss_map_weight=0)
    above = losses.adaptive_wing_loss(torch.tensor([0.5 + 1e-5]).view(1, 1, 1, 1), torch.zeros(1, 1, 1, 1),
                                  loss_map_weight=0)
    assert float(below) == pytest.approx(float(above), rel=1e-3)
