"""Shared image I/O: load with geometry, validate, write atomically.

Every command reads and writes images through this module, so that one set of rules holds everywhere:

* Images are returned as :class:`Image`, a 3-D array in *voxel* order ``(i, j, k)`` together with the
  4×4 voxel-to-world affine in **RAS+ millimetres** (nibabel's convention). NIfTI files are read with
  nibabel; MHA/MHD/NRRD (or anything else SimpleITK reads) with SimpleITK, converted from ITK's LPS.
* Problems with user input raise :class:`InputError`, whose message names the file and the problem in
  one line. The CLI turns it into exit code 2 with no traceback.
* Outputs are written to a temporary file in the destination folder and then renamed, so a crash never
  leaves half a file; an existing output is never replaced unless ``overwrite=True``. Inputs are never
  modified.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from nnunet_spine.core.provenance import note_input, note_output

#: File endings treated as NIfTI (read/written with nibabel).
NIFTI_SUFFIXES = (".nii.gz", ".nii")
#: Tolerance (mm) for "same grid": affine entries may differ by this much.
GRID_ATOL_MM = 1e-3

MaskKind = Literal["image", "binary", "soft", "labels"]


class InputError(Exception):
    """Bad user input (unreadable file, wrong geometry, wrong values...). Message: one line."""


class OutputExistsError(InputError):
    """An output already exists and ``overwrite`` was not requested."""


@dataclass
class Image:
    """A 3-D image with its geometry.

    Attributes
    ----------
    data : np.ndarray
        Voxel values, shape ``(I, J, K)``, indexed in voxel order.
    affine : np.ndarray
        4×4 voxel→world matrix, world in RAS+ mm (nibabel's convention: +x = subject's Right,
        +y = Anterior, +z = Superior).
    path : Path or None
        Where the image was read from (used in error messages).
    """

    data: np.ndarray
    affine: np.ndarray
    path: Path | None = None
    meta: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def zooms(self) -> np.ndarray:
        """Voxel size in mm along each voxel axis."""
        return voxel_sizes(self.affine)

    @property
    def name(self) -> str:
        return str(self.path) if self.path is not None else "<array>"


def voxel_sizes(affine: np.ndarray) -> np.ndarray:
    """Voxel edge lengths (mm) of a 4×4 affine, one per voxel axis."""
    return np.sqrt((np.asarray(affine, float)[:3, :3] ** 2).sum(axis=0))


def is_nifti(path: str | os.PathLike) -> bool:
    """True when the path ends in .nii or .nii.gz."""
    return str(path).lower().endswith(NIFTI_SUFFIXES)


def split_suffix(path: str | os.PathLike) -> tuple[str, str]:
    """Split ``sub-01_T2w.nii.gz`` into ``("sub-01_T2w", ".nii.gz")`` (double endings kept whole)."""
    name = Path(path).name
    for suffix in (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd", ".npz", ".csv", ".json", ".png"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)], name[-len(suffix) :]
    stem = Path(name).stem
    return stem, name[len(stem) :]


# --------------------------------------------------------------------------------------------- reading
def _read_nifti(path: Path) -> tuple[np.ndarray, np.ndarray, dict]:
    import nibabel as nib

    img = nib.load(str(path))
    data = np.asanyarray(img.dataobj)
    meta = {"header": img.header.copy(), "format": "nifti"}
    return data, np.asarray(img.affine, float), meta


def affine_from_itk(spacing, origin, direction) -> np.ndarray:
    """RAS+ 4×4 affine of an ITK geometry (spacing, origin, flattened direction matrix; ITK's LPS world,
    voxel axes in x-fastest order). Geometry beyond 3-D is dropped."""
    spacing = np.asarray(spacing, float)
    dim = spacing.size
    direction = np.asarray(direction, float).reshape(dim, dim)
    n = min(dim, 3)
    affine = np.eye(4)
    affine[:n, :n] = (direction * spacing)[:n, :n]
    affine[:n, 3] = np.asarray(origin, float)[:n]
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine  # ITK LPS → RAS


def _read_sitk(path: Path) -> tuple[np.ndarray, np.ndarray, dict]:
    import SimpleITK as sitk

    img = sitk.ReadImage(str(path))
    data = sitk.GetArrayFromImage(img)  # (z, y, x) → transpose to voxel order (x, y, z)
    data = np.transpose(data, tuple(range(data.ndim))[::-1])
    return data, affine_from_itk(img.GetSpacing(), img.GetOrigin(), img.GetDirection()), {"format": "sitk"}


#: File endings of images SimpleITK reads (others are "not an image" before any reader is tried).
IMAGE_SUFFIXES = NIFTI_SUFFIXES + (
    ".mha",
    ".mhd",
    ".nrrd",
    ".nhdr",
    ".mgz",
    ".mgh",
    ".hdr",
    ".img",
    ".dcm",
    ".tif",
    ".tiff",
    ".png",
)


def _read_error(path: Path, exc: Exception) -> InputError:
    """The one-line error for a file that nibabel/SimpleITK cannot read."""
    if not str(path).lower().endswith(IMAGE_SUFFIXES):
        return InputError(f"{path}: not an image (unsupported file type {split_suffix(path)[1] or 'without ending'!r})")
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return InputError(f"{path}: cannot read image ({reason[:200]})")


def _check_exists(p: Path) -> None:
    if not p.exists():
        raise InputError(f"{p}: file not found")
    if p.is_dir():
        raise InputError(f"{p}: is a folder, expected an image file")


def read_image(path: str | os.PathLike) -> Image:
    """Read an image with its geometry, without validating its values.

    Raises :class:`InputError` if the file is missing, unreadable or truncated.
    """
    p = Path(path)
    _check_exists(p)
    try:
        data, affine, meta = _read_nifti(p) if is_nifti(p) else _read_sitk(p)
        data = np.asarray(data)  # forces the full (possibly compressed) read: truncation shows here
    except Exception as exc:  # nibabel / SimpleITK / gzip / zlib errors of every kind
        raise _read_error(p, exc) from None
    note_input(p)
    return Image(data=data, affine=affine, path=p, meta=meta)


def read_geometry(path: str | os.PathLike) -> Image:
    """Shape, affine and header of a 3-D image without reading its voxels (NIfTI; other formats are read
    whole). ``data`` is a read-only zero array of the image's shape; trailing singleton axes are dropped."""
    p = Path(path)
    if not is_nifti(p):
        return check_3d(read_image(p))
    import nibabel as nib

    _check_exists(p)
    try:
        img = nib.load(str(p))
        shape = tuple(int(n) for n in img.shape)
        affine = np.asarray(img.affine, float)
        header = img.header.copy()
    except Exception as exc:
        raise _read_error(p, exc) from None
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) != 3:
        raise InputError(f"{p}: expected a 3-D image, got {len(shape)}-D with shape {tuple(img.shape)}")
    data = np.broadcast_to(np.zeros((), np.uint8), shape)
    note_input(p)
    return Image(data=data, affine=affine, path=p, meta={"header": header, "format": "nifti"})


def check_3d(img: Image) -> Image:
    """Require a 3-D image; trailing singleton dimensions (e.g. ``X×Y×Z×1``) are dropped."""
    data = img.data
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise InputError(f"{img.name}: expected a 3-D image, got {data.ndim}-D with shape {tuple(img.data.shape)}")
    img.data = data
    return img


def check_values(img: Image, kind: MaskKind = "image") -> Image:
    """Validate voxel values for the given kind of image.

    * ``image``: finite numbers.
    * ``binary``: only 0 and 1.
    * ``soft``: finite values in [0, 1] (partial-volume fractions).
    * ``labels``: non-negative integers.
    """
    data = img.data
    if data.dtype.kind not in "biuf":
        raise InputError(f"{img.name}: unsupported voxel type {data.dtype}")
    if data.dtype.kind == "f" and not np.isfinite(data).all():
        n = int((~np.isfinite(data)).sum())
        raise InputError(f"{img.name}: contains {n} NaN or infinite voxel(s)")
    if kind == "binary":
        bad = (data != 0) & (data != 1)
        if bad.any():
            raise InputError(
                f"{img.name}: expected a binary mask (0/1), found values such as {np.unique(data[bad])[:5].tolist()}"
            )
    elif kind == "soft":
        if data.size and (data.min() < -1e-6 or data.max() > 1 + 1e-6):
            raise InputError(
                f"{img.name}: expected a mask with values in [0, 1], found range [{data.min():.4g}, {data.max():.4g}]"
            )
    elif kind == "labels":
        if data.dtype.kind == "f" and not np.all(np.mod(data, 1) == 0):
            raise InputError(f"{img.name}: expected integer labels, found fractional values")
        if data.size and data.min() < 0:
            raise InputError(f"{img.name}: expected non-negative labels, found {data.min()}")
    return img


def check_not_empty(img: Image) -> Image:
    """Require at least one non-zero voxel (for masks)."""
    if not np.any(img.data):
        raise InputError(f"{img.name}: mask is empty (no non-zero voxel)")
    return img


def load_image(path: str | os.PathLike, kind: MaskKind = "image", *, allow_empty: bool = True) -> Image:
    """Read and validate an image: readable, 3-D, values fit ``kind`` (see :func:`check_values`)."""
    img = check_values(check_3d(read_image(path)), kind)
    if not allow_empty:
        check_not_empty(img)
    return img


def same_grid(a: Image, b: Image, atol_mm: float = GRID_ATOL_MM) -> bool:
    """True when two images share shape and affine (within ``atol_mm``)."""
    return a.shape[:3] == b.shape[:3] and np.allclose(a.affine, b.affine, atol=atol_mm, rtol=0)


def check_same_grid(ref: Image, other: Image, atol_mm: float = GRID_ATOL_MM) -> None:
    """Raise :class:`InputError` naming ``other`` if it is not on ``ref``'s grid."""
    if ref.shape[:3] != other.shape[:3]:
        raise InputError(f"{other.name}: grid {other.shape[:3]} differs from {ref.name} {ref.shape[:3]}")
    if not np.allclose(ref.affine, other.affine, atol=atol_mm, rtol=0):
        diff = float(np.abs(ref.affine - other.affine).max())
        raise InputError(f"{other.name}: affine differs from {ref.name} by up to {diff:.3g} mm (not the same grid)")


def read_csv_table(path: str | os.PathLike):
    """A CSV file as a pandas DataFrame; :class:`InputError` naming the file when it is missing, a folder or not
    readable as CSV."""
    import pandas as pd

    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: {'is a folder, expected a CSV file' if p.is_dir() else 'file not found'}")
    try:
        table = pd.read_csv(p)
    except Exception as exc:  # pandas' parser errors of every kind
        first = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise InputError(f"{p}: cannot read as CSV ({first})") from None
    note_input(p)
    return table


# --------------------------------------------------------------------------------------------- writing
def check_output(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Make sure an output file can be written, before any work is done; returns the path.

    Refuses an existing output unless ``overwrite`` and creates the parent folder. Every way the path can
    be unusable (it is a folder, a parent is a file, no permission to create or write) raises
    :class:`InputError` naming the path: an output that cannot be written is bad input, not a crash.
    """
    p = Path(path)
    if p.is_dir():
        raise InputError(f"{p}: is a folder, expected an output file path")
    if p.exists() and not overwrite:
        raise OutputExistsError(f"{p}: output exists (use --overwrite to replace it)")
    require_writable_folder(p.parent, what="output folder")
    if p.exists() and not os.access(p, os.W_OK):
        raise InputError(f"{p}: output exists and is not writable")
    return p


def require_writable_folder(folder: str | os.PathLike, what: str = "output folder") -> Path:
    """Create ``folder`` (and its parents) if needed and check that files can be created in it.

    Raises :class:`InputError` naming the path when a parent is a file or permission is missing.
    """
    f = Path(folder)
    if f.exists() and not f.is_dir():
        raise InputError(f"{f}: is a file, expected a folder ({what})")
    try:
        f.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise InputError(f"{f}: a part of this path is a file, cannot create the {what}") from None
    except NotADirectoryError:
        raise InputError(f"{f}: a part of this path is a file, cannot create the {what}") from None
    except PermissionError:
        raise InputError(f"{f}: permission denied, cannot create the {what}") from None
    except OSError as exc:
        raise InputError(f"{f}: cannot create the {what} ({exc.strerror or exc})") from None
    if not os.access(f, os.W_OK | os.X_OK):
        raise InputError(f"{f}: {what} is not writable")
    return f


def require_folder(folder: str | os.PathLike, what: str = "folder") -> Path:
    """An existing input folder: "folder not found" or "is a file, expected a folder" otherwise."""
    f = Path(folder)
    if not f.exists():
        raise InputError(f"{f}: {what} not found")
    if not f.is_dir():
        raise InputError(f"{f}: is a file, expected a {what}")
    return f


def _umask_mode() -> int:
    """File mode a newly created file gets under the user's umask (``0o666 & ~umask``)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` if the block succeeds.

    The temporary name keeps the file's ending so that writers that look at it (nibabel, matplotlib,
    SimpleITK) pick the right format. On error the temporary file is removed and ``path`` is untouched.
    """
    p = check_output(path, overwrite)
    stem, suffix = split_suffix(p)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{stem}.", suffix=f".tmp{suffix}", dir=p.parent)
    except OSError as exc:
        raise InputError(f"{p}: cannot write the output ({exc.strerror or exc})") from None
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, _umask_mode())  # mkstemp creates 0600; outputs get what the user's umask gives
    try:
        yield tmp_path
        if p.exists() and not overwrite:  # appeared meanwhile (another process)
            raise OutputExistsError(f"{p}: output exists (use --overwrite to replace it)")
        try:
            os.replace(tmp_path, p)
        except IsADirectoryError:
            raise InputError(f"{p}: is a folder, expected an output file path") from None
        except OSError as exc:
            raise InputError(f"{p}: cannot write the output ({exc.strerror or exc})") from None
        note_output(p)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text(path: str | os.PathLike, text: str, overwrite: bool = False) -> Path:
    """Write a text file atomically."""
    with atomic_output(path, overwrite) as tmp:
        tmp.write_text(text)
    return Path(path)


def save_image(
    data: np.ndarray,
    affine: np.ndarray,
    path: str | os.PathLike,
    *,
    overwrite: bool = False,
    dtype: np.dtype | type | None = None,
    like: Image | None = None,
) -> Path:
    """Write a 3-D array with a RAS+ affine atomically (NIfTI via nibabel, other endings via SimpleITK).

    ``like`` copies the NIfTI header fields of a source image (qform/sform codes, units) so outputs carry
    the same geometry description as their input.
    """
    arr = np.asarray(data)
    if dtype is not None:
        arr = arr.astype(dtype, copy=False)
    affine = np.asarray(affine, float)
    with atomic_output(path, overwrite) as tmp:
        if is_nifti(path):
            import nibabel as nib

            header = None
            if like is not None and isinstance(like.meta.get("header"), nib.Nifti1Header):
                header = like.meta["header"].copy()
                header.set_data_dtype(arr.dtype)
            img = nib.Nifti1Image(arr, affine, header=header)
            img.set_qform(affine, code=1)
            img.set_sform(affine, code=1)
            nib.save(img, str(tmp))
        else:
            import SimpleITK as sitk

            lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine
            spacing = voxel_sizes(lps)
            out = sitk.GetImageFromArray(np.transpose(arr, (2, 1, 0)))
            out.SetSpacing(tuple(float(s) for s in spacing))
            out.SetOrigin(tuple(float(o) for o in lps[:3, 3]))
            out.SetDirection(tuple(float(d) for d in (lps[:3, :3] / spacing).ravel()))
            sitk.WriteImage(out, str(tmp), True)
    return Path(path)
