"""Flaws an instance network makes in a fused vertebra column, found on the arrays before the vertebrae are numbered.

Each detector works on an instance array (vertebra instances, any ids), the semantic mask on the same grid and
their affine (world RAS mm); thresholds are in mm or mm³ (module constants). :func:`review_instances` runs them
all and returns the corrected instance array with one :class:`Finding` per flaw. A finding that leaves the ids
possibly wrong is *doubtful*: the labelling is then not verified (:mod:`.labelling`).

* **Stray body blobs**: an instance with less than :data:`STRAY_MAX_ARCH_MM3` of posterior elements (41–48) that
  does not touch the top or bottom of the field of view is no vertebra (every vertebra has an arch; C1 has no
  body but an arch; a mask where most instances have no arch is left alone): removed from the instance mask (and
  from the cleaned semantic mask) and reported.
* **Split instances**: two instances holding one vertebral body (a 26-connected body component, each at least
  :data:`SPLIT_MIN_SHARE` of it, the smaller one with :data:`SPLIT_OWN_SHARE` of its body voxels there) whose
  height is not much above its neighbours' (at most :data:`MERGE_HEIGHT_FACTOR` × their median S-I height, i.e.
  one body, not two fused ones) are joined into one.
* **Merged instances**: an instance with two body components of at least :data:`MERGE_MIN_BODY_MM3` and
  :data:`MERGE_MIN_BODY_FRACTION` × the column's median body volume each, separated by the disc / endplate the
  semantic mask shows between them, is split: every voxel of it joins its nearest body component (mm). An instance
  whose body is taller than :data:`MERGE_HEIGHT_FACTOR` × its neighbours' median (two bodies with no disc between
  them) cannot be split: it is kept, counted as two vertebrae (the ids of the others do not shift) and doubtful.
* **Small bodies**: an instance whose body holds less than :data:`SMALL_BODY_FRACTION` × its neighbours' median
  body volume, not at a field-of-view edge and not C1 (the vertebra above the dens), may be part of a split
  vertebra: doubtful.
* **Partial vertebrae**: an instance touching the first or last image slice along the S-I axis (within
  :data:`EDGE_VOXELS`) whose body is missing or below :data:`SMALL_BODY_FRACTION` × the median: cut by the field of
  view. It stays an instance, but its centre (an arch's, or a quarter body's) says nothing about the spacing: it
  is placed directly next to its neighbour (no gap is looked for at it) and does not shift the count.
* **Implausible sacrum**: a sacrum (26) smaller than :data:`SACRUM_MIN_BODY_RATIO` × the lowest vertebral body
  (a half-visible lumbar vertebra called sacrum by the semantic network), cut by the bottom of the field of view
  with less S-I extent than :data:`SACRUM_MIN_HEIGHT_RATIO` × the lowest body's height (it cannot be told from
  such a vertebra), or with no disc (100) or endplate (62) voxel between it and the lowest vertebral body (no S1
  endplate), is doubtful as an anchor.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from nnunet_spine.core.io import voxel_sizes
from nnunet_spine.core.labels import CORPUS, DISC, ENDPLATE, POSTERIOR_ELEMENTS, SACRUM

#: An instance with less posterior-element (41–48) volume than this (mm³) has no arch: not a vertebra unless the
#: field of view cuts it.
STRAY_MAX_ARCH_MM3 = 100.0
#: A body taller (S-I, mm) than this multiple of its neighbours' median body height holds two vertebrae; two
#: instances sharing one body component are joined only when that body is not taller than this.
MERGE_HEIGHT_FACTOR = 1.6
#: A second body component of an instance counts as a second vertebral body from this volume (mm³) ...
MERGE_MIN_BODY_MM3 = 500.0
#: ... and this fraction of the column's median body volume.
MERGE_MIN_BODY_FRACTION = 0.3
#: Two instances each holding at least this share of one body component are one split vertebra ...
SPLIT_MIN_SHARE = 0.1
#: ... when the one holding less of it has at least this share of all its body voxels there (no body of its own
#: elsewhere: not a vertebra whose instance bleeds into its neighbour's body).
SPLIT_OWN_SHARE = 0.8
#: A body below this fraction of its neighbours' median body volume is small (a split half or a partial vertebra).
SMALL_BODY_FRACTION = 0.4
#: An instance within this many voxels of the first or last image slice along the S-I axis touches the field of
#: view's edge.
EDGE_VOXELS = 1
#: A sacrum smaller (mm³) than this multiple of the lowest vertebral body's volume is implausible.
SACRUM_MIN_BODY_RATIO = 1.0
#: A sacrum cut by the bottom of the field of view that shows less S-I extent (mm) than this multiple of the lowest
#: vertebral body's height cannot be told from a half-visible lumbar vertebra.
SACRUM_MIN_HEIGHT_RATIO = 1.5
#: Neighbours on each side whose median body height / volume a body is compared with.
NEIGHBOURS = 2


@dataclass
class Finding:
    """One flaw: ``kind`` (``stray``, ``split``, ``merged``, ``small body``, ``partial``, ``sacrum``), a one-line
    ``message`` for the anomalies, and ``doubtful``: the ids may be wrong because of it (not verified)."""

    kind: str
    message: str
    doubtful: bool


@dataclass
class Review:
    """:func:`review_instances`' result: the corrected instance array (same ids where kept, new ids for split
    parts), voxels removed (strays: drop them from the semantic mask too), the findings, the instance ids cut by
    the field of view (``partial``) and the ids kept although they hold two vertebrae (``double``)."""

    instance: np.ndarray
    removed: np.ndarray
    findings: list[Finding] = field(default_factory=list)
    partial: set[int] = field(default_factory=set)
    double: set[int] = field(default_factory=set)

    @property
    def doubts(self) -> list[str]:
        return [f.message for f in self.findings if f.doubtful]


@dataclass
class _Stats:
    """Per instance id: body volume (mm³), body S-I height (mm), arch volume (mm³), centre z (world mm), whether
    it touches the top / bottom of the field of view."""

    body_mm3: dict[int, float]
    height_mm: dict[int, float]
    arch_mm3: dict[int, float]
    z_mm: dict[int, float]
    edge: dict[int, str]
    box: dict[int, tuple[slice, ...]]  #: each instance's bounding box (voxel slices)
    body_box: dict[int, tuple[slice, ...]]  #: each instance's body's bounding box (voxel slices; absent: no body)


def _voxel_mm3(affine: np.ndarray) -> float:
    return float(abs(np.linalg.det(np.asarray(affine, float)[:3, :3])))


def si_axis(affine: np.ndarray) -> int:
    """The voxel axis most aligned with world S-I (z)."""
    return int(np.argmax(np.abs(np.asarray(affine, float)[2, :3])))


def _stats(inst: np.ndarray, sem: np.ndarray, affine: np.ndarray) -> _Stats:
    import cc3d

    a = np.asarray(affine, float)
    voxel = float(abs(np.linalg.det(a[:3, :3])))
    ax = si_axis(a)
    dz = float(voxel_sizes(a)[ax])
    whole = cc3d.statistics(inst if inst.dtype.kind == "u" else inst.astype(np.uint32))
    ids = [int(v) for v in np.flatnonzero(np.asarray(whole["voxel_counts"])) if v]
    body = cc3d.statistics(
        np.where(sem == CORPUS, inst, np.zeros((), inst.dtype))
        if inst.dtype.kind == "u"
        else np.where(sem == CORPUS, inst, 0).astype(np.uint32)
    )
    posterior = np.zeros(256, bool)
    posterior[list(POSTERIOR_ELEMENTS)] = True
    in_arch = posterior[sem] if sem.dtype == np.uint8 else np.isin(sem, POSTERIOR_ELEMENTS)
    arch = np.bincount(inst[in_arch].astype(np.int64), minlength=max(ids, default=0) + 1)
    out = _Stats({}, {}, {}, {}, {}, {}, {})
    last = inst.shape[ax] - 1
    for v in ids:
        n_body = int(body["voxel_counts"][v]) if v < len(body["voxel_counts"]) else 0
        out.body_mm3[v] = n_body * voxel
        box = body["bounding_boxes"][v] if n_body else None
        out.height_mm[v] = (box[ax].stop - box[ax].start) * dz if box is not None else 0.0
        if box is not None:
            out.body_box[v] = tuple(box)
        out.arch_mm3[v] = float(arch[v]) * voxel
        src = body if n_body else whole
        out.z_mm[v] = float((a[:3, :3] @ np.asarray(src["centroids"][v], float) + a[:3, 3])[2])
        wbox = whole["bounding_boxes"][v]
        out.box[v] = tuple(wbox)
        lo, hi = wbox[ax].start, wbox[ax].stop - 1
        top_is_low = a[2, ax] < 0  # index 0 is superior when z falls along the axis
        near_lo, near_hi = lo < EDGE_VOXELS, hi > last - EDGE_VOXELS
        out.edge[v] = ""
        if near_lo or near_hi:
            out.edge[v] = "top" if (near_lo and top_is_low) or (near_hi and not top_is_low) else "bottom"
    return out


def _side_medians(values: dict[int, float], order: Sequence[int], v: int, skip: set[int]) -> list[float]:
    """Medians of ``values`` of up to :data:`NEIGHBOURS` instances above and below ``v`` in ``order`` (top to
    bottom), leaving out ``skip`` and zero values; one number per side that has any (bodies change size along the
    column, from cervical to lumbar: each side is compared on its own)."""
    k = order.index(v)
    out = []
    for side in (order[max(0, k - NEIGHBOURS) : k], order[k + 1 : k + 1 + NEIGHBOURS]):
        near = [values[u] for u in side if u not in skip and values[u] > 0]
        if near:
            out.append(float(np.median(near)))
    return out


def _neighbour_median(values: dict[int, float], order: Sequence[int], v: int, skip: set[int], larger: bool) -> float:
    """The larger (``larger``) or smaller of :func:`_side_medians`; 0 when no neighbour has a value."""
    sides = _side_medians(values, order, v, skip)
    return (max(sides) if larger else min(sides)) if sides else 0.0


def _order(s: _Stats) -> list[int]:
    return sorted(s.z_mm, key=lambda v: -s.z_mm[v])


def remove_strays(
    inst: np.ndarray, sem: np.ndarray, affine: np.ndarray, s: _Stats | None = None
) -> tuple[np.ndarray, list[Finding]]:
    """Stray body blobs (module docstring) removed from ``inst`` (in place): returns (their voxels, findings).
    ``s``: :func:`_stats` of ``inst`` when already computed."""
    s = s or _stats(inst, sem, affine)
    removed = np.zeros(inst.shape, bool)
    found = []
    if sum(x >= STRAY_MAX_ARCH_MM3 for x in s.arch_mm3.values()) <= len(s.arch_mm3) / 2:
        return removed, found  # a mask without posterior elements: arches tell nothing
    for v in _order(s):
        if s.arch_mm3[v] >= STRAY_MAX_ARCH_MM3 or s.edge[v]:
            continue
        box = s.box[v]
        m = inst[box] == v
        removed[box] |= m
        inst[box][m] = 0
        found.append(
            Finding(
                "stray",
                f"stray body blob at z = {s.z_mm[v]:.0f} mm ({int(m.sum()) * _voxel_mm3(affine):.0f} mm³, "
                f"{s.arch_mm3[v]:.0f} mm³ of posterior elements < {STRAY_MAX_ARCH_MM3:g} mm³): not a vertebra, removed",
                False,
            )
        )
    return removed, found


def join_split(
    inst: np.ndarray, sem: np.ndarray, affine: np.ndarray, exempt: set[int] = frozenset(), s: _Stats | None = None
) -> list[Finding]:
    """Split instances (module docstring) joined in ``inst`` (in place): the instance with less of the shared body
    takes the other's id; ``exempt`` ids (C1 above the dens) are never joined."""
    import cc3d

    found = []
    comp = cc3d.connected_components((sem == CORPUS) & (inst > 0), connectivity=26)
    s = s or _stats(inst, sem, affine)
    order = _order(s)
    held_voxels = comp > 0
    c_of, v_of = comp[held_voxels].astype(np.int64), inst[held_voxels].astype(np.int64)
    if not c_of.size:
        return found
    span = int(v_of.max()) + 1
    keys, counts = np.unique(c_of * span + v_of, return_counts=True)
    uniq = np.stack([keys // span, keys % span], axis=1)
    size = np.bincount(c_of)
    own = {int(v): int(n) for v, n in zip(*np.unique(v_of, return_counts=True))}
    for c in np.unique(uniq[:, 0]):
        held = {int(v): int(n) for (cc, v), n in zip(uniq, counts) if cc == c and n >= SPLIT_MIN_SHARE * size[c]}
        if len(held) != 2 or set(held) & exempt:
            continue
        a, b = sorted(held, key=lambda v: -held[v])
        if held[b] < SPLIT_OWN_SHARE * own[b]:
            continue
        ax = si_axis(affine)
        rows = np.flatnonzero((comp == c).any(axis=tuple(i for i in range(3) if i != ax)))
        height = (rows[-1] - rows[0] + 1) * float(voxel_sizes(affine)[ax])
        ref = _neighbour_median(s.height_mm, order, a, {a, b}, larger=True) if a in order else 0.0
        if ref and height > MERGE_HEIGHT_FACTOR * ref:
            continue  # two fused bodies, not one split
        inst[inst == b] = a
        found.append(
            Finding(
                "split",
                f"two instances shared one vertebral body (z = {s.z_mm[a]:.0f} mm, "
                f"{height:.0f} mm tall): a split vertebra, joined",
                False,
            )
        )
    return found


def split_merged(
    inst: np.ndarray, sem: np.ndarray, affine: np.ndarray, s: _Stats | None = None
) -> tuple[list[Finding], set[int]]:
    """Merged instances (module docstring): split in ``inst`` (in place, new ids above the largest) where the disc
    or endplate between the two bodies is in the semantic mask, else kept; returns (findings, ids kept though they
    hold two vertebrae)."""
    import cc3d
    from scipy import ndimage

    a = np.asarray(affine, float)
    voxel = float(abs(np.linalg.det(a[:3, :3])))
    zooms = voxel_sizes(a)
    s = s or _stats(inst, sem, a)
    order = _order(s)
    found, double = [], set()
    next_id = int(inst.max()) + 1
    for v in order:
        box = s.box[v]
        m = inst[box] == v
        cc = cc3d.connected_components(m & (sem[box] == CORPUS), connectivity=26)
        n = np.bincount(cc.ravel())[1:] * voxel
        near = _neighbour_median(s.body_mm3, order, v, set(), larger=False)
        big = [k + 1 for k in np.flatnonzero(n >= max(MERGE_MIN_BODY_MM3, MERGE_MIN_BODY_FRACTION * near))]
        ref = _neighbour_median(s.height_mm, order, v, set(), larger=True)
        tall = bool(ref) and s.height_mm[v] > MERGE_HEIGHT_FACTOR * ref
        if len(big) >= 2 and _plane_between(cc, big, sem[box]):
            seeds = np.zeros(m.shape, np.int64)
            for k, lab in enumerate(sorted(big, key=lambda lab: -_centre_z(cc == lab, a))):
                seeds[cc == lab] = k + 1
            idx = ndimage.distance_transform_edt(
                seeds == 0, sampling=zooms, return_distances=False, return_indices=True
            )
            part = seeds[tuple(idx)]
            sub = inst[box]
            for k in range(2, len(big) + 1):
                sub[m & (part == k)] = next_id
                next_id += 1
            found.append(
                Finding(
                    "merged",
                    f"an instance held {len(big)} vertebral bodies (z = {s.z_mm[v]:.0f} mm) "
                    "with a disc between them: a merged instance, split at the disc",
                    False,
                )
            )
        elif len(big) >= 2 or tall:
            double.add(v)
            why = (
                f"{len(big)} body components"
                if len(big) >= 2
                else (
                    f"a body {s.height_mm[v]:.0f} mm tall, more than {MERGE_HEIGHT_FACTOR:g} × its neighbours' "
                    f"{ref:.0f} mm"
                )
            )
            found.append(
                Finding(
                    "merged",
                    f"an instance at z = {s.z_mm[v]:.0f} mm holds two vertebrae ({why}) and no "
                    "disc shows where to split it: kept, counted as two",
                    True,
                )
            )
    return found, double


def _centre_z(m: np.ndarray, affine: np.ndarray) -> float:
    return float((affine[:3, :3] @ np.argwhere(m).mean(axis=0) + affine[:3, 3])[2])


def _plane_between(cc: np.ndarray, labels: Sequence[int], sem: np.ndarray) -> bool:
    """Whether the segment between the centroids of each two consecutive body components (voxel indices) crosses
    a disc (100) or endplate (62) voxel of the semantic mask."""
    cents = sorted((np.argwhere(cc == lab).mean(axis=0) for lab in labels), key=lambda c: tuple(c))
    for p, q in zip(cents, cents[1:]):
        steps = int(np.ceil(np.abs(q - p).max())) + 1
        pts = np.rint(p[None, :] + np.linspace(0, 1, steps)[:, None] * (q - p)[None, :]).astype(int)
        if not np.isin(sem[tuple(pts.T)], [DISC, ENDPLATE]).any():
            return False
    return True


def check_bodies(
    inst: np.ndarray, sem: np.ndarray, affine: np.ndarray, exempt: set[int], s: _Stats | None = None
) -> tuple[list[Finding], set[int]]:
    """Partial vertebrae at the field-of-view edges and small bodies elsewhere (module docstring); ``exempt``:
    ids not checked for a small body (C1). Returns (findings, partial ids)."""
    s = s or _stats(inst, sem, affine)
    order = _order(s)
    found, partial = [], set()
    for v in order:
        ref = _neighbour_median(s.body_mm3, order, v, set(), larger=False)
        small = s.body_mm3[v] < SMALL_BODY_FRACTION * ref if ref else False
        if s.edge[v] and (small or s.body_mm3[v] == 0):
            partial.add(v)
            what = "arch only" if s.body_mm3[v] == 0 else f"body {s.body_mm3[v]:.0f} mm³ of its neighbours' {ref:.0f}"
            found.append(
                Finding(
                    "partial",
                    f"the vertebra at the {s.edge[v]} of the field of view is cut by it ({what}): "
                    "kept, placed next to its neighbour",
                    False,
                )
            )
        elif small and s.body_mm3[v] > 0 and v not in exempt:
            found.append(
                Finding(
                    "small body",
                    f"the vertebra at z = {s.z_mm[v]:.0f} mm has a body of "
                    f"{s.body_mm3[v]:.0f} mm³, less than {SMALL_BODY_FRACTION:g} × its "
                    f"neighbours' {ref:.0f} mm³: part of a split vertebra?",
                    True,
                )
            )
    return found, partial


def check_sacrum(inst: np.ndarray, sem: np.ndarray, affine: np.ndarray, s: _Stats | None = None) -> list[Finding]:
    """An implausible sacrum (module docstring): one doubtful finding, or none (also when there is no sacrum)."""
    sac = sem == SACRUM
    if not sac.any() or not inst.any():
        return []
    a = np.asarray(affine, float)
    voxel = float(abs(np.linalg.det(a[:3, :3])))
    s = s or _stats(inst, sem, a)
    withbody = [v for v in _order(s) if s.body_mm3[v] > 0]
    if not withbody:
        return []
    low = withbody[-1]
    vol = float(sac.sum()) * voxel
    if vol < SACRUM_MIN_BODY_RATIO * s.body_mm3[low]:
        return [
            Finding(
                "sacrum",
                f"the sacrum ({vol:.0f} mm³) is smaller than {SACRUM_MIN_BODY_RATIO:g} × the lowest "
                f"vertebral body ({s.body_mm3[low]:.0f} mm³): a half-visible vertebra called "
                "sacrum? Doubtful as an anchor",
                True,
            )
        ]
    ax = si_axis(a)
    rows = np.flatnonzero(sac.any(axis=tuple(i for i in range(3) if i != ax)))
    at_bottom = rows[-1] >= sac.shape[ax] - EDGE_VOXELS if a[2, ax] < 0 else rows[0] < EDGE_VOXELS
    extent = (rows[-1] - rows[0] + 1) * float(voxel_sizes(a)[ax])
    if at_bottom and extent < SACRUM_MIN_HEIGHT_RATIO * s.height_mm[low]:
        return [
            Finding(
                "sacrum",
                f"the sacrum is cut by the bottom of the field of view after {extent:.0f} mm, less "
                f"than {SACRUM_MIN_HEIGHT_RATIO:g} × the lowest body's height "
                f"({s.height_mm[low]:.0f} mm): a half-visible vertebra called sacrum cannot be "
                "told from it; doubtful as an anchor",
                True,
            )
        ]
    down = a[2, ax] < 0  # the index grows inferiorly along the S-I axis
    body_rows = s.body_box[low][ax]
    mid = int(np.median(rows))
    below_body = body_rows.stop if down else body_rows.start - 1  # first row past the body's inferior end
    slab = [slice(None)] * 3
    slab[ax] = slice(below_body, mid) if down else slice(mid + 1, below_body + 1)
    if np.isin(sem[tuple(slab)], [DISC, ENDPLATE]).any():
        return []
    return [
        Finding(
            "sacrum",
            "no disc or endplate between the lowest vertebral body and the sacrum (no S1 endplate): "
            "doubtful as an anchor",
            True,
        )
    ]


def review_instances(inst: np.ndarray, sem: np.ndarray, affine: np.ndarray, exempt: Sequence[int] = ()) -> Review:
    """Every detector, in order: strays removed, split instances joined, merged ones split (or kept and counted as
    two), partial vertebrae and small bodies, the sacrum. ``inst``: vertebra instances (any ids, not changed);
    ``sem``: the semantic mask; ``exempt``: ids spared the small-body check."""
    out = np.array(inst, copy=True)
    s = _stats(out, sem, affine)
    removed, findings = remove_strays(out, sem, affine, s)
    if findings:
        s = _stats(out, sem, affine)
    joined = join_split(out, sem, affine, set(exempt), s)
    if joined:
        s = _stats(out, sem, affine)
    merged, double = split_merged(out, sem, affine, s)
    if any(not f.doubtful for f in merged):
        s = _stats(out, sem, affine)
    bodies, partial = check_bodies(out, sem, affine, set(exempt) | double, s)
    findings += joined + merged + bodies + check_sacrum(out, sem, affine, s)
    return Review(out, removed, findings, partial, double)


def above_dens(inst: np.ndarray, affine: np.ndarray, dens: np.ndarray | None) -> set[int]:
    """The instance directly above the one holding most of the dens (bool mask; C1, whose body may be small or
    absent), by the world z of the instances' centroids; empty without a dens."""
    if dens is None or not dens.any():
        return set()
    hits = np.bincount(inst[dens].astype(np.int64))
    hits[0] = 0
    if not hits.any():
        return set()
    owner = int(np.argmax(hits))
    a = np.asarray(affine, float)
    ids = [int(v) for v in np.unique(inst) if v]
    z = {v: float((a[:3, :3] @ np.argwhere(inst == v).mean(axis=0) + a[:3, 3])[2]) for v in ids}
    above = [v for v in ids if z[v] > z[owner]]
    return {min(above, key=lambda v: z[v])} if above else set()
