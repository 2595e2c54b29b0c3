"""Discovery shim for nnU-Net's ``nnUNet_extTrainer`` lookup: every trainer of :mod:`nnunet_spine.trainers.registry`, by
name.

nnU-Net imports the modules of the ``nnUNet_extTrainer`` folder as top-level modules and removes them from
``sys.modules`` afterwards, so classes defined here could not be pickled into nnU-Net's spawned workers. The classes
therefore live in the installed package (``nnunet_spine.trainers.softseg``, ``nnunet_spine.trainers.lesion``, ...); this
module only binds their names, read from the one registry, so a new trainer needs no change here.
``nnspine trainers --export`` prints the line that points ``nnUNet_extTrainer`` at this folder.
"""

from nnunet_spine.trainers.registry import all_trainers

globals().update({cls.__name__: cls for cls in all_trainers()})
__all__ = [cls.__name__ for cls in all_trainers()]
