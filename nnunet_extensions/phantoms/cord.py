"""Spinal cord phantom: a curved, tilted tube of elliptic cross-section with exact truth.

The cord is a tube around a smooth centreline ``c(z) = (x(z), y(z), z)`` in world RAS mm. Its cross-section
*perpendicular to the centreline* at height ``z`` is an ellipse with semi-axes ``a(z)`` (in the R-L
direction) and ``b(z)`` (A-P), so the true cross-sectional area is ``π a(z) b(z)`` mm². A CSF tube with
semi-axes ``a + csf_margin``, ``b + csf_margin`` surrounds it.

:func:`render_fraction` renders the exact partial-volume fraction of the tube in each voxel of any grid
(any voxel size and orientation): voxels far from the boundary are 0 or 1, boundary voxels are
super-sampled (``n³`` points). Level truth follows SCT's conventions: a disc label of value ``n`` sits
at the top of vertebra ``n``; cord between disc ``n`` and disc ``n+1`` belongs to level ``n``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class CordModel:
    """Geometry of a cord phantom (world RAS mm).

    ``x(z) = x0 + tan(tilt_rl) z + amp_rl sin(2π z / period_rl)`` and
    ``y(z) = y0 + tan(tilt_ap) z + amp_ap sin(π z / period_ap)``; semi-axes
    ``a(z) = a0 + enl_a g(z)``, ``b(z) = b0 + enl_b g(z)`` with a Gaussian enlargement
    ``g(z) = exp(-((z - enl_z) / enl_width)²)``.
    """

    a0: float = 6.0
    b0: float = 3.8
    enl_a: float = 0.0
    enl_b: float = 0.0
    enl_z: float = 50.0
    enl_width: float = 20.0
    x0: float = 0.0
    y0: float = 0.0
    tilt_rl_deg: float = 0.0
    tilt_ap_deg: float = 0.0
    amp_rl: float = 0.0
    period_rl: float = 160.0
    amp_ap: float = 0.0
    period_ap: float = 128.0
    csf_margin: float = 2.5
    #: z (mm) of disc labels, keyed by SCT disc value (disc n = top of vertebra n).
    discs_z: dict = field(default_factory=dict)

    # ---- centreline and its derivatives (vectorised over z)
    def centre(self, z: np.ndarray) -> np.ndarray:
        """Centreline points (…×3) at heights ``z`` (mm)."""
        z = np.asarray(z, float)
        x = (
            self.x0
            + math.tan(math.radians(self.tilt_rl_deg)) * z
            + self.amp_rl * np.sin(2 * np.pi * z / self.period_rl)
        )
        y = self.y0 + math.tan(math.radians(self.tilt_ap_deg)) * z + self.amp_ap * np.sin(np.pi * z / self.period_ap)
        return np.stack([x, y, z], axis=-1)

    def tangent(self, z: np.ndarray) -> np.ndarray:
        """Un-normalised centreline derivative dc/dz (…×3)."""
        z = np.asarray(z, float)
        dx = math.tan(math.radians(self.tilt_rl_deg)) + self.amp_rl * 2 * np.pi / self.period_rl * np.cos(
            2 * np.pi * z / self.period_rl
        )
        dy = math.tan(math.radians(self.tilt_ap_deg)) + self.amp_ap * np.pi / self.period_ap * np.cos(
            np.pi * z / self.period_ap
        )
        return np.stack([dx, dy, np.ones_like(z)], axis=-1)

    def curvature_vec(self, z: np.ndarray) -> np.ndarray:
        """Second derivative d²c/dz² (…×3)."""
        z = np.asarray(z, float)
        ddx = -self.amp_rl * (2 * np.pi / self.period_rl) ** 2 * np.sin(2 * np.pi * z / self.period_rl)
        ddy = -self.amp_ap * (np.pi / self.period_ap) ** 2 * np.sin(np.pi * z / self.period_ap)
        return np.stack([ddx, ddy, np.zeros_like(z)], axis=-1)

    def semi_axes(self, z: np.ndarray, margin: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """Semi-axes (a: R-L, b: A-P) in mm at heights ``z``, grown by ``margin``."""
        g = np.exp(-(((np.asarray(z, float) - self.enl_z) / self.enl_width) ** 2))
        return self.a0 + self.enl_a * g + margin, self.b0 + self.enl_b * g + margin

    def area(self, z: np.ndarray) -> np.ndarray:
        """True cross-sectional area (mm²) perpendicular to the centreline at heights ``z``."""
        a, b = self.semi_axes(z)
        return np.pi * a * b

    def angles_deg(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Centreline inclination from S-I (degrees) projected on the sagittal (AP) and coronal (RL) planes."""
        t = self.tangent(z)
        return np.degrees(np.arctan(t[..., 1])), np.degrees(np.arctan(t[..., 0]))

    def level_at(self, z: np.ndarray) -> np.ndarray:
        """Vertebral level (SCT numbering) of centreline heights ``z``; 0 outside the labelled discs."""
        z = np.asarray(z, float)
        out = np.zeros(z.shape, np.int16)
        discs = sorted(self.discs_z.items())  # (value, z) with z decreasing as value increases
        for (n, z_top), (_, z_bottom) in zip(discs[:-1], discs[1:]):
            out[(z <= z_top) & (z > z_bottom)] = n
        return out

    def level_truth(self, step_mm: float = 0.05) -> dict[int, float]:
        """Mean true area (mm²) of each level, averaged along z between its discs."""
        discs = sorted(self.discs_z.items())
        truth = {}
        for (n, z_top), (_, z_bottom) in zip(discs[:-1], discs[1:]):
            z = np.arange(z_bottom + step_mm / 2, z_top, step_mm)
            truth[int(n)] = float(self.area(z).mean())
        return truth

    # ---- local coordinates of world points
    def local_coords(
        self, pts: np.ndarray, iterations: int = 4, t0: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For world points (N×3), return ``(t, u, v)``: the height of the closest centreline point and
        the in-plane offsets (mm) along the R-L-like and A-P-like axes of the perpendicular plane.
        ``t0`` is a starting guess for ``t`` (default: the points' own z)."""
        t = pts[:, 2].copy() if t0 is None else np.asarray(t0, float).copy()
        for _ in range(iterations):  # Newton on g(t) = (p - c(t)) · c'(t)
            d = pts - self.centre(t)
            tan = self.tangent(t)
            g = (d * tan).sum(1)
            dg = -(tan * tan).sum(1) + (d * self.curvature_vec(t)).sum(1)
            t = t - g / dg
        d = pts - self.centre(t)
        tan = self.tangent(t)
        tan /= np.linalg.norm(tan, axis=1, keepdims=True)
        n1 = np.zeros_like(tan)
        n1[:, 0] = 1.0
        n1 -= (n1 * tan).sum(1, keepdims=True) * tan
        n1 /= np.linalg.norm(n1, axis=1, keepdims=True)
        n2 = np.cross(tan, n1)
        return t, (d * n1).sum(1), (d * n2).sum(1)

    def radius(
        self, pts: np.ndarray, margin: float = 0.0, t0: np.ndarray | None = None, iterations: int = 4
    ) -> tuple[np.ndarray, np.ndarray]:
        """Elliptic radius ``r`` (inside when < 1) of world points, and their centreline height ``t``."""
        t, u, v = self.local_coords(pts, iterations, t0)
        a, b = self.semi_axes(t, margin)
        return np.sqrt((u / a) ** 2 + (v / b) ** 2), t


def default_cervical_model() -> CordModel:
    """A realistic cervical cord: lordotic curve, slight lateral bend, 10° tilt, C5 enlargement.

    Levels C2–C6 (discs 2–7 from z=110 down to z=24 mm); areas between about 72 and 88 mm².
    """
    return CordModel(
        a0=6.0,
        b0=3.8,
        enl_a=0.9,
        enl_b=0.35,
        enl_z=52.0,
        enl_width=22.0,
        x0=0.0,
        y0=0.0,
        tilt_rl_deg=0.0,
        tilt_ap_deg=10.0,
        amp_rl=1.5,
        period_rl=160.0,
        amp_ap=3.0,
        period_ap=128.0,
        discs_z={2: 110.0, 3: 90.0, 4: 74.0, 5: 58.0, 6: 42.0, 7: 26.0},
    )


def _subvoxel_points(log2_n: int) -> np.ndarray:
    """``2**log2_n`` deterministic low-discrepancy points in the unit voxel, centred on 0 (N×3)."""
    from scipy.stats import qmc

    return qmc.Sobol(d=3, scramble=True, seed=12345).random_base2(log2_n) - 0.5


def _voxel_centres_world(shape: tuple[int, int, int], affine: np.ndarray) -> np.ndarray:
    idx = np.indices(shape, dtype=np.float64).reshape(3, -1).T
    return idx @ affine[:3, :3].T + affine[:3, 3]


def render_fraction(
    model: CordModel,
    shape: tuple[int, int, int],
    affine: np.ndarray,
    *,
    margin: float = 0.0,
    shift_mm: tuple[float, float, float] = (0.0, 0.0, 0.0),
    supersample: int = 8,
    chunk: int = 2_000_000,
) -> np.ndarray:
    """Exact partial-volume fraction (0..1, float32) of the tube in every voxel of a grid.

    Parameters
    ----------
    margin : float
        Grow both semi-axes by this many mm (``csf_margin`` renders the CSF + cord tube).
    shift_mm : 3 floats
        The subject's displacement (world RAS mm) for this acquisition: the cord is rendered at
        ``c(z) + shift``, as if the subject moved between scans.
    supersample : int
        Boundary voxels are sampled at ``2**supersample`` scrambled-Sobol sub-voxel points (a regular
        lattice aliases with axis-aligned boundaries and biases the area; quasi-random points do not).
    """
    affine = np.asarray(affine, float)
    shift = np.asarray(shift_mm, float)
    centres = _voxel_centres_world(shape, affine) - shift
    r, t = model.radius(centres, margin)
    a, b = model.semi_axes(t, margin)
    half_diag = 0.5 * float(np.linalg.norm(np.linalg.norm(affine[:3, :3], axis=0)))
    band = (half_diag + 0.05) / np.minimum(a, b)  # in units of the elliptic radius
    frac = (r < 1).astype(np.float32)
    boundary = np.flatnonzero(np.abs(r - 1) <= band * 1.1)
    if boundary.size:
        sub = _subvoxel_points(int(supersample))  # voxel units, centred on 0
        sub_world = sub @ affine[:3, :3].T  # n³×3 offsets in mm
        idx = np.stack(np.unravel_index(boundary, shape), 1).astype(float)
        base = idx @ affine[:3, :3].T + affine[:3, 3] - shift
        per_chunk = max(1, chunk // sub.shape[0])
        for s in range(0, len(boundary), per_chunk):
            pts = (base[s : s + per_chunk, None, :] + sub_world[None]).reshape(-1, 3)
            t_start = np.repeat(t[boundary[s : s + per_chunk]], sub.shape[0])
            rr, _ = model.radius(pts, margin, t0=t_start, iterations=2)
            frac.ravel()[boundary[s : s + per_chunk]] = (rr < 1).reshape(-1, sub.shape[0]).mean(1)
    return frac.reshape(shape)


def level_map(
    model: CordModel,
    shape: tuple[int, int, int],
    affine: np.ndarray,
    mask: np.ndarray,
    shift_mm: tuple[float, float, float] = (0.0, 0.0, 0.0),
) -> np.ndarray:
    """Label each voxel of ``mask`` (bool) with the vertebral level of its closest centreline point."""
    out = np.zeros(shape, np.int16)
    idx = np.argwhere(mask)
    if len(idx):
        pts = idx @ np.asarray(affine)[:3, :3].T + np.asarray(affine)[:3, 3] - np.asarray(shift_mm, float)
        t, _, _ = model.local_coords(pts)
        out[tuple(idx.T)] = model.level_at(t)
    return out


def disc_points(
    model: CordModel,
    shape: tuple[int, int, int],
    affine: np.ndarray,
    shift_mm: tuple[float, float, float] = (0.0, 0.0, 0.0),
) -> np.ndarray:
    """Point labels (one voxel each, value = SCT disc number) at the posterior tip of each disc,
    placed on the centreline at the disc height; discs outside the grid are left out."""
    out = np.zeros(shape, np.int16)
    inv = np.linalg.inv(affine)
    for n, z in model.discs_z.items():
        p = model.centre(np.array([z]))[0] + np.asarray(shift_mm, float)
        ijk = np.rint(inv[:3, :3] @ p + inv[:3, 3]).astype(int)
        if np.all(ijk >= 0) and np.all(ijk < np.array(shape)):
            out[tuple(ijk)] = n
    return out
