"""Soft (partial-volume) spinal-cord ground truth from binary masks of several contrasts of one subject.

``nnspine convert softgt`` / :func:`convert`. Input: a BIDS dataset with several contrasts per subject and a
binary cord mask per image under ``derivatives/labels/sub-XX/anat/<image>_label-SC_seg.nii.gz`` (the
spine-generic naming). Every mask is an independent, voxel-quantized delineation of the *same* cord; their
disagreements at the boundary carry sub-voxel information. Per subject:

1. **Averaging space.** A stack of planes perpendicular to the reference contrast's S-I voxel axis (default
   T2w), with ``reference_resolution`` mm (default 0.4) in-plane, the reference's S-I spacing (at most 1 mm),
   slices at the reference's slice positions. Each plane is shifted in-plane to follow the cord, so the
   stack only holds a box of cord plus margin (about 25×20 mm), over the S-I union of all masks.
2. **Resampling.** Each contrast's binary mask is brought into that space through world coordinates (the
   image affines) with *linear* interpolation, which turns the mask's staircase into a ramp whose 0.5
   crossing lies half-way between inside and outside voxel centres, and a coverage map marks where that
   contrast's field of view (voxel centres ± half a voxel) contains the point.
3. **Alignment** (``align=True``). In each plane, the centre of mass of each contrast's resampled mask is
   compared with the reference mask's (planes where both are present and fully inside each other's
   coverage); the per-plane offsets are smoothed along S-I (Gaussian, σ = 15 mm, weighted by the cord
   area; held constant beyond the overlap), since a real inter-scan shift is (nearly) rigid, and the
   contrast is resampled again with them (in-plane translation per plane). This removes the few-mm shifts
   between acquisitions; through-plane shifts are not corrected (they matter little along the cord).
4. **Averaging.** ``f = Σ_c cov_c m_c / Σ_c cov_c``: every point is averaged over the contrasts whose field
   of view covers it, so slabs covering part of the cord do not dilute the average (0 where none covers).
5. **Back to each native grid** through the inverse of the same transform (world coordinates, minus that
   contrast's alignment offset). The surface ``f = 0.5`` is the consensus cord boundary; the soft value of a
   native voxel is the fraction of its volume inside it: voxels whose 3×3×3 neighbourhood of centres lies
   on one side are exactly 0 or 1, the others are integrated with sub-voxel samples (about 0.2 mm
   in-plane, 0.5 mm along S-I, at most 16 per axis, so thick slices are integrated over their whole
   thickness) of ``clip((f - 0.5) / 0.2 + 0.5, 0, 1)``; values are clipped to [0, 1]. Every native voxel
   lies inside its own contrast's field of view; voxels that map outside the averaging space are 0.
6. **Volume preservation.** Linear interpolation rounds the staircase corners of each mask, and rounding a
   convex outline always removes area (≈0.4 % of the cord volume at 0.8–1 mm voxels). One outward normal
   offset per subject (typically 0.01–0.02 mm, at most ±0.2 mm) is applied to the consensus surface so that
   the soft volumes, summed over contrasts, equal the binary masks' volumes.

Averaging the ramps directly (point-sampling ``f``) blurs the boundary by the coarsest inputs' voxel size;
integrating the consensus surface over each native voxel instead gives the partial-volume fraction *that
voxel* sees. On the cord phantom (5 contrasts, 0.5–1.8 mm shifts) the mean absolute error in a 2-voxel
band around the true boundary is ≈0.023 (binary masks: ≈0.07; point-sampled average: ≈0.05; without
alignment: ≈0.2); see tests/test_softgt.py and benchmarks/bench_softgt.py.

Outputs (in a new pipeline folder: outside the input dataset or under its ``derivatives/``; the input files are
never modified and existing outputs are refused unless ``overwrite``):

* ``<derivatives_out>/labels_softseg/sub-XX/anat/<image>_label-SC_softseg.nii.gz`` (float32, the image's
  grid and header) + ``.json`` sidecar (sources, reference, method, offsets, package version), and
  ``<derivatives_out>/labels_softseg/dataset_description.json``;
* optionally an nnU-Net raw dataset ``$nnUNet_raw/DatasetXXX_NAME``: every (subject, contrast) image is
  one single-channel training case ``<image stem>`` (e.g. ``sub-01_T2w``), ``labelsTr`` = soft ≥ 0.5 (uint8),
  ``labelsTr_soft/<case>.nii.gz`` = the soft mask (float32, same grid): the input of ``nnspine
  preprocess-soft``.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from scipy import ndimage

from nnunet_extensions.geometry import si_axis
from nnunet_extensions.io import (
    Image,
    InputError,
    OutputExistsError,
    check_same_grid,
    load_image,
    read_geometry,
    save_image,
    split_suffix,
    write_text,
)

#: Pipeline folder of the soft masks inside ``derivatives_out``.
PIPELINE = "labels_softseg"
#: Input masks: ``derivatives/labels/<anat dir>/<image stem><MASK_SUFFIX>``.
MASK_SUFFIX = "_label-SC_seg"
#: Outputs: ``<derivatives_out>/labels_softseg/<anat dir>/<image stem><SOFT_SUFFIX>``.
SOFT_SUFFIX = "_label-SC_softseg"

DEFAULT_REFERENCE = "T2w"
#: In-plane spacing (mm) of the averaging space.
DEFAULT_RESOLUTION_MM = 0.4
#: Largest S-I spacing (mm) of the averaging space.
MAX_SI_SPACING_MM = 1.0
#: Gaussian σ (mm) for smoothing the slice-wise alignment offsets along S-I.
ALIGN_SMOOTHING_MM = 15.0
#: In-plane margin (mm) around the cord in the averaging space.
MARGIN_MM = 3.0
#: Sub-voxel sample spacing (mm) in-plane and along S-I for the partial-volume integration.
SUBSAMPLE_MM = (0.2, 0.5)
MAX_SUBSAMPLES = 16
#: Width (in units of the averaged mask) of the ramp that replaces the hard 0.5 threshold per sub-sample.
RAMP_WIDTH = 0.2
#: Probe offset and largest allowed offset (mm) of the volume-preserving boundary shift.
VOLUME_PROBE_MM = 0.05
MAX_VOLUME_OFFSET_MM = 0.2

METHOD_NAME = "multi-contrast linear mask averaging with slice-wise centre-of-mass alignment"


class SoftGTWarning(UserWarning):
    """A subject or contrast was skipped (missing reference, missing mask, empty mask...)."""


# ============================================================================================ core maths
@dataclass
class _Stack:
    """Averaging space: a stack of planes ``world = affine @ (i, j, k, 1) + shift[k_s]``.

    ``s`` is the S-I (slice) voxel axis; the per-slice in-plane world translations ``shift`` (mm, one row
    per slice) are passed with each use (cord track + a contrast's alignment offset).
    """

    shape: tuple[int, int, int]
    affine: np.ndarray
    s: int


def _unit_axes(affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(0))
    return affine[:3, :3] / zooms, zooms


def _mask_corners_world(data: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """World corners (8×3) of the index bounding box (± half a voxel) of the non-zero voxels."""
    nz = np.argwhere(data > 0)
    lo, hi = nz.min(0) - 0.5, nz.max(0) + 0.5
    corners = np.array([[a, b, c] for a in (lo[0], hi[0]) for b in (lo[1], hi[1]) for c in (lo[2], hi[2])])
    return corners @ affine[:3, :3].T + affine[:3, 3]


def _sample(data: np.ndarray, affine: np.ndarray, stack: _Stack, shift: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Linear resampling of ``data`` into the stack (per-slice world translation ``shift``).

    Returns ``(values float32, coverage bool)``; values are 0 outside the source field of view, and the
    source is extended by its edge values within half a voxel of its outer voxel centres.
    """
    inv = np.linalg.inv(affine)
    m = inv @ stack.affine
    per_slice = shift @ inv[:3, :3].T  # (n_slices, 3) in source voxel units
    axes = [np.arange(n, dtype=np.float64) for n in stack.shape]
    src = np.empty((3, *stack.shape), np.float32)
    inside = np.ones(stack.shape, bool)
    for a in range(3):
        terms = []
        for b in range(3):
            v = m[a, b] * axes[b]
            if b == stack.s:
                v = v + per_slice[:, a]
            terms.append(v.reshape([-1 if c == b else 1 for c in range(3)]).astype(np.float32))
        np.add(terms[0] + terms[1], terms[2], out=src[a])
        src[a] += np.float32(m[a, 3])
        inside &= (src[a] >= -0.5) & (src[a] <= data.shape[a] - 0.5)
    values = ndimage.map_coordinates(np.asarray(data, np.float32), src.reshape(3, -1), order=1, mode="nearest")
    values = values.reshape(stack.shape)
    values[~inside] = 0.0
    return values, inside


def _box(lo: np.ndarray, hi: np.ndarray, spacing: np.ndarray, inplane, s: int, n_s: int) -> tuple[list[int], np.ndarray]:
    """Shape and in-plane origin (mm along the reference axes) of a stack covering ``lo..hi`` in-plane at
    ``spacing``, with ``n_s`` planes along axis ``s`` (whose origin is left at 0 for the caller)."""
    shape = [0, 0, 0]
    origin = np.zeros(3)
    for a in inplane:
        shape[a] = int(math.ceil((hi[a] - lo[a]) / spacing[a])) + 1
        origin[a] = lo[a]
    shape[s] = n_s
    return shape, origin


def _slices_first(a: np.ndarray, s: int) -> np.ndarray:
    return np.moveaxis(a, s, 0).reshape(a.shape[s], -1)


def _inplane_positions(stack: _Stack) -> np.ndarray:
    """World offsets (mm, N×3) of the in-plane voxels of one slice, relative to that slice's origin."""
    shape = list(stack.shape)
    shape[stack.s] = 1
    idx = np.indices(shape, dtype=np.float64).reshape(3, -1)
    return (stack.affine[:3, :3] @ idx).T


def _smooth_along_si(values: np.ndarray, weights: np.ndarray, valid: np.ndarray, spacing_mm: float,
                     sigma_mm: float) -> np.ndarray:
    """Gaussian-weighted smoothing of per-slice vectors (n×3) from the ``valid`` slices, held beyond them."""
    n = len(valid)
    out = np.zeros((n, values.shape[1]))
    if not valid.any():
        return out
    z = np.arange(n) * spacing_mm
    zv = z[valid]
    w = np.exp(-0.5 * ((z[:, None] - zv[None, :]) / sigma_mm) ** 2) * weights[valid][None, :]
    wsum = w.sum(1)
    good = wsum > 1e-9 * wsum.max()
    out[good] = (w[good] @ values[valid]) / wsum[good, None]
    gi = np.flatnonzero(good)
    out[: gi[0]] = out[gi[0]]
    out[gi[-1] + 1:] = out[gi[-1]]
    return out


def _slice_com(m: np.ndarray, stack: _Stack, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-slice mass (voxels) and centre of mass (world mm, relative to the slice origin)."""
    ms = _slices_first(m, stack.s)
    mass = ms.sum(1, dtype=np.float64)
    com = (ms @ pos) / np.maximum(mass, 1e-12)[:, None]
    return mass, com


def _alignment_offsets(m_ref, cov_ref, m_c, cov_c, stack: _Stack, sigma_mm: float) -> tuple[np.ndarray, int]:
    """Smoothed per-slice in-plane offsets (world mm) of contrast ``c`` relative to the reference.

    A slice counts when both masks are present there, each one's support lies inside the other's coverage
    and their areas agree within a factor 2 (and the reference area is at least half its median).
    Returns the offsets (n_slices×3) and the number of slices used (0: no overlap, offsets zero).
    """
    pos = _inplane_positions(stack)
    mass_r, com_r = _slice_com(m_ref, stack, pos)
    mass_c, com_c = _slice_com(m_c, stack, pos)
    r_in_c = ~np.any(_slices_first((m_ref > 0) & ~cov_c, stack.s), axis=1)
    c_in_r = ~np.any(_slices_first((m_c > 0) & ~cov_ref, stack.s), axis=1)
    valid = (mass_r > 0) & (mass_c > 0) & r_in_c & c_in_r
    if valid.any():
        med = float(np.median(mass_r[mass_r > 0]))
        valid &= (mass_r >= 0.5 * med) & (mass_c >= 0.5 * mass_r) & (mass_c <= 2.0 * mass_r)
    spacing = float(np.linalg.norm(stack.affine[:3, stack.s]))
    raw = com_c - com_r
    return _smooth_along_si(raw, mass_r, valid, spacing, sigma_mm), int(valid.sum())


def _to_native(fields: Sequence[np.ndarray], stack: _Stack, shift: np.ndarray, shape: tuple[int, int, int],
               affine: np.ndarray) -> list[np.ndarray]:
    """Partial-volume fraction of each native voxel inside the surface ``f = 0.5``, for each ``f`` of ``fields``
    (arrays on ``stack``), on the native grid ``(shape, affine)``; ``shift`` is the per-slice world translation
    used when the masks were brought into the stack (cord track + this contrast's alignment offset).

    Voxels whose 3×3×3 neighbourhood of centres lies on one side of every surface are 0 or 1; the others are
    integrated with sub-voxel samples of ``clip((f - 0.5) / RAMP_WIDTH + 0.5, 0, 1)``.
    """
    outs = [np.zeros(shape, np.float32) for _ in fields]
    inv_stack = np.linalg.inv(stack.affine)
    inv_native = np.linalg.inv(affine)
    # native index box that can reach the stack: the stack's corners at every slice
    corners = np.array([[(0, stack.shape[a] - 1)[(c >> a) & 1] for a in range(3)] for c in range(8)], float)
    n_s = stack.shape[stack.s]
    pts = np.repeat(corners[None], n_s, axis=0)
    pts[:, :, stack.s] = np.arange(n_s)[:, None]
    world = pts @ stack.affine[:3, :3].T + stack.affine[:3, 3] + shift[:, None, :]
    nat = world.reshape(-1, 3) @ inv_native[:3, :3].T + inv_native[:3, 3]
    lo = np.maximum(np.floor(nat.min(0)).astype(int) - 2, 0)
    hi = np.minimum(np.ceil(nat.max(0)).astype(int) + 3, np.array(shape))
    if np.any(hi <= lo):
        return outs
    crop = tuple(int(h - l) for l, h in zip(lo, hi))
    m = inv_stack @ affine
    m33 = m[:3, :3].astype(np.float32)
    # per-slice shifts in stack voxel units (in-plane components only), interpolated in the slice coordinate
    shift_vox = shift @ inv_stack[:3, :3].T
    slices = np.arange(n_s, dtype=np.float64)
    inplane = [a for a in range(3) if a != stack.s]

    def unshift(q: np.ndarray) -> np.ndarray:
        for a in inplane:  # np.interp holds the end values beyond the first/last slice
            q[a] -= np.interp(q[stack.s], slices, shift_vox[:, a]).astype(np.float32)
        return q

    idx = np.indices(crop, dtype=np.float32).reshape(3, -1) + lo[:, None].astype(np.float32)
    base = m33 @ idx + m[:3, 3:4].astype(np.float32)  # stack coordinates before the per-slice shift
    q = unshift(base.copy())
    inside = [ndimage.map_coordinates(np.asarray(f, np.float32), q, order=1, mode="constant", cval=0.0).reshape(crop)
              >= 0.5 for f in fields]
    uncertain = np.zeros(crop, bool)
    for ins in inside:
        uncertain |= ndimage.maximum_filter(ins, size=3) != ndimage.minimum_filter(ins, size=3)
    results = [ins.astype(np.float32) for ins in inside]
    if uncertain.any():
        # sub-samples: ~0.2 mm along in-plane-like native axes, ~0.5 mm along the S-I-like one
        dirs, zooms = _unit_axes(affine)
        si_dir = stack.affine[:3, stack.s] / np.linalg.norm(stack.affine[:3, stack.s])
        step = np.where(np.abs(si_dir @ dirs) > 0.7, SUBSAMPLE_MM[1], SUBSAMPLE_MM[0])
        nsub = np.clip(np.ceil(zooms / step - 1e-6).astype(int), 1, MAX_SUBSAMPLES)
        offs = np.stack(np.meshgrid(*[(np.arange(n) + 0.5) / n - 0.5 for n in nsub], indexing="ij"), -1).reshape(-1, 3)
        offs_stack = (offs @ m[:3, :3].T).astype(np.float32)  # sub-sample offsets in stack voxel units
        ubase = base[:, uncertain.ravel()]
        n_u = ubase.shape[1]
        accs = [np.zeros(n_u, np.float64) for _ in fields]
        chunk = max(1, 2_000_000 // n_u)
        for s0 in range(0, len(offs_stack), chunk):
            o = offs_stack[s0: s0 + chunk]
            qq = unshift((ubase[:, None, :] + o.T[:, :, None]).reshape(3, -1))
            for f, acc in zip(fields, accs):
                v = ndimage.map_coordinates(np.asarray(f, np.float32), qq, order=1, mode="constant", cval=0.0)
                v = np.clip((v - 0.5) / RAMP_WIDTH + 0.5, 0.0, 1.0)
                acc += v.reshape(len(o), -1).sum(0)
        for r, acc in zip(results, accs):
            r[uncertain] = (acc / len(offs)).astype(np.float32)
    for out, r in zip(outs, results):
        out[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = np.clip(r, 0.0, 1.0)
    return outs


@dataclass
class SoftResult:
    """Result of :func:`soft_ground_truth` for one subject.

    Attributes
    ----------
    soft : dict
        Contrast → soft mask (float32 in [0, 1]) on that contrast's native grid.
    offsets_mm : dict
        Contrast → applied in-plane alignment offset (world RAS mm), mean over the averaging slices.
    aligned_slices : dict
        Contrast → number of slices of the averaging space used to measure its offset (0: not aligned).
    spacing_mm : tuple
        Voxel size of the averaging space (mm, along the reference's voxel axes).
    boundary_offset_mm : float
        Outward normal shift (mm) applied to the consensus surface so that the soft volumes equal the
        binary ones (``preserve_volume``; 0 otherwise).
    """

    soft: dict[str, np.ndarray]
    offsets_mm: dict[str, list[float]]
    aligned_slices: dict[str, int]
    spacing_mm: tuple[float, float, float]
    boundary_offset_mm: float = 0.0


def soft_ground_truth(
    masks: Mapping[str, tuple[np.ndarray, np.ndarray]],
    reference: str,
    *,
    align: bool = True,
    resolution_mm: float = DEFAULT_RESOLUTION_MM,
    align_smoothing_mm: float = ALIGN_SMOOTHING_MM,
    preserve_volume: bool = True,
) -> SoftResult:
    """Soft cord masks for every contrast of one subject from their binary masks (pure arrays, no I/O).

    Parameters
    ----------
    masks : mapping
        Contrast name → ``(binary mask (I, J, K), 4×4 voxel→world affine in RAS+ mm)``. Masks must be non-empty.
    reference : str
        Key of the contrast that defines the averaging space and the alignment target.
    align : bool
        Slice-wise centre-of-mass alignment of every other contrast onto the reference.
    resolution_mm : float
        In-plane spacing of the averaging space (mm).
    align_smoothing_mm : float
        Gaussian σ (mm along S-I) for smoothing the per-slice alignment offsets.
    preserve_volume : bool
        Shift the consensus surface along its normal (one offset per subject, at most ±0.2 mm) so that the
        soft volumes, summed over contrasts, equal the binary masks' volumes. Linear interpolation rounds
        the staircase corners of each mask, which shrinks a convex cord by ~0.5 % of its volume; this
        removes that bias (see the module docstring).
    """
    if reference not in masks:
        raise KeyError(reference)
    if not resolution_mm > 0:
        raise ValueError("resolution_mm must be > 0")
    names = list(masks)
    arrays = {n: np.asarray(masks[n][0]) > 0 for n in names}
    affines = {n: np.asarray(masks[n][1], float) for n in names}
    ref_aff = affines[reference]
    dirs, zooms = _unit_axes(ref_aff)
    s = si_axis(ref_aff)
    inplane = [a for a in range(3) if a != s]
    inv_dirs = np.linalg.inv(dirs)

    # S-I sampling: the reference's slice positions, subdivided to at most MAX_SI_SPACING_MM
    si_step = zooms[s] / math.ceil(zooms[s] / MAX_SI_SPACING_MM - 1e-9)
    q_all = np.concatenate([(_mask_corners_world(arrays[n], affines[n]) - ref_aff[:3, 3]) @ inv_dirs.T
                            for n in names])  # mm along the reference's voxel axes, from its origin
    k_lo = math.floor(q_all[:, s].min() / si_step) - 1
    k_hi = math.ceil(q_all[:, s].max() / si_step) + 1
    n_s = k_hi - k_lo + 1

    # ---- coarse stack (global box) for alignment and cord tracking
    coarse_sp = np.full(3, 2.0 * resolution_mm)
    coarse_sp[inplane] = np.maximum(np.minimum(zooms[inplane], 1.0), 2.0 * resolution_mm)
    coarse_sp[s] = si_step
    q_lo = q_all.min(0) - (MARGIN_MM + 3.0)
    q_hi = q_all.max(0) + (MARGIN_MM + 3.0)
    shape0, origin_q = _box(q_lo, q_hi, coarse_sp, inplane, s, n_s)
    origin_q[s] = k_lo * si_step
    aff0 = np.eye(4)
    aff0[:3, :3] = dirs * coarse_sp
    aff0[:3, 3] = ref_aff[:3, 3] + dirs @ origin_q
    stack0 = _Stack(tuple(shape0), aff0, s)
    zero = np.zeros((n_s, 3))
    coarse = {n: _sample(arrays[n].astype(np.float32), affines[n], stack0, zero) for n in names}

    offsets = {n: np.zeros((n_s, 3)) for n in names}
    used = {n: 0 for n in names}
    if align:
        m_ref, cov_ref = coarse[reference]
        for n in names:
            if n != reference:
                offsets[n], used[n] = _alignment_offsets(m_ref, cov_ref, *coarse[n], stack0, align_smoothing_mm)

    # ---- cord track: per-slice centre of the (aligned) masks, and the in-plane extent around it
    pos = _inplane_positions(stack0)
    wsum = np.zeros(n_s)
    csum = np.zeros((n_s, 3))
    for n in names:
        mass, com = _slice_com(coarse[n][0], stack0, pos)
        csum += (com - offsets[n]) * mass[:, None]
        wsum += mass
    valid = wsum > 0
    centre = _smooth_along_si(csum / np.maximum(wsum, 1e-12)[:, None], wsum, valid, si_step, 2.0 * si_step)
    ext_lo = np.full(3, np.inf)
    ext_hi = np.full(3, -np.inf)
    for n in names:
        nz = np.argwhere(coarse[n][0] > 0)
        if not len(nz):
            continue
        world_rel = nz @ aff0[:3, :3].T - centre[nz[:, s]] - offsets[n][nz[:, s]]
        qrel = world_rel @ inv_dirs.T
        ext_lo = np.minimum(ext_lo, qrel.min(0))
        ext_hi = np.maximum(ext_hi, qrel.max(0))
    # the coarse voxels themselves are ±half a coarse voxel; add the margin
    ext_lo -= MARGIN_MM + coarse_sp
    ext_hi += MARGIN_MM + coarse_sp

    # ---- fine stack: planes shifted to follow the cord
    fine_sp = np.full(3, float(resolution_mm))
    fine_sp[s] = si_step
    shape1, origin_q = _box(ext_lo, ext_hi, fine_sp, inplane, s, n_s)
    aff1 = np.eye(4)
    aff1[:3, :3] = dirs * fine_sp
    # slice origin: the coarse stack's slice origin (same S-I positions); in-plane relative to the cord track
    # voxel (i, j, k) of the fine stack: reference origin + in-plane ext_lo + slice k, plus track[k]
    aff1[:3, 3] = ref_aff[:3, 3] + dirs @ np.where(np.arange(3) == s, k_lo * si_step, origin_q)
    # the track (cord centre) was measured relative to each coarse slice's origin: re-express it
    track = centre + (aff0[:3, 3] - ref_aff[:3, 3]) - dirs[:, s] * (k_lo * si_step)
    stack1 = _Stack(tuple(shape1), aff1, s)

    fine = {n: _sample(arrays[n].astype(np.float32), affines[n], stack1, track + offsets[n]) for n in names}
    num = np.zeros(stack1.shape, np.float32)
    den = np.zeros(stack1.shape, np.float32)
    for n in names:
        m, cov = fine[n]
        num += m  # m is already 0 outside the coverage
        den += cov
    f = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
    shifts = {n: track + offsets[n] for n in names}
    boundary_offset = 0.0
    if not preserve_volume:
        soft = {n: _to_native([f], stack1, shifts[n], arrays[n].shape, affines[n])[0] for n in names}
    else:
        # Move the consensus surface along its normal by one offset d (mm) so that the soft volumes (summed
        # over contrasts) equal the binary ones: f + d |grad f| has its 0.5 surface moved outward by d. The
        # soft volume is linear in a small d: evaluate at 0 and at VOLUME_PROBE_MM, then interpolate.
        grads = [np.gradient(f, float(resolution_mm), axis=ax) for ax in inplane]
        f_probe = f + np.float32(VOLUME_PROBE_MM) * np.sqrt(grads[0] ** 2 + grads[1] ** 2)
        pairs = {n: _to_native([f, f_probe], stack1, shifts[n], arrays[n].shape, affines[n]) for n in names}
        vox = {n: float(np.prod(_unit_axes(affines[n])[1])) for n in names}
        v_bin = sum(float(arrays[n].sum()) * vox[n] for n in names)
        v0 = sum(float(pairs[n][0].sum(dtype=np.float64)) * vox[n] for n in names)
        v1 = sum(float(pairs[n][1].sum(dtype=np.float64)) * vox[n] for n in names)
        t = 0.0
        if v1 > v0:
            t_max = MAX_VOLUME_OFFSET_MM / VOLUME_PROBE_MM
            t = float(np.clip((v_bin - v0) / (v1 - v0), -t_max, t_max))
        boundary_offset = t * VOLUME_PROBE_MM
        soft = {n: np.clip(a + np.float32(t) * (b - a), 0.0, 1.0) for n, (a, b) in pairs.items()}
    return SoftResult(
        soft=soft,
        offsets_mm={n: [round(float(v), 4) for v in offsets[n].mean(0)] for n in names},
        aligned_slices=used,
        spacing_mm=tuple(round(float(v), 6) for v in fine_sp),
        boundary_offset_mm=round(boundary_offset, 4),
    )


# ============================================================================================ dataset I/O
@dataclass(frozen=True)
class _Contrast:
    entities: str  # BIDS name after "sub-XX_" (e.g. "T2w", "flip-1_mt-on_MTS")
    stem: str  # image file name without ending, e.g. "sub-01_T2w"
    image: Path
    mask: Path


@dataclass
class _SubjectPlan:
    subject: str  # "sub-01" or "sub-01_ses-01"
    rel_dir: str  # "sub-01/anat" or "sub-01/ses-01/anat"
    reference: str | None = None
    contrasts: list[_Contrast] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    skip: str | None = None


@dataclass(frozen=True)
class _Settings:
    bids_root: Path
    soft_root: Path  # <derivatives_out>/labels_softseg
    reference: str
    align: bool
    resolution_mm: float
    nnunet_folder: Path | None
    overwrite: bool


@dataclass
class ContrastReport:
    """One contrast of one subject.

    ``offset_mm``: applied in-plane alignment shift (world RAS mm, mean along S-I) relative to the reference;
    ``aligned_slices``: averaging-space slices (``spacing_mm[s]`` apart) the offset was measured on (0: none);
    ``boundary_mean``: mean soft value on the in-plane boundary voxels (inner and outer 4-neighbour layer) of
    the input binary mask, ≈0.5 for a well-placed soft mask; ``soft_volume_mm3``: Σ soft × voxel volume.
    """

    entities: str
    image: str
    output: str
    offset_mm: list[float]
    aligned_slices: int
    boundary_mean: float
    boundary_voxels: int
    soft_volume_mm3: float
    binary_volume_mm3: float
    case: str | None = None


@dataclass
class SubjectReport:
    """Per subject: the reference, the contrasts used (with their reports) and warnings."""

    subject: str
    reference: str
    contrasts: list[ContrastReport]
    warnings: list[str] = field(default_factory=list)
    #: Volume-preserving outward shift of the consensus surface (mm), see :func:`soft_ground_truth`.
    boundary_offset_mm: float = 0.0

    @property
    def used(self) -> list[str]:
        return [c.entities for c in self.contrasts]


@dataclass
class SoftGTReport:
    """What :func:`convert` did: per-subject reports, skipped subjects (→ reason) and the output folders."""

    bids_root: str
    derivatives: str
    reference: str
    align: bool
    subjects: list[SubjectReport]
    skipped: dict[str, str]
    nnunet_dataset: str | None = None
    num_cases: int = 0
    warnings: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """Human-readable summary: one line per subject and contrast."""
        out = []
        for s in self.subjects:
            out.append(f"{s.subject}: reference {s.reference}, {len(s.contrasts)} contrasts used: {', '.join(s.used)}; "
                       f"volume-preserving boundary shift {s.boundary_offset_mm:+.3f} mm")
            for c in s.contrasts:
                if c.entities == s.reference:
                    shift = "reference"
                elif not self.align:
                    shift = "not aligned (--no-align)"
                elif c.aligned_slices == 0:
                    shift = "not aligned (no overlap with the reference)"
                else:
                    shift = f"shift ({', '.join(f'{v:+.2f}' for v in c.offset_mm)}) mm from {c.aligned_slices} slices"
                out.append(f"  {c.entities:<20s} boundary mean soft {c.boundary_mean:.3f} ({c.boundary_voxels} voxels), "
                           f"{shift}, volume {c.soft_volume_mm3:.0f} mm3 (binary {c.binary_volume_mm3:.0f})")
        for sub, why in self.skipped.items():
            out.append(f"{sub}: skipped ({why})")
        out.append(f"soft masks: {self.derivatives}")
        if self.nnunet_dataset:
            out.append(f"nnU-Net raw dataset: {self.nnunet_dataset} ({self.num_cases} training cases)")
        return out

    def to_dict(self) -> dict:
        return asdict(self)


def _is_inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False


def _nifti_stem(path: Path) -> str | None:
    stem, suffix = split_suffix(path)
    return stem if suffix.lower() in (".nii.gz", ".nii") else None


def _find_mask(labels_dir: Path, stem: str) -> Path | None:
    for ending in (".nii.gz", ".nii"):
        p = labels_dir / f"{stem}{MASK_SUFFIX}{ending}"
        if p.is_file():
            return p
    return None


def discover(bids_root: Path, reference: str = DEFAULT_REFERENCE) -> list[_SubjectPlan]:
    """List subjects (and sessions) with their images, masks and reference contrast (no image is read)."""
    root = Path(bids_root)
    if not root.is_dir():
        raise InputError(f"{root}: dataset folder not found")
    labels_root = root / "derivatives" / "labels"
    if not labels_root.is_dir():
        raise InputError(f"{labels_root}: no cord masks folder (expected derivatives/labels/sub-*/anat/"
                         f"<image>{MASK_SUFFIX}.nii.gz)")
    subjects = sorted(p for p in root.glob("sub-*") if p.is_dir())
    if not subjects:
        raise InputError(f"{root}: no sub-* folders (not a BIDS dataset?)")
    plans = []
    for sub_dir in subjects:
        units = [(sub_dir.name, sub_dir / "anat")]
        units += [(f"{sub_dir.name}_{ses.name}", ses / "anat") for ses in sorted(sub_dir.glob("ses-*")) if ses.is_dir()]
        for unit, anat in units:
            if not anat.is_dir():
                continue
            rel_dir = anat.relative_to(root).as_posix()
            plan = _SubjectPlan(subject=unit, rel_dir=rel_dir)
            for img in sorted(anat.iterdir()):
                stem = _nifti_stem(img)
                if stem is None or img.name.startswith(".") or not img.is_file():
                    continue
                if not stem.startswith(unit + "_"):
                    plan.warnings.append(f"{img}: name does not start with {unit}_; ignored")
                    continue
                mask = _find_mask(labels_root / rel_dir, stem)
                if mask is None:
                    plan.warnings.append(f"{unit}: no cord mask for {img.name} "
                                         f"(expected derivatives/labels/{rel_dir}/{stem}{MASK_SUFFIX}.nii.gz); not used")
                    continue
                plan.contrasts.append(_Contrast(entities=stem[len(unit) + 1:], stem=stem, image=img, mask=mask))
            if not plan.contrasts and not plan.warnings:
                continue  # an anat folder without images (e.g. only sessions hold data)
            _choose_reference(plan, reference)
            plans.append(plan)
    if not plans:
        raise InputError(f"{root}: no sub-*/anat images found")
    return plans


def _choose_reference(plan: _SubjectPlan, reference: str) -> None:
    names = [c.entities for c in plan.contrasts]
    if reference in names:
        plan.reference = reference
        return
    by_suffix = [n for n in names if n.split("_")[-1] == reference]
    if len(by_suffix) == 1:
        plan.reference = by_suffix[0]
    elif len(by_suffix) > 1:
        plan.skip = f"several {reference} images with masks ({', '.join(by_suffix)}); choose one with --reference"
    else:
        plan.skip = f"no {reference} image with a cord mask (contrasts with masks: {', '.join(names) or 'none'})"


def _load_contrast(c: _Contrast, full_image: bool) -> tuple[Image, Image]:
    """(image, mask) validated: the mask is binary, finite, 3-D and on its image's grid."""
    image = load_image(c.image, "image") if full_image else read_geometry(c.image)
    mask = load_image(c.mask, "binary")
    check_same_grid(image, mask)
    return image, mask


def _validate(plan: _SubjectPlan, full_image: bool) -> _SubjectPlan:
    """Read and check every mask (and image header, or whole image) of a subject; drop empty masks."""
    if plan.skip:
        return plan
    kept = []
    for c in plan.contrasts:
        _, mask = _load_contrast(c, full_image)
        if not np.any(mask.data):
            plan.warnings.append(f"{c.mask}: mask is empty; {c.entities} not used")
            if c.entities == plan.reference:
                plan.skip = f"the reference mask {c.mask.name} is empty"
            continue
        kept.append(c)
    plan.contrasts = kept
    return plan


def _outputs(plan: _SubjectPlan, st: _Settings) -> list[Path]:
    out = []
    for c in plan.contrasts:
        base = st.soft_root / plan.rel_dir / f"{c.stem}{SOFT_SUFFIX}"
        out += [base.with_name(base.name + ".nii.gz"), base.with_name(base.name + ".json")]
    return out


def _boundary(mask: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """In-plane boundary of a binary mask: voxels in it with a 4-neighbour outside, and outside with one in it."""
    s = si_axis(affine)
    structure = ndimage.generate_binary_structure(3, 1)
    for end in (0, 2):  # drop the two neighbours along S-I
        centre = [1, 1, 1]
        centre[s] = end
        structure[tuple(centre)] = False
    inner = mask & ~ndimage.binary_erosion(mask, structure, border_value=1)
    outer = ndimage.binary_dilation(mask, structure) & ~mask
    return inner | outer


def _process(plan: _SubjectPlan, st: _Settings) -> SubjectReport:
    """Compute and write the soft masks (and nnU-Net cases) of one subject."""
    from nnunet_extensions import __version__

    loaded = {c.entities: _load_contrast(c, full_image=False) for c in plan.contrasts}
    result = soft_ground_truth(
        {n: (mask.data, image.affine) for n, (image, mask) in loaded.items()},
        plan.reference,
        align=st.align,
        resolution_mm=st.resolution_mm,
    )
    sources = [c.image.relative_to(st.bids_root).as_posix() for c in plan.contrasts]
    sources += [c.mask.relative_to(st.bids_root).as_posix() for c in plan.contrasts]
    reports = []
    for c in plan.contrasts:
        image, mask = loaded[c.entities]
        soft = result.soft[c.entities]
        binary = mask.data > 0
        voxel_mm3 = float(np.prod(image.zooms))
        bnd = _boundary(binary, image.affine)
        base = st.soft_root / plan.rel_dir / f"{c.stem}{SOFT_SUFFIX}"
        out_nii = base.with_name(base.name + ".nii.gz")
        report = ContrastReport(
            entities=c.entities,
            image=c.image.relative_to(st.bids_root).as_posix(),
            output=str(out_nii),
            offset_mm=result.offsets_mm[c.entities],
            aligned_slices=result.aligned_slices[c.entities],
            boundary_mean=round(float(soft[bnd].mean()) if bnd.any() else float("nan"), 4),
            boundary_voxels=int(bnd.sum()),
            soft_volume_mm3=round(float(soft.sum(dtype=np.float64)) * voxel_mm3, 2),
            binary_volume_mm3=round(float(binary.sum()) * voxel_mm3, 2),
        )
        sidecar = {
            "Description": "Soft (partial-volume) spinal cord mask: fraction of each voxel inside the consensus "
                           "cord boundary of the subject's cord masks from all contrasts",
            "Sources": sources,
            "SpatialReference": report.image,
            "InputMask": c.mask.relative_to(st.bids_root).as_posix(),
            "Reference": plan.reference,
            "ContrastsUsed": [x.entities for x in plan.contrasts],
            "Method": {
                "Name": METHOD_NAME,
                "Interpolation": "linear (masks into the averaging space, through world coordinates)",
                "AveragingSpacingMM": list(result.spacing_mm),
                "Alignment": ("slice-wise in-plane centre of mass vs the reference mask, Gaussian-smoothed along "
                              f"S-I (sigma {ALIGN_SMOOTHING_MM} mm)") if st.align else "none (--no-align)",
                "Weighting": "per-voxel mean over the contrasts whose field of view covers the voxel",
                "PartialVolume": "fraction of each native voxel inside the 0.5 iso-surface of the average "
                                 f"(sub-voxel samples {SUBSAMPLE_MM[0]} mm in-plane, {SUBSAMPLE_MM[1]} mm S-I)",
                "VolumePreservation": "one outward normal shift of the consensus surface per subject so that the "
                                      "soft volumes, summed over contrasts, equal the binary ones",
            },
            "BoundaryOffsetMM": result.boundary_offset_mm,
            "AlignmentOffsetMM": report.offset_mm,
            "AlignedSlices": report.aligned_slices,
            "BoundaryMeanSoftValue": report.boundary_mean,
            "GeneratedBy": [{"Name": "nnunet-spine", "Version": __version__, "Description": "nnspine convert softgt"}],
        }
        save_image(soft, image.affine, out_nii, overwrite=st.overwrite, dtype=np.float32, like=image)
        write_text(base.with_name(base.name + ".json"), json.dumps(sidecar, indent=2) + "\n", overwrite=st.overwrite)
        if st.nnunet_folder is not None:
            from dataset_converters import nnunet_raw

            full = load_image(c.image, "image")
            data = full.data.astype(np.float32) if full.data.dtype == np.float64 else full.data
            nnunet_raw.write_case(
                st.nnunet_folder, c.stem, [Image(data=data, affine=image.affine, path=c.image, meta=full.meta)],
                (soft >= 0.5).astype(np.uint8), extra={nnunet_raw.LABELS_TR_SOFT: (soft, np.float32)}, overwrite=st.overwrite,
            )
            report.case = c.stem
        reports.append(report)
    return SubjectReport(subject=plan.subject, reference=plan.reference, contrasts=reports,
                         warnings=list(plan.warnings), boundary_offset_mm=result.boundary_offset_mm)


def _run_all(fn, items: list, arg, pool=None, bar=None) -> list:
    """``[fn(item, arg) for item in items]``, in the worker processes of ``pool`` when given (order kept)."""
    if pool is None or len(items) <= 1:
        out = []
        for item in items:
            out.append(fn(item, arg))
            if bar is not None:
                bar.update(1)
        return out
    from concurrent.futures import as_completed

    results: list = [None] * len(items)
    futures = {pool.submit(fn, item, arg): i for i, item in enumerate(items)}
    try:
        for fut in as_completed(futures):
            results[futures[fut]] = fut.result()
            if bar is not None:
                bar.update(1)
    except BaseException:
        for f in futures:
            f.cancel()
        raise
    return results


def _process_pool(jobs: int, n_items: int):
    """A process pool (spawn: no state inherited from the parent) for ``jobs > 1``, else a null context."""
    import contextlib

    if jobs <= 1 or n_items <= 1:
        return contextlib.nullcontext(None)
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(max_workers=min(jobs, n_items), mp_context=multiprocessing.get_context("spawn"))


def convert(
    bids_root: Path,
    derivatives_out: Path,
    *,
    reference: str = DEFAULT_REFERENCE,
    align: bool = True,
    nnunet_dataset: int | None = None,
    name: str | None = None,
    jobs: int = 1,
    overwrite: bool = False,
    progress: bool = False,
    reference_resolution: float = DEFAULT_RESOLUTION_MM,
    nnunet_raw_dir: Path | None = None,
) -> SoftGTReport:
    """Soft cord ground truth for every subject of a BIDS dataset (see the module docstring for the method).

    Parameters
    ----------
    bids_root : Path
        BIDS dataset: ``sub-XX[/ses-YY]/anat/<image>.nii.gz`` and binary cord masks
        ``derivatives/labels/sub-XX[/ses-YY]/anat/<image>_label-SC_seg.nii.gz`` on each image's grid. Never modified.
    derivatives_out : Path
        Folder playing the role of ``derivatives/``: the soft masks go to
        ``derivatives_out/labels_softseg/sub-XX/anat/<image>_label-SC_softseg.nii.gz`` (float32 fractions
        0..1 on the image's grid) with a ``.json`` sidecar. Must lie outside ``bids_root``.
    reference : str
        Contrast defining the averaging space and the alignment target: the BIDS name after ``sub-XX_``
        (e.g. ``T2w``), or a suffix matching exactly one image. Subjects without it are skipped (warning).
    align : bool
        Slice-wise centre-of-mass alignment of each contrast onto the reference (corrects inter-scan shifts
        of a few mm, in-plane).
    nnunet_dataset, name : int, str
        With both: also write the nnU-Net raw dataset ``<nnUNet_raw>/DatasetXXX_NAME`` (ID zero-padded to 3
        digits): one single-channel case per (subject, contrast), ``labelsTr`` = soft ≥ 0.5,
        ``labelsTr_soft`` = soft (float32).
    jobs : int
        Worker processes (subjects in parallel); results are identical to ``jobs=1``.
    overwrite : bool
        Replace existing outputs (otherwise refused before anything is computed).
    progress : bool
        tqdm progress bar over subjects (stderr).
    reference_resolution : float
        In-plane spacing of the averaging space in mm (default 0.4).
    nnunet_raw_dir : Path, optional
        nnU-Net raw folder (default: ``$nnUNet_raw``).

    Returns
    -------
    SoftGTReport
        Per subject: contrasts used, alignment shifts (mm), mean soft value at the mask boundary, volumes (mm³).

    Raises
    ------
    InputError
        Missing dataset folder, unreadable/4-D/NaN/non-binary mask, mask on a grid different from its image,
        existing outputs without ``overwrite``, bad nnU-Net ID/name (one-line message naming the file).
    """
    from tqdm.auto import tqdm

    bids_root = Path(bids_root)
    derivatives_out = Path(derivatives_out)
    if jobs < 1:
        raise InputError(f"--jobs must be >= 1, got {jobs}")
    if not reference_resolution > 0 or not math.isfinite(reference_resolution):
        raise InputError(f"--reference-resolution must be a positive number of mm, got {reference_resolution}")
    if (nnunet_dataset is None) != (name is None):
        raise InputError("the nnU-Net dataset needs both an ID (--nnunet-dataset) and a name (--name)")
    plans = discover(bids_root, reference)
    soft_root = derivatives_out / PIPELINE
    # BIDS keeps derivatives inside the dataset: a new pipeline folder under <bids_root>/derivatives adds files
    # and never touches existing ones (outputs that exist are refused unless overwrite); elsewhere inside the
    # input dataset is refused.
    if _is_inside(soft_root, bids_root) and not _is_inside(soft_root, bids_root / "derivatives"):
        raise InputError(f"{derivatives_out}: is inside the input dataset {bids_root} but not under its derivatives/ "
                         "folder; choose <dataset>/derivatives or a folder outside the dataset")
    nn_folder = None
    if nnunet_dataset is not None:
        from dataset_converters import nnunet_raw

        nn_folder = nnunet_raw.dataset_folder(nnunet_raw.raw_root(nnunet_raw_dir), nnunet_dataset, name)
        if _is_inside(nn_folder, bids_root):
            raise InputError(f"{nn_folder}: is inside the input dataset {bids_root}, which is never modified")
    settings = _Settings(bids_root=bids_root, soft_root=soft_root, reference=reference, align=align,
                         resolution_mm=float(reference_resolution), nnunet_folder=nn_folder, overwrite=overwrite)

    with _process_pool(jobs, len(plans)) as pool:
        # 1. validate every input before writing anything
        plans = _run_all(_validate, plans, nn_folder is not None, pool)
        todo = [p for p in plans if not p.skip]
        skipped = {p.subject: p.skip for p in plans if p.skip}
        all_warnings = [w for p in plans for w in p.warnings]
        all_warnings += [f"{sub}: skipped ({why})" for sub, why in skipped.items()]
        for w in all_warnings:
            warnings.warn(w, SoftGTWarning, stacklevel=2)
        if not overwrite:
            for p in todo:
                for out in _outputs(p, settings):
                    if out.exists():
                        raise OutputExistsError(f"{out}: output exists (use --overwrite to replace it)")
        if nn_folder is not None:
            from dataset_converters import nnunet_raw

            nnunet_raw.prepare_folder(nn_folder, overwrite=overwrite, extra_folders=(nnunet_raw.LABELS_TR_SOFT,))
        soft_root.mkdir(parents=True, exist_ok=True)
        desc = soft_root / "dataset_description.json"
        if overwrite or not desc.exists():
            from nnunet_extensions import __version__

            write_text(desc, json.dumps({
                "Name": "Soft (partial-volume) spinal cord masks averaged across contrasts",
                "BIDSVersion": "1.9.0",
                "DatasetType": "derivative",
                "GeneratedBy": [{"Name": "nnunet-spine", "Version": __version__,
                                 "Description": "nnspine convert softgt"}],
                "SourceDatasets": [{"URL": bids_root.resolve().as_uri()}],
            }, indent=2) + "\n", overwrite=True)

        # 2. compute and write, subject by subject
        bar = tqdm(total=len(todo), desc="softgt", unit="subject", disable=not progress)
        try:
            subjects = _run_all(_process, todo, settings, pool, bar)
        finally:
            bar.close()

    report = SoftGTReport(bids_root=str(bids_root), derivatives=str(soft_root), reference=reference, align=align,
                          subjects=subjects, skipped=skipped, warnings=all_warnings)
    if nn_folder is not None:
        from dataset_converters import nnunet_raw
        from nnunet_extensions import __version__

        cases = {c.case: c.image for s in subjects for c in s.contrasts if c.case}
        if overwrite:
            nnunet_raw.remove_stale_cases(nn_folder, cases, extra_folders=(nnunet_raw.LABELS_TR_SOFT,))
        nnunet_raw.write_dataset_json(
            nn_folder,
            channel_names={"0": "MRI"},
            labels={"background": 0, "cord": 1},
            num_training=len(cases),
            file_ending=nnunet_raw.FILE_ENDING,
            overwrite=True,
            name=nn_folder.name,
            description=("Contrast-agnostic spinal cord segmentation: every (subject, contrast) image is a case; "
                         "labelsTr = soft mask >= 0.5, labelsTr_soft = soft (partial-volume) mask, float32"),
            nnspine={"converter": "softgt", "version": __version__, "soft_labels_folder": nnunet_raw.LABELS_TR_SOFT,
                     "reference": reference, "align": align, "source_dataset": str(bids_root.resolve()),
                     "cases": cases},
        )
        report.nnunet_dataset = str(nn_folder)
        report.num_cases = len(cases)
    return report
