"""nnU-Net's data loader plus the soft target, cut at the same place and augmented as ``regression_target``."""

from __future__ import annotations

import numpy as np
import torch
from nnunetv2.training.dataloading.data_loader import nnUNetDataLoader

from nnunet_extensions.soft_targets.layout import load_soft_target


class nnUNetDataLoaderSoft(nnUNetDataLoader):
    """nnU-Net's data loader plus the soft target, cut at the same place and augmented as ``regression_target``.

    Batches: ``data``, ``target`` (nnU-Net's integer labels, a list per deep-supervision scale),
    ``soft_target`` (float, same structure), ``keys`` and ``bboxes`` (the crop of each sample in the
    preprocessed case, before the transforms). Foreground oversampling is nnU-Net's (cord ``class_locations``).
    """

    def generate_train_batch(self):
        from acvl_utils.cropping_and_padding.bounding_boxes import crop_and_pad_nd
        from threadpoolctl import threadpool_limits

        selected_keys = self.get_indices()
        data_all = seg_all = soft_all = None
        bboxes = []
        with torch.no_grad():
            with threadpool_limits(limits=1, user_api=None):
                for j, key in enumerate(selected_keys):
                    force_fg = self.get_do_oversample(j)
                    data, seg, seg_prev, properties = self._data.load_case(key)
                    soft = load_soft_target(self._data.source_folder, key)
                    shape = data.shape[1:]
                    if tuple(soft.shape[1:]) != tuple(shape):
                        raise RuntimeError(f"soft target of {key} has shape {tuple(soft.shape[1:])}, case has "
                                           f"{tuple(shape)}: re-run 'nnspine preprocess-soft --overwrite'")
                    bbox_lbs, bbox_ubs = self.get_bbox(shape, force_fg, properties['class_locations'])
                    bbox = [[a, b] for a, b in zip(bbox_lbs, bbox_ubs)]
                    bboxes.append(bbox)

                    data_cropped = torch.from_numpy(crop_and_pad_nd(data, bbox, 0)).float()
                    seg_cropped = torch.from_numpy(
                        crop_and_pad_nd(seg, bbox, -1, cast_cropped_to=np.int16)).to(torch.int16)
                    soft_cropped = torch.from_numpy(
                        crop_and_pad_nd(soft, bbox, 0, cast_cropped_to=np.float32)).float()
                    if seg_prev is not None:
                        seg_prev_cropped = torch.from_numpy(
                            crop_and_pad_nd(seg_prev, bbox, -1, cast_cropped_to=np.int16)).to(torch.int16)
                        seg_cropped = torch.cat((seg_cropped, seg_prev_cropped[None]), dim=0)

                    if self.patch_size_was_2d:
                        data_cropped = data_cropped[:, 0]
                        seg_cropped = seg_cropped[:, 0]
                        soft_cropped = soft_cropped[:, 0]

                    if self.transforms is not None:
                        out = self.transforms(**{'image': data_cropped, 'segmentation': seg_cropped,
                                                 'regression_target': soft_cropped})
                        data_sample, seg_sample, soft_sample = out['image'], out['segmentation'], \
                            out['regression_target']
                    else:
                        data_sample, seg_sample, soft_sample = data_cropped, seg_cropped, soft_cropped

                    if data_all is None:
                        data_all = torch.empty((self.batch_size, *data_sample.shape), dtype=torch.float32)
                    data_all[j] = data_sample
                    seg_all = _collate_into(seg_all, seg_sample, j, self.batch_size)
                    soft_all = _collate_into(soft_all, soft_sample, j, self.batch_size)
        return {'data': data_all, 'target': seg_all, 'soft_target': soft_all, 'keys': selected_keys,
                'bboxes': bboxes}


def _collate_into(buffer, sample, j: int, batch_size: int):
    """Write sample ``j`` (a tensor or a list of tensors, one per scale) into the batch buffer."""
    if isinstance(sample, list):
        if buffer is None:
            buffer = [torch.empty((batch_size, *s.shape), dtype=s.dtype) for s in sample]
        for k, s in enumerate(sample):
            buffer[k][j] = s
    else:
        if buffer is None:
            buffer = torch.empty((batch_size, *sample.shape), dtype=sample.dtype)
        buffer[j] = sample
    return buffer
