"""Soft-target preprocessing: each raw soft mask cropped and resampled exactly as nnU-Net did its case.

Run after ``nnUNetv2_plan_and_preprocess`` (CLI ``nnspine preprocess-soft``). Every soft mask is read with the
plans' reader, transposed (``transpose_forward``), cropped to the bounding box nnU-Net used for the image
(``bbox_used_for_cropping`` in the case's ``.pkl``) and resampled to the configuration's spacing with *linear*
interpolation by the resampling function the plans name for the images (``resampling_fn_data``, see
:func:`soft_resampling`): nnU-Net's default ``resample_data_or_seg_to_shape`` with ``order=1`` instead of the
images' cubic order (a soft target must stay within [0, 1]; along an anisotropic axis nnU-Net's ``order_z``
rule is kept, as for the image), or the ``*_torchres`` plans' ``resample_torch_fornnunet`` with the plans' own
arguments (already linear for images). Plans naming another function are refused by name. The result is stored
as described in :mod:`.layout`;
``soft_targets.json`` records the provenance and, per case, the Dice between ``soft > 0.5`` and nnU-Net's
integer label (a sanity check: it should be close to 1).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from nnunet_spine.core.dataset_json import LABELS_TR_SOFT
from nnunet_spine.core.io import InputError, check_3d, check_same_grid, load_image, read_image
from nnunet_spine.core.nnunet_folders import resolve_dataset
from nnunet_spine.integration.soft_targets.layout import (
    MANIFEST_NAME,
    PREPROCESSED_SOFT_FOLDER,
    raw_soft_file,
    save_soft_target,
    soft_folder,
    soft_target_file,
)

#: Interpolation order used for soft masks (linear).
SOFT_ORDER = 1
#: The plans' ``resampling_fn_data`` values soft targets can follow (nnU-Net 2.8's two data resamplers).
SUPPORTED_RESAMPLING = ("resample_data_or_seg_to_shape", "resample_torch_fornnunet")


def soft_resampling(configuration_manager) -> dict:
    """How the soft targets of a configuration are resampled (recorded in ``soft_targets.json``): the plans'
    data resampling function and its arguments, linear. :class:`InputError` naming the function when the plans
    use one that soft targets cannot follow (another could extrapolate outside [0, 1] or need other arguments)."""
    name = configuration_manager.configuration.get("resampling_fn_data")
    kwargs = dict(configuration_manager.configuration.get("resampling_fn_data_kwargs", {}))
    if name == "resample_data_or_seg_to_shape":
        return {
            "function": name,
            "order": SOFT_ORDER,
            "order_z": int(kwargs.get("order_z", 0)),
            "force_separate_z": kwargs.get("force_separate_z", None),
        }
    if name == "resample_torch_fornnunet" and kwargs.get("mode", "linear") == "linear" and not kwargs.get("is_seg"):
        return {"function": name, **{k: v for k, v in kwargs.items() if k != "is_seg"}, "mode": "linear"}
    raise InputError(
        f"plans' resampling_fn_data {name!r} with {kwargs} cannot resample soft targets (supported: "
        f"{', '.join(SUPPORTED_RESAMPLING)}, linear); plan with nnU-Net's default or *_torchres planner"
    )


def check_raw_soft(soft_file: str | os.PathLike, label_file: str | os.PathLike | None) -> None:
    """Validate one raw soft mask: readable, 3-D, finite, in [0, 1], on the grid of its label.

    Raises :class:`InputError` naming the soft file.
    """
    soft = load_image(soft_file, "soft")  # missing / unreadable / NaN / outside [0, 1]
    if label_file is not None:
        label = check_3d(read_image(label_file))
        check_same_grid(label, soft)


def preprocess_soft_array(
    soft: np.ndarray, properties: dict, plans_manager, configuration_manager, name: str = "<soft mask>"
) -> np.ndarray:
    """Transpose, crop and resample a soft mask exactly as nnU-Net did its case.

    ``soft`` is ``(1, *shape)`` as returned by the plans' reader (``read_seg``); ``properties`` is the case's
    ``.pkl`` written by nnU-Net's preprocessing. Returns float32 ``(1, *preprocessed shape)`` in [0, 1].
    """
    from acvl_utils.cropping_and_padding.bounding_boxes import bounding_box_to_slice
    from nnunetv2.preprocessing.resampling.default_resampling import compute_new_shape, resample_data_or_seg_to_shape

    tf = list(plans_manager.transpose_forward)
    soft = np.asarray(soft, dtype=np.float32).transpose([0, *[i + 1 for i in tf]])
    expected = tuple(int(i) for i in properties["shape_before_cropping"])
    if tuple(soft.shape[1:]) != expected:
        raise InputError(
            f"{name}: shape {tuple(soft.shape[1:])} (after transpose) differs from the image nnU-Net "
            f"preprocessed {expected}"
        )
    soft = soft[(slice(None), *bounding_box_to_slice(properties["bbox_used_for_cropping"]))]
    after_crop = tuple(int(i) for i in properties["shape_after_cropping_and_before_resampling"])
    assert tuple(soft.shape[1:]) == after_crop, (soft.shape, after_crop)

    original_spacing = [properties["spacing"][i] for i in tf]
    target_spacing = list(configuration_manager.spacing)
    if len(target_spacing) < len(soft.shape[1:]):  # 2d configuration: spacing between slices unchanged
        target_spacing = [original_spacing[0]] + target_spacing
    new_shape = compute_new_shape(soft.shape[1:], original_spacing, target_spacing)
    how = soft_resampling(configuration_manager)
    if how["function"] == "resample_data_or_seg_to_shape":
        soft = resample_data_or_seg_to_shape(
            soft,
            new_shape,
            original_spacing,
            target_spacing,
            is_seg=False,
            order=SOFT_ORDER,
            order_z=how["order_z"],
            force_separate_z=how["force_separate_z"],
        )
    else:  # the images' own (linear) torch resampling, exactly as nnU-Net's preprocessor calls it
        soft = configuration_manager.resampling_fn_data(soft, new_shape, original_spacing, target_spacing)
        soft = soft.numpy() if hasattr(soft, "numpy") else np.asarray(soft)
    return np.clip(soft, 0.0, 1.0).astype(np.float32, copy=False)


def _dice_binary(a: np.ndarray, b: np.ndarray) -> float:
    inter = float(np.logical_and(a, b).sum())
    denom = float(a.sum() + b.sum())
    return 1.0 if denom == 0 else 2.0 * inter / denom


@dataclass
class _CaseJob:
    identifier: str
    soft_file: str
    label_file: str | None
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
        raise InputError(
            f"{job.soft_file}: preprocessed shape {tuple(soft.shape[1:])} differs from nnU-Net's "
            f"preprocessed case {tuple(seg.shape[1:])} (re-run nnUNetv2_plan_and_preprocess?)"
        )
    agreement = _dice_binary(soft[0] > 0.5, seg[0] > 0)
    save_soft_target(soft, soft_target_file(job.data_folder, job.identifier), cm.patch_size)
    fractional = float(np.mean((soft > 0.01) & (soft < 0.99)))
    return {
        "case": job.identifier,
        "shape": list(soft.shape[1:]),
        "dice_soft_gt_0.5_vs_label": round(agreement, 5),
        "fraction_of_partial_voxels": round(fractional, 5),
        "source": job.soft_file,
    }


def preprocess_soft(
    dataset: int | str,
    configurations: Sequence[str] = ("3d_fullres",),
    plans_identifier: str = "nnUNetPlans",
    overwrite: bool = False,
    num_processes: int = 1,
    progress: bool = True,
) -> dict:
    """Preprocess the soft masks of a dataset for the given configurations (see the module docstring).

    Returns ``{configuration: manifest dict}``. Raises :class:`InputError` (naming the file) for a missing
    dataset/plans/configuration, missing ``labelsTr_soft`` folder or file, a soft mask whose grid differs from
    its label, values outside [0, 1] or NaN, and for existing outputs unless ``overwrite``.
    """
    from batchgenerators.utilities.file_and_folder_operations import load_json
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
    from nnunetv2.utilities.utils import get_filenames_of_train_images_and_targets
    from tqdm import tqdm

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
            raise InputError(
                f"{plans_file}: no configuration '{configuration}' "
                f"(available: {', '.join(plans_manager.available_configurations)})"
            )
        cm = plans_manager.get_configuration(configuration)
        soft_resampling(cm)  # plans whose resampling soft targets cannot follow are refused before any work
        data_folder = pre / cm.data_identifier
        if not data_folder.is_dir():
            raise InputError(
                f"{data_folder}: preprocessed data not found (run nnUNetv2_plan_and_preprocess "
                f"-d {dataset} -c {configuration})"
            )
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
        manifest = {
            "dataset": name,
            "plans": plans_identifier,
            "configuration": configuration,
            "source_folder": str(raw / LABELS_TR_SOFT),
            "layout": f"{PREPROCESSED_SOFT_FOLDER}/<case>.b2nd, float32, shape (1, *case shape), values in [0, 1]",
            "resampling": soft_resampling(cm),
            "target_spacing": list(cm.spacing),
            "transpose_forward": list(plans_manager.transpose_forward),
            "cases": rows,
        }
        tmp = soft_folder(data_folder) / f".{MANIFEST_NAME}.tmp"
        tmp.write_text(json.dumps(manifest, indent=2))
        os.replace(tmp, soft_folder(data_folder) / MANIFEST_NAME)
        results[configuration] = manifest
    return results
