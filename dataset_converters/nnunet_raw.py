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
(:func:`nnunet_spine.core.io.save_image` with ``like=``), so nnU-Net's
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

from nnunet_spine.core.dataset_json import FILE_ENDING, IMAGES_TR, LABELS_TR
from nnunet_spine.core.io import (
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


def prepare_folder(folder: str | os.PathLike, *, extra_folders: Iterable[str] = ()) -> Path:
    """Create the sub-folders of a (staged) dataset folder: ``imagesTr``, ``labelsTr`` and ``extra_folders``."""
    folder = Path(folder)
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


# ------------------------------------------------------------------------------------ all-or-nothing writes
#: File in a staging folder naming (one per line) entries of the dataset folder to delete when the stage commits.
_REMOVE_LIST = ".nnspine-remove"


def remove_on_commit(stage: str | os.PathLike, name: str) -> None:
    """Have :func:`staged_dataset` delete the top-level entry ``name`` of the dataset folder when it commits (an
    entry the new conversion does not write and that must not outlive it, e.g. a stale split file)."""
    path = Path(stage) / _REMOVE_LIST
    names = path.read_text().split() if path.is_file() else []
    path.write_text("\n".join([*names, name]) + "\n")


def _delete(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _commit(stage: Path, folder: Path, trash: Path) -> None:
    """Move every entry of ``stage`` into ``folder`` (entries they replace, and those listed for removal, go to
    ``trash``). On any failure, undo what was moved and restore the old entries, then re-raise."""
    removal = stage / _REMOVE_LIST
    names = removal.read_text().split() if removal.is_file() else []
    removal.unlink(missing_ok=True)
    done: list[tuple[Path, Path | None, bool]] = []  # (target, its old entry in the trash, new entry moved in)
    try:
        for name in names:
            target = folder / name
            if target.exists() or target.is_symlink():
                target.rename(trash / name)
                done.append((target, trash / name, False))
        for entry in sorted(stage.iterdir()):
            target = folder / entry.name
            old = None
            if target.exists() or target.is_symlink():
                old = trash / entry.name
                target.rename(old)
            done.append((target, old, False))
            entry.rename(target)
            done[-1] = (target, old, True)
    except BaseException:
        for target, old, moved_in in reversed(done):
            if moved_in:
                _delete(target)
            if old is not None:
                old.rename(target)
        raise


@contextlib.contextmanager
def staged_dataset(folder: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Write a raw dataset all-or-nothing: yields a hidden staging folder beside ``folder``.

    When the block succeeds, every top-level entry written there (``imagesTr``, ``labelsTr``, ``dataset.json``,
    ``splits_final.json``...) replaces the entry of the same name in ``folder``; other entries (e.g. ``imagesTs``
    or a user's split file) are kept, except those named with :func:`remove_on_commit`. On error — in the block or
    while moving entries in (a failed rename undoes the moves and restores the replaced entries) — ``folder`` is
    left as it was and the staging folder is removed. An existing non-empty ``folder`` needs ``overwrite``
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
        created = not folder.exists()
        folder.mkdir(exist_ok=True)
        trash = Path(tempfile.mkdtemp(prefix=f".{folder.name}.replaced-", dir=parent))
        try:
            _commit(stage, folder, trash)
        except BaseException:
            if created and not any(folder.iterdir()):
                folder.rmdir()
            with contextlib.suppress(OSError):
                trash.rmdir()  # empty after a complete rollback; otherwise it keeps the old entries
            raise
        shutil.rmtree(trash, ignore_errors=True)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
