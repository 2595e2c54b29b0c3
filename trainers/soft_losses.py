"""Losses and per-epoch validation metrics of the soft-segmentation trainers.

All act on the cord probability ``p = softmax(logits)[:, 1]`` of a stock 2-channel (background, cord) head,
against the soft target ``s`` in [0, 1]:

* ``MSE = mean((p - s)²)``;
* soft Dice loss ``1 - (2 Σ p s + ε) / (Σ p² + Σ s² + ε)`` (squared denominator, Milletari et al. 2016): it is
  0 exactly when ``p = s``, also for fractional ``s`` (the usual ``Σp + Σs`` form is not minimal at ``p = s``);
* adaptive wing loss (Wang et al., ICCV 2019), with its weighted loss map.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def foreground_probability(logits: torch.Tensor) -> torch.Tensor:
    """Cord probability ``softmax(logits)[:, 1:2]`` of a 2-channel (background, cord) output, in float32."""
    return torch.softmax(logits.float(), 1)[:, 1:2]


def _as_float_target(target: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    target = target.float()
    if target.ndim == like.ndim - 1:
        target = target[:, None]
    if target.shape != like.shape:
        raise ValueError(f"soft target shape {tuple(target.shape)} does not match prediction {tuple(like.shape)}")
    return target


def soft_dice_loss(p: torch.Tensor, s: torch.Tensor, batch_dice: bool = False, smooth: float = 1e-5) -> torch.Tensor:
    """``1 - (2 Σ p s + smooth) / (Σ p² + Σ s² + smooth)``, per sample (or over the batch), averaged.

    Zero if and only if ``p == s`` (since ``p² + s² ≥ 2 p s``), also for fractional targets.
    """
    axes = tuple(range(2, p.ndim))
    if batch_dice:
        axes = (0,) + axes
    inter = (p * s).sum(axes)
    denom = (p * p).sum(axes) + (s * s).sum(axes)
    dice = (2 * inter + smooth) / (denom + smooth)
    return 1 - dice.mean()


def adaptive_wing_loss(
    p: torch.Tensor,
    s: torch.Tensor,
    omega: float = 14.0,
    theta: float = 0.5,
    epsilon: float = 1.0,
    alpha: float = 2.1,
    loss_map_weight: float = 10.0,
    loss_map_threshold: float = 0.2,
) -> torch.Tensor:
    """Adaptive wing loss (Wang, Bo & Fuxin, ICCV 2019, eq. 8) with its weighted loss map (section 4.3).

    With ``d = |s - p|`` and exponent ``a = alpha - s``::

        AWing = omega * ln(1 + (d / epsilon)^a)        if d < theta
              = A * d - C                               otherwise
        A = omega / (1 + (theta/epsilon)^a) * a * (theta/epsilon)^(a - 1) / epsilon
        C = theta * A - omega * ln(1 + (theta/epsilon)^a)

    The loss map ``M`` is the target thresholded at ``loss_map_threshold`` and dilated by one voxel (3×3(×3));
    the returned loss is ``mean(AWing * (loss_map_weight * M + 1))``. Zero when ``p == s``.
    """
    d = (s - p).abs()
    a = alpha - s
    ratio = theta / epsilon
    A = (
        omega
        * (1.0 / (1.0 + torch.pow(torch.full_like(a, ratio), a)))
        * a
        * torch.pow(torch.full_like(a, ratio), a - 1.0)
        / epsilon
    )
    C = theta * A - omega * torch.log1p(torch.pow(torch.full_like(a, ratio), a))
    small = omega * torch.log1p(torch.pow(d / epsilon, a))
    large = A * d - C
    loss = torch.where(d < theta, small, large)
    if loss_map_weight:
        with torch.no_grad():
            m = (s >= loss_map_threshold).float()
            pool = torch.nn.functional.max_pool3d if s.ndim == 5 else torch.nn.functional.max_pool2d
            m = pool(m, kernel_size=3, stride=1, padding=1)
        loss = loss * (loss_map_weight * m + 1.0)
    return loss.mean()


class SoftTargetLoss(nn.Module):
    """Weighted sum of MSE, soft Dice and adaptive wing loss between ``softmax(logits)[:, 1]`` and a soft target.

    ``forward(logits, soft_target)``: logits ``(B, 2, *spatial)``, soft target ``(B, 1, *spatial)`` (or
    ``(B, *spatial)``) in [0, 1]. Terms with weight 0 are not computed.
    """

    def __init__(
        self,
        weight_mse: float = 1.0,
        weight_dice: float = 1.0,
        weight_adapwing: float = 0.0,
        batch_dice: bool = False,
        smooth: float = 1e-5,
        adapwing_kwargs: dict | None = None,
    ):
        super().__init__()
        if not any((weight_mse, weight_dice, weight_adapwing)):
            raise ValueError("at least one loss weight must be non-zero")
        self.weight_mse = float(weight_mse)
        self.weight_dice = float(weight_dice)
        self.weight_adapwing = float(weight_adapwing)
        self.batch_dice = bool(batch_dice)
        self.smooth = float(smooth)
        self.adapwing_kwargs = dict(adapwing_kwargs or {})

    def forward(self, logits: torch.Tensor, soft_target: torch.Tensor) -> torch.Tensor:
        p = foreground_probability(logits)
        s = _as_float_target(soft_target, p)
        loss = p.new_zeros(())
        if self.weight_mse:
            loss = loss + self.weight_mse * torch.mean((p - s) ** 2)
        if self.weight_dice:
            loss = loss + self.weight_dice * soft_dice_loss(p, s, self.batch_dice, self.smooth)
        if self.weight_adapwing:
            loss = loss + self.weight_adapwing * adaptive_wing_loss(p, s, **self.adapwing_kwargs)
        return loss

    def extra_repr(self) -> str:
        return (
            f"weight_mse={self.weight_mse}, weight_dice={self.weight_dice}, "
            f"weight_adapwing={self.weight_adapwing}, batch_dice={self.batch_dice}"
        )


# ============================================================================================= metrics
def soft_metric_sums(logits: torch.Tensor, soft_target: torch.Tensor, label: torch.Tensor) -> np.ndarray:
    """Sums for the epoch-level soft metrics of a batch (see :func:`soft_metrics_from_sums`):
    ``[Σ p·s, Σ p, Σ s, Σ (p − s)², Σ (p − b)², number of voxels]``.

    ``label`` is nnU-Net's integer target (cord = 1); ``b = (label > 0)`` is the binarized target.
    """
    with torch.no_grad():
        p = foreground_probability(logits)
        s = _as_float_target(soft_target, p)
        b = _as_float_target((label > 0), p)
        sums = torch.stack(
            [
                (p * s).sum(),
                p.sum(),
                s.sum(),
                ((p - s) ** 2).sum(),
                ((p - b) ** 2).sum(),
                torch.tensor(float(p.numel()), device=p.device),
            ]
        )
    return sums.double().cpu().numpy()


def soft_metrics_from_sums(sums: np.ndarray) -> dict:
    """``soft_dice`` (2 Σps / (Σp + Σs) over the whole epoch: the definition ``nnspine evaluate softseg`` uses,
    :func:`nnunet_spine.postprocessing.cord.soft_metrics.soft_dice`), ``mse_soft`` (vs the soft target) and
    ``mse_binary`` (vs nnU-Net's binarized label) from summed :func:`soft_metric_sums`."""
    ps, p_sum, s_sum, e_soft, e_bin, n = (float(x) for x in sums)
    denom = p_sum + s_sum
    return {
        "soft_dice": 1.0 if denom == 0 else 2.0 * ps / denom,
        "mse_soft": e_soft / max(n, 1.0),
        "mse_binary": e_bin / max(n, 1.0),
    }
