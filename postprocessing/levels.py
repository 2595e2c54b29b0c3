"""Which vertebral level each axial slice of a cord mask belongs to (the one home of that rule).

All arrays are in SCT's RPI voxel order (axis 0 R→L, axis 1 P→A, axis 2 I→S: slices last), as
:mod:`postprocessing.csa` measures them; levels are **SCT level numbers** (C1=1 … L5=24, S1=25, see
:mod:`nnunet_extensions.labels`), 0 meaning "no level known".

Level sources:

* a labelled-level image (SCT's ``*_labeled`` cord, ``PAM50_levels``): a slice takes the level its cord
  voxels mostly carry;
* disc point labels (SCT convention: disc value ``n`` is the top of vertebra ``n``; slices between disc
  ``n`` and disc ``n + 1`` are level ``n``).

Both rules live in :func:`assign_slice_levels`. :func:`select_levels` keeps the rows of a per-slice table
that belong to chosen levels. Library functions never print or exit; bad input raises
:class:`~nnunet_extensions.io.InputError` naming the file.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from nnunet_extensions.io import Image, InputError, check_same_grid, load_image

#: Voxel values at or below this count as background (resampling leaves ~1e-16 noise).
NEAR_ZERO = 1e-6


def load_levels(path: str | os.PathLike, ref: Image) -> Image:
    """Read a level or disc label file: non-negative integer labels on ``ref``'s grid."""
    img = load_image(path, "labels")
    check_same_grid(ref, img)
    return img


def assign_slice_levels(
    weights: np.ndarray,
    *,
    level_data: np.ndarray | None = None,
    disc_data: np.ndarray | None = None,
    name: str = "<levels>",
) -> np.ndarray:
    """The slice → vertebral level rule (one place for it). All arrays in RPI voxel order (slices last).

    * ``level_data`` (labelled levels, e.g. SCT's ``*_labeled`` cord or ``PAM50_levels``): a slice belongs to
      the level that its cord voxels mostly carry, weighted by the mask value. A slice whose cord voxels
      carry no level at all takes the level most of the slice's labelled voxels carry.
    * ``disc_data`` (disc point labels, SCT convention: value ``n`` marks the top of vertebra ``n``):
      slice ``k`` is level ``n`` when ``k_{n+1} < k <= k_n``, where ``k_n`` is the slice of disc ``n``.
      Discs missing between two labelled ones are placed evenly between them. Slices above the highest or
      below the lowest disc get no level.

    Returns one integer per slice, 0 where no level is known. ``name`` is used in error messages.
    """
    nz = weights.shape[2]
    if disc_data is not None:
        return _levels_from_discs(disc_data, nz, name)
    if level_data is None:
        return np.zeros(nz, np.int64)
    labels = np.rint(np.asarray(level_data)).astype(np.int64)
    n_labels = int(labels.max()) + 1 if labels.size else 1
    i, j, k = np.nonzero(weights > NEAR_ZERO)
    lab = labels[i, j, k]
    keep = lab > 0
    votes = np.bincount(k[keep] * n_labels + lab[keep], weights=np.asarray(weights[i, j, k], float)[keep],
                        minlength=nz * n_labels).reshape(nz, n_labels)
    out = np.where(votes.sum(1) > 0, votes.argmax(1), 0)
    missing = out == 0
    if missing.any():  # fall back on the slice's labelled voxels (level file not drawn on this cord mask)
        li, lj, lk = np.nonzero(labels > 0)
        counts = np.bincount(lk * n_labels + labels[li, lj, lk], minlength=nz * n_labels).reshape(nz, n_labels)
        fallback = np.where(counts.sum(1) > 0, counts.argmax(1), 0)
        out[missing] = fallback[missing]
    return out.astype(np.int64)


def _levels_from_discs(disc_data: np.ndarray, nz: int, name: str) -> np.ndarray:
    labels = np.rint(np.asarray(disc_data)).astype(np.int64)
    _, _, k = np.nonzero(labels > 0)
    values = labels[labels > 0]
    out = np.zeros(nz, np.int64)
    if values.size == 0:
        raise InputError(f"{name}: disc file holds no disc label (all zero)")
    discs = np.unique(values)
    k_disc = np.array([k[values == n].mean() for n in discs])
    if discs.size > 1 and np.any(np.diff(k_disc) >= 0):
        raise InputError(
            f"{name}: disc labels are not ordered from superior to inferior (disc n must lie above disc n+1)"
        )
    full = np.arange(discs[0], discs[-1] + 1)
    k_full = np.interp(full, discs, k_disc)  # missing discs evenly between their labelled neighbours
    s = np.arange(nz)
    for n, k_top, k_bottom in zip(full[:-1], k_full[:-1], k_full[1:]):
        out[(s <= k_top) & (s > k_bottom)] = n
    return out


def select_levels(per_slice, vert: Sequence[int] | None):
    """Rows of a per-slice table (DataFrame or dict of arrays) whose level is in ``vert`` (all if None)."""
    if vert is None:
        return per_slice
    keep = np.isin(np.asarray(per_slice["level"]), [int(v) for v in vert])
    if hasattr(per_slice, "loc"):
        return per_slice.loc[keep]
    return {key: np.asarray(value)[keep] for key, value in per_slice.items()}
