"""SCT's lesion measures beside ours: the definitions of ``sct_analyze_lesion -s <cord>`` (Spinal Cord Toolbox,
``spinalcordtoolbox/scripts/sct_analyze_lesion.py``, read at commit 3b3c5b2: ``AnalyzeLesion.measure``,
``_measure_volume``, ``_measure_length``, ``_measure_diameter``, ``angle_correction``), computed from our lesion
components and a cord mask.

SCT labels the lesions on the whole mask (``label_lesion``), then ``measure()`` multiplies the labelled lesions by
the cord mask ("Restrict the lesion mask to the spinal cord mask"): every measure is of **lesion ∩ cord**. Here too:
each of our lesions (a component of the whole mask) is measured by its voxels inside the cord mask.

On the image reoriented to RPI (slices along the third axis, SCT's working orientation), with ``θ_k`` the angle
between the cord centreline's tangent at slice ``k`` and the slice normal (S-I), voxel size ``dx, dy, dz`` (mm)
and ``n_k`` the lesion's voxels inside the cord on slice ``k``:

* ``volume_in_cord_mm3`` = ``Σ_k n_k dx dy dz`` (SCT's ``volume [mm3]`` with ``-s``; our ``volume_mm3`` is the
  whole lesion, SCT's volume without ``-s``);
* ``length_along_cord_mm`` = Σ over the slices with ``n_k > 0`` of ``dz / cos θ_k`` (SCT's ``length [mm]``);
* ``max_equivalent_diameter_mm`` = ``2 √(max_k A_k / π)`` with ``A_k = n_k dx dy cos θ_k`` (mm², the in-cord
  area on slice ``k`` corrected for obliquity) (SCT's ``max_equivalent_diameter [mm]``).

A lesion partly outside the cord is measured by its part inside (a lesion straddling the cord edge is shorter and
thinner here than in ``extent_si_mm`` / ``max_axial_diameter_mm``). A lesion entirely outside the cord has an empty
intersection: all three columns are 0 (SCT's formulas on an empty lesion; SCT itself stops on such a mask, its
lesion count no longer matching after the restriction). Without a cord mask the three columns are empty.

The centreline is ours (:func:`nnunet_spine.postprocessing.cord.centreline.cord_centreline`, a cubic B-spline through
the cord's slice centres), not SCT's ``get_centerline``; the measured slices all hold cord, so no angle is extrapolated.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Columns added to the lesion table with ``--cord``.
SCT_COLUMNS = ("volume_in_cord_mm3", "length_along_cord_mm", "max_equivalent_diameter_mm")


def slice_cosines(cord_rpi: np.ndarray, zooms_mm: Sequence[float]) -> np.ndarray:
    """``cos θ_k`` for every slice ``k`` of a binary cord mask in RPI voxel order (slices last): the cosine of the
    angle between the centreline's tangent and the S-I axis; slices without cord take the nearest cord slice's."""
    from nnunet_spine.postprocessing.cord.centreline import cord_centreline

    slices, _, step = cord_centreline(np.asarray(cord_rpi, np.float32), zooms_mm)
    cos_cord = step[:, 2] / np.linalg.norm(step, axis=1)
    nearest = np.clip(np.searchsorted(slices, np.arange(cord_rpi.shape[2])), 0, len(slices) - 1)
    before = np.clip(nearest - 1, 0, len(slices) - 1)
    k = np.arange(cord_rpi.shape[2])
    pick = np.where(np.abs(slices[before] - k) <= np.abs(slices[nearest] - k), before, nearest)
    return cos_cord[pick]


def sct_lesion_measures(components: np.ndarray, n: int, cord: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """``(n, 3)`` array of :data:`SCT_COLUMNS` (mm³, mm, mm) for lesions ``1..n`` of a component image (any
    orientation) with a binary cord mask on the same grid (``affine``: voxel → RAS mm): each lesion measured by its
    voxels inside the cord, as ``sct_analyze_lesion``'s ``measure()`` does (module docstring); 0, 0, 0 for a lesion
    with no voxel in the cord. Raises ``ValueError`` for an empty cord."""
    from nnunet_spine.core.geometry import reorient
    from nnunet_spine.core.io import voxel_sizes

    comp_rpi, rpi_affine = reorient(np.asarray(components), affine)
    cord_rpi, _ = reorient(np.asarray(cord, bool), affine)
    dx, dy, dz = voxel_sizes(rpi_affine)
    cos = slice_cosines(cord_rpi, (dx, dy, dz))
    out = np.zeros((n, 3))
    if n == 0:
        return out
    per_slice = in_cord_per_slice(comp_rpi, cord_rpi, n)
    out[:, 0] = per_slice.sum(1) * dx * dy * dz
    out[:, 1] = ((per_slice > 0) * (dz / cos)[None, :]).sum(1)
    area = per_slice * dx * dy * cos[None, :]
    out[:, 2] = 2.0 * np.sqrt(area.max(1) / np.pi)
    return out


def in_cord_per_slice(comp_rpi: np.ndarray, cord_rpi: np.ndarray, n: int) -> np.ndarray:
    """``(n, nz)`` voxel counts of lesions ``1..n`` inside the cord mask on each slice (RPI voxel order, slices
    last): ``n_k`` of the module docstring."""
    ii, jj, kk = np.nonzero(comp_rpi)
    keep = cord_rpi[ii, jj, kk]
    lab = comp_rpi[ii, jj, kk].astype(np.int64)[keep]
    nz = comp_rpi.shape[2]
    return np.bincount(lab * nz + kk[keep], minlength=(n + 1) * nz).reshape(n + 1, nz)[1:]
