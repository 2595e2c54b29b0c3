"""Writing phantom datasets in BIDS layout (raw images, ``derivatives/<pipeline>/...``, sidecars)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnunet_spine import __version__
from nnunet_spine.core.io import InputError, OutputExistsError, require_writable_folder, save_image, write_text


def start_dataset(root: Path, name: str, subjects: list[str], overwrite: bool = False) -> Path:
    """Create a BIDS root with ``dataset_description.json`` and ``participants.tsv``.

    Refuses a non-empty existing folder unless ``overwrite``.
    """
    root = Path(root)
    if root.is_dir() and any(root.iterdir()) and not overwrite:
        raise OutputExistsError(f"{root}: output folder exists and is not empty (use --overwrite)")
    require_writable_folder(root, "output folder")  # a file in the way, no permission: InputError naming the path
    desc = {
        "Name": name,
        "BIDSVersion": "1.9.0",
        "DatasetType": "raw",
        "GeneratedBy": [{"Name": "nnunet-spine phantom", "Version": __version__}],
    }
    write_text(root / "dataset_description.json", json.dumps(desc, indent=2) + "\n", overwrite=True)
    write_text(root / "participants.tsv", "participant_id\n" + "".join(f"{s}\n" for s in subjects), overwrite=True)
    return root


def start_derivative(root: Path, pipeline: str, description: str) -> Path:
    """Create ``derivatives/<pipeline>`` with its ``dataset_description.json``; returns that folder."""
    deriv = Path(root) / "derivatives" / pipeline
    deriv.mkdir(parents=True, exist_ok=True)
    desc = {
        "Name": description,
        "BIDSVersion": "1.9.0",
        "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "nnunet-spine phantom", "Version": __version__}],
    }
    write_text(deriv / "dataset_description.json", json.dumps(desc, indent=2) + "\n", overwrite=True)
    return deriv


def anat_path(folder: Path, subject: str, entities: str, suffix: str = "", ext: str = ".nii.gz") -> Path:
    """``folder/sub-XX/anat/sub-XX_<entities><suffix><ext>``."""
    return Path(folder) / subject / "anat" / f"{subject}_{entities}{suffix}{ext}"


def write_nifti(path: Path, data: np.ndarray, affine: np.ndarray, dtype, overwrite: bool = True) -> Path:
    """Save one phantom volume (folders created, atomic write)."""
    return save_image(data, affine, path, overwrite=overwrite, dtype=dtype)


def check_phantom_args(n_subjects: int, seed: int) -> None:
    """Raise :class:`InputError` unless ``n_subjects`` >= 1 and ``seed`` is a whole number >= 0 (numpy's seeds
    are non-negative)."""
    if isinstance(n_subjects, bool) or not isinstance(n_subjects, (int, np.integer)) or n_subjects < 1:
        raise InputError(f"number of subjects must be a whole number >= 1, got {n_subjects!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"seed must be a whole number >= 0, got {seed!r}")


@dataclass(frozen=True)
class PhantomFolders:
    """Where a phantom dataset's parts go: BIDS root, subject ids, ``derivatives/labels`` and ``derivatives/truth``."""

    root: Path
    subjects: list[str]
    labels: Path
    truth: Path


def start_phantom_dataset(
    out_dir: str | Path,
    n_subjects: int,
    name: str,
    labels_description: str,
    truth_description: str,
    overwrite: bool = False,
    *,
    seed: int = 0,
) -> PhantomFolders:
    """Create a phantom BIDS dataset (subjects ``sub-01``, ``sub-02``, …) with its labels and truth derivatives.

    ``n_subjects`` and the writer's ``seed`` are checked first (:func:`check_phantom_args`), so bad values create
    nothing."""
    check_phantom_args(n_subjects, seed)
    root = Path(out_dir)
    subjects = [f"sub-{i + 1:02d}" for i in range(n_subjects)]
    start_dataset(root, name, subjects, overwrite=overwrite)
    return PhantomFolders(
        root,
        subjects,
        start_derivative(root, "labels", labels_description),
        start_derivative(root, "truth", truth_description),
    )
