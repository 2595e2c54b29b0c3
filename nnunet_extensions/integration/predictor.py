"""nnU-Net's predictor loaded as ``nnUNetv2_predict`` loads it, in this process (``segment``, ``instances``).

Settings are ``nnUNetv2_predict``'s defaults: tile step 0.5, Gaussian weighting, test-time mirroring on the axes
the checkpoint allows (``inference_allowed_mirroring_axes``, which our trainers store). The model's trainer class is
looked up by nnU-Net by name; ours are found through ``nnUNet_extTrainer``, set for the duration of the load when
the user has not set it. Torch's thread count follows ``nnUNetv2_predict`` too, so both give the same voxels.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from nnunet_spine.core.io import InputError


def read_model_folder(folder: str | os.PathLike) -> tuple[Path, dict]:
    """A trained nnU-Net results folder (``.../DatasetXXX_NAME/<trainer>__<plans>__<configuration>``) and its
    ``dataset.json``; :class:`InputError` naming the folder when it is not one."""
    import json

    from nnunet_spine.core.io import require_folder

    f = require_folder(folder, "model folder")
    ds_path = f / "dataset.json"
    if not ds_path.is_file() or not (f / "plans.json").is_file():
        raise InputError(
            f"{f}: not a trained nnU-Net model folder (no dataset.json / plans.json; give "
            "$nnUNet_results/DatasetXXX_NAME/<trainer>__<plans>__<configuration>)"
        )
    try:
        return f, json.loads(ds_path.read_text())
    except ValueError as exc:
        raise InputError(f"{ds_path}: unreadable ({exc})") from None


#: Device types whose thread counts this process has set (:func:`set_thread_counts`).
_THREADS_SET: set[str] = set()


def set_thread_counts(device_type: str) -> None:
    """Torch's thread counts as ``nnUNetv2_predict``'s process sets them (its ``predict_entry_point``): the CPU's
    cores on CPU, 1 (and 1 inter-op thread) on CUDA; nnU-Net then caps them at ``nnUNet_def_n_proc`` while
    predicting. Same threads, same sums, same voxels.

    Once per process and device type, as in ``nnUNetv2_predict``, where the process loads one model: torch
    accepts ``set_num_interop_threads`` only once per process (a second call raises RuntimeError), and a run
    loads several models (``segment spine``: semantic, instance and landmark models)."""
    import multiprocessing

    import torch

    if device_type in _THREADS_SET:
        return
    if device_type == "cpu":
        torch.set_num_threads(multiprocessing.cpu_count())
    elif device_type == "cuda":
        torch.set_num_threads(1)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:  # set already in this process (by its own code, or after parallel work started)
            pass
    _THREADS_SET.add(device_type)


def check_device(device: str):
    """The torch device named by ``--device``; :class:`InputError` when it is not one or this machine lacks it."""
    import torch

    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise InputError(f"--device {device!r}: {exc}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device {device}: no CUDA device on this machine (use --device cpu)")
    return dev


def load_predictor(
    model_folder: str | os.PathLike,
    folds: Sequence[int | str] | None,
    checkpoint: str = "checkpoint_final.pth",
    device: str = "cpu",
    progress: bool = False,
):
    """An initialised ``nnUNetPredictor`` for a results folder; :class:`InputError` for a device this machine
    lacks (``--device``). Load it once per run and reuse it for every case (loading reads every fold's
    checkpoint)."""
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    from nnunet_spine.core.provenance import note_model
    from nnunet_spine.integration.trainer_lookup import discovery_folder

    dev = check_device(device)
    set_thread_counts(dev.type)
    predictor = nnUNetPredictor(
        tile_step_size=0.5,
        use_gaussian=True,
        use_mirroring=True,
        perform_everything_on_device=dev.type != "cpu",
        device=dev,
        verbose=False,
        verbose_preprocessing=False,
        allow_tqdm=progress,
    )
    use = tuple(f if f == "all" else int(f) for f in folds) if folds else None
    before = os.environ.get("nnUNet_extTrainer")
    os.environ["nnUNet_extTrainer"] = before or str(discovery_folder())
    try:
        predictor.initialize_from_trained_model_folder(str(Path(model_folder)), use, checkpoint)
    finally:
        if before is None:
            del os.environ["nnUNet_extTrainer"]
    note_model(model_folder, [str(f) for f in use] if use else None, checkpoint)
    return predictor
