"""Multi-contrast cord phantom subjects written as a BIDS dataset, with exact truth.

Each subject is one :class:`~nnunet_spine.phantoms.cord.CordModel` seen in several acquisitions
(contrasts) that differ in intensity profile (cord / CSF / tissue), voxel size, orientation, field of
view (axial slabs cover only part of the cord) and inter-scan shift (the subject moved a little between
scans). Written per subject::

    sub-XX/anat/sub-XX_<acq>.nii.gz                                        image (float32)
    derivatives/labels/sub-XX/anat/sub-XX_<acq>_label-SC_seg.nii.gz       binary cord mask (fraction ≥ 0.5)
    derivatives/labels/sub-XX/anat/sub-XX_<acq>_label-SC_seg_labeled.nii.gz  cord mask labelled by level
    derivatives/labels/sub-XX/anat/sub-XX_<acq>_label-discs_dlabel.nii.gz    disc point labels (SCT values)
    derivatives/truth/sub-XX/anat/sub-XX_<acq>_label-SC_softseg.nii.gz    exact partial-volume fractions
    derivatives/truth/sub-XX/sub-XX_truth.json                            model, shifts, CSA per level (mm²)

The BIDS names follow the spine-generic datasets (``<image>_label-SC_seg``), which the soft-GT converter
reads.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from nnunet_spine.core.io import write_text
from nnunet_spine.phantoms.bids import anat_path, start_phantom_dataset, write_nifti
from nnunet_spine.phantoms.cord import CordModel, default_cervical_model, disc_points, level_map, render_fraction

_AXIS_VECTORS = {"R": (1, 0, 0), "L": (-1, 0, 0), "A": (0, 1, 0), "P": (0, -1, 0), "S": (0, 0, 1), "I": (0, 0, -1)}


@dataclass(frozen=True)
class Acquisition:
    """One contrast of a phantom subject.

    ``entities`` is the BIDS name part after ``sub-XX_`` (e.g. ``T2w``, ``flip-1_mt-on_MTS``).
    ``z_range_mm`` is the S-I coverage in world mm; ``fov_mm`` the R-L and A-P extents.
    ``oblique_deg`` rotates the grid about the R-L axis (oblique axial slabs).
    ``intensities`` are the signal of (cord, CSF, other tissue); ``noise`` Gaussian sigma.
    ``shift_mm`` is the subject's displacement in this scan (world RAS mm).
    """

    entities: str
    voxel_mm: tuple[float, float, float]
    axcodes: tuple[str, str, str]
    z_range_mm: tuple[float, float]
    fov_mm: tuple[float, float] = (36.0, 40.0)
    oblique_deg: float = 0.0
    intensities: tuple[float, float, float] = (0.5, 1.0, 0.3)
    noise: float = 0.03
    shift_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)


#: The default five contrasts (names as in ../shared/data/bids_multicontrast), T2w is the reference.
DEFAULT_ACQUISITIONS: tuple[Acquisition, ...] = (
    Acquisition("T2w", (0.8, 0.8, 0.8), ("P", "S", "R"), (4.0, 124.0), intensities=(0.45, 1.0, 0.3)),
    Acquisition(
        "T1w", (1.0, 1.0, 1.0), ("R", "A", "S"), (10.0, 120.0), intensities=(0.75, 0.2, 0.5), shift_mm=(0.7, -0.6, 0.4)
    ),
    Acquisition(
        "T2starw",
        (0.5, 0.5, 3.0),
        ("L", "A", "S"),
        (60.0, 102.0),
        intensities=(0.6, 0.95, 0.3),
        shift_mm=(-1.2, 0.9, 0.0),
    ),
    Acquisition(
        "flip-1_mt-on_MTS",
        (0.8, 0.8, 5.0),
        ("L", "A", "S"),
        (66.0, 96.0),
        oblique_deg=8.0,
        intensities=(0.55, 0.35, 0.45),
        shift_mm=(0.4, 1.6, 0.3),
    ),
    Acquisition(
        "flip-2_mt-off_MTS",
        (0.8, 0.8, 5.0),
        ("L", "A", "S"),
        (66.0, 96.0),
        oblique_deg=8.0,
        intensities=(0.8, 0.45, 0.6),
        shift_mm=(1.5, -1.0, 0.0),
    ),
)


def acquisition_grid(acq: Acquisition, model: CordModel) -> tuple[tuple[int, int, int], np.ndarray]:
    """Voxel grid (shape, RAS affine) of an acquisition, centred on the cord at mid-coverage."""
    dirs = np.array([_AXIS_VECTORS[c] for c in acq.axcodes], float).T  # columns: world direction of i, j, k
    world_extent = np.array([acq.fov_mm[0], acq.fov_mm[1], acq.z_range_mm[1] - acq.z_range_mm[0]])
    extent = np.abs(dirs.T) @ world_extent  # extent along each voxel axis (mm)
    shape = tuple(int(max(1, round(e / v))) for e, v in zip(extent, acq.voxel_mm))
    theta = math.radians(acq.oblique_deg)
    rot = np.array([[1, 0, 0], [0, math.cos(theta), -math.sin(theta)], [0, math.sin(theta), math.cos(theta)]])
    affine = np.eye(4)
    affine[:3, :3] = rot @ dirs @ np.diag(acq.voxel_mm)
    z_mid = 0.5 * (acq.z_range_mm[0] + acq.z_range_mm[1])
    centre = model.centre(np.array([z_mid]))[0] + np.asarray(acq.shift_mm)
    affine[:3, 3] = centre - affine[:3, :3] @ ((np.array(shape) - 1) / 2)
    return shape, affine


def render_acquisition(acq: Acquisition, model: CordModel, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Render one acquisition: image, exact cord fraction, binary mask, level labels, disc points, affine."""
    shape, affine = acquisition_grid(acq, model)
    cord = render_fraction(model, shape, affine, shift_mm=acq.shift_mm)
    csf = render_fraction(model, shape, affine, margin=model.csf_margin, shift_mm=acq.shift_mm, supersample=5)
    csf = np.maximum(csf, cord)
    i_cord, i_csf, i_tissue = acq.intensities
    image = i_cord * cord + i_csf * (csf - cord) + i_tissue * (1 - csf)
    image = image + rng.normal(0.0, acq.noise, size=shape)
    binary = cord >= 0.5
    return {
        "affine": affine,
        "image": image.astype(np.float32),
        "soft": cord.astype(np.float32),
        "binary": binary.astype(np.uint8),
        "levels": level_map(model, shape, affine, binary, acq.shift_mm),
        "discs": disc_points(model, shape, affine, acq.shift_mm),
    }


def subject_model(index: int, seed: int) -> CordModel:
    """Cord model of subject ``index``: the default cervical cord with seeded variations of size and shape."""
    rng = np.random.default_rng([seed, index])
    base = default_cervical_model()
    return replace(
        base,
        a0=base.a0 * float(rng.uniform(0.9, 1.1)),
        b0=base.b0 * float(rng.uniform(0.9, 1.1)),
        tilt_ap_deg=float(rng.uniform(4.0, 14.0)),
        amp_rl=float(rng.uniform(-2.0, 2.0)),
        amp_ap=float(rng.uniform(1.5, 4.0)),
    )


def write_cord_dataset(
    out_dir: str | Path,
    *,
    n_subjects: int = 1,
    seed: int = 0,
    acquisitions: tuple[Acquisition, ...] = DEFAULT_ACQUISITIONS,
    overwrite: bool = False,
    progress: bool = False,
) -> dict:
    """Write a BIDS cord phantom dataset; returns the truth (also written per subject as JSON).

    Deterministic for a given ``seed``. Returns ``{"root": str, "subjects": {sub: truth_dict}}`` where
    each truth dict holds ``csa_per_level_mm2`` (level → mm²), ``discs_z_mm``, the model parameters and
    per-acquisition shifts, voxel sizes and orientations.
    """
    from tqdm.auto import tqdm

    folders = start_phantom_dataset(
        out_dir,
        n_subjects,
        "nnunet-spine cord phantom",
        "Cord masks, level labels and disc labels (phantom)",
        "Exact partial-volume cord fractions and CSA truth (phantom)",
        overwrite,
        seed=seed,
    )
    root, subjects, labels, truth_dir = folders.root, folders.subjects, folders.labels, folders.truth
    result = {"root": str(root), "subjects": {}}
    jobs = [(i, s, a) for i, s in enumerate(subjects) for a in acquisitions]
    bar = tqdm(total=len(jobs), desc="phantom cord", unit="image", disable=not progress)
    for i, sub in enumerate(subjects):
        model = subject_model(i, seed)
        rng = np.random.default_rng([seed, i, 7])
        truth = {
            "subject": sub,
            "seed": seed,
            "csa_per_level_mm2": {str(k): v for k, v in model.level_truth().items()},
            "discs_z_mm": {str(k): v for k, v in model.discs_z.items()},
            "model": {k: v for k, v in asdict(model).items() if k != "discs_z"},
            "acquisitions": {},
        }
        for acq in acquisitions:
            r = render_acquisition(acq, model, rng)
            name = acq.entities
            write_nifti(anat_path(root, sub, name), r["image"], r["affine"], np.float32, overwrite)
            write_nifti(anat_path(labels, sub, name, "_label-SC_seg"), r["binary"], r["affine"], np.uint8, overwrite)
            write_nifti(
                anat_path(labels, sub, name, "_label-SC_seg_labeled"), r["levels"], r["affine"], np.int16, overwrite
            )
            write_nifti(
                anat_path(labels, sub, name, "_label-discs_dlabel"), r["discs"], r["affine"], np.int16, overwrite
            )
            write_nifti(
                anat_path(truth_dir, sub, name, "_label-SC_softseg"), r["soft"], r["affine"], np.float32, overwrite
            )
            truth["acquisitions"][name] = {
                "shift_mm": list(acq.shift_mm),
                "voxel_mm": list(acq.voxel_mm),
                "axcodes": "".join(acq.axcodes),
                "z_range_mm": list(acq.z_range_mm),
                "oblique_deg": acq.oblique_deg,
            }
            bar.update(1)
        write_text(truth_dir / sub / f"{sub}_truth.json", json.dumps(truth, indent=2) + "\n", overwrite=True)
        result["subjects"][sub] = truth
    bar.close()
    return result
