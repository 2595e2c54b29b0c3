"""nnU-Net v2 trainers for whole-spine semantic segmentation (SPINEPS phase 1) with laterality-safe mirroring.

Use with stock nnU-Net (``eval "$(nnspine trainers --export)"`` sets ``nnUNet_extTrainer``)::

    nnspine convert spineps -i bids/ --nnunet-dataset 510 --name Spine
    nnUNetv2_plan_and_preprocess -d 510 -c 3d_fullres --verify_dataset_integrity
    nnUNetv2_train 510 3d_fullres 0 -tr nnUNetTrainerSpineSemantic
    nnUNetv2_predict -i IN -o OUT -d 510 -c 3d_fullres -f 0 -tr nnUNetTrainerSpineSemantic
    nnspine relabel -i OUT -o OUT_spineps --dataset 510

**Why.** SPINEPS labels left and right structures differently (costal 43/44, superior articular 45/46, inferior
articular 47/48; :data:`nnunet_spine.core.labels.LEFT_RIGHT_PAIRS`). A mirror image of a spine is again a
plausible spine, so a network can tell the subject's left only from the array position, in the orientation of
its training data. nnU-Net mirrors every axis in training augmentation and in test-time augmentation (TTA) and
keeps the labels: a sample flipped along the left-right axis then teaches "left" on the right, and a TTA pass
flipped along it votes "left" on the right; averaged with the unflipped pass, the paired classes tie. SPINEPS
therefore turns mirroring off.

**Training.** Here the mirror transform is kept on all axes; whenever a sample is flipped along the left-right
axis, the paired labels of its segmentation are swapped (:class:`LateralityMirrorTransform`): the flipped patch
shows a mirrored subject in the same array geometry, whose left processes now lie where the subject's left is,
so they keep the labels of that side.

**Test-time mirroring: the left-right axis is excluded** (``inference_allowed_mirroring_axes``, saved in the
checkpoint and honoured by the stock ``nnUNetv2_predict``, which TTA-averages over the remaining axes: 4 passes
instead of 8). Swapping the paired output channels after a flip along that axis would keep all 8 passes, but
the stock predictor builds its own ``nnUNetPredictor`` and offers no hook between ``network(flip(x))`` and the
average, so it would need a copied predictor (or a custom predict command) and diverge from upstream; excluding
the axis works with the unchanged predictor and cannot average left into right.

**The left-right axis is derived, never assumed.** nnU-Net does not reorient images: its readers return the
file's voxel axes reversed, and the plans' ``transpose_forward`` permutes them. :func:`lr_axis_of_properties`
reads the direction cosines nnU-Net stored for each preprocessed case (``sitk_stuff`` or ``nibabel_stuff``) and
:func:`lr_axis_after_transpose` applies the plans' transpose. All training cases must agree on that axis and on
which way it points (otherwise positions cannot encode laterality: the trainer stops with a message). Images to
predict must be in the training data's orientation, as for any laterality-aware nnU-Net model.

Variants: ``_noMirroring`` (no mirroring in training or TTA: what SPINEPS does), ``_debug`` (2 epochs of 4
iterations, for tests), ``_demo`` (6 epochs of 25 iterations, CPU demo). Datasets without left/right labels
(e.g. SPIDER's vertebra/disc/canal) train exactly like ``nnUNetTrainer``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from batchgeneratorsv2.transforms.base.basic_transform import BasicTransform
from batchgeneratorsv2.transforms.spatial.mirroring import MirrorTransform
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunet_spine.core.dataset_json import LABEL_MAP_KEY
from nnunet_spine.core.labels import LEFT_RIGHT_PAIRS, SEMANTIC_LABELS
from nnunet_spine.integration.hooks import WrappedTrainingTransforms
from nnunet_spine.trainers.mirror_axes import (  # noqa: F401  (the geometry helpers, shared; re-exported here)
    MIN_LR_COSINE,
    dataset_lr_axis,
    lr_axis_after_transpose,
    lr_axis_of_properties,
    patch_lr_axis,
)
from nnunet_spine.trainers.short_runs import DEBUG_BUDGET, DEMO_BUDGET, ShortRun


# --------------------------------------------------------------------------------------------- labels
def lateral_label_pairs(dataset_json: Mapping) -> tuple[tuple[int, int], ...]:
    """(left, right) pairs of nnU-Net labels: from the SPINEPS mapping ``convert spineps`` stored in
    ``dataset.json`` (:data:`~nnunet_spine.core.dataset_json.LABEL_MAP_KEY`), else from SPINEPS structure names in
    ``labels``. Empty when the dataset has no left/right labels; ``ValueError`` when only one side of a pair exists
    (a mirrored sample would need the missing class)."""
    entry = dataset_json.get(LABEL_MAP_KEY)
    if isinstance(entry, Mapping) and entry.get("convention") == "spineps":
        label_of = {int(v): int(k) for k, v in entry["values"].items()}
    else:
        names = {name: value for value, name in SEMANTIC_LABELS.items()}
        label_of = {names[n]: v for n, v in dataset_json.get("labels", {}).items() if n in names and isinstance(v, int)}
    pairs = []
    for left, right in LEFT_RIGHT_PAIRS:
        if (left in label_of) != (right in label_of):
            have = left if left in label_of else right
            raise ValueError(
                f"SPINEPS label {have} ({SEMANTIC_LABELS[have]}) has no opposite-side partner in "
                f"this dataset: mirroring cannot keep laterality"
            )
        if left in label_of:
            pairs.append((label_of[left], label_of[right]))
    return tuple(pairs)


def swap_pairs(segmentation: torch.Tensor, pairs: Sequence[tuple[int, int]]) -> torch.Tensor:
    """A copy of ``segmentation`` with each (left, right) label pair exchanged (other values, -1 padding and the
    ignore label untouched)."""
    out = segmentation.clone()
    for left, right in pairs:
        out[segmentation == left] = right
        out[segmentation == right] = left
    return out


class LateralityMirrorTransform(MirrorTransform):
    """nnU-Net's mirror augmentation (each allowed axis flipped with probability ``p_per_axis``, 0.5 as upstream)
    that swaps the (left, right) label pairs of the segmentation whenever the flip includes ``lr_axis``
    (axes counted without the channel axis, as ``MirrorTransform``)."""

    def __init__(
        self,
        allowed_axes: tuple[int, ...],
        lr_axis: int | None,
        pairs: Sequence[tuple[int, int]],
        p_per_axis: float = 0.5,
    ):
        super().__init__(allowed_axes)
        self.lr_axis = lr_axis
        self.pairs = tuple(pairs)
        self.p_per_axis = p_per_axis

    def get_parameters(self, **data_dict) -> dict:
        # MirrorTransform.get_parameters with the probability as an attribute (guarded by a test)
        return {"axes": [i for i in self.allowed_axes if torch.rand(1) < self.p_per_axis]}

    def _apply_to_segmentation(self, segmentation: torch.Tensor, **params) -> torch.Tensor:
        flipped = super()._apply_to_segmentation(segmentation, **params)
        if self.lr_axis is not None and self.lr_axis in params["axes"] and self.pairs:
            flipped = swap_pairs(flipped, self.pairs)
        return flipped


def with_laterality_mirroring(
    transforms: BasicTransform, lr_axis: int | None, pairs: Sequence[tuple[int, int]]
) -> BasicTransform:
    """Replace the ``MirrorTransform`` of nnU-Net's training pipeline (a ``ComposeTransforms``) by a
    :class:`LateralityMirrorTransform` on the same axes. ``RuntimeError`` if the pipeline has no recognisable
    mirror step although one was expected (so an upstream change cannot silently drop the label swap)."""
    steps = getattr(transforms, "transforms", None)
    found = [i for i, t in enumerate(steps or []) if type(t) is MirrorTransform]
    if len(found) != 1:
        raise RuntimeError(f"expected one MirrorTransform in nnU-Net's training transforms, found {len(found)}")
    i = found[0]
    steps[i] = LateralityMirrorTransform(tuple(steps[i].allowed_axes), lr_axis, pairs)
    return transforms


# -------------------------------------------------------------------------------------------- trainer
class nnUNetTrainerSpineSemantic(WrappedTrainingTransforms, nnUNetTrainer):
    """Whole-spine semantic segmentation; mirroring swaps left/right labels, TTA skips the left-right axis."""

    def __init__(
        self,
        plans: dict,
        configuration: str,
        fold: int,
        dataset_json: dict,
        device: torch.device = torch.device("cuda"),
    ):
        super().__init__(plans, configuration, fold, dataset_json, device)
        if self.label_manager.has_regions:
            raise RuntimeError(f"{self.__class__.__name__} needs integer labels, not regions")
        self.lateral_pairs = lateral_label_pairs(dataset_json)
        self.lr_axis = None  # left-right axis of the network's patches (None: none / not mirrored)

    def dataset_lr_axis(self) -> int:
        """Left-right axis of the preprocessed arrays, the same for every case (:func:`lr_axis_of_properties`,
        plans' transpose). ``RuntimeError`` naming the cases when they disagree on the axis or its direction."""
        return dataset_lr_axis(
            self,
            advice=(
                f"reorient the images (and masks) to one orientation, e.g. all PIR, before 'nnspine convert spineps', "
                f"or train with {self.__class__.__name__}_noMirroring knowing laterality will not be learnt."
            ),
        )

    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):
        rotation, dummy_2d, initial_patch_size, mirror_axes = (
            super().configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        )
        self.lr_axis = None
        if self.lateral_pairs and mirror_axes:
            patch_dims = len(self.configuration_manager.patch_size)
            self.lr_axis = patch_lr_axis(self.dataset_lr_axis(), patch_dims)
            if self.inference_allowed_mirroring_axes is not None and self.lr_axis is not None:
                self.inference_allowed_mirroring_axes = tuple(
                    a for a in self.inference_allowed_mirroring_axes if a != self.lr_axis
                )
            self.print_to_log_file(
                f"laterality: left-right patch axis {self.lr_axis}; training flips along it swap labels "
                f"{list(self.lateral_pairs)}; test-time mirroring axes {self.inference_allowed_mirroring_axes}"
            )
        return rotation, dummy_2d, initial_patch_size, mirror_axes

    def wrap_training_transforms(self, transforms, mirror_axes):
        # the swap needs this dataset's left-right axis and label pairs
        if mirror_axes and self.lateral_pairs:
            transforms = with_laterality_mirroring(transforms, self.lr_axis, self.lateral_pairs)
        return transforms


class nnUNetTrainerSpineSemantic_noMirroring(nnUNetTrainerSpineSemantic):
    """Whole-spine semantic segmentation without mirroring in training or test time (as SPINEPS)."""

    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):
        rotation, dummy_2d, initial_patch_size, _ = (
            nnUNetTrainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size(self)
        )
        self.inference_allowed_mirroring_axes = None
        return rotation, dummy_2d, initial_patch_size, None


class nnUNetTrainerSpineSemantic_debug(ShortRun, nnUNetTrainerSpineSemantic):
    """nnUNetTrainerSpineSemantic cut short for tests: 2 epochs of 4 iterations, 2 validation batches (test-time
    mirroring kept, without the left-right axis)."""

    NUM_EPOCHS, NUM_ITERATIONS, NUM_VAL_ITERATIONS = DEBUG_BUDGET


class nnUNetTrainerSpineSemantic_demo(ShortRun, nnUNetTrainerSpineSemantic):
    """nnUNetTrainerSpineSemantic for a CPU demo: 6 epochs of 25 iterations, 3 validation batches."""

    NUM_EPOCHS, NUM_ITERATIONS, NUM_VAL_ITERATIONS = DEMO_BUDGET


#: The trainers of this module (exported for ``nnUNet_extTrainer`` and listed by ``nnspine trainers``).
TRAINERS = (
    nnUNetTrainerSpineSemantic,
    nnUNetTrainerSpineSemantic_noMirroring,
    nnUNetTrainerSpineSemantic_debug,
    nnUNetTrainerSpineSemantic_demo,
)
