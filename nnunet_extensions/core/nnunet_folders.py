"""nnU-Net's folders: the one place that reads ``nnUNet_raw`` / ``nnUNet_preprocessed`` and resolves a dataset.

nnU-Net finds its data through environment variables (``nnUNet_raw``, ``nnUNet_preprocessed``,
``nnUNet_results``) and names datasets ``DatasetXXX_NAME``; a user may give the id (``501``) or the name.
"""

from __future__ import annotations

import os
from pathlib import Path

from nnunet_spine.core.io import InputError


def require_env(name: str) -> Path:
    """The folder an nnU-Net environment variable points to; :class:`InputError` when it is not set."""
    value = os.environ.get(name)
    if not value:
        raise InputError(f"environment variable {name} is not set (nnU-Net's folders must be defined)")
    return Path(value)


def resolve_dataset(dataset: int | str) -> tuple[str, Path, Path]:
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
        raise InputError(
            f"dataset {dataset}: {first} (nnUNet_raw={raw_root}, nnUNet_preprocessed={pre_root})"
        ) from None
    raw = raw_root / name
    pre = pre_root / name
    if not raw.is_dir():
        raise InputError(f"{raw}: raw dataset folder not found")
    if not pre.is_dir():
        raise InputError(f"{pre}: preprocessed dataset folder not found (run nnUNetv2_plan_and_preprocess first)")
    return name, raw, pre


def find_dataset_json(dataset: int | str | Path) -> Path:
    """The ``dataset.json`` of a dataset given as a file, a folder holding one (a raw dataset, a trained model or
    a prediction folder: nnU-Net copies it there), or an id / name looked up in ``nnUNet_raw``, then
    ``nnUNet_preprocessed``, then ``nnUNet_results`` (any trainer folder). :class:`InputError` when not found."""
    p = Path(str(dataset))
    if p.is_file():
        return p
    if p.is_dir():
        if (p / "dataset.json").is_file():
            return p / "dataset.json"
        raise InputError(f"{p}: folder has no dataset.json")
    text = str(dataset)
    if not (text.isdigit() or text.startswith("Dataset")) or "/" in text or text.endswith(".json"):
        raise InputError(f"{text}: file not found (expected a dataset id, a Dataset name or a dataset.json)")
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    try:
        name = maybe_convert_to_dataset_name(text)
    except (RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0].split(" Make sure")[0]
        raise InputError(f"dataset {text}: {first}") from None
    candidates = []
    for var in ("nnUNet_raw", "nnUNet_preprocessed"):
        if os.environ.get(var):
            candidates.append(Path(os.environ[var]) / name / "dataset.json")
    if os.environ.get("nnUNet_results"):
        candidates += sorted((Path(os.environ["nnUNet_results"]) / name).glob("*/dataset.json"))
    for c in candidates:
        if c.is_file():
            return c
    raise InputError(f"dataset {text}: no dataset.json for {name} in nnUNet_raw, nnUNet_preprocessed or nnUNet_results")
