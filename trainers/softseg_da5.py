"""Soft cord segmentation with nnU-Net's aggressive data augmentation (its ``nnUNetTrainerDA5`` pattern).

Bédard et al. attribute the contrast-agnostic behaviour of their soft model to aggressive augmentation. nnU-Net
ships that pattern as ``nnUNetTrainerDA5``: a stronger spatial range (rotation up to ±30° per axis in 3-D, ±180°
in-plane for anisotropic patches, scaling 0.7-1.43 per axis, mirroring on every axis, 90° rotations and axis
transposes for cubic patch axes) and intensity transforms the stock trainer lacks or applies more often: median
filter or Gaussian blur, Gaussian noise, additive brightness, contrast, simulated low resolution, gamma with
contrast inversion (twice), blank rectangles, an additive brightness gradient (bias field), local gamma and
sharpening. ::

    nnUNetv2_train 501 3d_fullres 0 -tr nnUNetTrainerSoftSegDA5

:class:`nnUNetTrainerSoftSegDA5` is both an :class:`~nnunet_spine.trainers.softseg.nnUNetTrainerSoftSeg` (soft target,
loss, loader, metrics) and an ``nnUNetTrainerDA5`` (its augmentation parameters, via the method resolution order), and
overrides one method: the training transforms are DA5's own, followed by the soft target's deep-supervision
pyramid. Nothing of DA5 is copied. The soft target travels through them as batchgeneratorsv2's
``regression_target`` (see :mod:`nnunet_spine.integration.soft_targets.loader`): every spatial transform in DA5
(``SpatialTransform``, ``Rot90Transform``, ``TransposeAxesTransform``, ``MirrorTransform``, the 2-D/3-D
conversions) moves it exactly as the image (linear interpolation, zero padding), and every intensity transform is
image-only, so it leaves the target untouched. ``tests/test_softseg_da5.py`` checks this on a sharp-edged
phantom and pins the DA5 sources it relies on.
"""

from __future__ import annotations

from nnunetv2.training.nnUNetTrainer.variants.data_augmentation.nnUNetTrainerDA5 import nnUNetTrainerDA5

from nnunet_spine.trainers.softseg import (
    _append_soft_ds,
    nnUNetTrainerSoftSeg,
    nnUNetTrainerSoftSeg_debug,
    nnUNetTrainerSoftSeg_demo,
)


class nnUNetTrainerSoftSegDA5(nnUNetTrainerSoftSeg, nnUNetTrainerDA5):
    """Soft cord segmentation with nnU-Net's aggressive DA5 augmentation: stronger spatial range, gamma with
    inversion, blur, noise, bias field and simulated low resolution."""

    @staticmethod
    def get_training_transforms(*args, **kwargs):
        """nnU-Net's DA5 training transforms, then the soft target's deep-supervision pyramid."""
        transforms = nnUNetTrainerDA5.get_training_transforms(*args, **kwargs)
        return _append_soft_ds(transforms, nnUNetTrainerDA5.get_training_transforms, args, kwargs)


class nnUNetTrainerSoftSegDA5_debug(nnUNetTrainerSoftSeg_debug, nnUNetTrainerSoftSegDA5):
    """nnUNetTrainerSoftSegDA5 cut short for tests like nnUNetTrainerSoftSeg_debug: a few iterations, no test-time
    mirroring."""


class nnUNetTrainerSoftSegDA5_demo(nnUNetTrainerSoftSeg_demo, nnUNetTrainerSoftSegDA5):
    """nnUNetTrainerSoftSegDA5 with the CPU budget of nnUNetTrainerSoftSeg_demo, no test-time mirroring."""


#: The trainers of this module (exported for ``nnUNet_extTrainer`` and listed by ``nnspine trainers``).
TRAINERS = (nnUNetTrainerSoftSegDA5, nnUNetTrainerSoftSegDA5_debug, nnUNetTrainerSoftSegDA5_demo)
