"""Voxel-wise losses of the lesion trainer variants, drop-in replacements for the cross-entropy term of
nnU-Net's Dice + CE losses (``DC_and_CE_loss.ce`` for plain labels, ``DC_and_BCE_loss.ce`` for regions).

Each takes the arguments nnU-Net passes to that term: logits ``(B, C, *spatial)`` and, for plain labels, the
integer target ``(B, *spatial)`` (or ``(B, 1, *spatial)``); for regions, the one-hot float target
``(B, C, *spatial)``.

* Focal loss (Lin et al., ICCV 2017): ``FL = (1 − p_t)^γ · CE`` per voxel, ``p_t = exp(−CE)`` the probability
  of the true class (or region state); well-classified voxels weigh less, so the many easy background voxels
  do not drown the few lesion voxels.
* Top-k loss (as nnU-Net's ``TopKLoss``): the mean of the ``k`` % largest voxel losses.
"""

from __future__ import annotations

import torch
from nnunetv2.training.loss.robust_ce_loss import RobustCrossEntropyLoss
from torch import nn
from torch.nn import functional as F


def _top_k_mean(losses: torch.Tensor, k: float) -> torch.Tensor:
    """Mean of the ``k`` % largest values of ``losses`` (at least one)."""
    flat = losses.reshape(-1)
    n = max(1, int(flat.numel() * k / 100))
    return torch.topk(flat, n, sorted=False)[0].mean()


class FocalCELoss(RobustCrossEntropyLoss):
    """Softmax focal loss for plain labels, averaged over the voxels that are not ``ignore_index``."""

    def __init__(self, gamma: float = 2.0, ignore_index: int = -100):
        super().__init__(ignore_index=ignore_index, reduction="none")
        self.gamma = float(gamma)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        ce = super().forward(input, target)  # per voxel; 0 where ignored
        focal = (-torch.expm1(-ce)).pow(self.gamma) * ce  # 1 - p_t, accurate for small losses
        labels = target[:, 0] if target.ndim == input.ndim else target
        valid = (labels.long() != self.ignore_index).sum()
        return focal.sum() / valid.clamp_min(1)

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, ignore_index={self.ignore_index}"


class TopKCELoss(RobustCrossEntropyLoss):
    """Cross-entropy of the ``k`` % hardest voxels, for plain labels (ignored voxels have loss 0)."""

    def __init__(self, k: float = 10.0, ignore_index: int = -100):
        super().__init__(ignore_index=ignore_index, reduction="none")
        self.k = float(k)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return _top_k_mean(super().forward(input, target), self.k)

    def extra_repr(self) -> str:
        return f"k={self.k}, ignore_index={self.ignore_index}"


class FocalBCEWithLogitsLoss(nn.Module):
    """Sigmoid focal loss per region channel; ``reduction='none'`` returns the voxel map (nnU-Net masks it)."""

    def __init__(self, gamma: float = 2.0, reduction: str = "mean"):
        super().__init__()
        if reduction not in ("mean", "none"):
            raise ValueError(f"reduction {reduction!r}: expected 'mean' or 'none'")
        self.gamma = float(gamma)
        self.reduction = reduction

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        bce = F.binary_cross_entropy_with_logits(input, target.to(input.dtype), reduction="none")
        focal = (-torch.expm1(-bce)).pow(self.gamma) * bce
        return focal.mean() if self.reduction == "mean" else focal

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, reduction={self.reduction}"


class TopKBCEWithLogitsLoss(nn.Module):
    """Binary cross-entropy of the ``k`` % hardest voxels over all region channels (no ignore label)."""

    def __init__(self, k: float = 10.0):
        super().__init__()
        self.k = float(k)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        bce = F.binary_cross_entropy_with_logits(input, target.to(input.dtype), reduction="none")
        return _top_k_mean(bce, self.k)

    def extra_repr(self) -> str:
        return f"k={self.k}"
