"""Soft (partial-volume) cord targets through stock nnU-Net v2.

nnU-Net only knows integer label maps: its preprocessing casts labels to int8/int16, so a soft mask given
as a label would silently be binarized. Soft targets therefore travel *beside* the integer labels:

1. **Raw data** (written by the dataset converter): ``$nnUNet_raw/DatasetXXX_NAME/labelsTr_soft/<case><ending>``,
   float masks in [0, 1] on the grid of ``labelsTr/<case><ending>`` (which holds the mask binarized at 0.5).
2. **Preprocessing** (:func:`preprocess_soft`, CLI ``nnspine preprocess-soft``, run after
   ``nnUNetv2_plan_and_preprocess``): every soft mask is read with the plans' reader, transposed
   (``transpose_forward``), cropped to the bounding box nnU-Net used for the image (``bbox_used_for_cropping``
   in the case's ``.pkl``) and resampled to the configuration's spacing with *linear* interpolation (nnU-Net's
   ``resample_data_or_seg_to_shape`` with ``order=1``; along an anisotropic axis nnU-Net's ``order_z`` rule is
   kept, as for the image). The result goes to::

       $nnUNet_preprocessed/DatasetXXX_NAME/<data_identifier>/soft_targets/<case>.b2nd
       $nnUNet_preprocessed/DatasetXXX_NAME/<data_identifier>/soft_targets/soft_targets.json

   i.e. a sub-folder of the preprocessed cases: float32, shape ``(1, *case shape)`` exactly like the case's
   ``<case>.b2nd``, Blosc2-compressed with the chunking nnU-Net uses for its own arrays. A sub-folder is used
   (not ``<case>_soft.b2nd``) because nnU-Net treats every ``*.b2nd`` not ending in ``_seg.b2nd`` in the case
   folder as a training case; sub-folders are invisible to it. Re-running ``nnUNetv2_plan_and_preprocess``
   deletes the case folder and so the (then stale) soft targets with it. ``soft_targets.json`` records the
   provenance and, per case, the Dice between ``soft > 0.5`` and nnU-Net's integer label (a sanity check: it
   should be close to 1).
3. **Data loading** (:class:`nnUNetDataLoaderSoft`): the patch of the soft target is cut with the same
   bounding box as image and label (foreground oversampling uses nnU-Net's ``class_locations`` of the cord
   label) and passed through batchgeneratorsv2's transforms as ``regression_target``, which every spatial
   transform (spatial, mirror, 2D/3D conversion) applies exactly as to the image (bilinear, zero padding);
   intensity transforms leave it alone. :class:`DownsampleSoftTargetForDSTransform` then builds the deep
   supervision pyramid by area averaging (the partial-volume fraction of each coarse voxel) at the shapes
   nnU-Net uses for the label pyramid. Batches carry ``soft_target`` (list of float tensors, one per scale)
   beside nnU-Net's ``target``.
4. **Losses** (:class:`SoftTargetLoss`), on the cord probability ``p = softmax(logits)[:, 1]`` of a stock
   2-channel head, against the soft target ``s``:

   * ``MSE = mean((p - s)²)``;
   * soft Dice loss ``1 - (2 Σ p s + ε) / (Σ p² + Σ s² + ε)`` (squared denominator, Milletari et al. 2016): it is
     0 exactly when ``p = s``, also for fractional ``s`` (the usual ``Σp + Σs`` form is not minimal at ``p = s``);
   * adaptive wing loss (Wang et al., ICCV 2019), with its weighted loss map.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, List, Sequence, Tuple, Union

import numpy as np
import torch
from batchgeneratorsv2.transforms.base.basic_transform import BasicTransform
from nnunetv2.training.dataloading.data_loader import nnUNetDataLoader
from torch import nn

from dataset_converters.nnunet_raw import LABELS_TR_SOFT
from nnunet_extensions.io import InputError, check_same_grid, load_image, read_image, check_3d

#: Sub-folder of a preprocessed configuration folder holding the preprocessed soft targets.
PREPROCESSED_SOFT_FOLDER = "soft_targets"
#: Provenance/summary file inside :data:`PREPROCESSED_SOFT_FOLDER`.
MANIFEST_NAME = "soft_targets.json"
#: Interpolation order used for soft masks (linear).
SOFT_ORDER = 1


# ================================================================================================= paths
def soft_folder(data_folder: Union[str, os.PathLike]) -> Path:
    """Folder of the preprocessed soft targets of one preprocessed configuration folder."""
    return Path(data_folder) / PREPROCESSED_SOFT_FOLDER


def soft_target_file(data_folder: Union[str, os.PathLike], identifier: str) -> Path:
    """Preprocessed soft target of one case."""
    return soft_folder(data_folder) / f"{identifier}.b2nd"


def raw_soft_file(raw_dataset_folder: Union[str, os.PathLike], identifier: str, file_ending: str) -> Path:
    """Raw soft mask of one training case."""
    return Path(raw_dataset_folder) / LABELS_TR_SOFT / f"{identifier}{file_ending}"


def _require_env(name: str) -> Path:
    value = os.environ.get(name)
    if not value:
        raise InputError(f"environment variable {name} is not set (nnU-Net's folders must be defined)")
    return Path(value)


def resolve_dataset(dataset: Union[int, str]) -> Tuple[str, Path, Path]:
    """``(dataset name, raw folder, preprocessed folder)`` of a dataset given by id or name."""
    raw_root = _require_env("nnUNet_raw")
    pre_root = _require_env("nnUNet_preprocessed")
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    try:
        name = maybe_convert_to_dataset_name(str(dataset))
    except (RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0].split(" Make sure")[0]  # nnU-Net's hint lists folders after it
        raise InputError(f"dataset {dataset}: {first} (nnUNet_raw={raw_root}, nnUNet_preprocessed={pre_root})") from None
    raw = raw_root / name
    pre = pre_root / name
    if not raw.is_dir():
        raise InputError(f"{raw}: raw dataset folder not found")
    if not pre.is_dir():
        raise InputError(f"{pre}: preprocessed dataset folder not found (run nnUNetv2_plan_and_preprocess first)")
    return name, raw, pre


# ========================================================================================= preprocessing
def check_raw_soft(soft_file: Union[str, os.PathLike], label_file: Union[str, os.PathLike, None]) -> None:
    """Validate one raw soft mask: readable, 3-D, finite, in [0, 1], on the grid of its label.

    Raises :class:`InputError` naming the soft file.
    """
    soft = load_image(soft_file, "soft")  # missing / unreadable / NaN / outside [0, 1]
    if label_file is not None:
        label = check_3d(read_image(label_file))
        check_same_grid(label, soft)


def preprocess_soft_array(soft: np.ndarray, properties: dict, plans_manager, configuration_manager,
                          name: str = "<soft mask>") -> np.ndarray:
    """Transpose, crop and resample a soft mask exactly as nnU-Net did its case.

    ``soft`` is ``(1, *shape)`` as returned by the plans' reader (``read_seg``); ``properties`` is the case's
    ``.pkl`` written by nnU-Net's preprocessing. Returns float32 ``(1, *preprocessed shape)`` in [0, 1].
    """
    from acvl_utils.cropping_and_padding.bounding_boxes import bounding_box_to_slice
    from nnunetv2.preprocessing.resampling.default_resampling import (compute_new_shape,
                                                                      resample_data_or_seg_to_shape)

    tf = list(plans_manager.transpose_forward)
    soft = np.asarray(soft, dtype=np.float32).transpose([0, *[i + 1 for i in tf]])
    expected = tuple(int(i) for i in properties["shape_before_cropping"])
    if tuple(soft.shape[1:]) != expected:
        raise InputError(f"{name}: shape {tuple(soft.shape[1:])} (after transpose) differs from the image nnU-Net "
                         f"preprocessed {expected}")
    soft = soft[(slice(None), *bounding_box_to_slice(properties["bbox_used_for_cropping"]))]
    after_crop = tuple(int(i) for i in properties["shape_after_cropping_and_before_resampling"])
    assert tuple(soft.shape[1:]) == after_crop, (soft.shape, after_crop)

    original_spacing = [properties["spacing"][i] for i in tf]
    target_spacing = list(configuration_manager.spacing)
    if len(target_spacing) < len(soft.shape[1:]):  # 2d configuration: spacing between slices unchanged
        target_spacing = [original_spacing[0]] + target_spacing
    new_shape = compute_new_shape(soft.shape[1:], original_spacing, target_spacing)
    kwargs = dict(configuration_manager.configuration.get("resampling_fn_data_kwargs", {}))
    soft = resample_data_or_seg_to_shape(
        soft, new_shape, original_spacing, target_spacing, is_seg=False, order=SOFT_ORDER,
        order_z=int(kwargs.get("order_z", 0)), force_separate_z=kwargs.get("force_separate_z", None))
    return np.clip(soft, 0.0, 1.0).astype(np.float32, copy=False)


def save_soft_target(soft: np.ndarray, path: Union[str, os.PathLike], patch_size: Sequence[int]) -> Path:
    """Write a preprocessed soft target (Blosc2, nnU-Net's chunking for this patch size), atomically."""
    import blosc2
    from nnunetv2.training.dataloading.nnunet_dataset import comp_blosc2_params

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    blocks, chunks = comp_blosc2_params(soft.shape, tuple(patch_size), soft.itemsize)
    tmp = path.parent / f".{path.stem}.{os.getpid()}.tmp.b2nd"
    if tmp.exists():
        tmp.unlink()
    try:
        cparams = {"codec": blosc2.Codec.LZ4HC, "clevel": 5, "nthreads": 1, "filters": [blosc2.Filter.SHUFFLE]}
        blosc2.asarray(np.ascontiguousarray(soft, dtype=np.float32), urlpath=str(tmp), chunks=chunks,
                       blocks=blocks, cparams=cparams)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def load_soft_target(data_folder: Union[str, os.PathLike], identifier: str):
    """Open a preprocessed soft target (memory-mapped Blosc2 array, shape ``(1, *case shape)``)."""
    import blosc2

    f = soft_target_file(data_folder, identifier)
    if not f.is_file():
        raise FileNotFoundError(f"{f}: soft target missing; run 'nnspine preprocess-soft' for this configuration")
    kwargs = {} if os.name == "nt" else {"mmap_mode": "r"}
    return blosc2.open(urlpath=str(f), mode="r", dparams={"nthreads": 1}, **kwargs)


def missing_soft_targets(data_folder: Union[str, os.PathLike], identifiers: Iterable[str]) -> List[str]:
    """Identifiers whose preprocessed soft target is missing."""
    return [i for i in identifiers if not soft_target_file(data_folder, i).is_file()]


def _dice_binary(a: np.ndarray, b: np.ndarray) -> float:
    inter = float(np.logical_and(a, b).sum())
    denom = float(a.sum() + b.sum())
    return 1.0 if denom == 0 else 2.0 * inter / denom


@dataclass
class _CaseJob:
    identifier: str
    soft_file: str
    label_file: Union[str, None]
    data_folder: str
    plans: dict
    configuration: str


def _process_case(job: _CaseJob) -> dict:
    """Validate, preprocess and store the soft target of one case (runs in worker processes too)."""
    import blosc2
    from batchgenerators.utilities.file_and_folder_operations import load_pickle
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    check_raw_soft(job.soft_file, job.label_file)
    plans_manager = PlansManager(job.plans)
    cm = plans_manager.get_configuration(job.configuration)
    properties = load_pickle(os.path.join(job.data_folder, job.identifier + ".pkl"))
    rw = plans_manager.image_reader_writer_class()
    soft, _ = rw.read_seg(job.soft_file)
    soft = preprocess_soft_array(soft, properties, plans_manager, cm, name=job.soft_file)

    seg = blosc2.open(urlpath=os.path.join(job.data_folder, job.identifier + "_seg.b2nd"), mode="r")[:]
    if tuple(seg.shape) != tuple(soft.shape):
        raise InputError(f"{job.soft_file}: preprocessed shape {tuple(soft.shape[1:])} differs from nnU-Net's "
                         f"preprocessed case {tuple(seg.shape[1:])} (re-run nnUNetv2_plan_and_preprocess?)")
    agreement = _dice_binary(soft[0] > 0.5, seg[0] > 0)
    save_soft_target(soft, soft_target_file(job.data_folder, job.identifier), cm.patch_size)
    fractional = float(np.mean((soft > 0.01) & (soft < 0.99)))
    return {"case": job.identifier, "shape": list(soft.shape[1:]), "dice_soft_gt_0.5_vs_label": round(agreement, 5),
            "fraction_of_partial_voxels": round(fractional, 5), "source": job.soft_file}


def preprocess_soft(dataset: Union[int, str], configurations: Sequence[str] = ("3d_fullres",),
                    plans_identifier: str = "nnUNetPlans", overwrite: bool = False, num_processes: int = 1,
                    progress: bool = True) -> dict:
    """Preprocess the soft masks of a dataset for the given configurations (see the module docstring).

    Returns ``{configuration: manifest dict}``. Raises :class:`InputError` (naming the file) for a missing
    dataset/plans/configuration, missing ``labelsTr_soft`` folder or file, a soft mask whose grid differs from
    its label, values outside [0, 1] or NaN, and for existing outputs unless ``overwrite``.
    """
    from batchgenerators.utilities.file_and_folder_operations import load_json
    from tqdm import tqdm
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
    from nnunetv2.utilities.utils import get_filenames_of_train_images_and_targets

    name, raw, pre = resolve_dataset(dataset)
    plans_file = pre / f"{plans_identifier}.json"
    if not plans_file.is_file():
        raise InputError(f"{plans_file}: plans not found (run nnUNetv2_plan_and_preprocess, or check -p)")
    plans = load_json(str(plans_file))
    dataset_json_file = raw / "dataset.json"
    if not dataset_json_file.is_file():
        raise InputError(f"{dataset_json_file}: file not found")
    dataset_json = load_json(str(dataset_json_file))
    file_ending = dataset_json.get("file_ending")
    if not file_ending:
        raise InputError(f"{dataset_json_file}: no 'file_ending'")
    if not (raw / LABELS_TR_SOFT).is_dir():
        raise InputError(f"{raw / LABELS_TR_SOFT}: folder of soft masks not found")
    try:
        raw_cases = get_filenames_of_train_images_and_targets(str(raw), dataset_json)
    except Exception as exc:  # nnU-Net raises assorted errors for malformed raw folders
        raise InputError(f"{raw}: cannot list training cases ({type(exc).__name__}: {exc})") from None

    plans_manager = PlansManager(plans)
    results = {}
    for configuration in configurations:
        if configuration not in plans_manager.available_configurations:
            raise InputError(f"{plans_file}: no configuration '{configuration}' "
                             f"(available: {', '.join(plans_manager.available_configurations)})")
        cm = plans_manager.get_configuration(configuration)
        data_folder = pre / cm.data_identifier
        if not data_folder.is_dir():
            raise InputError(f"{data_folder}: preprocessed data not found (run nnUNetv2_plan_and_preprocess "
                             f"-d {dataset} -c {configuration})")
        identifiers = sorted(p.name[:-4] for p in data_folder.glob("*.pkl"))
        if not identifiers:
            raise InputError(f"{data_folder}: no preprocessed cases (*.pkl)")
        jobs = []
        for ident in identifiers:
            soft = raw_soft_file(raw, ident, file_ending)
            if not soft.is_file():
                raise InputError(f"{soft}: soft mask not found (expected one per training case)")
            out = soft_target_file(data_folder, ident)
            if out.exists() and not overwrite:
                raise InputError(f"{out}: output exists (use --overwrite to replace it)")
            label = raw_cases.get(ident, {}).get("label")
            jobs.append(_CaseJob(ident, str(soft), label, str(data_folder), plans, configuration))

        soft_folder(data_folder).mkdir(exist_ok=True)
        rows = []
        desc = f"Soft targets {configuration}"
        with tqdm(total=len(jobs), desc=desc, disable=not progress, unit="case") as bar:
            if num_processes <= 1:
                for job in jobs:
                    rows.append(_process_case(job))
                    bar.update()
            else:
                import multiprocessing

                with multiprocessing.get_context("spawn").Pool(num_processes) as pool:
                    for row in pool.imap_unordered(_process_case, jobs):
                        rows.append(row)
                        bar.update()
        rows.sort(key=lambda r: r["case"])
        kwargs = dict(cm.configuration.get("resampling_fn_data_kwargs", {}))
        manifest = {
            "dataset": name,
            "plans": plans_identifier,
            "configuration": configuration,
            "source_folder": str(raw / LABELS_TR_SOFT),
            "layout": f"{PREPROCESSED_SOFT_FOLDER}/<case>.b2nd, float32, shape (1, *case shape), values in [0, 1]",
            "resampling": {"function": "resample_data_or_seg_to_shape", "order": SOFT_ORDER,
                           "order_z": int(kwargs.get("order_z", 0)),
                           "force_separate_z": kwargs.get("force_separate_z", None)},
            "target_spacing": list(cm.spacing),
            "transpose_forward": list(plans_manager.transpose_forward),
            "cases": rows,
        }
        tmp = soft_folder(data_folder) / f".{MANIFEST_NAME}.tmp"
        tmp.write_text(json.dumps(manifest, indent=2))
        os.replace(tmp, soft_folder(data_folder) / MANIFEST_NAME)
        results[configuration] = manifest
    return results


# ================================================================================== data loading / aug
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


class DownsampleSoftTargetForDSTransform(BasicTransform):
    """Deep-supervision pyramid of the soft target (``regression_target``) by area averaging.

    Output shapes are those of nnU-Net's ``DownsampleSegForDSTransform`` (``round(shape * scale)``), so each
    level matches the network output of that scale; each coarse voxel gets the mean soft value of the fine
    voxels it covers, i.e. its partial-volume fraction (nnU-Net's labels use nearest neighbour instead).
    """

    def __init__(self, ds_scales: Union[List, Tuple]):
        super().__init__()
        self.ds_scales = ds_scales

    def apply(self, data_dict, **params):
        target = data_dict.get('regression_target')
        if target is not None:
            data_dict['regression_target'] = self._downsample(target)
        return data_dict

    def _downsample(self, target: torch.Tensor) -> List[torch.Tensor]:
        results = []
        for s in self.ds_scales:
            if not isinstance(s, (tuple, list)):
                s = [s] * (target.ndim - 1)
            assert len(s) == target.ndim - 1
            if all(i == 1 for i in s):
                results.append(target)
            else:
                new_shape = [round(i * j) for i, j in zip(target.shape[1:], s)]
                results.append(torch.nn.functional.interpolate(target[None].float(), new_shape, mode='area')[0])
        return results


# ============================================================================================== losses
def foreground_probability(logits: torch.Tensor) -> torch.Tensor:
    """Cord probability ``softmax(logits)[:, 1:2]`` of a 2-channel (background, cord) output, in float32."""
    return torch.softmax(logits.float(), 1)[:, 1:2]


def _as_float_target(target: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    target = target.float()
    if target.ndim == like.ndim - 1:
        target = target[:, None]
    if target.shape != like.shape:
        raise ValueError(f"soft target shape {tuple(target.shape)} does not match prediction {tuple(like.shape)}")
    return target


def soft_dice_loss(p: torch.Tensor, s: torch.Tensor, batch_dice: bool = False, smooth: float = 1e-5) -> torch.Tensor:
    """``1 - (2 Σ p s + smooth) / (Σ p² + Σ s² + smooth)``, per sample (or over the batch), averaged.

    Zero if and only if ``p == s`` (since ``p² + s² ≥ 2 p s``), also for fractional targets.
    """
    axes = tuple(range(2, p.ndim))
    if batch_dice:
        axes = (0,) + axes
    inter = (p * s).sum(axes)
    denom = (p * p).sum(axes) + (s * s).sum(axes)
    dice = (2 * inter + smooth) / (denom + smooth)
    return 1 - dice.mean()


def adaptive_wing_loss(p: torch.Tensor, s: torch.Tensor, omega: float = 14.0, theta: float = 0.5,
                       epsilon: float = 1.0, alpha: float = 2.1, loss_map_weight: float = 10.0,
                       loss_map_threshold: float = 0.2) -> torch.Tensor:
    """Adaptive wing loss (Wang, Bo & Fuxin, ICCV 2019, eq. 8) with its weighted loss map (section 4.3).

    With ``d = |s - p|`` and exponent ``a = alpha - s``::

        AWing = omega * ln(1 + (d / epsilon)^a)        if d < theta
              = A * d - C                               otherwise
        A = omega / (1 + (theta/epsilon)^a) * a * (theta/epsilon)^(a - 1) / epsilon
        C = theta * A - omega * ln(1 + (theta/epsilon)^a)

    The loss map ``M`` is the target thresholded at ``loss_map_threshold`` and dilated by one voxel (3×3(×3));
    the returned loss is ``mean(AWing * (loss_map_weight * M + 1))``. Zero when ``p == s``.
    """
    d = (s - p).abs()
    a = alpha - s
    ratio = theta / epsilon
    A = omega * (1.0 / (1.0 + torch.pow(torch.full_like(a, ratio), a))) * a * \
        torch.pow(torch.full_like(a, ratio), a - 1.0) / epsilon
    C = theta * A - omega * torch.log1p(torch.pow(torch.full_like(a, ratio), a))
    small = omega * torch.log1p(torch.pow(d / epsilon, a))
    large = A * d - C
    loss = torch.where(d < theta, small, large)
    if loss_map_weight:
        with torch.no_grad():
            m = (s >= loss_map_threshold).float()
            pool = torch.nn.functional.max_pool3d if s.ndim == 5 else torch.nn.functional.max_pool2d
            m = pool(m, kernel_size=3, stride=1, padding=1)
        loss = loss * (loss_map_weight * m + 1.0)
    return loss.mean()


class SoftTargetLoss(nn.Module):
    """Weighted sum of MSE, soft Dice and adaptive wing loss between ``softmax(logits)[:, 1]`` and a soft target.

    ``forward(logits, soft_target)``: logits ``(B, 2, *spatial)``, soft target ``(B, 1, *spatial)`` (or
    ``(B, *spatial)``) in [0, 1]. Terms with weight 0 are not computed.
    """

    def __init__(self, weight_mse: float = 1.0, weight_dice: float = 1.0, weight_adapwing: float = 0.0,
                 batch_dice: bool = False, smooth: float = 1e-5, adapwing_kwargs: dict | None = None):
        super().__init__()
        if not any((weight_mse, weight_dice, weight_adapwing)):
            raise ValueError("at least one loss weight must be non-zero")
        self.weight_mse = float(weight_mse)
        self.weight_dice = float(weight_dice)
        self.weight_adapwing = float(weight_adapwing)
        self.batch_dice = bool(batch_dice)
        self.smooth = float(smooth)
        self.adapwing_kwargs = dict(adapwing_kwargs or {})

    def forward(self, logits: torch.Tensor, soft_target: torch.Tensor) -> torch.Tensor:
        p = foreground_probability(logits)
        s = _as_float_target(soft_target, p)
        loss = p.new_zeros(())
        if self.weight_mse:
            loss = loss + self.weight_mse * torch.mean((p - s) ** 2)
        if self.weight_dice:
            loss = loss + self.weight_dice * soft_dice_loss(p, s, self.batch_dice, self.smooth)
        if self.weight_adapwing:
            loss = loss + self.weight_adapwing * adaptive_wing_loss(p, s, **self.adapwing_kwargs)
        return loss

    def extra_repr(self) -> str:
        return (f"weight_mse={self.weight_mse}, weight_dice={self.weight_dice}, "
                f"weight_adapwing={self.weight_adapwing}, batch_dice={self.batch_dice}")


# ============================================================================================= metrics
#: Order of the sums returned by :func:`soft_metric_sums`.
SOFT_SUM_KEYS = ("sum_ps", "sum_pp", "sum_ss", "sq_err_soft", "sq_err_binary", "n_voxels")


def soft_metric_sums(logits: torch.Tensor, soft_target: torch.Tensor, label: torch.Tensor) -> np.ndarray:
    """Sums for the epoch-level soft metrics of a batch (see :func:`soft_metrics_from_sums`).

    ``label`` is nnU-Net's integer target (cord = 1); ``(label > 0)`` is the binarized target.
    """
    with torch.no_grad():
        p = foreground_probability(logits)
        s = _as_float_target(soft_target, p)
        b = _as_float_target((label > 0), p)
        sums = torch.stack([(p * s).sum(), p.sum(), s.sum(), ((p - s) ** 2).sum(),
                            ((p - b) ** 2).sum(), torch.tensor(float(p.numel()), device=p.device)])
    return sums.double().cpu().numpy()


def soft_metrics_from_sums(sums: np.ndarray) -> dict:
    """``soft_dice`` (2 Σps / (Σp + Σs) over the whole epoch: the definition ``nnspine evaluate softseg`` uses,
    :func:`postprocessing.metrics.soft_dice`), ``mse_soft`` (vs the soft target) and ``mse_binary`` (vs
    nnU-Net's binarized label) from summed :func:`soft_metric_sums`."""
    ps, p_sum, s_sum, e_soft, e_bin, n = (float(x) for x in sums)
    denom = p_sum + s_sum
    return {
        "soft_dice": 1.0 if denom == 0 else 2.0 * ps / denom,
        "mse_soft": e_soft / max(n, 1.0),
        "mse_binary": e_bin / max(n, 1.0),
    }
