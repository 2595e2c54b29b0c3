"""SCT's lesion measures beside ours: the definitions of ``sct_analyze_lesion`` (Spinal Cord Toolbox,
``spinalcordtoolbox/scripts/sct_analyze_lesion.py``: ``_measure_length``, ``_measure_diameter``,
``angle_correction``), computed from our lesion components and a cord mask.

On the image reoriented to RPI (slices along the third axis, SCT's working orientation), with ``θ_k`` the angle
between the cord centreline's tangent at slice ``k`` and the slice normal (S-I), and voxel size ``dx, dy, dz``:

* ``length_along_cord_mm`` = Σ over the slices holding the lesion of ``dz / cos θ_k`` (SCT's ``length``);
* ``max_equivalent_diameter_mm`` = ``2 √(max_k A_k / π)`` with ``A_k = n_k dx dy cos θ_k`` the lesion's area on
  slice ``k`` corrected for obliquity (``n_k`` voxels) (SCT's ``max_equivalent_diameter``);
* ``volume_in_cord_mm3`` = lesion voxels inside the cord mask × voxel volume. (SCT's own ``volume`` counts every
  lesion voxel: that is our ``volume_mm3``.)

The centreline is ours (:func:`postprocessing.cord.centreline.cord_centreline`, a cubic B-spline through the
cord's slice centres), not SCT's ``get_centerline``; on slices beyond the cord's ends the angle of the nearest cord
slice is used (SCT extrapolates its fit). Lesions outside the cord are measured the same way (SCT needs them
inside the cord's slice range).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Columns added to the lesion table with ``--cord``.
SCT_COLUMNS = ("volume_in_cord_mm3", "length_along_cord_mm", "max_equivalent_diameter_mm")


def slice_cosines(cord_rpi: np.ndarray, zooms_mm: Sequence[float]) -> np.ndarray:
    """``cos θ_k`` for every slice ``k`` of a binary cord mask in RPI voxel order (slices last): the cosine of the
    angle between the centreline's tangent and the S-I axis; slices without cord take the nearest cord slice's."""
    from postprocessing.cord.centreline import cord_centreline

    slices, _, step = cord_centreline(np.asarray(cord_rpi, np.float32), zooms_mm)
    cos_cord = step[:, 2] / np.linalg.norm(step, axis=1)
    nearest = np.clip(np.searchsorted(slices, np.arange(cord_rpi.shape[2])), 0, len(slices) - 1)
    before = np.clip(nearest - 1, 0, len(slices) - 1)
    k = np.arange(cord_rpi.shape[2])
    pick = np.where(np.abs(slices[before] - k) <= np.abs(slices[nearest] - k), before, nearest)
    return cos_cord[pick]


def sct_lesion_measures(components: np.ndarray, n: int, cord: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """``(n, 3)`` array of :data:`SCT_COLUMNS` for lesions ``1..n`` of a component image (any orientation) with a
    binary cord mask on the same grid (``affine``: voxel → RAS mm). Raises ``ValueError`` for an empty cord."""
    from nnunet_extensions.core.geometry import reorient
    from nnunet_extensions.core.io import voxel_sizes

    comp_rpi, rpi_affine = reorient(np.asarray(components), affine)
    cord_rpi, _ = reorient(np.asarray(cord, bool), affine)
    dx, dy, dz = voxel_sizes(rpi_affine)
    cos = slice_cosines(cord_rpi, (dx, dy, dz))
    out = np.zeros((n, 3))
    if n == 0:
        return out
    ii, jj, kk = np.nonzero(comp_rpi)
    lab = comp_rpi[ii, jj, kk].astype(np.int64)
    in_cord = cord_rpi[ii, jj, kk]
    nz = comp_rpi.shape[2]
    per_slice = np.bincount(lab * nz + kk, minlength=(n + 1) * nz).reshape(n + 1, nz)[1:]
    out[:, 0] = np.bincount(lab, weights=in_cord, minlength=n + 1)[1:] * dx * dy * dz
    out[:, 1] = ((per_slice > 0) * (dz / cos)[None, :]).sum(1)
    area = per_slice * dx * dy * cos[None, :]
    out[:, 2] = 2.0 * np.sqrt(area.max(1) / np.pi)
    return out
