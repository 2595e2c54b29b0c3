"""nnU-Net's data loader plus the soft target, cut at the same place and augmented as ``regression_target``.

Nothing of nnU-Net's loader is copied: :class:`nnUNetDataLoaderSoft` runs nnU-Net's own
``generate_train_batch`` and hooks into three of the calls it makes, in the order it makes them (for the batch:
``get_indices``; then per sample: ``get_bbox``, then ``transforms`` once):

* ``get_indices`` records the batch's case identifiers;
* ``get_bbox`` records the crop nnU-Net chose for the sample (its foreground oversampling uses the cord's
  ``class_locations``, unchanged) and checks that the soft target has the case's shape;
* ``transforms`` (nnU-Net calls ``self.transforms(image=..., segmentation=...)``) cuts the soft target with that
  crop (padding with 0, as the image), drops the singleton axis of a 2-D patch as nnU-Net does for image and
  label, and hands it to the real transforms as ``regression_target``, so every spatial transform (spatial,
  mirror, 2D/3D conversion) moves it exactly as the image; intensity transforms leave it alone.

``generate_train_batch`` then adds ``soft_target`` (collated like ``target``: a tensor, or a list of tensors
per deep-supervision scale) and ``bboxes`` (each sample's crop in the preprocessed case) to nnU-Net's batch.
``tests/test_nnunet_guards.py`` notices when nnU-Net's loader changes (the call order is its contract).
"""

from __future__ import annotations

import numpy as np
import torch
from acvl_utils.cropping_and_padding.bounding_boxes import crop_and_pad_nd
from nnunetv2.training.dataloading.data_loader import nnUNetDataLoader

from nnunet_spine.integration.soft_targets.layout import load_soft_target


class nnUNetDataLoaderSoft(nnUNetDataLoader):
    """nnU-Net's data loader whose batches also carry ``soft_target`` and ``bboxes`` (see the module docstring).

    Batches: ``data``, ``target`` (nnU-Net's integer labels, a list per deep-supervision scale),
    ``soft_target`` (float, same structure), ``keys`` and ``bboxes``.
    """

    # --------------------------------------------------------------------- the hooks nnU-Net's loader calls
    def get_indices(self):
        keys = super().get_indices()
        self._batch_keys: list[str] = list(keys)
        self._batch_bboxes: list[list] = []
        self._batch_soft_arrays: list = []
        self._batch_soft: list = []
        return keys

    def get_bbox(self, data_shape, force_fg, class_locations, overwrite_class=None, verbose=False):
        key = self._batch_keys[len(self._batch_bboxes)]
        soft = load_soft_target(self._data.source_folder, key)
        soft_shape = tuple(soft.shape[1:])
        if soft_shape != tuple(data_shape):
            raise RuntimeError(
                f"soft target of {key} has shape {soft_shape}, case has {tuple(data_shape)}: "
                f"re-run 'nnspine preprocess-soft --overwrite'"
            )
        bbox_lbs, bbox_ubs = super().get_bbox(data_shape, force_fg, class_locations, overwrite_class, verbose)
        self._batch_bboxes.append([[int(a), int(b)] for a, b in zip(bbox_lbs, bbox_ubs)])
        self._batch_soft_arrays.append(soft)
        return bbox_lbs, bbox_ubs

    @property
    def transforms(self):
        """What nnU-Net's loader calls per sample: :meth:`_transform_with_soft_target` (never ``None``)."""
        return self._transform_with_soft_target

    @transforms.setter
    def transforms(self, value) -> None:
        # nnU-Net's __init__ assigns its transforms here; they are applied inside _transform_with_soft_target
        self._inner_transforms = value

    def _transform_with_soft_target(self, image: torch.Tensor, segmentation: torch.Tensor) -> dict:
        j = len(self._batch_soft)
        soft = torch.from_numpy(
            crop_and_pad_nd(self._batch_soft_arrays[j], self._batch_bboxes[j], 0, cast_cropped_to=np.float32)
        ).float()
        if self.patch_size_was_2d:
            soft = soft[:, 0]
        if self._inner_transforms is None:
            out = {"image": image, "segmentation": segmentation, "regression_target": soft}
        else:
            out = self._inner_transforms(image=image, segmentation=segmentation, regression_target=soft)
        self._batch_soft.append(out["regression_target"])
        return out

    # ------------------------------------------------------------------------------------------- the batch
    def generate_train_batch(self) -> dict:
        batch = super().generate_train_batch()
        if len(self._batch_soft) != len(batch["keys"]):
            raise RuntimeError(
                f"nnUNetDataLoaderSoft: nnU-Net's loader made {len(self._batch_soft)} transform calls "
                f"for {len(batch['keys'])} samples; its call order changed (see "
                f"tests/test_nnunet_guards.py)"
            )
        batch["soft_target"] = _collate(self._batch_soft)
        batch["bboxes"] = self._batch_bboxes
        return batch


def _collate(samples: list):
    """Stack per-sample tensors (or lists of tensors, one per scale) into a batch, as nnU-Net collates ``target``."""
    if isinstance(samples[0], (list, tuple)):
        return [torch.stack([s[k] for s in samples]) for k in range(len(samples[0]))]
    return torch.stack(samples)
