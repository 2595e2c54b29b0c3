"""Discovery shim for nnU-Net's ``nnUNet_extTrainer`` lookup: re-exports nnunet-spine's trainers, defines nothing.

nnU-Net imports the modules of the ``nnUNet_extTrainer`` folder as top-level modules and removes them from
``sys.modules`` afterwards, so classes defined here could not be pickled into spawned workers. The classes
therefore live in the installed package (``trainers.softseg``) and are only imported here.
``nnspine trainers --export`` prints the line that points ``nnUNet_extTrainer`` at this folder.
"""

from trainers.softseg import (  # noqa: F401
    nnUNetTrainerSoftSeg,
    nnUNetTrainerSoftSeg_debug,
    nnUNetTrainerSoftSeg_demo,
    nnUNetTrainerSoftSegAdapWing,
    nnUNetTrainerSoftSegMSE,
)

__all__ = [
    "nnUNetTrainerSoftSeg",
    "nnUNetTrainerSoftSegMSE",
    "nnUNetTrainerSoftSegAdapWing",
    "nnUNetTrainerSoftSeg_debug",
    "nnUNetTrainerSoftSeg_demo",
]
