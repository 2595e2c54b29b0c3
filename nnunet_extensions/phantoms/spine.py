"""Whole-spine phantom: a sagittal T2w-like image with SPINEPS-style semantic and instance masks.

Geometry (world RAS+ mm; x = subject's Right, y = Anterior, z = Superior). A stretch of ``n`` mobile
vertebrae ending at L5 sits on a sacrum; the column follows a gentle sagittal (lordotic) arc. Every
vertebra has its own frame: ``u`` (R-L, = x), ``v`` (A-P) and ``w`` (its body axis, tilted in the
sagittal plane), origin at the body centre. In that frame:

* **body** (49): elliptic cylinder, semi-axes ``a`` (R-L) × ``b`` (A-P), height ``h``; its top and
  bottom ``endplate_mm`` layers are **endplates** (62; instances as SPINEPS numbers them, each endplate taking
  the vertebra above it: the lower endplate of X is 200+X, the upper one 200+(vertebra above X), 200+X for
  the top vertebra);
* **canal**: elliptic tube right behind the body (semi-axes ``ca`` × ``cb``), continuous along the
  column down to the sacrum; the **cord** (60) is a smaller tube inside it, ending (conus) at the
  middle of the lowest vertebra; the rest of the canal is label 61;
* **arch** (41): a ring of thickness ``t`` around the canal behind the body; **spinous process** (42):
  a bar running posteriorly (and downwards) from the back of the arch; **costal processes** (43 left /
  44 right): bars running laterally from the arch; **superior articular processes** (45/46): blocks on
  the arch reaching up towards the vertebra above, lateral to the **inferior articular processes**
  (47/48) of that vertebra, which reach down;
* **disc** (100, instance 100+X below vertebra X): the space between the bottom plane of X and the top
  plane of the next body (or the sacrum), inside the footprint of X's body (a wedge where the two
  bodies are tilted differently);
* **sacrum** (26 in both masks): a tapered, more steeply tilted elliptic block below the last disc.

Left/right: label 43/45/47 (subject's left) lie at x < 0, 44/46/48 at x > 0. Cord and canal are 0 in
the instance mask, as in SPINEPS outputs (see :mod:`nnunet_spine.core.labels`). The voxel grid is
sagittal ``PIR`` (voxel axes: Posterior, Inferior, Right), like SPINEPS inputs; the default voxel is
1 mm (A-P) × 1 mm (S-I) × 3 mm (R-L slices), with the midsagittal plane x = 0 on a slice centre so that
left and right structures are voxel-symmetric.

Labels are painted structure by structure and the semantic and instance masks are always written
together, so they are consistent by construction.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from nnunet_spine.core.labels import (
    ARCUS,
    CANAL,
    CORD,
    CORPUS,
    COSTAL_LEFT,
    COSTAL_RIGHT,
    DISC,
    ENDPLATE,
    INF_ARTICULAR_LEFT,
    INF_ARTICULAR_RIGHT,
    POSTERIOR_ELEMENTS,
    SACRUM,
    SPINOSUS,
    SUP_ARTICULAR_LEFT,
    SUP_ARTICULAR_RIGHT,
    disc_instance,
    endplate_instance,
    vertebra_name,
)

# --------------------------------------------------------------------------------------------- geometry


@dataclass(frozen=True)
class RegionDims:
    """Typical adult sizes (mm) of one spinal region.

    ``half_width``/``half_depth``: body semi-axes R-L / A-P; ``canal_half_*``: canal semi-axes;
    ``disc_height``: disc below the vertebra (at the centre); ``spinous_slope``: how far (mm) the
    spinous process descends per mm it runs posteriorly.
    """

    body_height: float
    half_width: float
    half_depth: float
    disc_height: float
    canal_half_width: float
    canal_half_depth: float
    arch_thickness: float
    spinous_length: float
    costal_length: float
    spinous_slope: float

    def scaled(self, s: float) -> RegionDims:
        """All lengths multiplied by ``s`` (the slope is a ratio and stays)."""
        return RegionDims(*(getattr(self, f) * (1.0 if f == "spinous_slope" else s) for f in self.__dataclass_fields__))


#: Region sizes; C1/C2 are drawn like the other cervical vertebrae (no dens, no missing body).
REGION_DIMS: dict[str, RegionDims] = {
    "C": RegionDims(14.0, 9.5, 8.0, 5.0, 12.0, 7.0, 4.0, 18.0, 11.0, 0.3),
    "T": RegionDims(21.0, 16.0, 13.0, 5.5, 8.5, 7.5, 6.0, 28.0, 18.0, 0.6),
    "L": RegionDims(27.0, 22.0, 16.0, 10.0, 11.0, 8.0, 7.0, 28.0, 22.0, 0.2),
}


def region_of(number: int) -> str:
    """``"C"``, ``"T"`` or ``"L"`` for vertebra numbers 1–7, 8–19 and T13 (28), 20–25 (L6 = 25)."""
    return "C" if number <= 7 else "T" if number <= 19 or number == 28 else "L"


def _frame(tilt_rad: float) -> np.ndarray:
    """Rows: the u (R-L), v (A-P) and w (body axis, up) unit vectors of a frame tilted by ``tilt_rad``
    in the sagittal plane (positive: the up axis leans anteriorly)."""
    s, c = math.sin(tilt_rad), math.cos(tilt_rad)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


@dataclass(frozen=True)
class Vertebra:
    """One mobile vertebra: instance ``number`` (VerSe numbering), body centre (world mm), sagittal
    tilt of its body axis (degrees, positive = top leaning anteriorly) and sizes."""

    number: int
    centre_mm: tuple[float, float, float]
    tilt_deg: float
    dims: RegionDims
    disc_below_mm: float  #: central height of the disc below (mm)

    @property
    def name(self) -> str:
        return vertebra_name(self.number)

    def axes(self) -> np.ndarray:
        return _frame(math.radians(self.tilt_deg))

    def to_local(self, pts: np.ndarray) -> np.ndarray:
        """World points (N×3, mm) → local (u, v, w) mm."""
        return (np.asarray(pts, float) - np.asarray(self.centre_mm)) @ self.axes().T

    def to_world(self, local: np.ndarray) -> np.ndarray:
        return np.asarray(local, float) @ self.axes() + np.asarray(self.centre_mm)

    def bottom_centre(self) -> np.ndarray:
        return self.to_world(np.array([0.0, 0.0, -self.dims.body_height / 2]))

    def top_centre(self) -> np.ndarray:
        return self.to_world(np.array([0.0, 0.0, self.dims.body_height / 2]))

    def canal_centre_v(self) -> float:
        """A-P position (local v, mm) of the canal axis: right behind the body."""
        return -(self.dims.half_depth + self.dims.canal_half_depth)

    def local_box(self) -> np.ndarray:
        """Corners (8×3, local mm) of a box holding every part of this vertebra."""
        d = self.dims
        v_back = self.canal_centre_v() - d.canal_half_depth - d.arch_thickness
        lat = d.canal_half_width + d.arch_thickness + d.costal_length + 2
        low = d.body_height / 2 + 10 + d.spinous_slope * d.spinous_length
        return _corners((-lat, lat), (v_back - d.spinous_length - 2, d.half_depth + 2), (-low, d.body_height / 2 + 10))


@dataclass(frozen=True)
class Sacrum:
    """The sacrum as one tapered elliptic block hanging below its top plate.

    ``top_centre_mm``: centre of the S1 top plate (world mm); ``tilt_deg`` like :class:`Vertebra`;
    semi-axes ``half_width`` × ``half_depth`` at the top, shrinking to ``taper`` times that at the tip,
    ``length`` mm below the top plate.
    """

    top_centre_mm: tuple[float, float, float]
    tilt_deg: float
    half_width: float
    half_depth: float
    length: float
    taper: float = 0.5

    number = SACRUM

    def axes(self) -> np.ndarray:
        return _frame(math.radians(self.tilt_deg))

    def to_local(self, pts: np.ndarray) -> np.ndarray:
        return (np.asarray(pts, float) - np.asarray(self.top_centre_mm)) @ self.axes().T

    def to_world(self, local: np.ndarray) -> np.ndarray:
        return np.asarray(local, float) @ self.axes() + np.asarray(self.top_centre_mm)

    def local_box(self) -> np.ndarray:
        return _corners((-self.half_width, self.half_width), (-self.half_depth, self.half_depth), (-self.length, 0.0))


@dataclass(frozen=True)
class SpineModel:
    """A whole phantom spine: mobile vertebrae top to bottom, the sacrum, and rendering constants.

    ``cord_scale``: cord semi-axes as a fraction of the canal's; ``endplate_mm``: endplate thickness.
    """

    vertebrae: tuple[Vertebra, ...]
    sacrum: Sacrum
    endplate_mm: float = 2.0
    cord_scale: float = 0.55

    @property
    def numbers(self) -> list[int]:
        """Instance numbers of the mobile vertebrae followed by the sacrum (26)."""
        return [v.number for v in self.vertebrae] + [SACRUM]


def _corners(us, vs, ws) -> np.ndarray:
    return np.array([[u, v, w] for u in us for v in vs for w in ws], float)


def _arc_points(s: np.ndarray, curvature: float, total: float) -> tuple[np.ndarray, np.ndarray]:
    """Centre (y, z) and tilt (rad) at arclengths ``s`` (mm, measured downwards) along an arc whose
    tilt is ``curvature · (s - total/2)``; the arc passes through (y, z) = (0, 0) at ``s = total/2``."""
    s = np.asarray(s, float)
    t = curvature * (s - total / 2)
    if abs(curvature) < 1e-9:
        y = np.zeros_like(s)
        z = total / 2 - s
    else:  # integral of -(sin θ, cos θ) ds
        y = (np.cos(t) - 1.0) / curvature
        z = -np.sin(t) / curvature
    return np.stack([y, z], -1), t


def build_spine_model(
    n_vertebrae: int = 5, *, seed: int = 0, index: int = 0, numbers: Sequence[int] | None = None
) -> SpineModel:
    """Seeded spine of ``n_vertebrae`` mobile vertebrae ending at L5 (5: L1–L5; 17: T1–L5; at most 24:
    C1–L5) on a sacrum, or of the VerSe ids ``numbers`` (top to bottom; e.g. a transitional column ending at L6 =
    25, or with T13 = 28). Per subject (``index``) and ``seed``: overall size ×0.93–1.07, each disc height
    ×0.85–1.15, lordotic curvature 0.0012–0.0025 rad/mm, sacral plate tilted 25–35° more than the last one."""
    if numbers is None:
        if not 1 <= n_vertebrae <= 24:
            raise ValueError(f"n_vertebrae must be between 1 and 24 (C1–L5), got {n_vertebrae}")
        numbers = list(range(25 - n_vertebrae, 25))
    numbers = [int(n) for n in numbers]
    if not numbers or any(not (1 <= n <= 25 or n == 28) for n in numbers):
        raise ValueError(f"numbers must be mobile vertebrae (1-25, 28), got {numbers}")
    rng = np.random.default_rng([seed, index, 11])
    scale = float(rng.uniform(0.93, 1.07))
    curvature = float(rng.uniform(0.0012, 0.0025))
    sacral_extra = float(rng.uniform(25.0, 35.0))
    dims = [REGION_DIMS[region_of(n)].scaled(scale) for n in numbers]
    discs = [d.disc_height * float(rng.uniform(0.85, 1.15)) for d in dims]
    s_centres, s = [], 0.0
    for i, d in enumerate(dims):
        if i:
            s += dims[i - 1].body_height / 2 + discs[i - 1] + d.body_height / 2
        s_centres.append(s)
    s_sacrum = s + dims[-1].body_height / 2 + discs[-1]
    yz, tilt = _arc_points(np.array(s_centres + [s_sacrum]), curvature, s_sacrum)
    vertebrae = tuple(
        Vertebra(n, (0.0, float(yz[i, 0]), float(yz[i, 1])), math.degrees(float(tilt[i])), d, discs[i])
        for i, (n, d) in enumerate(zip(numbers, dims))
    )
    # Put the sacrum's top plate where the last disc ends below L5's bottom plate (along L5's axis).
    last = vertebrae[-1]
    top = last.bottom_centre() - last.axes()[2] * discs[-1]
    lumbar = REGION_DIMS["L"].scaled(scale)
    sacrum = Sacrum(
        (0.0, float(top[1]), float(top[2])),
        last.tilt_deg + sacral_extra,
        half_width=1.5 * lumbar.half_width,
        half_depth=lumbar.half_depth,
        length=50.0 * scale,
    )
    return SpineModel(vertebrae, sacrum)


# --------------------------------------------------------------------------------------------- grid
def spine_grid(
    model: SpineModel, voxel_mm: tuple[float, float, float] = (1.0, 1.0, 3.0), margin_mm: float = 6.0
) -> tuple[tuple[int, int, int], np.ndarray]:
    """Sagittal PIR grid (shape, RAS affine) covering the whole model plus ``margin_mm``.

    ``voxel_mm`` is per voxel axis: (A-P, S-I, R-L). x = 0 lies on the centre of the middle slice.
    """
    pts = [v.to_world(v.local_box()) for v in model.vertebrae] + [model.sacrum.to_world(model.sacrum.local_box())]
    pts = np.concatenate(pts)
    lo, hi = pts.min(0) - margin_mm, pts.max(0) + margin_mm
    vp, vi, vr = (float(x) for x in voxel_mm)
    half_slices = int(math.ceil(max(abs(lo[0]), abs(hi[0])) / vr))
    shape = (int(math.ceil((hi[1] - lo[1]) / vp)) + 1, int(math.ceil((hi[2] - lo[2]) / vi)) + 1, 2 * half_slices + 1)
    affine = np.array(
        [[0.0, 0.0, vr, -half_slices * vr], [-vp, 0.0, 0.0, hi[1]], [0.0, -vi, 0.0, hi[2]], [0.0, 0.0, 0.0, 1.0]]
    )
    return shape, affine


class _Canvas:
    """Semantic and instance label arrays on a grid, painted in world-space blocks."""

    def __init__(self, shape: tuple[int, int, int], affine: np.ndarray):
        self.shape = shape
        self.affine = np.asarray(affine, float)
        self.inv = np.linalg.inv(self.affine)
        self.semantic = np.zeros(shape, np.uint8)
        self.instance = np.zeros(shape, np.uint8)

    def block(self, corners_world: np.ndarray) -> tuple[tuple[slice, ...], np.ndarray] | None:
        """Voxel block holding the given world points, and the world coordinates (M×3) of its voxels."""
        ijk = corners_world @ self.inv[:3, :3].T + self.inv[:3, 3]
        lo = np.maximum(np.floor(ijk.min(0)).astype(int) - 1, 0)
        hi = np.minimum(np.ceil(ijk.max(0)).astype(int) + 2, self.shape)
        if np.any(hi <= lo):
            return None
        sl = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
        idx = np.stack(np.meshgrid(*[np.arange(s.start, s.stop) for s in sl], indexing="ij"), -1).reshape(-1, 3)
        return sl, idx @ self.affine[:3, :3].T + self.affine[:3, 3]

    def paint(self, sl: tuple[slice, ...], mask: np.ndarray, semantic: int, instance: int) -> None:
        shape = tuple(s.stop - s.start for s in sl)
        m = mask.reshape(shape)
        self.semantic[sl][m] = semantic
        self.instance[sl][m] = instance


def _ellipse(u: np.ndarray, v: np.ndarray, a: float, b: float) -> np.ndarray:
    return (u / a) ** 2 + (v / b) ** 2 <= 1.0


def vertebra_parts(vert: Vertebra, p: np.ndarray, endplate_mm: float) -> list[tuple[int, np.ndarray]]:
    """Masks of one vertebra's parts at local points ``p`` (M×3), in painting order (later wins).

    Returns ``(semantic label, mask)`` pairs: arch, costal, spinous, articular processes, body, endplates.
    """
    d = vert.dims
    u, v, w = p[:, 0], p[:, 1], p[:, 2]
    h, t = d.body_height, d.arch_thickness
    ca, cb, vc = d.canal_half_width, d.canal_half_depth, vert.canal_centre_v()
    w_arch, arch_half = 0.1 * h, 0.3 * h
    in_arch_height = np.abs(w - w_arch) <= arch_half
    v_back = vc - cb - t
    parts = [
        (
            ARCUS,
            in_arch_height
            & ~_ellipse(u, v - vc, ca, cb)
            & _ellipse(u, v - vc, ca + t, cb + t)
            & (v <= -0.85 * d.half_depth),
        )
    ]
    lateral = (np.abs(u) >= ca + t - 1) & (np.abs(u) <= ca + t + d.costal_length)
    costal = lateral & (np.abs(v - (vc + 0.2 * cb)) <= 3.5) & (np.abs(w - w_arch - 0.05 * h) <= 0.14 * h)
    parts += [(COSTAL_LEFT, costal & (u < 0)), (COSTAL_RIGHT, costal & (u > 0))]
    w_spin = w_arch - d.spinous_slope * (v_back - v)  # descends as it runs posteriorly
    spinous = (
        (np.abs(u) <= 2.5) & (v <= v_back + 1.5) & (v >= v_back - d.spinous_length) & (np.abs(w - w_spin) <= 0.18 * h)
    )
    parts.append((SPINOSUS, spinous))
    w_top, w_bottom = w_arch + arch_half, w_arch - arch_half
    sup = (
        (np.abs(np.abs(u) - (ca + 0.8 * t)) <= 3.0)
        & (np.abs(v - (vc - 0.3 * cb)) <= 4.0)
        & (w >= w_top - 3)
        & (w <= w_top + 7)
    )
    inf = (
        (np.abs(np.abs(u) - (ca + 0.2 * t)) <= 2.5)
        & (np.abs(v - (vc - 0.8 * cb)) <= 3.5)
        & (w >= w_bottom - 7)
        & (w <= w_bottom + 3)
    )
    parts += [
        (SUP_ARTICULAR_LEFT, sup & (u < 0)),
        (SUP_ARTICULAR_RIGHT, sup & (u > 0)),
        (INF_ARTICULAR_LEFT, inf & (u < 0)),
        (INF_ARTICULAR_RIGHT, inf & (u > 0)),
    ]
    body = _ellipse(u, v, d.half_width, d.half_depth) & (np.abs(w) <= h / 2)
    parts.append((CORPUS, body))
    parts.append((ENDPLATE, body & (np.abs(w) > h / 2 - endplate_mm)))
    return parts


def _disc_mask(upper: Vertebra, lower: Vertebra | Sacrum, pts: np.ndarray) -> np.ndarray:
    """Disc between ``upper`` and ``lower`` at world points: below upper's bottom plane, above lower's
    top plane, inside upper's body footprint (+3 %, the bulge) measured in the mid-disc frame."""
    below = upper.to_local(pts)[:, 2] <= -upper.dims.body_height / 2
    top_w = lower.dims.body_height / 2 if isinstance(lower, Vertebra) else 0.0
    above = lower.to_local(pts)[:, 2] >= top_w
    mid = 0.5 * (upper.tilt_deg + lower.tilt_deg)
    centre = 0.5 * (
        upper.bottom_centre() + (lower.top_centre() if isinstance(lower, Vertebra) else np.asarray(lower.top_centre_mm))
    )
    q = (pts - centre) @ _frame(math.radians(mid)).T
    foot = _ellipse(q[:, 0], q[:, 1], 1.03 * upper.dims.half_width, 1.03 * upper.dims.half_depth)
    return below & above & foot


def _disc_corners(upper: Vertebra, lower: Vertebra | Sacrum) -> np.ndarray:
    """World corners of the bottom plate of ``upper`` and the top plate of ``lower`` (a box around the
    disc, with room for the 3 % bulge)."""
    du = upper.dims
    a, b = 1.1 * du.half_width, 1.1 * du.half_depth
    top = upper.to_world(_corners((-a, a), (-b, b), (-du.body_height / 2,)))
    if isinstance(lower, Vertebra):
        w = lower.dims.body_height / 2
        bottom = lower.to_world(_corners((-a, a), (-b, b), (w,)))
    else:
        bottom = lower.to_world(_corners((-a, a), (-b, b), (0.0,)))
    return np.concatenate([top, bottom])


def _sacrum_mask(sacrum: Sacrum, pts: np.ndarray) -> np.ndarray:
    p = sacrum.to_local(pts)
    frac = np.clip(-p[:, 2] / sacrum.length, 0.0, 1.0)
    k = 1.0 - (1.0 - sacrum.taper) * frac
    return (
        (p[:, 2] <= 0)
        & (p[:, 2] >= -sacrum.length)
        & _ellipse(p[:, 0], p[:, 1], sacrum.half_width * k, sacrum.half_depth * k)
    )


def _tube_ranges(model: SpineModel) -> list[tuple[float, float, float]]:
    """Per vertebra, the local w range of its canal segment and the lower w end of its cord segment
    (segments overlap a little at mid-disc so the tube has no gaps)."""
    out = []
    verts = model.vertebrae
    for i, v in enumerate(verts):
        h = v.dims.body_height
        hi = h / 2 + (verts[i - 1].disc_below_mm / 2 + 1.5 if i else 40.0)
        last = i == len(verts) - 1
        lo = -(h / 2 + v.disc_below_mm + 1.0) if last else -(h / 2 + v.disc_below_mm / 2 + 1.5)
        out.append((lo, hi, 0.0 if last else lo))
    return out


def render_spine_labels(
    model: SpineModel, shape: tuple[int, int, int], affine: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Paint the semantic (uint8, SPINEPS values) and instance (uint8) masks of ``model`` on a grid.

    Order: sacrum, discs, vertebrae (posterior elements, body, endplates), canal, cord.
    """
    cv = _Canvas(shape, affine)
    sac = model.sacrum
    blk = cv.block(sac.to_world(sac.local_box()))
    if blk:
        cv.paint(blk[0], _sacrum_mask(sac, blk[1]), SACRUM, SACRUM)
    lowers = list(model.vertebrae[1:]) + [sac]
    for upper, lower in zip(model.vertebrae, lowers):
        blk = cv.block(_disc_corners(upper, lower))
        if blk:
            cv.paint(blk[0], _disc_mask(upper, lower, blk[1]), DISC, disc_instance(upper.number))
    for i, vert in enumerate(model.vertebrae):
        blk = cv.block(vert.to_world(vert.local_box()))
        if not blk:
            continue
        p = vert.to_local(blk[1])
        # endplates as SPINEPS numbers them: each takes the nearest vertebra above it, so the upper endplate of X
        # is 200 + (the vertebra above X) and the top vertebra's own (SPINEPS phase_post.add_ivd_ep_vert_label)
        above = model.vertebrae[i - 1].number if i else vert.number
        for label, mask in vertebra_parts(vert, p, model.endplate_mm):
            if label == ENDPLATE:
                upper = mask & (p[:, 2] > 0)
                cv.paint(blk[0], upper, label, endplate_instance(above))
                cv.paint(blk[0], mask & ~upper, label, endplate_instance(vert.number))
            else:
                cv.paint(blk[0], mask, label, vert.number)
    ranges = _tube_ranges(model)
    for label in (CANAL, CORD):
        for vert, (lo, hi, cord_lo) in zip(model.vertebrae, ranges):
            d = vert.dims
            box = _corners(
                (-d.canal_half_width, d.canal_half_width),
                (vert.canal_centre_v() - d.canal_half_depth, vert.canal_centre_v() + d.canal_half_depth),
                (lo, hi),
            )
            blk = cv.block(vert.to_world(box))
            if not blk:
                continue
            p = vert.to_local(blk[1])
            if label == CANAL:
                mask = _ellipse(p[:, 0], p[:, 1] - vert.canal_centre_v(), d.canal_half_width, d.canal_half_depth)
                mask &= (p[:, 2] >= lo) & (p[:, 2] <= hi)
            else:
                vc = vert.canal_centre_v() + 0.15 * d.canal_half_depth
                mask = _ellipse(
                    p[:, 0], p[:, 1] - vc, model.cord_scale * d.canal_half_width, model.cord_scale * d.canal_half_depth
                )
                mask &= (p[:, 2] >= cord_lo) & (p[:, 2] <= hi)
            cv.paint(blk[0], mask, label, 0)
    return cv.semantic, cv.instance


#: T2w-like signal per semantic label (background = soft tissue 0.25).
T2W_INTENSITY: dict[int, float] = {
    0: 0.25,
    CORPUS: 0.5,
    ENDPLATE: 0.12,
    DISC: 0.85,
    CANAL: 1.0,
    CORD: 0.55,
    SACRUM: 0.45,
    **{lab: 0.35 for lab in POSTERIOR_ELEMENTS},
}


def render_spine_image(
    semantic: np.ndarray, voxel_mm: tuple[float, float, float], rng: np.random.Generator, noise: float = 0.02
) -> np.ndarray:
    """T2w-like image (float32) from the semantic mask: label intensities, a ~0.6 mm Gaussian blur
    (partial volume), Gaussian noise of sigma ``noise``."""
    from scipy import ndimage

    lut = np.zeros(256, np.float32)
    for lab, val in T2W_INTENSITY.items():
        lut[lab] = val
    img = lut[semantic]
    img = ndimage.gaussian_filter(img, sigma=[0.6 / float(v) for v in voxel_mm])
    return (img + rng.normal(0.0, noise, size=img.shape)).astype(np.float32)


def render_spine(
    model: SpineModel, voxel_mm: tuple[float, float, float] = (1.0, 1.0, 3.0), rng: np.random.Generator | None = None
) -> dict[str, np.ndarray]:
    """Grid, labels and image of a model: ``{"affine", "image", "semantic", "instance"}``."""
    shape, affine = spine_grid(model, voxel_mm)
    semantic, instance = render_spine_labels(model, shape, affine)
    rng = rng if rng is not None else np.random.default_rng(0)
    return {
        "affine": affine,
        "semantic": semantic,
        "instance": instance,
        "image": render_spine_image(semantic, voxel_mm, rng),
    }


def slice_levels_truth(
    model: SpineModel, cord_rpi: np.ndarray, affine_rpi: np.ndarray, slices: Sequence[int]
) -> np.ndarray:
    """The analytic vertebra (VerSe id) of each given axial slice of a rendered phantom: the vertebra between the
    mid-disc planes (through the centre of each disc, normal to the mean axis of its two bodies) around the slice's
    cord centre. ``cord_rpi``: the cord mask reoriented to SCT's RPI (slices last), ``affine_rpi`` its affine
    (voxel → world RAS mm); slices above the first plane are the top vertebra's."""
    verts = model.vertebrae
    planes = []
    for up, lo in zip(verts[:-1], verts[1:]):
        centre = 0.5 * (up.bottom_centre() + lo.top_centre())
        planes.append((centre, _frame(math.radians(0.5 * (up.tilt_deg + lo.tilt_deg)))[2], lo.number))
    out = []
    for k in slices:
        i, j = np.argwhere(cord_rpi[:, :, k] > 0).mean(0)
        p = affine_rpi[:3, :3] @ [i, j, k] + affine_rpi[:3, 3]
        level = verts[0].number
        for centre, normal, lower in planes:
            if (p - centre) @ normal < 0:
                level = lower
        out.append(level)
    return np.array(out)
