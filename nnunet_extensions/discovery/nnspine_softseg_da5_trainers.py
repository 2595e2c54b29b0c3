"""Discovery shim for nnU-Net's ``nnUNet_extTrainer`` lookup: re-exports the soft trainers with nnU-Net's DA5
augmentation and the environment-budget trainers of the ablation, defines nothing (see
``nnspine_softseg_trainers`` for why the classes live in the installed package)."""

from trainers.budget import (  # noqa: F401
    nnUNetTrainer_budget,
    nnUNetTrainerSoftSeg_budget,
    nnUNetTrainerSoftSegDA5_budget,
)
from trainers.softseg_da5 import (  # noqa: F401
    nnUNetTrainerSoftSegDA5,
    nnUNetTrainerSoftSegDA5_debug,
    nnUNetTrainerSoftSegDA5_demo,
)

__all__ = [
    "nnUNetTrainerSoftSegDA5",
    "nnUNetTrainerSoftSegDA5_debug",
    "nnUNetTrainerSoftSegDA5_demo",
    "nnUNetTrainer_budget",
    "nnUNetTrainerSoftSeg_budget",
    "nnUNetTrainerSoftSegDA5_budget",
]
