"""Fixed short training lengths for the ``_debug`` / ``_demo`` variants of every trainer family.

nnU-Net's own short variants (``nnUNetTrainer_5epochs`` …) each repeat an ``__init__``; here a variant is a
class body of constants::

    class nnUNetTrainerLesion_debug(ShortRun, nnUNetTrainerLesion):
        NUM_EPOCHS, NUM_ITERATIONS, NUM_VAL_ITERATIONS = 2, 4, 2
        TEST_TIME_MIRRORING = False

``ShortRun`` must come first among the bases so that its ``__init__`` runs after the trainer's. The demo
reads ``NUM_EPOCHS`` for its progress line.
"""

from __future__ import annotations

import torch

#: (epochs, training iterations per epoch, validation iterations per epoch) of the ``_debug`` variants: seconds on CPU.
DEBUG_BUDGET = (2, 4, 2)
#: The same for the ``_demo`` variants: 150 iterations, a few minutes on 2 CPU cores.
DEMO_BUDGET = (6, 25, 3)
#: The lesion demo's: 200 iterations (150 left one run in three on the all-background solution).
LESION_DEMO_BUDGET = (8, 25, 3)


class ShortRun:
    """Mixin: the class attributes below set an nnU-Net trainer's training length and test-time mirroring."""

    #: Epochs, training iterations per epoch and validation iterations per epoch (None: the trainer's own).
    NUM_EPOCHS: int | None = None
    NUM_ITERATIONS: int | None = None
    NUM_VAL_ITERATIONS: int | None = None
    #: False: no mirrored test-time augmentation in the final validation and in nnUNetv2_predict (stored in the
    #: checkpoint; 8x faster on CPU). Training still mirrors, as nnU-Net's nnUNetTrainerNoMirroring at inference.
    TEST_TIME_MIRRORING: bool = True

    def __init__(
        self,
        plans: dict,
        configuration: str,
        fold: int,
        dataset_json: dict,
        device: torch.device = torch.device("cuda"),
    ):
        super().__init__(plans, configuration, fold, dataset_json, device)
        for attr, value in (
            ("num_epochs", self.NUM_EPOCHS),
            ("num_iterations_per_epoch", self.NUM_ITERATIONS),
            ("num_val_iterations_per_epoch", self.NUM_VAL_ITERATIONS),
        ):
            if value is not None:
                setattr(self, attr, value)

    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):
        configured = super().configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        if not self.TEST_TIME_MIRRORING:
            self.inference_allowed_mirroring_axes = None
        return configured
