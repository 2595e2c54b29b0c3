"""Discs and endplates of a fused column (step 7 of :mod:`nnunet_spine.postprocessing.spine.fusion`), and SPINEPS 2.x's
endplate split.

Every disc (100) and endplate (62) component gets ``100 + X`` / ``200 + X`` with X the vertebra whose body
centroid is the nearest one above the component's centroid (world z), as SPINEPS' ``phase_post.
add_ivd_ep_vert_label`` does (so the upper endplate of a vertebra carries the id of the vertebra above it).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from nnunet_spine.core.labels import DISC, DISC_OFFSET, ENDPLATE, ENDPLATE_OFFSET, SACRUM, is_vertebra


def assign_discs_endplates(
    inst: np.ndarray,
    sem: np.ndarray,
    dropped: np.ndarray,
    affine: np.ndarray,
    centres: Mapping[int, np.ndarray],
    named: bool,
) -> int:
    """Step 7 in place: disc components → 100 + X, endplate components → 200 + X (X: nearest body centre
    above, world z). A disc above the top body centre gets the id above the top vertebra when the ids are
    VerSe ids (``named``), else none: disc voxels without an id are marked in ``dropped``; returns their count."""
    import cc3d

    zs = sorted(((float(c[2]), v) for v, c in centres.items()), reverse=True)  # top first
    unassigned = 0
    for label, offset in ((DISC, DISC_OFFSET), (ENDPLATE, ENDPLATE_OFFSET)):
        mask = sem == label
        if not mask.any():
            continue
        cc = cc3d.connected_components(mask, connectivity=26)
        st = cc3d.statistics(cc)
        for c in range(1, len(st["voxel_counts"])):
            if st["voxel_counts"][c] == 0:
                continue
            z = float((np.asarray(st["centroids"][c]) @ affine[:3, :3].T + affine[:3, 3])[2])
            above = [v for zc, v in zs if zc > z]
            box = st["bounding_boxes"][c]
            m = cc[box] == c
            if above:
                x = above[-1]
            elif not zs:
                x = None
            elif label == ENDPLATE:
                x = zs[0][1]
            else:  # disc above the top vertebra: the VerSe id above it, when there is one
                x = zs[0][1] - 1 if named else None
                x = x if x is not None and is_vertebra(x) else None
            if x is None:
                dropped[box][m] = True
                unassigned += int(m.sum())
            else:
                inst[box][m] = offset + x
    return unassigned


def split_endplates(sem: np.ndarray, affine: np.ndarray, centres: Mapping[int, np.ndarray]) -> int:
    """SPINEPS 2.x's endplate split, in place: every endplate (62) component becomes superior (52) when its
    centroid lies above the body centroid of the nearest vertebra (world mm), else inferior (53). Returns the
    number of components split."""
    import cc3d

    from nnunet_spine.core.labels import ENDPLATE_INFERIOR, ENDPLATE_SUPERIOR

    mask = sem == ENDPLATE
    if not mask.any() or not centres:
        return 0
    ids = [v for v in centres if v != SACRUM]
    body = np.array([centres[v] for v in ids]).reshape(-1, 3)
    cc = cc3d.connected_components(mask, connectivity=26)
    st = cc3d.statistics(cc)
    n = 0
    for c in range(1, len(st["voxel_counts"])):
        if st["voxel_counts"][c] == 0 or not len(body):
            continue
        world = np.asarray(st["centroids"][c], float) @ affine[:3, :3].T + affine[:3, 3]
        nearest = body[int(np.argmin(np.linalg.norm(body - world, axis=1)))]
        box = st["bounding_boxes"][c]
        m = cc[box] == c
        sem[box][m] = ENDPLATE_SUPERIOR if world[2] > nearest[2] else ENDPLATE_INFERIOR
        n += 1
    return n


# --------------------------------------------------------------------------------------------- one case
