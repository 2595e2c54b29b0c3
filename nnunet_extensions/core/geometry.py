"""Orientation and resampling between voxel grids.

Conventions: affines map voxel indices ``(i, j, k)`` to world coordinates in **RAS+ mm** (nibabel).
Orientation codes are nibabel's (the direction each voxel axis *points to*, e.g. ``('L','A','S')``).
SCT names orientations by where each axis *comes from*: SCT's "RPI" is nibabel's ``('L','A','S')``.
"""

from __future__ import annotations

import numpy as np

#: nibabel codes of SCT's RPI orientation (x: R→L, y: P→A, z: I→S).
SCT_RPI = ("L", "A", "S")


def axcodes(affine: np.ndarray) -> tuple[str, str, str]:
    """nibabel orientation codes of an affine, e.g. ``('P', 'S', 'R')``."""
    import nibabel as nib

    return tuple(nib.aff2axcodes(affine))  # type: ignore[return-value]


def si_axis(affine: np.ndarray) -> int:
    """Voxel axis whose direction is closest to the world S-I axis."""
    rot = np.asarray(affine, float)[:3, :3]
    cosines = np.abs(rot[2, :]) / np.linalg.norm(rot, axis=0)
    return int(np.argmax(cosines))


def reorient(
    data: np.ndarray, affine: np.ndarray, codes: tuple[str, str, str] = SCT_RPI
) -> tuple[np.ndarray, np.ndarray]:
    """Permute/flip voxel axes (no interpolation) so the array follows ``codes``.

    Returns the reoriented array (a view when possible) and its new affine, which maps the new voxel
    indices to the same world points.
    """
    import nibabel.orientations as nio

    src = nio.io_orientation(affine)
    dst = nio.axcodes2ornt(codes)
    transform = nio.ornt_transform(src, dst)
    out = nio.apply_orientation(data, transform)
    new_affine = affine @ nio.inv_ornt_aff(transform, data.shape)
    return out, new_affine


def world_to_voxel(affine: np.ndarray, points_mm: np.ndarray) -> np.ndarray:
    """Map world points (N×3, RAS mm) to continuous voxel indices (N×3)."""
    inv = np.linalg.inv(affine)
    pts = np.asarray(points_mm, float)
    return pts @ inv[:3, :3].T + inv[:3, 3]


def resample_to_grid(
    data: np.ndarray,
    src_affine: np.ndarray,
    dst_shape: tuple[int, int, int],
    dst_affine: np.ndarray,
    *,
    order: int = 1,
    cval: float = 0.0,
    world_transform: np.ndarray | None = None,
) -> np.ndarray:
    """Resample ``data`` (on ``src_affine``) onto another grid through world coordinates.

    Parameters
    ----------
    order : int
        Spline order: 0 nearest neighbour (labels), 1 linear (masks, soft masks).
    cval : float
        Value for destination voxels that fall outside the source field of view.
    world_transform : 4×4 array, optional
        Extra rigid/affine map applied to destination world points before looking them up in the source
        (destination world → source world), e.g. an inter-scan shift.
    """
    from scipy import ndimage  # imported here: light commands (nnspine csa) start faster without it

    m = np.linalg.inv(src_affine)
    if world_transform is not None:
        m = m @ world_transform
    m = m @ dst_affine
    out = ndimage.affine_transform(
        np.asarray(data, dtype=np.float32 if order > 0 else data.dtype),
        m[:3, :3],
        offset=m[:3, 3],
        output_shape=tuple(dst_shape),
        order=order,
        mode="constant",
        cval=cval,
        prefilter=False,
    )
    return out


def mask_box(mask: np.ndarray, affine: np.ndarray, margin_mm: float) -> tuple[slice, slice, slice] | None:
    """Voxel bounding box of a mask's non-zero voxels grown by ``margin_mm`` (world mm, per axis from the voxel
    sizes) and clipped to the array; ``None`` for an empty mask. As ``sct_crop_image -m`` on a dilated cord mask."""
    idx = np.argwhere(np.asarray(mask) != 0)
    if idx.size == 0:
        return None
    zooms = np.linalg.norm(np.asarray(affine, float)[:3, :3], axis=0)
    grow = np.ceil(float(margin_mm) / zooms).astype(int)
    lo = np.maximum(idx.min(0) - grow, 0)
    hi = np.minimum(idx.max(0) + grow + 1, np.asarray(mask.shape[:3]))
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))  # type: ignore[return-value]


def crop_affine(affine: np.ndarray, box: tuple[slice, ...]) -> np.ndarray:
    """Affine of ``data[box]``: the same world points, its voxel (0, 0, 0) at the box's first voxel."""
    out = np.array(affine, float)
    out[:3, 3] = out[:3, :3] @ np.array([s.start for s in box[:3]], float) + out[:3, 3]
    return out
