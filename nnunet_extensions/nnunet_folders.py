"""nnU-Net's folders: the one place that reads ``nnUNet_raw`` / ``nnUNet_preprocessed`` and resolves a dataset.

nnU-Net finds its data through environment variables (``nnUNet_raw``, ``nnUNet_preprocessed``,
``nnUNet_results``) and names datasets ``DatasetXXX_NAME``; a user may give the id (``501``) or the name.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Tuple, Union

from nnunet_extensions.io import InputError


def require_env(name: str) -> Path:
    """The folder an nnU-Net environment variable points to; :class:`InputError` when it is not set."""
    value = os.environ.get(name)
    if not value:
        raise InputError(f"environment variable {name} is not set (nnU-Net's folders must be defined)")
    return Path(value)


def resolve_dataset(dataset: Union[int, str]) -> Tuple[str, Path, Path]:
    """``(dataset name, raw folder, preprocessed folder)`` of a dataset given by id or name.

    Raises :class:`InputError` (one line, with the nnU-Net folders) for an unknown dataset or a missing folder.
    """
    raw_root = require_env("nnUNet_raw")
    pre_root = require_env("nnUNet_preprocessed")
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
