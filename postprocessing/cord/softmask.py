"""Soft masks from ``nnUNetv2_predict --save_probabilities`` output.

nnU-Net writes, per case, ``<case>.npz`` (key ``probabilities``: float array ``(C, …)`` in the array
layout of the reader that loaded the input) and ``<case>.pkl`` (the reader's geometry). This module
turns the foreground channel back into a float32 image on the input's original voxel grid and affine.

Supported readers (all four nnU-Net 2.8 NIfTI/ITK readers), told apart by the ``.pkl`` contents:

* ``SimpleITKIO``: ``sitk_stuff`` {spacing, origin, direction}; array order ``(z, y, x)``.
* ``SimpleITKIOWithReorient``: as above plus ``original_orientation``; the array was re-oriented to RAS.
* ``NibabelIO``: ``nibabel_stuff`` {original_affine}; array is nibabel's ``(x, y, z)`` transposed.
* ``NibabelIOWithReorient``: plus ``reoriented_affine``; array was re-oriented to RAS first.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnunet_spine.core.geometry import axcodes, reorient
from nnunet_spine.core.io import Image, InputError, affine_from_itk, check_output, require_folder, save_image


def _load_pickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            props = pickle.load(f)
    except FileNotFoundError:
        raise InputError(
            f"{path}: geometry file missing (nnUNetv2_predict writes it with --save_probabilities)"
        ) from None
    except Exception as exc:
        raise InputError(f"{path}: cannot read nnU-Net properties ({type(exc).__name__})") from None
    if not isinstance(props, dict) or not ({"sitk_stuff", "nibabel_stuff"} & props.keys()):
        raise InputError(f"{path}: no sitk_stuff/nibabel_stuff geometry in nnU-Net properties")
    return props


def _load_probabilities(path: Path) -> np.ndarray:
    try:
        with np.load(path) as npz:
            if "probabilities" not in npz:
                raise InputError(f"{path}: no 'probabilities' array (not an nnU-Net probability file)")
            probs = npz["probabilities"]
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"{path}: cannot read probabilities ({type(exc).__name__}: {str(exc)[:120]})") from None
    if probs.ndim != 4:
        raise InputError(f"{path}: expected probabilities of shape (C, X, Y, Z), got {probs.shape}")
    if not np.isfinite(probs).all():
        raise InputError(f"{path}: probabilities contain NaN or infinite values")
    return probs


def probabilities_to_image(probs: np.ndarray, props: dict, channel: int = 1, name: str = "<array>") -> Image:
    """Map channel ``channel`` of nnU-Net probabilities back onto the original grid (float32, RAS affine)."""
    if not 0 <= channel < probs.shape[0]:
        raise InputError(f"{name}: channel {channel} requested, probabilities have {probs.shape[0]} channel(s)")
    data = np.ascontiguousarray(probs[channel].astype(np.float32).transpose(2, 1, 0))  # → voxel order (x, y, z)
    if "nibabel_stuff" in props:
        nib_stuff = props["nibabel_stuff"]
        original = np.asarray(nib_stuff["original_affine"], float)
        if "reoriented_affine" in nib_stuff:
            data, affine = reorient(data, np.asarray(nib_stuff["reoriented_affine"], float), axcodes(original))
            if not np.allclose(affine, original, atol=1e-4):
                raise InputError(f"{name}: restored affine does not match the original affine")
        return Image(data, original)
    sitk = props["sitk_stuff"]
    affine = affine_from_itk(sitk["spacing"], sitk["origin"], sitk["direction"])
    if "original_orientation" in sitk:  # ITK orientation letters name where each axis points, like nibabel's
        data, affine = reorient(data, affine, tuple(sitk["original_orientation"]))
    return Image(data, affine)


@dataclass
class SoftmaskResult:
    """What :func:`convert_case` wrote for one case (sizes in voxels and mm, volume in mm³)."""

    case: str
    soft_path: Path
    binary_path: Path | None
    shape: tuple[int, int, int]
    voxel_mm: tuple[float, float, float]
    volume_mm3: float


def find_cases(pred_dir: Path) -> list[str]:
    """Case names of every ``<case>.npz`` in an nnU-Net prediction folder."""
    pred_dir = require_folder(pred_dir, "prediction folder")
    cases = sorted(p.name[: -len(".npz")] for p in pred_dir.glob("*.npz"))
    if not cases:
        raise InputError(f"{pred_dir}: no .npz probability files (run nnUNetv2_predict with --save_probabilities)")
    return cases


def convert_case(
    pred_dir: Path,
    case: str,
    out_dir: Path,
    *,
    channel: int = 1,
    threshold: float | None = None,
    ending: str = ".nii.gz",
    overwrite: bool = False,
) -> SoftmaskResult:
    """Write ``out_dir/<case><ending>`` (float32 soft mask) and, with ``threshold``,
    ``out_dir/binary/<case><ending>`` (uint8, soft ≥ threshold)."""
    pred_dir, out_dir = Path(pred_dir), Path(out_dir)
    probs = _load_probabilities(pred_dir / f"{case}.npz")
    props = _load_pickle(pred_dir / f"{case}.pkl")
    img = probabilities_to_image(probs, props, channel, name=str(pred_dir / f"{case}.npz"))
    soft = np.clip(img.data, 0.0, 1.0)
    soft_path = out_dir / f"{case}{ending}"
    bin_path = out_dir / "binary" / f"{case}{ending}" if threshold is not None else None
    check_output(soft_path, overwrite)
    if bin_path is not None:
        check_output(bin_path, overwrite)
    save_image(soft, img.affine, soft_path, overwrite=overwrite, dtype=np.float32)
    if bin_path is not None:
        save_image((soft >= threshold).astype(np.uint8), img.affine, bin_path, overwrite=overwrite)
    zooms = tuple(float(z) for z in img.zooms)
    return SoftmaskResult(case, soft_path, bin_path, tuple(soft.shape), zooms, float(soft.sum() * np.prod(zooms)))


def seg_file_ending(pred_dir: Path, case: str) -> str:
    """File ending of nnU-Net's own segmentation of ``case`` (so outputs match the dataset's format)."""
    for ending in (".nii.gz", ".nii", ".mha", ".nrrd"):
        if (Path(pred_dir) / f"{case}{ending}").exists():
            return ending
    return ".nii.gz"
