"""Where soft targets live on disk, and reading / writing the preprocessed ones (Blosc2 ``.b2nd``).

Preprocessed soft targets of one configuration::

    $nnUNet_preprocessed/DatasetXXX_NAME/<data_identifier>/soft_targets/<case>.b2nd
    $nnUNet_preprocessed/DatasetXXX_NAME/<data_identifier>/soft_targets/soft_targets.json

float32, shape ``(1, *case shape)`` exactly like the case's ``<case>.b2nd``, values in [0, 1], Blosc2-compressed
with the chunking nnU-Net uses for its own arrays. A sub-folder is used (not ``<case>_soft.b2nd``) because
nnU-Net treats every ``*.b2nd`` not ending in ``_seg.b2nd`` in the case folder as a training case; sub-folders
are invisible to it. Re-running ``nnUNetv2_plan_and_preprocess`` deletes the case folder and so the (then
stale) soft targets with it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from nnunet_spine.core.dataset_json import LABELS_TR_SOFT

#: Sub-folder of a preprocessed configuration folder holding the preprocessed soft targets.
PREPROCESSED_SOFT_FOLDER = "soft_targets"
#: Provenance/summary file inside :data:`PREPROCESSED_SOFT_FOLDER`.
MANIFEST_NAME = "soft_targets.json"


def soft_folder(data_folder: str | os.PathLike) -> Path:
    """Folder of the preprocessed soft targets of one preprocessed configuration folder."""
    return Path(data_folder) / PREPROCESSED_SOFT_FOLDER


def soft_target_file(data_folder: str | os.PathLike, identifier: str) -> Path:
    """Preprocessed soft target of one case."""
    return soft_folder(data_folder) / f"{identifier}.b2nd"


def raw_soft_file(raw_dataset_folder: str | os.PathLike, identifier: str, file_ending: str) -> Path:
    """Raw soft mask of one training case."""
    return Path(raw_dataset_folder) / LABELS_TR_SOFT / f"{identifier}{file_ending}"


def save_soft_target(soft: np.ndarray, path: str | os.PathLike, patch_size: Sequence[int]) -> Path:
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
        blosc2.asarray(
            np.ascontiguousarray(soft, dtype=np.float32),
            urlpath=str(tmp),
            chunks=chunks,
            blocks=blocks,
            cparams=cparams,
        )
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def load_soft_target(data_folder: str | os.PathLike, identifier: str):
    """Open a preprocessed soft target (memory-mapped Blosc2 array, shape ``(1, *case shape)``)."""
    import blosc2

    f = soft_target_file(data_folder, identifier)
    if not f.is_file():
        raise FileNotFoundError(f"{f}: soft target missing; run 'nnspine preprocess-soft' for this configuration")
    kwargs = {} if os.name == "nt" else {"mmap_mode": "r"}
    return blosc2.open(urlpath=str(f), mode="r", dparams={"nthreads": 1}, **kwargs)


def missing_soft_targets(data_folder: str | os.PathLike, identifiers: Iterable[str]) -> list[str]:
    """Identifiers whose preprocessed soft target is missing."""
    return [i for i in identifiers if not soft_target_file(data_folder, i).is_file()]
