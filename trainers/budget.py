"""Trainers whose training length is read from the environment: one budget for every arm of a comparison
(``benchmarks/bench_softseg_ablation.py``). They are :class:`~nnunet_spine.trainers.short_runs.ShortRun` variants with
``FROM_ENVIRONMENT = True``; the variables are listed there::

    NNSPINE_EPOCHS=10 NNSPINE_ITERATIONS=50 NNSPINE_VAL_ITERATIONS=5 NNSPINE_NO_TTA=1 \\
        nnUNetv2_train 501 3d_fullres 0 -tr nnUNetTrainerSoftSegDA5_budget
"""

from __future__ import annotations

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunet_spine.trainers.short_runs import ShortRun
from nnunet_spine.trainers.softseg import nnUNetTrainerSoftSeg
from nnunet_spine.trainers.softseg_da5 import nnUNetTrainerSoftSegDA5


class nnUNetTrainer_budget(ShortRun, nnUNetTrainer):
    """Stock nnUNetTrainer (binary labels, CE + Dice) with its training length from NNSPINE_EPOCHS and
    NNSPINE_ITERATIONS."""

    FROM_ENVIRONMENT = True


class nnUNetTrainerSoftSeg_budget(ShortRun, nnUNetTrainerSoftSeg):
    """nnUNetTrainerSoftSeg with its training length from NNSPINE_EPOCHS and NNSPINE_ITERATIONS."""

    FROM_ENVIRONMENT = True


class nnUNetTrainerSoftSegDA5_budget(ShortRun, nnUNetTrainerSoftSegDA5):
    """nnUNetTrainerSoftSegDA5 with its training length from NNSPINE_EPOCHS and NNSPINE_ITERATIONS."""

    FROM_ENVIRONMENT = True


#: The trainers of this module (exported for ``nnUNet_extTrainer`` and listed by ``nnspine trainers``).
TRAINERS = (nnUNetTrainer_budget, nnUNetTrainerSoftSeg_budget, nnUNetTrainerSoftSegDA5_budget)
