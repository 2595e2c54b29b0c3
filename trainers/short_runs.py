"""The one way to shorten an nnU-Net training run: the :class:`ShortRun` mixin.

``nnUNetv2_train`` has no option for the number of epochs or iterations. A short variant of any trainer is a
class body that puts :class:`ShortRun` first among its bases and says where its length comes from:

* fixed constants (the ``_debug`` / ``_demo`` variants of every family; the demo reads ``NUM_EPOCHS`` for its
  progress line)::

      class nnUNetTrainerLesion_debug(ShortRun, nnUNetTrainerLesion):
          NUM_EPOCHS, NUM_ITERATIONS, NUM_VAL_ITERATIONS = 2, 4, 2
          TEST_TIME_MIRRORING = False

* or the environment (the ``_budget`` variants of :mod:`nnunet_spine.trainers.budget`, ``FROM_ENVIRONMENT = True``),
  so that every arm of a comparison trains with one budget set once::

      NNSPINE_EPOCHS=10 NNSPINE_ITERATIONS=50 NNSPINE_VAL_ITERATIONS=5 NNSPINE_NO_TTA=1 \\
          nnUNetv2_train 501 3d_fullres 0 -tr nnUNetTrainerSoftSegDA5_budget

  ``NNSPINE_EPOCHS`` epochs, ``NNSPINE_ITERATIONS`` training and ``NNSPINE_VAL_ITERATIONS`` validation
  iterations per epoch (positive integers), ``NNSPINE_NO_TTA=1`` no mirrored test-time augmentation. Unset
  variables keep the trainer's own values, so without them such a trainer is exactly its parent. A budget run
  saves ``checkpoint_latest.pth`` every tenth of its epochs (at least every epoch, at most nnU-Net's every 50),
  so that ``nnUNetv2_train ... --c`` after an interruption continues where it stopped rather than from the best
  checkpoint's epoch.

The length is written to the training log either way.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch

#: (epochs, training iterations per epoch, validation iterations per epoch) of the ``_debug`` variants: seconds on CPU.
DEBUG_BUDGET = (2, 4, 2)
#: The same for the ``_demo`` variants: 150 iterations, a few minutes on 2 CPU cores.
DEMO_BUDGET = (6, 25, 3)
#: The lesion demo's: 200 iterations (150 left one run in three on the all-background solution).
LESION_DEMO_BUDGET = (8, 25, 3)

#: Environment variable -> the :class:`ShortRun` constant it sets (positive integers), for ``FROM_ENVIRONMENT``.
BUDGET_VARIABLES = {
    "NNSPINE_EPOCHS": "NUM_EPOCHS",
    "NNSPINE_ITERATIONS": "NUM_ITERATIONS",
    "NNSPINE_VAL_ITERATIONS": "NUM_VAL_ITERATIONS",
}
#: Environment variable disabling mirrored test-time augmentation when set to 1.
NO_TTA_VARIABLE = "NNSPINE_NO_TTA"

#: ShortRun constant -> the nnU-Net trainer attribute it sets.
_TRAINER_ATTRIBUTES = {
    "NUM_EPOCHS": "num_epochs",
    "NUM_ITERATIONS": "num_iterations_per_epoch",
    "NUM_VAL_ITERATIONS": "num_val_iterations_per_epoch",
}


def budget_from_env(environ: Mapping[str, str] | None = None) -> dict[str, int]:
    """The training length set in the environment: ``{ShortRun constant: positive int}`` for the variables set.

    Raises ``RuntimeError`` naming the variable when a value is not a positive integer."""
    environ = os.environ if environ is None else environ
    budget = {}
    for variable, constant in BUDGET_VARIABLES.items():
        text = environ.get(variable, "").strip()
        if not text:
            continue
        try:
            value = int(text)
        except ValueError:
            value = 0
        if value < 1:
            raise RuntimeError(f"{variable}={text!r}: expected a positive integer")
        budget[constant] = value
    return budget


def no_tta_from_env(environ: Mapping[str, str] | None = None) -> bool | None:
    """False when ``NNSPINE_NO_TTA=1`` asks for no mirrored test-time augmentation, None when unset or ``0``
    (the trainer's own setting); ``RuntimeError`` for any other value."""
    environ = os.environ if environ is None else environ
    text = environ.get(NO_TTA_VARIABLE, "").strip()
    if text not in ("", "0", "1"):
        raise RuntimeError(f"{NO_TTA_VARIABLE}={text!r}: expected 1 or 0")
    return False if text == "1" else None


def resume_interval(num_epochs: int, nnunet_interval: int) -> int:
    """Epochs between two ``checkpoint_latest.pth`` saves of a budget run: a tenth of ``num_epochs``, at least 1
    and at most nnU-Net's own interval (50 in nnU-Net 2.8)."""
    return max(1, min(nnunet_interval, num_epochs // 10))


class ShortRun:
    """Mixin: the class constants below (or, with ``FROM_ENVIRONMENT``, the ``NNSPINE_*`` variables) set an
    nnU-Net trainer's training length and test-time mirroring (module docstring)."""

    #: Epochs, training iterations per epoch and validation iterations per epoch (None: the trainer's own).
    NUM_EPOCHS: int | None = None
    NUM_ITERATIONS: int | None = None
    NUM_VAL_ITERATIONS: int | None = None
    #: False: no mirrored test-time augmentation in the final validation and in nnUNetv2_predict (stored in the
    #: checkpoint; 8x faster on CPU). Training still mirrors, as nnU-Net's nnUNetTrainerNoMirroring at inference.
    TEST_TIME_MIRRORING: bool = True
    #: True: the constants above are read from the environment when the trainer is made (``NNSPINE_*``).
    FROM_ENVIRONMENT: bool = False

    def __init__(
        self,
        plans: dict,
        configuration: str,
        fold: int,
        dataset_json: dict,
        device: torch.device = torch.device("cuda"),
    ):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.test_time_mirroring = self.TEST_TIME_MIRRORING
        length = {c: getattr(self, c) for c in _TRAINER_ATTRIBUTES}
        if self.FROM_ENVIRONMENT:
            length.update(budget_from_env())
            env_tta = no_tta_from_env()
            self.test_time_mirroring = self.test_time_mirroring if env_tta is None else env_tta
        for constant, attribute in _TRAINER_ATTRIBUTES.items():
            if length[constant] is not None:
                setattr(self, attribute, length[constant])
        if self.FROM_ENVIRONMENT:
            self.save_every = resume_interval(self.num_epochs, self.save_every)
        self.print_to_log_file(
            f"training length: {self.num_epochs} epochs x {self.num_iterations_per_epoch} iterations "
            f"({self.num_val_iterations_per_epoch} validation iterations per epoch), mirrored test-time "
            f"augmentation {'as configured' if self.test_time_mirroring else 'off'}",
            also_print_to_console=False,
        )

    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):
        configured = super().configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        if not self.test_time_mirroring:
            self.inference_allowed_mirroring_axes = None
        return configured
