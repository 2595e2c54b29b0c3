"""Cleaning a fused vertebra instance mask with the semantic mask (steps 4–5 of
:mod:`nnunet_spine.postprocessing.spine.fusion`, whose docstring states the rules and where they depart from SPINEPS).

Instance voxels outside the vertebra subregions are removed and small fragments released; bodies without an
instance become instances; instances grow :data:`GROW_VOXELS` voxels into the uncovered vertebra voxels (as
SPINEPS' ``assign_missing_cc``); what is left joins its neighbouring instance (the nearest one, in mm, between
several); articular processes go to the vertebra holding most of them (:func:`articular_to_majority`). All arrays
are on the semantic mask's grid (voxel indices); volumes in mm³, distances in mm.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from nnunet_spine.core.labels import (
    INF_ARTICULAR_LEFT,
    INF_ARTICULAR_RIGHT,
    SUP_ARTICULAR_LEFT,
    SUP_ARTICULAR_RIGHT,
    VERTEBRA_SUBREGIONS,
)

#: Instance fragments below this volume (mm³) are released and re-assigned by their neighbourhood.
MIN_FRAGMENT_MM3 = 250.0
#: Instances grow this many voxels into semantic vertebra voxels no instance covers (SPINEPS' ``assign_missing_cc``:
#: ``np_dilate_msk(n_pixel=2, connectivity=1, mask=...)``).
GROW_VOXELS = 2
#: An articular process (26-connected component of one of the labels 45–48) goes wholly to the vertebra holding most
#: of it when that one holds more than this many times the voxels of the next (SPINEPS' ``ARTICULAR_DOMINANCE_RATIO``
#: 0.5 in ``phase_post.assign_vertebra_inconsistency``).
ARTICULAR_DOMINANCE = 2.0
#: The articular process labels (superior and inferior, left and right).
ARTICULAR_PROCESSES = (SUP_ARTICULAR_LEFT, SUP_ARTICULAR_RIGHT, INF_ARTICULAR_LEFT, INF_ARTICULAR_RIGHT)


def _neighbours(
    inst: np.ndarray, comp: np.ndarray, box: tuple[slice, ...], label: int
) -> tuple[tuple[slice, ...], np.ndarray, np.ndarray]:
    """Component ``label`` of ``comp`` in a box grown by :data:`_MARGIN` voxels: (box, its mask there, the
    non-zero instance ids of its 26-neighbourhood)."""
    from scipy import ndimage

    grown = tuple(slice(max(s.start - _MARGIN, 0), min(s.stop + _MARGIN, n)) for s, n in zip(box, inst.shape))
    m = comp[grown] == label
    shell = ndimage.binary_dilation(m, structure=np.ones((3, 3, 3), bool)) & ~m
    vals = inst[grown][shell]
    return grown, m, vals[vals > 0]


#: Postprocessing rules of :func:`clean_instances`: ours, or SPINEPS' (to measure the difference).
FUSION_RULES = ("nnspine", "spineps")
#: Voxels around an orphan fragment searched for its nearest instances.
_MARGIN = 3


def _nearest_instance(inst: np.ndarray, box: tuple[slice, ...], m: np.ndarray, zooms: np.ndarray) -> np.ndarray:
    """For the voxels ``m`` of ``box``, the instance id of the nearest instance voxel in the box (mm)."""
    from scipy import ndimage

    sub = inst[box]
    idx = ndimage.distance_transform_edt(sub == 0, sampling=zooms, return_distances=False, return_indices=True)
    return sub[tuple(i[m] for i in idx)]


def grow_instances(inst: np.ndarray, free: np.ndarray, steps: int = GROW_VOXELS) -> int:
    """Grow the instances of ``inst`` (in place) into the ``free`` voxels (bool, updated in place): ``steps`` rounds in
    each of which every free voxel with an instance among its 6 face neighbours (as the round began) takes the lowest
    such id. Returns the voxels taken.

    This is SPINEPS' first step for voxels no instance covers (``assign_missing_cc``,
    ``proc_assign_missing_dilate_first``: ``np_dilate_msk(target, n_pixel=2, connectivity=1, mask=semantic
    vertebra)``, which dilates label after label in increasing order into zero voxels, so that where two meet the
    lower id wins), computed on the free voxels only."""
    tight = bounding_box(free) if steps > 0 else None
    if tight is None:
        return 0
    box = tuple(slice(max(t.start - 1, 0), min(t.stop + 1, n)) for t, n in zip(tight, inst.shape))
    pad = np.pad(inst[box], 1)
    idx = np.flatnonzero(np.pad(free[box], 1))
    n0, n1, n2 = pad.shape
    offsets = np.array([1, -1, n2, -n2, n1 * n2, -n1 * n2])
    none = np.iinfo(np.int64).max
    taken = []
    flat = pad.reshape(-1)
    for _ in range(steps):
        vals = flat[idx[None, :] + offsets[:, None]].astype(np.int64)
        vals[vals == 0] = none
        best = vals.min(axis=0)
        take = best < none
        if not take.any():
            break
        flat[idx[take]] = best[take]
        taken.append(idx[take])
        idx = idx[~take]
    inst[box] = pad[1:-1, 1:-1, 1:-1]
    got = np.concatenate(taken) if taken else np.zeros(0, np.int64)
    if got.size:
        f = np.zeros(pad.shape, bool)
        f.reshape(-1)[got] = True
        free[box] &= ~f[1:-1, 1:-1, 1:-1]
    return int(got.size)


@dataclass
class CleanStats:
    """Voxel counts of the postprocessing steps."""

    removed_outside: int = 0
    released_fragments: int = 0
    grown: int = 0  #: voxels taken by growing instances (counted in ``reassigned`` too)
    reassigned: int = 0
    new_instances: int = 0
    deleted_semantic: int = 0
    articular: int = 0  #: voxels of articular processes moved to the vertebra holding most of the process
    unassigned_discs: int = 0


def clean_instances(
    fused: np.ndarray,
    sem: np.ndarray,
    bodies: np.ndarray,
    zooms: Sequence[float],
    min_fragment_mm3: float = MIN_FRAGMENT_MM3,
    rules: str = "nnspine",
) -> tuple[np.ndarray, np.ndarray, CleanStats]:
    """Steps 4–5 of the module doc on the PIR grid (voxel sizes ``zooms`` mm): returns (instances, voxels to
    drop from the semantic mask, stats).

    ``rules="spineps"`` is the earlier reading of SPINEPS' rules, kept to show what they change without its growth
    step: small fragments are deleted from both masks (``clean_cc_artifacts(only_delete=True)``) instead of released,
    no instance grows (:func:`grow_instances` is left out), and a fragment between several vertebrae joins the most
    frequent one around it (``assign_missing_cc``'s majority vote) instead of being split voxel by voxel to the
    nearest. ``benchmarks/bench_fuse_rules.py`` compares ours with SPINEPS' own code, not with this variant.

    ``bodies`` are the eroded body components the cutouts were centred on (:class:`cutouts.Bodies`); one
    that is mostly without an instance seeds a new instance (a vertebra no prediction covered). Then instances grow
    :data:`GROW_VOXELS` voxels into the vertebra voxels without an instance (:func:`grow_instances`, as SPINEPS).
    Fragments still without an instance that touch one instance join it; fragments between several join, voxel by
    voxel, the nearest one (mm), so a fragment spanning two vertebrae is split between them. Last (ours only),
    every articular process goes wholly to the vertebra holding most of it (:func:`articular_to_majority`).

    All of it happens inside the bounding box of the vertebra voxels (nothing outside them is an instance)."""
    if rules not in FUSION_RULES:
        raise ValueError(f"rules {rules!r}: choose one of {', '.join(FUSION_RULES)}")
    vert = vertebra_mask(sem)
    inst = np.zeros(sem.shape, np.uint16)
    dropped = np.zeros(sem.shape, bool)
    box = bounding_box(vert)
    if box is None:
        return inst, dropped, CleanStats(removed_outside=int(np.count_nonzero(fused)))
    inst[box], dropped[box], stats = _clean_box(
        fused[box], sem[box], bodies[box], vert[box], zooms, min_fragment_mm3, rules
    )
    stats.removed_outside += int(np.count_nonzero(fused) - np.count_nonzero(fused[box]))
    return inst, dropped, stats


def vertebra_mask(sem: np.ndarray) -> np.ndarray:
    """Bool mask of the vertebra subregion voxels (41–49) of a semantic array (one table look-up for uint8)."""
    if sem.dtype == np.uint8:
        table = np.zeros(256, bool)
        table[list(VERTEBRA_SUBREGIONS)] = True
        return table[sem]
    return np.isin(sem, VERTEBRA_SUBREGIONS)


def bounding_box(mask: np.ndarray) -> tuple[slice, slice, slice] | None:
    """The smallest voxel box (slices) holding every True voxel of a 3-D mask; None when it has none."""
    plane = mask.any(axis=2)
    rows = np.flatnonzero(plane.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(plane.any(axis=0))
    r, c = slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)
    deep = np.flatnonzero(mask[r, c].any(axis=(0, 1)))
    return r, c, slice(int(deep[0]), int(deep[-1]) + 1)


def _clean_box(
    fused: np.ndarray,
    sem: np.ndarray,
    bodies: np.ndarray,
    vert: np.ndarray,
    zooms: Sequence[float],
    min_fragment_mm3: float,
    rules: str,
) -> tuple[np.ndarray, np.ndarray, CleanStats]:
    """:func:`clean_instances` on arrays cut to a box holding every vertebra voxel (``vert``)."""
    import cc3d

    zooms = np.asarray(zooms, float)
    stats = CleanStats()
    dropped = np.zeros(sem.shape, bool)
    inst = np.where(vert, fused, 0).astype(np.uint16)
    stats.removed_outside = int(np.count_nonzero(fused) - np.count_nonzero(inst))
    # release small fragments of every instance
    cc = cc3d.connected_components(inst, connectivity=26)
    counts = np.asarray(cc3d.statistics(cc)["voxel_counts"])
    small = np.flatnonzero(counts * float(np.prod(zooms)) < min_fragment_mm3)
    small = small[small > 0]
    if small.size:
        release = np.isin(cc, small)
        stats.released_fragments = int(np.count_nonzero(release & (inst > 0)))
        inst[release] = 0
        if rules == "spineps":  # deleted, not given back
            dropped |= release & vert
            stats.deleted_semantic += int(np.count_nonzero(release & vert))
    orphan = vert & (inst == 0) & ~dropped
    if not orphan.any():
        return _articular_done(inst, sem, dropped, stats, rules)
    # bodies no prediction covered seed new instances
    if bodies.any():
        sizes = np.bincount(bodies.ravel())
        uncovered = np.bincount(bodies[orphan], minlength=sizes.size)
        next_id = int(inst.max()) + 1
        for b in np.flatnonzero(uncovered > 0.5 * sizes):
            if b == 0:
                continue
            inst[(bodies == b) & orphan] = next_id
            next_id += 1
            stats.new_instances += 1
        orphan &= inst == 0
    if rules == "nnspine":  # SPINEPS' first step: every instance grows two voxels into the uncovered vertebra
        stats.grown = grow_instances(inst, orphan)
        stats.reassigned += stats.grown  # they joined a neighbour too
        if not orphan.any():
            return _articular_done(inst, sem, dropped, stats, rules)
    # orphans: vertebra voxels without an instance
    occ = cc3d.connected_components(orphan, connectivity=26)
    ost = cc3d.statistics(occ)
    for label in range(1, len(ost["voxel_counts"])):
        box = ost["bounding_boxes"][label]
        if box is None or ost["voxel_counts"][label] == 0:
            continue
        grown, m, near = _neighbours(inst, occ, box, label)
        ids = np.unique(near)
        if ids.size == 1:  # one neighbour: it takes the fragment
            inst[grown][m] = ids[0]
            stats.reassigned += int(m.sum())
        elif ids.size > 1 and rules == "spineps":  # the most frequent neighbour takes it all
            inst[grown][m] = int(np.bincount(near.astype(np.int64)).argmax())
            stats.reassigned += int(m.sum())
        elif ids.size > 1:  # between vertebrae: each voxel joins its nearest one
            inst[grown][m] = _nearest_instance(inst, grown, m, zooms)
            stats.reassigned += int(m.sum())
        else:
            dropped[grown][m] = True
            stats.deleted_semantic += int(m.sum())
    return _articular_done(inst, sem, dropped, stats, rules)


def _articular_done(
    inst: np.ndarray, sem: np.ndarray, dropped: np.ndarray, stats: CleanStats, rules: str
) -> tuple[np.ndarray, np.ndarray, CleanStats]:
    """The last step of :func:`clean_instances` (ours only): :func:`articular_to_majority`."""
    if rules == "nnspine":
        stats.articular = articular_to_majority(inst, sem)
    return inst, dropped, stats


def articular_to_majority(inst: np.ndarray, sem: np.ndarray, dominance: float = ARTICULAR_DOMINANCE) -> int:
    """Give every articular process wholly to the vertebra holding most of it (in place); returns the voxels moved.

    An articular process is a 26-connected component of one of the semantic labels 45–48 (any grid, voxel
    order as ``inst``); its instance voxels go to the instance holding the most of them when that one holds more
    than ``dominance`` × the voxels of the next instance (voxels without an instance are left alone). The
    semantic mask draws each process as one piece of one vertebra, so a process shared between two instances
    is a seam left by shifted cutout predictions (as SPINEPS' ``phase_post.assign_vertebra_inconsistency``,
    which does this on the predicted instances before the gaps are filled; we do it after)."""
    import cc3d

    art = np.isin(sem, ARTICULAR_PROCESSES) & (inst > 0)
    box = bounding_box(art)
    if box is None:
        return 0
    labels = np.where(art[box], sem[box], 0).astype(np.uint8)
    cc = cc3d.connected_components(labels, connectivity=26)
    sub = inst[box]
    on = cc > 0
    n_ids = int(sub.max()) + 1
    pairs, counts = np.unique(cc[on].astype(np.int64) * n_ids + sub[on], return_counts=True)
    comp, ids = np.divmod(pairs, n_ids)
    order = np.lexsort((-counts, comp))  # per component, its instances by decreasing voxel count
    comp, ids, counts = comp[order], ids[order], counts[order]
    top = np.flatnonzero(np.r_[True, comp[1:] != comp[:-1]])
    nxt = np.minimum(top + 1, comp.size - 1)
    second = np.where((nxt > top) & (comp[nxt] == comp[top]), counts[nxt], 0)
    win = top[counts[top] > dominance * second]
    lut = np.zeros(int(cc.max()) + 1, np.int64)
    lut[comp[win]] = ids[win]
    target = lut[cc]
    move = (target > 0) & (sub != target)
    sub[move] = target[move]
    return int(np.count_nonzero(move))
