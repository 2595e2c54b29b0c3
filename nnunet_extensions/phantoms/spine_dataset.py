"""The whole-spine phantom written as a BIDS dataset (:func:`write_spine_dataset`), with its truth JSON.

The phantom itself (geometry, rendering) is :mod:`nnunet_spine.phantoms.spine`; its truth (:func:`spine_truth`)
and the column variants (:data:`SPINE_VARIANTS`: transitional vertebrae, cropped fields of view) are here.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from nnunet_spine.core.io import write_text
from nnunet_spine.core.labels import (
    SACRUM,
    SEMANTIC_LABELS,
    disc_instance,
    endplate_instance,
    instance_kind,
    instance_name,
)
from nnunet_spine.phantoms.bids import anat_path, start_phantom_dataset, write_nifti
from nnunet_spine.phantoms.spine import SpineModel, build_spine_model, render_spine

_C1_L5 = list(range(1, 25))
#: Column variants (``nnspine phantom --kind spine --variant``): name -> (VerSe ids of ``n`` mobile vertebrae top
#: to bottom, whether the field of view keeps the sacrum). Transitional columns as SPINEPS/VerSe number them
#: (L6 = 25, T13 = 28); cropped fields of view stop above the sacrum, so their masks hold no sacrum anchor.
SPINE_VARIANTS: dict[str, tuple] = {
    "standard": (lambda n: _C1_L5[-n:], True),
    "L6": (lambda n: (_C1_L5 + [25])[-n:], True),
    "4-lumbar": (lambda n: _C1_L5[:-1][-n:], True),
    "T13": (lambda n: (_C1_L5[:19] + [28] + _C1_L5[19:])[-n:], True),
    "11-thoracic": (lambda n: (_C1_L5[:18] + _C1_L5[19:])[-n:], True),
    "lumbar-no-sacrum": (lambda n: _C1_L5[-n:], False),
    "cervical": (lambda n: list(range(2, 8))[:n], False),
    "thoracic": (lambda n: list(range(10, 20))[:n], False),
}


def variant_numbers(variant: str, n_vertebrae: int) -> tuple[list[int], bool]:
    """VerSe ids (top to bottom) and whether the sacrum is in view, for a :data:`SPINE_VARIANTS` name;
    ``ValueError`` for an unknown name or a column shorter than ``n_vertebrae``."""
    if variant not in SPINE_VARIANTS:
        raise ValueError(f"unknown spine variant {variant!r} (choose from {', '.join(SPINE_VARIANTS)})")
    pick, sacrum = SPINE_VARIANTS[variant]
    numbers = pick(n_vertebrae)
    if len(numbers) != n_vertebrae:
        raise ValueError(f"variant {variant} has at most {len(numbers)} vertebrae, asked for {n_vertebrae}")
    return numbers, sacrum


def crop_above_sacrum(r: dict) -> dict:
    """The rendered phantom (``render_spine``'s dict, PIR grid) with every S-I slice that holds sacrum voxels, and
    all below, removed: a field of view ending above the sacrum. The affine is shifted to keep world positions."""
    si = r["semantic"].shape[1]
    rows = np.flatnonzero((r["semantic"] == SACRUM).any(axis=(0, 2)))
    stop = int(rows.min()) if rows.size else si
    out = {k: v[:, :stop] for k, v in r.items() if k != "affine"}
    out["affine"] = r["affine"]  # the first slices are kept: voxel (0, 0, 0) does not move
    return out


def write_spine_dataset(
    out_dir: str | Path,
    *,
    n_subjects: int = 1,
    seed: int = 0,
    n_vertebrae: int = 5,
    variant: str = "standard",
    voxel_mm: tuple[float, float, float] = (1.0, 1.0, 3.0),
    overwrite: bool = False,
    progress: bool = False,
) -> dict:
    """Write a BIDS whole-spine phantom dataset; returns ``{"root", "subjects": {sub: truth}}``.

    Per subject::

        sub-XX/anat/sub-XX_T2w.nii.gz                                   image (float32, PIR)
        derivatives/labels/sub-XX/anat/sub-XX_T2w_seg-spine_msk.nii.gz  semantic mask (uint8, SPINEPS values)
        derivatives/labels/sub-XX/anat/sub-XX_T2w_seg-vert_msk.nii.gz   instance mask (uint8)
        derivatives/truth/sub-XX/sub-XX_truth.json                      see :func:`spine_truth`

    Deterministic for a given ``seed``; ``n_vertebrae`` mobile vertebrae end at L5 (default L1–L5) and
    sit on a sacrum, or follow a :data:`SPINE_VARIANTS` column (``variant``: transitional vertebrae, or a field of
    view cropped above the sacrum; the truth's ``vertebra_ids`` are the true ids, ``sacrum_id`` None when cropped).
    ``voxel_mm`` is per voxel axis (A-P, S-I, R-L).
    """
    from tqdm.auto import tqdm

    numbers, with_sacrum = variant_numbers(variant, n_vertebrae)
    folders = start_phantom_dataset(
        out_dir,
        n_subjects,
        "nnunet-spine whole-spine phantom",
        "SPINEPS-style semantic (seg-spine) and instance (seg-vert) masks (phantom)",
        "Whole-spine phantom truth: ids, voxel counts, volumes (phantom)",
        overwrite,
        seed=seed,
    )
    root, subjects, labels_dir, truth_dir = folders.root, folders.subjects, folders.labels, folders.truth
    result = {"root": str(root), "subjects": {}}
    for i, sub in enumerate(tqdm(subjects, desc="phantom spine", unit="subject", disable=not progress)):
        model = build_spine_model(seed=seed, index=i, numbers=numbers)
        r = render_spine(model, voxel_mm, np.random.default_rng([seed, i, 13]))
        if not with_sacrum:
            r = crop_above_sacrum(r)
        paths = {
            "image": anat_path(root, sub, "T2w"),
            "semantic": anat_path(labels_dir, sub, "T2w", "_seg-spine_msk"),
            "instance": anat_path(labels_dir, sub, "T2w", "_seg-vert_msk"),
        }
        write_nifti(paths["image"], r["image"], r["affine"], np.float32, overwrite)
        write_nifti(paths["semantic"], r["semantic"], r["affine"], np.uint8, overwrite)
        write_nifti(paths["instance"], r["instance"], r["affine"], np.uint8, overwrite)
        truth = {
            "subject": sub,
            "seed": seed,
            "variant": variant,
            **spine_truth(model, r["semantic"], r["instance"], r["affine"]),
            "axcodes": "PIR",
            "files": {k: str(p.relative_to(root)) for k, p in paths.items()},
        }
        write_text(truth_dir / sub / f"{sub}_truth.json", json.dumps(truth, indent=2) + "\n", overwrite=True)
        result["subjects"][sub] = truth
    return result


# --------------------------------------------------------------------------------------------- truth
def spine_truth(model: SpineModel, semantic: np.ndarray, instance: np.ndarray, affine: np.ndarray) -> dict:
    """Truth dictionary: vertebrae and discs with their geometry, voxel counts and volumes (mm³) per
    semantic label, per instance and per (vertebra, subregion)."""
    from nnunet_spine.core.io import voxel_sizes

    zooms = voxel_sizes(affine)
    vox_mm3 = float(np.prod(zooms))
    sem_vals, sem_counts = np.unique(semantic, return_counts=True)
    ins_vals, ins_counts = np.unique(instance, return_counts=True)
    semantic_t = {
        str(int(k)): {"name": SEMANTIC_LABELS[int(k)], "voxels": int(n), "volume_mm3": int(n) * vox_mm3}
        for k, n in zip(sem_vals, sem_counts)
        if k
    }
    instance_t = {
        str(int(k)): {
            "name": instance_name(int(k)),
            "kind": instance_kind(int(k))[0],
            "voxels": int(n),
            "volume_mm3": int(n) * vox_mm3,
        }
        for k, n in zip(ins_vals, ins_counts)
        if k
    }
    subregions = {}
    for vert in model.vertebrae:
        sel = semantic[instance == vert.number]
        vals, counts = np.unique(sel, return_counts=True)
        subregions[str(vert.number)] = {str(int(k)): int(n) for k, n in zip(vals, counts)}
    vertebrae = [
        {
            "id": v.number,
            "name": v.name,
            "body_centre_mm": [round(c, 4) for c in v.centre_mm],
            "tilt_deg": round(v.tilt_deg, 4),
            "body_height_mm": round(v.dims.body_height, 4),
            "body_semi_axes_mm": [round(v.dims.half_width, 4), round(v.dims.half_depth, 4)],
        }
        for v in model.vertebrae
    ]
    in_view = SACRUM in set(int(k) for k in sem_vals)  # False for a field of view cropped above the sacrum
    lowers = [v.number for v in model.vertebrae[1:]] + [SACRUM if in_view else None]
    discs = [
        {
            "id": disc_instance(v.number),
            "name": instance_name(disc_instance(v.number)),
            "upper": v.number,
            "lower": lo,
            "height_mm": round(v.disc_below_mm, 4),
        }
        for v, lo in zip(model.vertebrae, lowers)
    ]
    return {
        "kind": "spine",
        "vertebra_ids": [v.number for v in model.vertebrae],
        "sacrum_id": SACRUM if in_view else None,
        "instance_ids": sorted(int(k) for k in ins_vals if k),
        "semantic_labels": sorted(int(k) for k in sem_vals if k),
        "vertebrae": vertebrae,
        "discs": discs,
        "endplates": [
            {"id": endplate_instance(above), "vertebra": v.number, "side": side}
            for i, v in enumerate(model.vertebrae)
            for side, above in (
                ("superior", model.vertebrae[i - 1].number if i else v.number),
                ("inferior", v.number),
            )
        ],
        "sacrum": {
            "top_centre_mm": [round(c, 4) for c in model.sacrum.top_centre_mm],
            "tilt_deg": round(model.sacrum.tilt_deg, 4),
            "length_mm": round(model.sacrum.length, 4),
        }
        if in_view
        else None,
        "voxel_mm": [float(z) for z in zooms],
        "voxel_volume_mm3": vox_mm3,
        "shape": [int(s) for s in semantic.shape],
        "semantic": semantic_t,
        "instance": instance_t,
        "vertebra_subregion_voxels": subregions,
        "conventions": {
            "instance_of_cord_and_canal": 0,
            "disc": "100 + vertebra above",
            "endplate": "200 + the vertebra above the endplate (SPINEPS): X's inferior endplate 200+X, its "
            "superior one 200+(vertebra above X); the top vertebra's superior endplate 200+X",
            "left_right": "43/45/47 = subject's left (x < 0 in RAS), 44/46/48 = right",
        },
    }
