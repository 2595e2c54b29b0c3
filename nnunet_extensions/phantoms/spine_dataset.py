"""The whole-spine phantom written as a BIDS dataset (:func:`write_spine_dataset`), with its truth JSON.

The phantom itself (geometry, rendering, truth) is :mod:`nnunet_extensions.phantoms.spine`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from nnunet_extensions.core.io import write_text
from nnunet_extensions.phantoms.bids import anat_path, start_phantom_dataset, write_nifti
from nnunet_extensions.phantoms.spine import build_spine_model, render_spine, spine_truth


def write_spine_dataset(
    out_dir: str | Path,
    *,
    n_subjects: int = 1,
    seed: int = 0,
    n_vertebrae: int = 5,
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
    sit on a sacrum. ``voxel_mm`` is per voxel axis (A-P, S-I, R-L).
    """
    from tqdm.auto import tqdm

    folders = start_phantom_dataset(
        out_dir,
        n_subjects,
        "nnunet-spine whole-spine phantom",
        "SPINEPS-style semantic (seg-spine) and instance (seg-vert) masks (phantom)",
        "Whole-spine phantom truth: ids, voxel counts, volumes (phantom)",
        overwrite,
    )
    root, subjects, labels_dir, truth_dir = folders.root, folders.subjects, folders.labels, folders.truth
    result = {"root": str(root), "subjects": {}}
    for i, sub in enumerate(tqdm(subjects, desc="phantom spine", unit="subject", disable=not progress)):
        model = build_spine_model(n_vertebrae, seed=seed, index=i)
        r = render_spine(model, voxel_mm, np.random.default_rng([seed, i, 13]))
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
            **spine_truth(model, r["semantic"], r["instance"], r["affine"]),
            "axcodes": "PIR",
            "files": {k: str(p.relative_to(root)) for k, p in paths.items()},
        }
        write_text(truth_dir / sub / f"{sub}_truth.json", json.dumps(truth, indent=2) + "\n", overwrite=True)
        result["subjects"][sub] = truth
    return result
