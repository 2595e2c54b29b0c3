"""Discovery shim for nnU-Net's ``nnUNet_extTrainer`` lookup: re-exports the lesion trainers, defines nothing
(see ``nnspine_softseg_trainers`` for why the classes live in the installed package)."""

from trainers.lesion import (  # noqa: F401
    nnUNetTrainerLesion,
    nnUNetTrainerLesion_debug,
    nnUNetTrainerLesion_demo,
    nnUNetTrainerLesion_DiceFocal,
    nnUNetTrainerLesion_DiceTopK,
)

__all__ = [
    "nnUNetTrainerLesion",
    "nnUNetTrainerLesion_DiceFocal",
    "nnUNetTrainerLesion_DiceTopK",
    "nnUNetTrainerLesion_debug",
    "nnUNetTrainerLesion_demo",
]
