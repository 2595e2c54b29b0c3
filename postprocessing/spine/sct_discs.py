"""SCT disc labels: read them, and write them from a SPINEPS-format instance mask.

An SCT disc-label image (``sct_label_vertebrae`` / ``sct_label_utils -create-viewer`` output,
``*_label-discs_dlabel.nii.gz``) holds one voxel per intervertebral disc, valued by SCT's disc numbering:
value N marks the disc at the top of SCT level N, i.e. the disc below vertebra N−1
(2 = C1-C2, 3 = C2-C3, 8 = C7-T1, 20 = T12-L1, 25 = L5-S1).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnunet_spine.core.io import Image, InputError, check_3d, read_image


@dataclass(frozen=True)
class DiscLabel:
    """One SCT disc label: its SCT value and its position, world RAS+ mm (shape ``(3,)``)."""

    value: int
    position_mm: np.ndarray


def read_disc_labels(path: str | os.PathLike) -> list[DiscLabel]:
    """Read an SCT disc-label NIfTI: each nonzero voxel is a label; several voxels with one value give one
    label at their centroid (world RAS+ mm). Sorted top to bottom (world +z, superior, first).

    Raises :class:`InputError` naming the file for a 4-D image, non-integer or negative values.
    """
    img = check_3d(read_image(path))
    data = img.data
    if data.dtype.kind not in "biuf":
        raise InputError(f"{img.name}: unsupported voxel type {data.dtype} for disc labels")
    if data.dtype.kind == "f":
        if not np.isfinite(data).all():
            raise InputError(f"{img.name}: disc labels contain NaN or infinite values")
        if not np.all(np.mod(data, 1) == 0):
            bad = np.unique(data[np.mod(data, 1) != 0])[:5].tolist()
            raise InputError(f"{img.name}: disc labels must be integers, found values such as {bad}")
    if data.size and data.min() < 0:
        raise InputError(f"{img.name}: disc labels must be non-negative, found {data.min()}")
    labels = []
    for value in np.unique(data[data != 0]):
        ijk = np.argwhere(data == value).mean(axis=0)
        xyz = img.affine[:3, :3] @ ijk + img.affine[:3, 3]
        labels.append(DiscLabel(value=int(value), position_mm=xyz))
    labels.sort(key=lambda d: (-float(d.position_mm[2]), d.value))
    return labels


# --------------------------------------------------------------------------------------------- writing
#: Minimum voxels of a disc for its own axes (fewer: the world A-P axis is used).
MIN_DISC_VOXELS_FOR_AXES = 4


@dataclass
class DiscLabelReport:
    """What :func:`disc_labels_from_instances` / :func:`write_disc_labels` did: ``written`` SPINEPS disc id →
    SCT value, ``skipped`` disc ids that have no SCT value (discs below T13 or L6), and the output path."""

    written: dict[int, int]
    skipped: list[int]
    path: Path | None = None

    def lines(self) -> list[str]:
        from nnunet_spine.core.labels import instance_name

        out = [f"{len(self.written)} disc label(s) ({', '.join(map(str, self.written.values()))})"]
        if self.path is not None:
            out[0] += f" -> {self.path}"
        if self.skipped:
            names = ", ".join(f"{v} ({instance_name(v)})" for v in self.skipped)
            out.append(f"  skipped, no SCT disc value: {names}")
        return out


def posterior_tip(points_mm: np.ndarray) -> int:
    """Index of the posterior tip among a disc's voxel centres (N×3, world RAS+ mm).

    The disc's antero-posterior axis is the world anterior direction (+y) made perpendicular to the disc's
    normal (the direction of least spread of its voxels, i.e. its craniocaudal thickness), through the
    disc's centroid. Its posterior end is the point of that axis level with the disc's most posterior voxel
    along it; the tip is the disc voxel nearest to that end (world mm; ties: the first in voxel order).
    So the tip sits at the disc's mid-height and, for a disc symmetric about the mid-sagittal plane, on it.

    SPINEPS' ``generate_disc_labels.py`` (``extract_discs_label``, ``closest_point_seg_to_line``) instead takes
    the voxel nearest, in voxel units, to one line drawn behind the whole column through the disc centroids
    (first voxel in its RSP index order among equal distances): a voxel at the disc's most posterior index along
    the image's A-P axis, at a height and side set by that line's slope and sampling. The two agree on values
    but sit up to ~8 mm apart along the disc's posterior border (``benchmarks/bench_disc_labels.py``). Under
    SCT's ``-discfile`` rule the mid-height tip lands on the cord slice of the disc's centroid on 98.5-99.7 % of
    slices (``tests/test_sct_discs.py``).
    """
    p = np.asarray(points_mm, float)
    centre = p.mean(0)
    anterior = np.array([0.0, 1.0, 0.0])
    if p.shape[0] >= MIN_DISC_VOXELS_FOR_AXES:
        _, vecs = np.linalg.eigh(np.cov((p - centre).T))
        normal = vecs[:, 0]  # smallest eigenvalue: the disc's thickness
        axis = anterior - (anterior @ normal) * normal
        norm = np.linalg.norm(axis)
        axis = axis / norm if norm > 1e-6 else anterior
    else:
        axis = anterior
    end = centre + ((p - centre) @ axis).min() * axis
    return int(np.argmin(((p - end) ** 2).sum(1)))


def disc_labels_from_instances(instances: Image) -> tuple[np.ndarray, DiscLabelReport]:
    """SCT disc labels of an anatomically labelled SPINEPS-format instance mask (vertebrae by VerSe id, disc
    ``100 + X`` below vertebra X), on the same grid: one voxel per disc at its :func:`posterior_tip`, valued
    ``X + 1`` (:data:`nnunet_spine.core.labels.SCT_DISC_VALUES`, as SPINEPS' ``generate_disc_labels.py``
    maps IVD ids). Discs with no SCT value (below T13 or L6) are skipped and reported.
    Returns the label array (uint8) and the report."""
    from nnunet_spine.core.labels import DISC_OFFSET, ENDPLATE_OFFSET, sct_disc_value

    data = np.rint(np.asarray(instances.data)).astype(np.int64)
    out = np.zeros(data.shape, np.uint8)
    written, skipped = {}, []
    for v in np.unique(data):
        v = int(v)
        if not DISC_OFFSET < v < ENDPLATE_OFFSET:
            continue
        value = sct_disc_value(v)
        if value is None:
            skipped.append(v)
            continue
        ijk = np.argwhere(data == v)
        xyz = ijk @ instances.affine[:3, :3].T + instances.affine[:3, 3]
        out[tuple(ijk[posterior_tip(xyz)])] = value
        written[v] = value
    return out, DiscLabelReport(written=written, skipped=skipped)


def disc_labels_path(instance_path: str | os.PathLike) -> Path:
    """Where the disc labels of an instance mask go: ``<stem>_label-discs_dlabel.nii.gz`` beside it, the BIDS
    name SCT's datasets use (SPINEPS' ``generate_disc_labels.py`` help: ``sub-amuALT_T2w_label-discs_dlabel``).
    The stem is the image's: a SPINEPS derivative name
    (:func:`~nnunet_spine.postprocessing.spine.fusion_files.output_names`) loses its ``seg-…`` and ``label-…``
    entities and its ``msk`` suffix; other names keep their stem.
    ``sub-01_T2w_seg-vert_msk.nii.gz`` → ``sub-01_T2w_label-discs_dlabel.nii.gz``; ``case.nii.gz`` →
    ``case_label-discs_dlabel.nii.gz``."""
    from nnunet_spine.core.io import split_suffix

    p = Path(instance_path)
    tokens = split_suffix(p)[0].split("_")
    if len(tokens) > 2 and tokens[-1] == "msk" and any(t.startswith("seg-") for t in tokens):
        tokens = [t for t in tokens[:-1] if not t.startswith(("seg-", "label-"))]
    return p.with_name("_".join(tokens) + "_label-discs_dlabel.nii.gz")


def write_disc_labels(
    instance_path: str | os.PathLike, out_path: str | os.PathLike | None = None, overwrite: bool = False
) -> DiscLabelReport:
    """Read an anatomically labelled instance mask and write its SCT disc labels (:func:`disc_labels_from_instances`)
    to ``out_path`` (default :func:`disc_labels_path`), atomically, with the mask's grid and header.
    Raises :class:`InputError` for a mask that is not a SPINEPS instance mask, or an existing output without
    ``overwrite``."""
    from nnunet_spine.core.io import check_output, load_image, save_image
    from nnunet_spine.core.labels import instance_value_problem

    out = Path(out_path) if out_path is not None else disc_labels_path(instance_path)
    check_output(out, overwrite)
    img = load_image(instance_path, "labels")
    problem = instance_value_problem(int(v) for v in np.unique(img.data) if v)
    if problem:
        raise InputError(f"{img.name}: {problem}")
    data, report = disc_labels_from_instances(img)
    save_image(data, img.affine, out, overwrite=overwrite, dtype=np.uint8, like=img)
    report.path = out
    return report
