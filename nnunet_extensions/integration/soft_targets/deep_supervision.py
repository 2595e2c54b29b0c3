"""Deep-supervision pyramid of the soft target, by area averaging (a batchgeneratorsv2 transform)."""

from __future__ import annotations

import torch
from batchgeneratorsv2.transforms.base.basic_transform import BasicTransform


class DownsampleSoftTargetForDSTransform(BasicTransform):
    """Deep-supervision pyramid of the soft target (``regression_target``) by area averaging.

    Output shapes are those of nnU-Net's ``DownsampleSegForDSTransform`` (``round(shape * scale)``), so each
    level matches the network output of that scale; each coarse voxel gets the mean soft value of the fine
    voxels it covers, i.e. its partial-volume fraction (nnU-Net's labels use nearest neighbour instead).
    """

    def __init__(self, ds_scales: list | tuple):
        super().__init__()
        self.ds_scales = ds_scales

    def apply(self, data_dict, **params):
        target = data_dict.get("regression_target")
        if target is not None:
            data_dict["regression_target"] = self._downsample(target)
        return data_dict

    def _downsample(self, target: torch.Tensor) -> list[torch.Tensor]:
        results = []
        for s in self.ds_scales:
            if not isinstance(s, (tuple, list)):
                s = [s] * (target.ndim - 1)
            assert len(s) == target.ndim - 1
            if all(i == 1 for i in s):
                results.append(target)
            else:
                new_shape = [round(i * j) for i, j in zip(target.shape[1:], s)]
                results.append(torch.nn.functional.interpolate(target[None].float(), new_shape, mode="area")[0])
        return results
