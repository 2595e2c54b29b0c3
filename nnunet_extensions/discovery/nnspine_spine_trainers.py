"""Discovery shim for nnU-Net's ``nnUNet_extTrainer`` lookup: re-exports the whole-spine trainers, defines nothing
(see ``nnspine_softseg_trainers`` for why the classes live in the installed package)."""

from trainers.spine_semantic import (  # noqa: F401
    nnUNetTrainerSpineSemantic,
    nnUNetTrainerSpineSemantic_debug,
    nnUNetTrainerSpineSemantic_demo,
    nnUNetTrainerSpineSemantic_noMirroring,
)

__all__ = [
    "nnUNetTrainerSpineSemantic",
    "nnUNetTrainerSpineSemantic_noMirroring",
    "nnUNetTrainerSpineSemantic_debug",
    "nnUNetTrainerSpineSemantic_demo",
]
