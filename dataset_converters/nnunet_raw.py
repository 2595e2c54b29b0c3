"""Writing nnU-Net v2 raw datasets (``$nnUNet_raw/DatasetXXX_NAME``), shared by the dataset converters.

Layout written (nnU-Net v2's conventions)::

    $nnUNet_raw/DatasetXXX_NAME/
        dataset.json                       channel_names, labels, numTraining, file_ending (+ extra keys)
        imagesTr/<case>_0000<ending>       one file per channel (_0000, _0001, ...)
        labelsTr/<case><ending>            integer labels (uint8), on exactly the image's grid
        <extra folder>/<case><ending>      optional per-case maps beside the labels (e.g. labelsTr_soft)
        instancesTr/<case><ending>         optional SPINEPS-format instance masks (``convert spider --instances``)

Converters that remap label values (SPINEPS 41-49, 60-62, 100, 26 → nnU-Net's consecutive 1..n) record the
mapping in ``dataset.json`` under :data:`LABEL_MAP_KEY` (:func:`label_map_entry`, read back by
:func:`read_label_map`); nnU-Net copies ``dataset.json`` into its results and prediction folders, so the mapping
travels with every model and prediction.

Every file of a case is written with the *first channel's* affine and NIfTI header
(:func:`nnunet_extensions.core.io.save_image` with ``like=``), so nnU-Net's
``--verify_dataset_integrity`` sees identical spacing, origin and direction in image and label.
Writes are atomic and refuse to replace existing files unless ``overwrite=True``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np

from nnunet_extensions.core.dataset_json import FILE_ENDING, IMAGES_TR, LABELS_TR
from nnunet_extensions.core.io import (
    Image,
    InputError,
    OutputExistsError,
    check_same_grid,
    require_writable_folder,
    save_image,
    write_text,
)

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_CASE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def raw_root(explicit: str | os.PathLike | None = None) -> Path:
    """The nnU-Net raw folder: ``explicit`` if given, else ``$nnUNet_raw`` (InputError when unset)."""
    value = explicit if explicit is not None else os.environ.get("nnUNet_raw")
    if not value:
        raise InputError("nnUNet_raw is not set: export nnUNet_raw=/path/to/nnUNet_raw (nnU-Net's raw data folder)")
    return Path(value)


def dataset_name(dataset_id: int, name: str) -> str:
    """``DatasetXXX_NAME`` with the ID zero-padded to 3 digits (ID 1..999; NAME letters, digits, ``_``, ``-``)."""
    if isinstance(dataset_id, bool) or not isinstance(dataset_id, (int, np.integer)) or not 1 <= int(dataset_id) <= 999:
        raise InputError(f"nnU-Net dataset ID must be an integer in 1..999, got {dataset_id!r}")
    if not name or not _NAME_RE.match(name):
        raise InputError(f"nnU-Net dataset name {name!r}: use letters, digits, '_' or '-' (e.g. SpineSoft)")
    return f"Dataset{int(dataset_id):03d}_{name}"


def dataset_folder(root: str | os.PathLike, dataset_id: int, name: str) -> Path:
    """``root/DatasetXXX_NAME``; refuses when ``root`` already holds another dataset with the same ID.

    nnU-Net resolves ``-d XXX`` by globbing ``DatasetXXX_*`` and fails on two matches, so a second name for
    one ID would make both datasets unusable.
    """
    folder_name = dataset_name(dataset_id, name)
    root = Path(root)
    if root.is_dir():
        prefix = f"Dataset{int(dataset_id):03d}_"
        others = sorted(p.name for p in root.iterdir() if p.name.startswith(prefix) and p.name != folder_name)
        if others:
            raise InputError(
                f"{root / others[0]}: nnU-Net dataset ID {int(dataset_id)} is already used by this "
                f"dataset (choose another ID or remove it)"
            )
    return root / folder_name


def check_case_id(case: str) -> str:
    """A case identifier nnU-Net accepts in file names (no path separators or spaces)."""
    if not _CASE_RE.match(case):
        raise InputError(f"invalid nnU-Net case identifier {case!r} (letters, digits, '_', '-', '.')")
    return case


def image_path(folder: str | os.PathLike, case: str, channel: int = 0, file_ending: str = FILE_ENDING) -> Path:
    """``folder/imagesTr/<case>_<channel:04d><ending>``."""
    return Path(folder) / IMAGES_TR / f"{case}_{channel:04d}{file_ending}"


def label_path(
    folder: str | os.PathLike, case: str, file_ending: str = FILE_ENDING, subfolder: str = LABELS_TR
) -> Path:
    """``folder/<subfolder>/<case><ending>`` (``labelsTr`` or an extra folder such as ``labelsTr_soft``)."""
    return Path(folder) / subfolder / f"{case}{file_ending}"


def case_paths(
    folder: str | os.PathLike,
    case: str,
    n_channels: int = 1,
    extra_folders: Iterable[str] = (),
    file_ending: str = FILE_ENDING,
) -> list[Path]:
    """Every file a case occupies: its images, its label and its extra maps."""
    paths = [image_path(folder, case, c, file_ending) for c in range(n_channels)]
    paths.append(label_path(folder, case, file_ending))
    paths.extend(label_path(folder, case, file_ending, sub) for sub in extra_folders)
    return paths


def prepare_folder(folder: str | os.PathLike, *, overwrite: bool = False, extra_folders: Iterable[str] = ()) -> Path:
    """Create the dataset folder and its sub-folders; a non-empty existing folder needs ``overwrite``."""
    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()) and not overwrite:
        raise OutputExistsError(f"{folder}: nnU-Net dataset exists (use --overwrite to replace it)")
    for sub in (IMAGES_TR, LABELS_TR, *extra_folders):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    return folder


def write_case(
    folder: str | os.PathLike,
    case: str,
    images: Sequence[Image],
    label: np.ndarray,
    *,
    extra: Mapping[str, tuple[np.ndarray, type | np.dtype]] | None = None,
    overwrite: bool = False,
    file_ending: str = FILE_ENDING,
) -> list[Path]:
    """Write one training case: channels ``images`` (all on one grid), integer ``label`` (uint8) and, for each
    ``extra[subfolder] = (array, dtype)``, ``subfolder/<case><ending>``; all with the first image's affine/header.

    Image voxel values are written unchanged (their own dtype). Returns the written paths.
    """
    check_case_id(case)
    if not images:
        raise ValueError("write_case needs at least one image channel")
    ref = images[0]
    for img in images[1:]:
        check_same_grid(ref, img)
    label = np.asarray(label)
    if label.shape != ref.shape:
        raise ValueError(f"label shape {label.shape} differs from image shape {ref.shape}")
    written = []
    for channel, img in enumerate(images):
        written.append(
            save_image(
                img.data, ref.affine, image_path(folder, case, channel, file_ending), overwrite=overwrite, like=ref
            )
        )
    written.append(
        save_image(
            label, ref.affine, label_path(folder, case, file_ending), overwrite=overwrite, dtype=np.uint8, like=ref
        )
    )
    for sub, (arr, dtype) in (extra or {}).items():
        arr = np.asarray(arr)
        if arr.shape != ref.shape:
            raise ValueError(f"{sub} map shape {arr.shape} differs from image shape {ref.shape}")
        written.append(
            save_image(
                arr, ref.affine, label_path(folder, case, file_ending, sub), overwrite=overwrite, dtype=dtype, like=ref
            )
        )
    return written


def write_dataset_json(
    folder: str | os.PathLike,
    *,
    channel_names: Mapping[str, str] | Sequence[str],
    labels: Mapping[str, int | Sequence[int]],
    num_training: int,
    file_ending: str = FILE_ENDING,
    overwrite: bool = False,
    **extra,
) -> Path:
    """Write ``dataset.json`` (nnU-Net v2 keys first; ``extra`` keys such as ``description`` after them).

    ``labels`` values are integers, or lists of integers for region-based training (then pass
    ``regions_class_order=[...]`` in ``extra``, as nnU-Net requires).
    """
    if not isinstance(channel_names, Mapping):
        channel_names = {str(i): str(n) for i, n in enumerate(channel_names)}
    content = {
        "channel_names": {str(k): str(v) for k, v in channel_names.items()},
        "labels": {str(k): [int(x) for x in v] if isinstance(v, (list, tuple)) else int(v) for k, v in labels.items()},
        "numTraining": int(num_training),
        "file_ending": file_ending,
    }
    if content["labels"].get("background") != 0:
        raise ValueError("nnU-Net requires labels['background'] == 0")
    content.update(extra)
    return write_text(Path(folder) / "dataset.json", json.dumps(content, indent=2) + "\n", overwrite=overwrite)


def remove_stale_cases(
    folder: str | os.PathLike,
    keep: Iterable[str],
    *,
    extra_folders: Iterable[str] = (),
    file_ending: str = FILE_ENDING,
    n_channels: int | None = None,
) -> list[Path]:
    """Delete case files (images, labels, extra maps) of cases not in ``keep``, and with ``n_channels`` the
    image files of channels ``>= n_channels``; returns what was removed.

    Used after an ``--overwrite`` run so that ``dataset.json``'s ``numTraining`` and ``channel_names`` match
    the files.
    """
    keep = set(keep)
    folder = Path(folder)
    removed = []
    for sub in (IMAGES_TR, LABELS_TR, *extra_folders):
        d = folder / sub
        if not d.is_dir():
            continue
        for p in sorted(d.iterdir()):
            if not p.is_file() or not p.name.endswith(file_ending):
                continue
            stem = p.name[: -len(file_ending)]
            channel = re.search(r"_(\d{4})$", stem) if sub == IMAGES_TR else None
            case = stem[:-5] if channel else stem
            extra_channel = channel is not None and n_channels is not None and int(channel.group(1)) >= n_channels
            if case not in keep or extra_channel:
                p.unlink()
                removed.append(p)
    return removed


# ------------------------------------------------------------------------------------ all-or-nothing writes
@contextlib.contextmanager
def staged_dataset(folder: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Write a raw dataset all-or-nothing: yields a hidden staging folder beside ``folder``.

    When the block succeeds, every top-level entry written there (``imagesTr``, ``labelsTr``, ``dataset.json``...)
    replaces the entry of the same name in ``folder``; other entries (e.g. ``imagesTs``) are kept. On error the
    staging folder is removed and ``folder`` is untouched. An existing non-empty ``folder`` needs ``overwrite``
    (refused before the block runs). The staging name starts with a dot, so nnU-Net's ``DatasetXXX_*`` lookup
    never sees it.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder}: is a file, expected an nnU-Net dataset folder")
    if folder.is_dir() and any(folder.iterdir()) and not overwrite:
        raise OutputExistsError(f"{folder}: nnU-Net dataset exists (use --overwrite to replace it)")
    parent = require_writable_folder(folder.parent, "nnU-Net raw folder")
    stage = Path(tempfile.mkdtemp(prefix=f".{folder.name}.staging-", dir=parent))
    try:
        yield stage
        folder.mkdir(exist_ok=True)
        trash = Path(tempfile.mkdtemp(prefix=f".{folder.name}.replaced-", dir=parent))
        try:
            for entry in sorted(stage.iterdir()):
                target = folder / entry.name
                if target.exists() or target.is_symlink():
                    target.rename(trash / entry.name)
                entry.rename(target)
        finally:
            shutil.rmtree(trash, ignore_errors=True)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
