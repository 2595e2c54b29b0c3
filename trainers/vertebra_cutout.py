"""nnU-Net v2 trainer for the vertebra-instance network of SPINEPS phase 2: one cutout of the semantic mask in,
the vertebra above / the centre vertebra / the vertebra below out.

Use with stock nnU-Net (``eval "$(nnspine trainers --export)"`` sets ``nnUNet_extTrainer``)::

    nnspine convert cutouts -i spineps_masks/ --nnunet-dataset 502 --name VertebraCutouts
    nnUNetv2_plan_and_preprocess -d 502 -c 3d_fullres --verify_dataset_integrity
    nnUNetv2_train 502 3d_fullres 0 -tr nnUNetTrainerVertebraCutout
    nnspine cutouts --semantic SEM.nii.gz -o CUTS
    nnUNetv2_predict -i CUTS -o PRED -d 502 -c 3d_fullres -f 0 -tr nnUNetTrainerVertebraCutout
    nnspine fuse --semantic SEM.nii.gz --cutouts CUTS --predictions PRED -o OUT

The dataset is the one ``nnspine convert cutouts`` writes (:mod:`nnunet_spine.dataset_converters.cutouts`): nine one-hot
input channels, channel ``c`` the semantic subregion :data:`nnunet_spine.core.labels.CUTOUT_CHANNEL_LABELS` ``[c]``
(41-49), and targets :data:`~nnunet_spine.core.labels.CUTOUT_TARGET_LABELS` (1 above, 2 centre, 3 below).
The trainer checks both tables in ``dataset.json`` and refuses other datasets.

**No intensity augmentation.** The input is labels: noise, blur, brightness, contrast, gamma and simulated low
resolution would only teach the network to read values that never occur. Of nnU-Net's training pipeline the
spatial steps are kept (rotation, scaling, the 2-D/3-D conversions, mirroring as below, the label and
deep-supervision steps); any step the trainer does not know stops it (:func:`label_input_transforms`), so an
nnU-Net update cannot slip a new intensity transform in. Rotations are limited to ±30° (:data:`MAX_ROTATION_DEG`,
nnU-Net's own 3-D range): nnU-Net rotates 2-D and anisotropic patches by up to ±180° in-plane, which in a
sagittal plane turns "above" into "below".

**Mirroring: left-right only, in training only.**

* *Left-right* flips keep the targets' meaning (above stays above) and give a plausible mirrored subject, provided
  the left/right subregion channels (43↔44, 45↔46, 47↔48) trade places with the flip
  (:class:`CutoutMirrorTransform`, :func:`nnunet_spine.core.labels.cutout_mirror_channels`): the left processes of
  the flipped patch lie on the subject's left again. The left-right axis of the patches is derived from each case's
  geometry and the plans' transpose (:mod:`nnunet_spine.trainers.mirror_axes`, shared with
  :mod:`nnunet_spine.trainers.spine_semantic`), never assumed.
* *Superior-inferior* flips are not used. Flipped alone they teach that the vertebra above lies below; with labels
  1↔3 swapped the target would stay consistent, but the input would show an upside-down vertebra (superior
  articular processes pointing down, the spinous process sloping upwards), which SPINEPS' semantic input never
  contains; and test-time mirroring would need the same 1↔3 swap of the averaged output, for which the stock
  ``nnUNetv2_predict`` has no hook (it averages ``flip(network(flip(x)))`` itself).
* *Anterior-posterior* flips are not used either: they keep the targets' meaning, but put the vertebral body behind
  the arch, an anatomy the fixed SPINEPS input never has; the network would spend capacity on it for nothing.
* *Test time*: no mirroring (``inference_allowed_mirroring_axes = None``, saved in the checkpoint and honoured by
  the stock predictor). A left-right test-time flip would show the network left-channel data on the subject's
  right, which training never does (the stock predictor cannot swap input channels), and the other axes are not
  trained. So ``nnUNetv2_predict`` runs one pass per tile, with or without ``--disable_tta``.

Variants: ``_debug`` (2 epochs of 4 iterations, for tests), ``_demo`` (6 epochs of 25 iterations, CPU demo).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from batchgeneratorsv2.helpers.scalar_type import RandomScalar
from batchgeneratorsv2.transforms.base.basic_transform import BasicTransform
from batchgeneratorsv2.transforms.intensity.brightness import MultiplicativeBrightnessTransform
from batchgeneratorsv2.transforms.intensity.contrast import ContrastTransform
from batchgeneratorsv2.transforms.intensity.gamma import GammaTransform
from batchgeneratorsv2.transforms.intensity.gaussian_noise import GaussianNoiseTransform
from batchgeneratorsv2.transforms.noise.gaussian_blur import GaussianBlurTransform
from batchgeneratorsv2.transforms.spatial.low_resolution import SimulateLowResolutionTransform
from batchgeneratorsv2.transforms.spatial.mirroring import MirrorTransform
from batchgeneratorsv2.transforms.spatial.spatial import SpatialTransform
from batchgeneratorsv2.transforms.utils.deep_supervision_downsampling import DownsampleSegForDSTransform
from batchgeneratorsv2.transforms.utils.nnunet_masking import MaskImageTransform
from batchgeneratorsv2.transforms.utils.pseudo2d import Convert2DTo3DTransform, Convert3DTo2DTransform
from batchgeneratorsv2.transforms.utils.random import RandomTransform
from batchgeneratorsv2.transforms.utils.remove_label import RemoveLabelTansform
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunet_spine.core.labels import CUTOUT_CHANNEL_LABELS, CUTOUT_TARGET_LABELS, cutout_mirror_channels
from nnunet_spine.integration.hooks import WrappedTrainingTransforms
from nnunet_spine.trainers.mirror_axes import dataset_lr_axis, patch_lr_axis
from nnunet_spine.trainers.short_runs import DEBUG_BUDGET, DEMO_BUDGET, ShortRun
from nnunet_spine.trainers.spine_semantic import LateralityMirrorTransform

#: Largest rotation of the spatial augmentation, degrees about any axis (nnU-Net's 3-D default range).
MAX_ROTATION_DEG = 30.0
#: ``dataset.json`` key in which ``nnspine convert cutouts`` records the semantic label of each input channel.
CHANNEL_LABELS_KEY = "channel_labels"
#: nnU-Net training steps that change intensities only: dropped (the input is one-hot labels).
INTENSITY_STEPS = (
    GaussianNoiseTransform,
    GaussianBlurTransform,
    MultiplicativeBrightnessTransform,
    ContrastTransform,
    SimulateLowResolutionTransform,
    GammaTransform,
)
#: nnU-Net training steps that move voxels or handle the target only: kept (mirroring replaced, see the module doc).
SPATIAL_AND_LABEL_STEPS = (
    Convert3DTo2DTransform,
    SpatialTransform,
    Convert2DTo3DTransform,
    MirrorTransform,
    MaskImageTransform,
    RemoveLabelTansform,
    DownsampleSegForDSTransform,
)


# ---------------------------------------------------------------------------------------------- dataset
def cutout_channel_order(dataset_json: Mapping) -> list[int]:
    """Input channel order after a left-right flip (:func:`nnunet_spine.core.labels.cutout_mirror_channels`), once
    ``dataset_json`` is checked to be a cutout dataset: targets
    :data:`~nnunet_spine.core.labels.CUTOUT_TARGET_LABELS`
    and one channel per :data:`~nnunet_spine.core.labels.CUTOUT_CHANNEL_LABELS` entry, in that order (from
    ``channel_labels`` when recorded). ``ValueError`` naming what differs."""
    labels = {str(k): v for k, v in dataset_json.get("labels", {}).items()}
    if labels != dict(CUTOUT_TARGET_LABELS):
        raise ValueError(
            f"dataset.json labels {labels} are not the cutout targets {dict(CUTOUT_TARGET_LABELS)} "
            f"(make the dataset with 'nnspine convert cutouts')"
        )
    n = len(dataset_json.get("channel_names", {}))
    if n != len(CUTOUT_CHANNEL_LABELS):
        raise ValueError(
            f"dataset.json has {n} input channel(s); a cutout dataset has one per vertebra subregion "
            f"{list(CUTOUT_CHANNEL_LABELS)}"
        )
    recorded = dataset_json.get(CHANNEL_LABELS_KEY)
    if recorded is not None:
        got = [int(recorded.get(str(c), -1)) for c in range(n)]
        if got != list(CUTOUT_CHANNEL_LABELS):
            raise ValueError(
                f"dataset.json {CHANNEL_LABELS_KEY} {got} differ from the cutout channel table "
                f"{list(CUTOUT_CHANNEL_LABELS)}: the left/right channel swap would be wrong"
            )
    return cutout_mirror_channels()


# ------------------------------------------------------------------------------------------- transforms
class CutoutMirrorTransform(LateralityMirrorTransform):
    """nnU-Net's mirror augmentation (each allowed axis flipped with probability ``p_per_axis``) that permutes the
    image channels by ``channel_order`` whenever the flip includes ``lr_axis`` (axes counted without the channel
    axis): the flipped patch's left-subregion data moves into the left channels. The segmentation (above / centre /
    below) is flipped and otherwise kept."""

    def __init__(
        self, allowed_axes: tuple[int, ...], lr_axis: int | None, channel_order: Sequence[int], p_per_axis: float = 0.5
    ):
        super().__init__(allowed_axes, lr_axis, pairs=(), p_per_axis=p_per_axis)
        self.channel_order = [int(c) for c in channel_order]

    def _apply_to_image(self, img: torch.Tensor, **params) -> torch.Tensor:
        flipped = super()._apply_to_image(img, **params)
        if self.lr_axis is not None and self.lr_axis in params["axes"]:
            flipped = flipped[self.channel_order]
        return flipped


def _step_type(step: BasicTransform) -> type:
    """The transform a pipeline step applies (the wrapped one for ``RandomTransform``)."""
    return type(step.transform) if type(step) is RandomTransform else type(step)


def label_input_transforms(
    transforms: BasicTransform, lr_axis: int | None, channel_order: Sequence[int]
) -> BasicTransform:
    """nnU-Net's training pipeline (a ``ComposeTransforms``) for one-hot label input: intensity steps
    (:data:`INTENSITY_STEPS`) removed, its ``MirrorTransform`` replaced by a :class:`CutoutMirrorTransform` on the
    same axes. ``RuntimeError`` for a step in neither :data:`INTENSITY_STEPS` nor :data:`SPATIAL_AND_LABEL_STEPS`
    (an nnU-Net change to re-check) or more than one mirror step."""
    steps = getattr(transforms, "transforms", None)
    if steps is None:
        raise RuntimeError(f"expected nnU-Net's ComposeTransforms, got {type(transforms).__name__}")
    kept = []
    for step in steps:
        kind = _step_type(step)
        if kind in INTENSITY_STEPS:
            continue
        if kind not in SPATIAL_AND_LABEL_STEPS:
            raise RuntimeError(
                f"nnU-Net's training transforms contain {kind.__name__}, unknown to the cutout trainer: "
                f"decide whether it changes one-hot label input and list it in INTENSITY_STEPS or "
                f"SPATIAL_AND_LABEL_STEPS (trainers/vertebra_cutout.py)"
            )
        kept.append(step)
    mirrors = [i for i, step in enumerate(kept) if type(step) is MirrorTransform]
    if len(mirrors) > 1:
        raise RuntimeError(
            f"expected at most one MirrorTransform in nnU-Net's training transforms, found {len(mirrors)}"
        )
    for i in mirrors:
        kept[i] = CutoutMirrorTransform(tuple(kept[i].allowed_axes), lr_axis, channel_order)
    transforms.transforms = kept
    return transforms


def limited_rotation(rotation: RandomScalar, max_deg: float = MAX_ROTATION_DEG) -> tuple[float, float]:
    """nnU-Net's ``(low, high)`` rotation range (radians) clipped to ±``max_deg`` degrees."""
    if not (isinstance(rotation, (tuple, list)) and len(rotation) == 2):
        raise RuntimeError(f"expected nnU-Net's rotation range as (low, high) radians, got {rotation!r}")
    limit = float(np.radians(max_deg))
    return float(np.clip(rotation[0], -limit, limit)), float(np.clip(rotation[1], -limit, limit))


# -------------------------------------------------------------------------------------------- trainers
class nnUNetTrainerVertebraCutout(WrappedTrainingTransforms, nnUNetTrainer):
    """Vertebra-instance network on cutouts (one-hot subregions in; vertebra above, centre, below out) with spatial
    augmentation only: left-right flips swap the left/right subregion channels, no other flips, no test-time
    mirroring."""

    def __init__(
        self,
        plans: dict,
        configuration: str,
        fold: int,
        dataset_json: dict,
        device: torch.device = torch.device("cuda"),
    ):
        super().__init__(plans, configuration, fold, dataset_json, device)
        try:
            self.channel_order = cutout_channel_order(dataset_json)
        except ValueError as exc:
            raise RuntimeError(f"{self.__class__.__name__}: {exc}") from None
        self.lr_axis = None  # left-right axis of the network's patches (None: not mirrored)

    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):
        rotation, dummy_2d, initial_patch_size, _ = super().configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        rotation = limited_rotation(rotation)  # the initial patch, sized for nnU-Net's range, stays large enough
        lr_3d = dataset_lr_axis(
            self,
            advice=(
                "reorient the semantic masks to one orientation before 'nnspine convert cutouts' (its cutouts are PIR "
                "along each mask's own voxel axes)."
            ),
        )
        self.lr_axis = patch_lr_axis(lr_3d, len(self.configuration_manager.patch_size))
        mirror_axes = None if self.lr_axis is None else (self.lr_axis,)
        self.inference_allowed_mirroring_axes = None
        mirroring = (
            "none (2-D slices are sagittal)"
            if self.lr_axis is None
            else f"left-right patch axis {self.lr_axis} only, swapping input channels {self.channel_order}"
        )
        self.print_to_log_file(
            f"cutouts: no intensity augmentation; rotation limited to +-{MAX_ROTATION_DEG:g} deg; "
            f"training mirroring: {mirroring}; no test-time mirroring"
        )
        return rotation, dummy_2d, initial_patch_size, mirror_axes

    def wrap_training_transforms(self, transforms, mirror_axes):
        # the channel swap needs this dataset's left-right axis and channel order
        return label_input_transforms(transforms, self.lr_axis, self.channel_order)


class nnUNetTrainerVertebraCutout_debug(ShortRun, nnUNetTrainerVertebraCutout):
    """nnUNetTrainerVertebraCutout cut short for tests: 2 epochs of 4 iterations, 2 validation batches."""

    NUM_EPOCHS, NUM_ITERATIONS, NUM_VAL_ITERATIONS = DEBUG_BUDGET


class nnUNetTrainerVertebraCutout_demo(ShortRun, nnUNetTrainerVertebraCutout):
    """nnUNetTrainerVertebraCutout for a CPU demo: 6 epochs of 25 iterations, 3 validation batches."""

    NUM_EPOCHS, NUM_ITERATIONS, NUM_VAL_ITERATIONS = DEMO_BUDGET


#: The trainers of this module (exported for ``nnUNet_extTrainer`` and listed by ``nnspine trainers``).
TRAINERS = (nnUNetTrainerVertebraCutout, nnUNetTrainerVertebraCutout_debug, nnUNetTrainerVertebraCutout_demo)
