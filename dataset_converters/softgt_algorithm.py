"""Soft (partial-volume) spinal-cord ground truth from binary masks of several contrasts of one subject:
the algorithm (arrays and their affines in, soft arrays out; no file is read or written here).

:func:`soft_ground_truth` is called per subject by :mod:`nnunet_spine.dataset_converters.softgt` (``nnspine convert
softgt``), which finds the files, validates them, writes the results and reports. Every mask is an
independent, voxel-quantized delineation of the *same* cord; their disagreements at the boundary carry
sub-voxel information. Per subject:

1. **Averaging space.** A stack of planes perpendicular to the reference contrast's S-I voxel axis (the
   converter's default: T2w), with ``resolution_mm`` (default 0.4 mm) in-plane, the reference's S-I spacing (at
   most 1 mm),
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
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from nnunet_spine.core.geometry import si_axis
from nnunet_spine.dataset_converters.defaults import SOFTGT_RESOLUTION_MM

#: Largest S-I spacing (mm) of the averaging space.
MAX_SI_SPACING_MM = 1.0
#: Gaussian σ (mm) for smoothing the slice-wise alignment offsets along S-I.
ALIGN_SMOOTHING_MM = 15.0
#: In-plane margin (mm) around the cord in the averaging space.
MARGIN_MM = 3.0
#: Sub-voxel sample spacing (mm) in-plane and along S-I for the partial-volume integration.
SUBSAMPLE_MM = (0.2, 0.5)
#: Most sub-voxel samples per axis (thick slices are integrated over their whole thickness with these).
MAX_SUBSAMPLES = 16
#: Width (in units of the averaged mask) of the ramp that replaces the hard 0.5 threshold per sub-sample.
RAMP_WIDTH = 0.2
#: Probe offset (mm) used to find the volume-preserving boundary shift.
VOLUME_PROBE_MM = 0.05
#: Largest allowed volume-preserving boundary shift (mm, along the outward normal).
MAX_VOLUME_OFFSET_MM = 0.2


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


def _box(
    lo: np.ndarray, hi: np.ndarray, spacing: np.ndarray, inplane, s: int, n_s: int
) -> tuple[list[int], np.ndarray]:
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


def _smooth_along_si(
    values: np.ndarray, weights: np.ndarray, valid: np.ndarray, spacing_mm: float, sigma_mm: float
) -> np.ndarray:
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
    out[gi[-1] + 1 :] = out[gi[-1]]
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


def _to_native(
    fields: Sequence[np.ndarray], stack: _Stack, shift: np.ndarray, shape: tuple[int, int, int], affine: np.ndarray
) -> list[np.ndarray]:
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
    crop = tuple(int(h - low) for low, h in zip(lo, hi))
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
    inside = [
        ndimage.map_coordinates(np.asarray(f, np.float32), q, order=1, mode="constant", cval=0.0).reshape(crop) >= 0.5
        for f in fields
    ]
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
            o = offs_stack[s0 : s0 + chunk]
            qq = unshift((ubase[:, None, :] + o.T[:, :, None]).reshape(3, -1))
            for f, acc in zip(fields, accs):
                v = ndimage.map_coordinates(np.asarray(f, np.float32), qq, order=1, mode="constant", cval=0.0)
                v = np.clip((v - 0.5) / RAMP_WIDTH + 0.5, 0.0, 1.0)
                acc += v.reshape(len(o), -1).sum(0)
        for r, acc in zip(results, accs):
            r[uncertain] = (acc / len(offs)).astype(np.float32)
    for out, r in zip(outs, results):
        out[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] = np.clip(r, 0.0, 1.0)
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


@dataclass(frozen=True)
class _Frame:
    """The reference contrast's voxel axes: world ``origin`` (mm), unit direction columns ``dirs`` (and their
    inverse), voxel size ``zooms`` (mm), the S-I voxel axis ``s`` and the two ``inplane`` axes."""

    origin: np.ndarray
    dirs: np.ndarray
    inv_dirs: np.ndarray
    zooms: np.ndarray
    s: int
    inplane: list[int]


def _reference_frame(ref_aff: np.ndarray) -> _Frame:
    """The frame of the reference contrast's voxel→world affine (RAS+ mm)."""
    dirs, zooms = _unit_axes(ref_aff)
    s = si_axis(ref_aff)
    inplane = [a for a in range(3) if a != s]
    return _Frame(origin=ref_aff[:3, 3], dirs=dirs, inv_dirs=np.linalg.inv(dirs), zooms=zooms, s=s, inplane=inplane)


def _si_planes(
    arrays: Mapping[str, np.ndarray], affines: Mapping[str, np.ndarray], frame: _Frame
) -> tuple[np.ndarray, float, int, int]:
    """S-I sampling of the averaging space: the reference's slice positions, subdivided to at most
    :data:`MAX_SI_SPACING_MM`, over the S-I union of all masks (plus one plane each side).

    Returns the masks' bounding-box corners (mm along the reference's voxel axes, from its origin), the S-I
    spacing (mm), the index of the first plane (in spacings from the reference origin) and the number of planes.
    """
    s = frame.s
    si_step = frame.zooms[s] / math.ceil(frame.zooms[s] / MAX_SI_SPACING_MM - 1e-9)
    q_all = np.concatenate(
        [(_mask_corners_world(arrays[n], affines[n]) - frame.origin) @ frame.inv_dirs.T for n in arrays]
    )  # mm along the reference's voxel axes, from its origin
    k_lo = math.floor(q_all[:, s].min() / si_step) - 1
    k_hi = math.ceil(q_all[:, s].max() / si_step) + 1
    return q_all, si_step, k_lo, k_hi - k_lo + 1


def _coarse_stack(
    frame: _Frame, q_all: np.ndarray, resolution_mm: float, si_step: float, k_lo: int, n_s: int
) -> tuple[_Stack, np.ndarray]:
    """The coarse averaging space (one global box around every mask's corners ``q_all`` plus margin, in-plane
    spacing 2 × ``resolution_mm`` or the reference's voxel size up to 1 mm) used for alignment and cord tracking;
    returns it and its spacing (mm along the reference's voxel axes)."""
    s, inplane = frame.s, frame.inplane
    coarse_sp = np.full(3, 2.0 * resolution_mm)
    coarse_sp[inplane] = np.maximum(np.minimum(frame.zooms[inplane], 1.0), 2.0 * resolution_mm)
    coarse_sp[s] = si_step
    q_lo = q_all.min(0) - (MARGIN_MM + 3.0)
    q_hi = q_all.max(0) + (MARGIN_MM + 3.0)
    shape0, origin_q = _box(q_lo, q_hi, coarse_sp, inplane, s, n_s)
    origin_q[s] = k_lo * si_step
    aff0 = np.eye(4)
    aff0[:3, :3] = frame.dirs * coarse_sp
    aff0[:3, 3] = frame.origin + frame.dirs @ origin_q
    return _Stack(tuple(shape0), aff0, s), coarse_sp


def _align_all(
    coarse: Mapping[str, tuple[np.ndarray, np.ndarray]],
    reference: str,
    stack0: _Stack,
    align: bool,
    align_smoothing_mm: float,
) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Per contrast: smoothed per-slice in-plane offsets (world mm, n_slices×3) relative to the reference on the
    coarse stack, and the number of slices they were measured on (zero offsets and 0 slices without ``align``
    and for the reference itself)."""
    n_s = stack0.shape[stack0.s]
    offsets = {n: np.zeros((n_s, 3)) for n in coarse}
    used = {n: 0 for n in coarse}
    if align:
        m_ref, cov_ref = coarse[reference]
        for n in coarse:
            if n != reference:
                offsets[n], used[n] = _alignment_offsets(m_ref, cov_ref, *coarse[n], stack0, align_smoothing_mm)
    return offsets, used


def _cord_track(
    coarse: Mapping[str, tuple[np.ndarray, np.ndarray]],
    offsets: Mapping[str, np.ndarray],
    stack0: _Stack,
    frame: _Frame,
    si_step: float,
    coarse_sp: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cord track on the coarse stack: the per-slice centre (world mm, relative to each coarse slice's origin)
    of the aligned masks, smoothed along S-I, and the in-plane extent of the masks around it (mm along the
    reference's voxel axes, low and high, with the margin and half a coarse voxel added)."""
    s = frame.s
    n_s = stack0.shape[s]
    aff0 = stack0.affine
    pos = _inplane_positions(stack0)
    wsum = np.zeros(n_s)
    csum = np.zeros((n_s, 3))
    for n in coarse:
        mass, com = _slice_com(coarse[n][0], stack0, pos)
        csum += (com - offsets[n]) * mass[:, None]
        wsum += mass
    valid = wsum > 0
    centre = _smooth_along_si(csum / np.maximum(wsum, 1e-12)[:, None], wsum, valid, si_step, 2.0 * si_step)
    ext_lo = np.full(3, np.inf)
    ext_hi = np.full(3, -np.inf)
    for n in coarse:
        nz = np.argwhere(coarse[n][0] > 0)
        if not len(nz):
            continue
        world_rel = nz @ aff0[:3, :3].T - centre[nz[:, s]] - offsets[n][nz[:, s]]
        qrel = world_rel @ frame.inv_dirs.T
        ext_lo = np.minimum(ext_lo, qrel.min(0))
        ext_hi = np.maximum(ext_hi, qrel.max(0))
    # the coarse voxels themselves are ±half a coarse voxel; add the margin
    ext_lo -= MARGIN_MM + coarse_sp
    ext_hi += MARGIN_MM + coarse_sp
    return centre, ext_lo, ext_hi


def _fine_stack(
    frame: _Frame, ext_lo: np.ndarray, ext_hi: np.ndarray, resolution_mm: float, si_step: float, k_lo: int, n_s: int
) -> tuple[_Stack, np.ndarray]:
    """The fine averaging space: ``resolution_mm`` in-plane over the extent ``ext_lo..ext_hi`` around the cord
    track (mm along the reference's voxel axes), the coarse stack's S-I planes; its planes are shifted by the
    track when used. Returns it and its spacing (mm)."""
    s = frame.s
    fine_sp = np.full(3, float(resolution_mm))
    fine_sp[s] = si_step
    shape1, origin_q = _box(ext_lo, ext_hi, fine_sp, frame.inplane, s, n_s)
    aff1 = np.eye(4)
    aff1[:3, :3] = frame.dirs * fine_sp
    # slice origin: the coarse stack's slice origin (same S-I positions); in-plane relative to the cord track
    # voxel (i, j, k) of the fine stack: reference origin + in-plane ext_lo + slice k, plus track[k]
    aff1[:3, 3] = frame.origin + frame.dirs @ np.where(np.arange(3) == s, k_lo * si_step, origin_q)
    return _Stack(tuple(shape1), aff1, s), fine_sp


def _consensus(fine: Mapping[str, tuple[np.ndarray, np.ndarray]], shape: tuple[int, int, int]) -> np.ndarray:
    """``f = Σ_c cov_c m_c / Σ_c cov_c`` on the fine stack: each point averaged over the contrasts whose field of
    view covers it (0 where none does)."""
    num = np.zeros(shape, np.float32)
    den = np.zeros(shape, np.float32)
    for m, cov in fine.values():
        num += m  # m is already 0 outside the coverage
        den += cov
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def _volume_preserving_soft(
    f: np.ndarray,
    stack1: _Stack,
    shifts: Mapping[str, np.ndarray],
    arrays: Mapping[str, np.ndarray],
    affines: Mapping[str, np.ndarray],
    resolution_mm: float,
    inplane: Sequence[int],
) -> tuple[dict[str, np.ndarray], float]:
    """Soft masks on each native grid with the consensus surface moved along its normal by one offset ``d``
    (mm) so that the soft volumes (mm³, summed over contrasts) equal the binary ones; returns them and ``d``.

    ``f + d |grad f|`` has its 0.5 surface moved outward by ``d``. The soft volume is linear in a small ``d``:
    it is evaluated at 0 and at :data:`VOLUME_PROBE_MM`, then interpolated (``|d|`` at most
    :data:`MAX_VOLUME_OFFSET_MM`).
    """
    grads = [np.gradient(f, float(resolution_mm), axis=ax) for ax in inplane]
    f_probe = f + np.float32(VOLUME_PROBE_MM) * np.sqrt(grads[0] ** 2 + grads[1] ** 2)
    names = list(arrays)
    pairs = {n: _to_native([f, f_probe], stack1, shifts[n], arrays[n].shape, affines[n]) for n in names}
    vox = {n: float(np.prod(_unit_axes(affines[n])[1])) for n in names}
    v_bin = sum(float(arrays[n].sum()) * vox[n] for n in names)
    v0 = sum(float(pairs[n][0].sum(dtype=np.float64)) * vox[n] for n in names)
    v1 = sum(float(pairs[n][1].sum(dtype=np.float64)) * vox[n] for n in names)
    t = 0.0
    if v1 > v0:
        t_max = MAX_VOLUME_OFFSET_MM / VOLUME_PROBE_MM
        t = float(np.clip((v_bin - v0) / (v1 - v0), -t_max, t_max))
    soft = {n: np.clip(a + np.float32(t) * (b - a), 0.0, 1.0) for n, (a, b) in pairs.items()}
    return soft, t * VOLUME_PROBE_MM


def soft_ground_truth(
    masks: Mapping[str, tuple[np.ndarray, np.ndarray]],
    reference: str,
    *,
    align: bool = True,
    resolution_mm: float = SOFTGT_RESOLUTION_MM,
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
    frame = _reference_frame(affines[reference])
    q_all, si_step, k_lo, n_s = _si_planes(arrays, affines, frame)

    # ---- coarse stack (global box) for alignment and cord tracking
    stack0, coarse_sp = _coarse_stack(frame, q_all, resolution_mm, si_step, k_lo, n_s)
    zero = np.zeros((n_s, 3))
    coarse = {n: _sample(arrays[n].astype(np.float32), affines[n], stack0, zero) for n in names}
    offsets, used = _align_all(coarse, reference, stack0, align, align_smoothing_mm)
    centre, ext_lo, ext_hi = _cord_track(coarse, offsets, stack0, frame, si_step, coarse_sp)

    # ---- fine stack: planes shifted to follow the cord
    stack1, fine_sp = _fine_stack(frame, ext_lo, ext_hi, resolution_mm, si_step, k_lo, n_s)
    # the track (cord centre) was measured relative to each coarse slice's origin: re-express it
    track = centre + (stack0.affine[:3, 3] - frame.origin) - frame.dirs[:, frame.s] * (k_lo * si_step)
    shifts = {n: track + offsets[n] for n in names}
    fine = {n: _sample(arrays[n].astype(np.float32), affines[n], stack1, shifts[n]) for n in names}
    f = _consensus(fine, stack1.shape)
    boundary_offset = 0.0
    if not preserve_volume:
        soft = {n: _to_native([f], stack1, shifts[n], arrays[n].shape, affines[n])[0] for n in names}
    else:
        soft, boundary_offset = _volume_preserving_soft(
            f, stack1, shifts, arrays, affines, resolution_mm, frame.inplane
        )
    return SoftResult(
        soft=soft,
        offsets_mm={n: [round(float(v), 4) for v in offsets[n].mean(0)] for n in names},
        aligned_slices=used,
        spacing_mm=tuple(round(float(v), 6) for v in fine_sp),
        boundary_offset_mm=round(boundary_offset, 4),
    )
