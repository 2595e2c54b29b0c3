"""Discovery shim for nnU-Net's ``nnUNet_extTrainer`` lookup: re-exports the vertebra-cutout (instance-phase)
trainers, defines nothing (see ``nnspine_softseg_trainers`` for why the classes live in the installed package)."""

from trainers.vertebra_cutout import (  # noqa: F401
    nnUNetTrainerVertebraCutout,
    nnUNetTrainerVertebraCutout_debug,
    nnUNetTrainerVertebraCutout_demo,
)

__all__ = [
    "nnUNetTrainerVertebraCutout",
    "nnUNetTrainerVertebraCutout_debug",
    "nnUNetTrainerVertebraCutout_demo",
]
