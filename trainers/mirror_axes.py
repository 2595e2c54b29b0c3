"""Where the subject's left-right axis lies in nnU-Net's arrays: shared by the trainers whose mirroring must know it
(:mod:`nnunet_spine.trainers.spine_semantic` swaps left/right labels, :mod:`nnunet_spine.trainers.vertebra_cutout`
left/right input channels).

nnU-Net does not reorient images: its readers return the file's voxel axes reversed, and the plans'
``transpose_forward`` permutes them. :func:`lr_axis_of_properties` reads the direction cosines nnU-Net stored for a
preprocessed case (``sitk_stuff`` or ``nibabel_stuff``), :func:`lr_axis_after_transpose` applies the plans'
transpose, :func:`patch_lr_axis` maps the result into 2-D or 3-D patches, and :func:`dataset_lr_axis` checks that
every training case of a trainer agrees.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class

#: Smallest |cosine| between a voxel axis and the world left-right axis accepted as "the left-right axis" (40°).
MIN_LR_COSINE = float(np.cos(np.radians(40.0)))


def lr_axis_of_properties(properties: Mapping) -> tuple[int, int]:
    """Subject's left-right axis of a case as nnU-Net read it: ``(array axis before transpose_forward, sign)``.

    ``sign`` is +1 when increasing index runs towards the subject's **left**, -1 towards the right. nnU-Net's
    readers return the file's voxel axes reversed (SimpleITK's ``z, y, x``; ``NibabelIO`` transposes to match), so
    array axis ``a`` is file axis ``2 - a``; the file axis is the one whose direction cosine has the largest
    left-right component (``sitk_stuff['direction']``: LPS, +x = left; ``nibabel_stuff`` affine: RAS, +x = right;
    the reoriented affine when ``NibabelIOWithReorient`` was used). ``ValueError`` when the geometry is missing,
    not 3-D, or no axis lies within 40° of left-right.
    """
    if "sitk_stuff" in properties:
        direction = np.asarray(properties["sitk_stuff"]["direction"], float)
        if direction.size != 9:
            raise ValueError(f"expected a 3-D direction matrix, got {direction.size} values")
        towards_left = direction.reshape(3, 3)[0]  # LPS x component of each file axis
    elif "nibabel_stuff" in properties:
        stuff = properties["nibabel_stuff"]
        affine = np.asarray(stuff.get("reoriented_affine", stuff["original_affine"]), float)
        cols = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
        towards_left = -cols[0]  # RAS x points to the right
    else:
        raise ValueError("no image geometry (sitk_stuff / nibabel_stuff) in the case properties")
    file_axis = int(np.argmax(np.abs(towards_left)))
    if abs(towards_left[file_axis]) < MIN_LR_COSINE:
        raise ValueError(f"no voxel axis within 40 degrees of left-right (x components {np.round(towards_left, 3)})")
    return 2 - file_axis, 1 if towards_left[file_axis] > 0 else -1


def lr_axis_after_transpose(array_axis: int, transpose_forward: Sequence[int]) -> int:
    """Axis of the preprocessed array: nnU-Net's preprocessing puts old axis ``transpose_forward[j]`` at ``j``."""
    return list(transpose_forward).index(int(array_axis))


def patch_lr_axis(lr_axis_3d: int, patch_dims: int) -> int | None:
    """The left-right axis in the network's patch: the 3-D axis for 3-D patches; for 2-D patches (slices along
    preprocessed axis 0) the in-plane axis, or ``None`` when the slices are sagittal (no 2-D flip crosses it)."""
    if patch_dims == 3:
        return lr_axis_3d
    return None if lr_axis_3d == 0 else lr_axis_3d - 1


def dataset_lr_axis(trainer, advice: str) -> int:
    """Left-right axis of a trainer's preprocessed arrays, the same for every training case
    (:func:`lr_axis_of_properties`, the plans' transpose). ``RuntimeError`` naming the cases when one has no
    usable geometry, or when they disagree on the axis or its direction (``advice`` ends that message: what the
    user can do about it)."""
    folder = trainer.preprocessed_dataset_folder
    if trainer.dataset_class is None:
        trainer.dataset_class = infer_dataset_class(folder)
    identifiers = trainer.dataset_class.get_identifiers(folder)
    dataset = trainer.dataset_class(folder, identifiers)
    found: dict = {}
    for identifier in identifiers:
        properties = dataset.load_case(identifier)[3]
        try:
            axis, sign = lr_axis_of_properties(properties)
        except ValueError as exc:
            raise RuntimeError(f"case {identifier}: {exc}") from None
        axis = lr_axis_after_transpose(axis, trainer.plans_manager.transpose_forward)
        found.setdefault((axis, sign), []).append(identifier)
    if len(found) != 1:
        groups = "; ".join(
            f"axis {a}, index increasing towards the subject's {'left' if s > 0 else 'right'}: "
            f"{len(ids)} case(s) e.g. {ids[0]}"
            for (a, s), ids in sorted(found.items())
        )
        raise RuntimeError(
            f"the training images disagree on the left-right orientation ({groups}). A network can "
            f"tell left from right only by array position: {advice}"
        )
    return next(iter(found))[0]
