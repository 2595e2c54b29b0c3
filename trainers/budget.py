"""Trainers whose training length is read from the environment: one budget for every arm of a comparison.

``nnUNetv2_train`` has no option for the number of epochs or iterations, and the fixed-length variants
(``_debug``, ``_demo``, nnU-Net's ``_Xepochs``) differ between trainer families. For a fair comparison
(``benchmarks/bench_softseg_ablation.py``) every arm trains one of these, with the same environment::

    NNSPINE_EPOCHS=10 NNSPINE_ITERATIONS=50 NNSPINE_VAL_ITERATIONS=5 NNSPINE_NO_TTA=1 \\
        nnUNetv2_train 501 3d_fullres 0 -tr nnUNetTrainerSoftSegDA5_budget

* ``NNSPINE_EPOCHS``: epochs (default: nnU-Net's 1000);
* ``NNSPINE_ITERATIONS``: training iterations per epoch (default 250);
* ``NNSPINE_VAL_ITERATIONS``: validation iterations per epoch (default 50);
* ``NNSPINE_NO_TTA=1``: no mirrored test-time augmentation in the final validation and later predictions
  (stored in the checkpoint; 8x faster on CPU). Default: mirrored as the trainer configures it.

Unset variables keep the trainer's defaults, so without them each trainer is exactly its parent. The budget
is written to the training log.
"""

from __future__ import annotations

import os

import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from trainers.softseg import nnUNetTrainerSoftSeg
from trainers.softseg_da5 import nnUNetTrainerSoftSegDA5

#: Environment variable -> trainer attribute it sets (positive integers).
BUDGET_VARIABLES = {
    "NNSPINE_EPOCHS": "num_epochs",
    "NNSPINE_ITERATIONS": "num_iterations_per_epoch",
    "NNSPINE_VAL_ITERATIONS": "num_val_iterations_per_epoch",
}
#: Environment variable disabling mirrored test-time augmentation when set to 1.
NO_TTA_VARIABLE = "NNSPINE_NO_TTA"


def budget_from_env(environ=None) -> dict:
    """The training budget set in the environment: ``{trainer attribute: positive int}`` for the variables set.

    Raises ``RuntimeError`` naming the variable when a value is not a positive integer.
    """
    environ = os.environ if environ is None else environ
    budget = {}
    for variable, attribute in BUDGET_VARIABLES.items():
        text = environ.get(variable, "").strip()
        if not text:
            continue
        try:
            value = int(text)
        except ValueError:
            value = 0
        if value < 1:
            raise RuntimeError(f"{variable}={text!r}: expected a positive integer")
        budget[attribute] = value
    return budget


def no_tta_from_env(environ=None) -> bool:
    """True when ``NNSPINE_NO_TTA`` asks for no mirrored test-time augmentation (``1``/``0`` or unset)."""
    environ = os.environ if environ is None else environ
    text = environ.get(NO_TTA_VARIABLE, "").strip()
    if text not in ("", "0", "1"):
        raise RuntimeError(f"{NO_TTA_VARIABLE}={text!r}: expected 1 or 0")
    return text == "1"


class EnvBudgetMixin:
    """Put before an nnU-Net trainer class: its epochs / iterations / TTA come from the environment (see the
    module docstring)."""

    def __init__(
        self,
        plans: dict,
        configuration: str,
        fold: int,
        dataset_json: dict,
        device: torch.device = torch.device("cuda"),
    ):
        super().__init__(plans, configuration, fold, dataset_json, device)
        for attribute, value in budget_from_env().items():
            setattr(self, attribute, value)
        self.no_tta = no_tta_from_env()
        self.print_to_log_file(
            f"training budget: {self.num_epochs} epochs x {self.num_iterations_per_epoch} "
            f"iterations ({self.num_val_iterations_per_epoch} validation iterations per epoch), "
            f"mirrored test-time augmentation {'off' if self.no_tta else 'as configured'}",
            also_print_to_console=False,
        )

    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):
        configured = super().configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        if self.no_tta:  # inference only, as nnU-Net's nnUNetTrainerNoMirroring: training still mirrors
            self.inference_allowed_mirroring_axes = None
        return configured


class nnUNetTrainer_budget(EnvBudgetMixin, nnUNetTrainer):
    """Stock nnUNetTrainer (binary labels, CE + Dice) with its training length from NNSPINE_EPOCHS and
    NNSPINE_ITERATIONS."""


class nnUNetTrainerSoftSeg_budget(EnvBudgetMixin, nnUNetTrainerSoftSeg):
    """nnUNetTrainerSoftSeg with its training length from NNSPINE_EPOCHS and NNSPINE_ITERATIONS."""


class nnUNetTrainerSoftSegDA5_budget(EnvBudgetMixin, nnUNetTrainerSoftSegDA5):
    """nnUNetTrainerSoftSegDA5 with its training length from NNSPINE_EPOCHS and NNSPINE_ITERATIONS."""


#: The trainers of this module (exported for ``nnUNet_extTrainer`` and listed by ``nnspine trainers``).
TRAINERS = (nnUNetTrainer_budget, nnUNetTrainerSoftSeg_budget, nnUNetTrainerSoftSegDA5_budget)
