"""Anchors for vertebra ids read from the masks: landmark discs (a landmark model's label map) and SCT disc labels
(``--discfile``). Both place a disc the same way (:func:`vertebra_just_above`) and name the vertebra above it;
:func:`nnunet_spine.postprocessing.spine.labelling.label_column` turns the anchors into ids. Positions are world
RAS mm, body centroids ordered top to bottom.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from nnunet_spine.core.io import InputError
from nnunet_spine.postprocessing.spine.labelling import typical_spacing

#: A predicted landmark disc smaller than this (mm³, its largest 26-connected component) is ignored.
LANDMARK_MIN_MM3 = 20.0


def vertebra_just_above(centroids_mm: np.ndarray, z_mm: float) -> int | None:
    """Index of the vertebra whose body centroid (world mm, top to bottom) is the nearest one above world S-I
    position ``z_mm``, when ``z_mm`` lies less than one typical body-centroid spacing below it (a disc under that
    vertebra); None otherwise."""
    c = np.asarray(centroids_mm, float).reshape(-1, 3)
    spacing = typical_spacing(c)  # FALLBACK_SPACING_MM for fewer than two vertebrae
    above = [i for i in range(len(c)) if c[i, 2] > z_mm]
    if not above or c[above[-1], 2] - z_mm > spacing:
        return None
    return above[-1]


def find_landmarks(
    landmarks: np.ndarray, affine: np.ndarray, centroids_mm: np.ndarray, min_volume_mm3: float = LANDMARK_MIN_MM3
) -> tuple[list[tuple[int, int, str]], list[str]]:
    """Landmark anchors from a landmark label map (classes :data:`~nnunet_spine.core.labels.LANDMARK_NAMES`)
    on the grid of ``affine``, for vertebrae whose body centroids (world mm) are given top to bottom.

    Per class, its largest 26-connected component counts when no other component is as large (which one would be
    the disc is then not in the map), it holds at least ``min_volume_mm3`` and it lies in a plausible place: below
    a vertebral body centre, less than one typical body spacing below it (the disc under that vertebra). Returns
    ``[(index of the vertebra above, its VerSe id, name)]`` and the landmarks left out, with why."""
    import cc3d

    from nnunet_spine.core.labels import LANDMARK_NAMES, LANDMARK_UPPER

    lab = np.rint(np.asarray(landmarks)).astype(np.int64)
    bad = sorted(set(np.unique(lab).tolist()) - {0, *LANDMARK_NAMES})
    if bad:
        raise InputError(f"landmark mask: values {bad[:5]} are not landmark classes {sorted(LANDMARK_NAMES)}")
    c = np.asarray(centroids_mm, float).reshape(-1, 3)
    voxel_mm3 = float(abs(np.linalg.det(np.asarray(affine, float)[:3, :3])))
    found, skipped = [], []
    for k, name in LANDMARK_NAMES.items():
        if not (lab == k).any():
            continue
        cc = cc3d.connected_components((lab == k).astype(np.uint8), connectivity=26)
        st = cc3d.statistics(cc)
        counts = np.asarray(st["voxel_counts"])
        counts[0] = 0
        big = int(np.argmax(counts))
        if (counts == counts[big]).sum() > 1:  # which one is the disc is not in the map: said, not guessed
            skipped.append(f"landmark {name}: {int((counts == counts[big]).sum())} components of equal size, ignored")
            continue
        if counts[big] * voxel_mm3 < min_volume_mm3:
            skipped.append(f"landmark {name}: {counts[big] * voxel_mm3:.0f} mm³ < {min_volume_mm3:g} mm³, ignored")
            continue
        z = float((np.asarray(st["centroids"][big], float) @ np.asarray(affine, float)[:3, :3].T + affine[:3, 3])[2])
        above = vertebra_just_above(c, z)
        if above is None:
            skipped.append(f"landmark {name}: not just below a vertebral body (z = {z:.0f} mm), ignored")
            continue
        found.append((above, LANDMARK_UPPER[k], name))
    return found, skipped


#: SCT disc values that name a vertebra above them: 2 (C1-C2) … 25 (L5-S1); value N lies below SCT level N − 1.
SCT_DISC_ANCHOR_VALUES = range(2, 26)


def find_disc_anchors(discs: Sequence, centroids_mm: np.ndarray) -> tuple[list[tuple[int, int, str]], list[str]]:
    """Anchors from SCT disc labels (objects with ``value`` and ``position_mm``, world RAS mm:
    :func:`~nnunet_spine.postprocessing.spine.sct_discs.read_disc_labels`) for vertebrae whose body centroids (world mm)
    are given top to bottom. A disc of value N (:data:`SCT_DISC_ANCHOR_VALUES`) lying below a vertebral body centre and
    less than one typical body spacing below it (:func:`vertebra_just_above`, as :func:`find_landmarks` places a
    landmark disc) names that vertebra SCT level N − 1 (:func:`~nnunet_spine.core.labels.sct_level_to_verse`). Returns
    ``[(index of the vertebra above, its VerSe id, "SCT disc N (upper-lower)")]`` and the discs left out, with why."""
    from nnunet_spine.core.labels import sct_level_name, sct_level_to_verse

    c = np.asarray(centroids_mm, float).reshape(-1, 3)
    found, skipped = [], []
    for d in discs:
        value = int(d.value)
        z = float(np.asarray(d.position_mm, float)[2])
        if value not in SCT_DISC_ANCHOR_VALUES:
            skipped.append(f"SCT disc {value}: no vertebra of C1 … L5 above it, ignored as an anchor")
            continue
        name = f"SCT disc {value} ({sct_level_name(value - 1)}-{sct_level_name(value)})"
        above = vertebra_just_above(c, z)
        if above is None:
            skipped.append(f"{name}: not just below a vertebral body (z = {z:.0f} mm), ignored")
            continue
        found.append((above, sct_level_to_verse(value - 1), name))
    return found, skipped
