"""The real-data road in CI: real Grey Matter Challenge scans as published (``../shared/data/gm_challenge``: SCT's
older ``_seg-manual`` masks, one contrast ``T2starw``, labels on run-1 only, sessions written into subject labels,
3 mm axial slices) → ``nnspine convert softgt --group-by`` → ``nnUNetv2_plan_and_preprocess`` (2d, a small CPU
plan) → ``nnspine preprocess-soft`` → ``nnUNetv2_train … -tr nnUNetTrainerSoftSeg_debug`` (8 iterations, CPU) →
``nnspine segment cord`` on a run-2 image (a rescan never used in training) → ``nnspine csa``.

Checks names, shapes, the converter's JSON report (masks picked, unlabelled runs, grouping, no averaging across
contrasts) and that the CSA table covers exactly the slices the prediction holds; no accuracy is asserted (an
8-iteration model). Three sessions of two persons and a 2 mm in-plane plan keep it to about 80 s of CPU
(2 cores, wall time more on a loaded machine). Skips, saying so,
only when ``../shared/data`` is absent.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from nnunet_helpers import console_script, nnunet_env, run  # noqa: E402

from nnunet_spine.core.io import load_image  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
GM = DATA / "gm_challenge"
#: Two persons: one scanned in two sessions (sessions in the subject label), one in one session.
SUBJECTS = ("sub-9709Ses1", "sub-9709Ses2", "sub-9584")
GROUP_BY = "^([0-9]+)"
DATASET_ID, NAME = 611, "GMRoad"
DATASET = f"Dataset{DATASET_ID}_{NAME}"
PLANS, CONFIG, TRAINER = "nnUNetPlansCPU", "2d", "nnUNetTrainerSoftSeg_debug"
#: nnU-Net's target spacing (mm, its axis order: S-I first for these axial scans): the slices as they are, 2 mm
#: in-plane, so that a 2d patch is about 80 x 112 and 8 iterations take seconds.
TARGET_SPACING_MM = (3.0, 2.0, 2.0)

pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason=f"real test data absent: {DATA} (see its README)")


def _subset(dest: Path) -> Path:
    """A BIDS dataset of :data:`SUBJECTS` linked from gm_challenge (images, masks, the dataset's files)."""
    for sub in SUBJECTS:
        for rel in (Path(sub), Path("derivatives/labels") / sub):
            (dest / rel.parent).mkdir(parents=True, exist_ok=True)
            os.symlink((GM / rel).resolve(), dest / rel)
    for f in ("dataset_description.json", "participants.tsv"):
        os.symlink((GM / f).resolve(), dest / f)
    return dest


def _nnspine(env: dict, *args: str):
    return run([console_script("nnspine"), *args], env)


@pytest.mark.slow
def test_real_gm_challenge_road_on_cpu(tmp_path):
    env = nnunet_env(tmp_path / "nnunet")
    env["nnUNet_extTrainer"] = _nnspine(env, "trainers", "--export").stdout.strip().split("=", 1)[1].strip("'")
    bids = _subset(tmp_path / "gm")

    # 1. conversion: run-1 masks (_seg-manual), run-2 left out and listed, sessions of 9709 grouped
    conv = _nnspine(
        env, "convert", "softgt", "-i", str(bids), "--derivatives-out", str(tmp_path / "deriv"),
        "--nnunet-dataset", str(DATASET_ID), "--name", NAME, "--group-by", GROUP_BY,
    )  # fmt: skip
    raw = Path(env["nnUNet_raw"]) / DATASET
    cases = sorted(p.name[: -len(".nii.gz")] for p in (raw / "labelsTr").glob("*.nii.gz"))
    assert cases == sorted(f"{s}_run-1_T2starw" for s in SUBJECTS)
    assert sorted(p.name for p in (raw / "imagesTr").iterdir()) == [f"{c}_0000.nii.gz" for c in cases]
    for case in cases:
        sub = case.split("_", 1)[0]
        src = load_image(GM / sub / "anat" / f"{case}.nii.gz")
        soft = load_image(raw / "labelsTr_soft" / f"{case}.nii.gz", "soft")
        assert soft.shape == src.shape and np.allclose(soft.affine, src.affine, atol=1e-4)
    facts = json.loads((raw / "dataset.json").read_text())
    report = facts["nnspine"]
    assert report["masks_by_suffix"] == {"_seg-manual": 3} and report["group_by"] == GROUP_BY
    assert sorted(report["unlabelled_images"]) == sorted(f"{s}/anat/{s}_run-2_T2starw.nii.gz" for s in SUBJECTS)
    assert set(report["averaged_across_contrasts"].values()) == {False}
    assert "no averaging across contrasts" in report["contrast_averaging"]
    assert facts["nnspine_splits"]["persons"] == 2
    folds = json.loads((raw / "splits_final.json").read_text())
    assert len(folds) == 2 and sorted(sorted(f["val"]) for f in folds) == sorted(
        [["sub-9584_run-1_T2starw"], ["sub-9709Ses1_run-1_T2starw", "sub-9709Ses2_run-1_T2starw"]]
    )
    assert "run-2_T2starw" in conv.stdout and "6 persons" not in conv.stdout

    # 2. planning the 2d configuration of thick axial slices, small for a CPU: 2 mm in-plane (TARGET_SPACING_MM;
    # nnU-Net's own plan here is 0.78 mm, a 192 x 256 patch, about 10 s per iteration on 2 cores)
    run(
        [console_script("nnUNetv2_plan_and_preprocess"), "-d", str(DATASET_ID), "-c", CONFIG, "-np", "1", "-npfp",
         "1", "--verify_dataset_integrity", "--no_pbar", "-gpu_memory_target", "1", "-overwrite_plans_name", PLANS,
         "-overwrite_target_spacing", *map(str, TARGET_SPACING_MM)],
        {**env, "nnUNet_n_proc_DA": "1"},
    )  # fmt: skip
    _nnspine(env, "preprocess-soft", "-d", str(DATASET_ID), "-c", CONFIG, "-p", PLANS)
    plans = json.loads((Path(env["nnUNet_preprocessed"]) / DATASET / f"{PLANS}.json").read_text())
    cfg = plans["configurations"][CONFIG]
    assert len(cfg["patch_size"]) == 2 and cfg["spacing"] == list(TARGET_SPACING_MM[1:])

    # 3. 8 training iterations on the CPU
    run(
        [console_script("nnUNetv2_train"), str(DATASET_ID), CONFIG, "all", "-tr", TRAINER, "-p", PLANS,
         "-device", "cpu"],
        env,
        timeout=900,
    )  # fmt: skip
    model = Path(env["nnUNet_results"]) / DATASET / f"{TRAINER}__{PLANS}__{CONFIG}"
    assert (model / "fold_all" / "checkpoint_final.pth").is_file()

    # 4. segment cord on a rescan (run-2, never a training case), then CSA of the soft prediction
    image = GM / "sub-9709Ses2" / "anat" / "sub-9709Ses2_run-2_T2starw.nii.gz"
    seg = tmp_path / "segment"
    _nnspine(env, "segment", "cord", "-i", str(image), "-o", str(seg), "--model", str(model), "-f", "all",
             "--device", "cpu", "-q")  # fmt: skip
    case = "sub-9709Ses2_run-2_T2starw"
    soft = load_image(seg / f"{case}_label-SC_softseg.nii.gz", "soft")
    src = load_image(image)
    assert soft.shape == src.shape and np.allclose(soft.affine, src.affine, atol=1e-4)
    assert soft.data.dtype == np.float32 and 0.0 <= soft.data.min() and soft.data.max() <= 1.0
    summary = list(csv.DictReader((seg / "segment_summary.csv").open()))
    assert [r["case"] for r in summary] == [case] and summary[0]["status"] == "ok"

    out = tmp_path / "csa.csv"
    _nnspine(env, "csa", "-i", str(seg / f"{case}_label-SC_softseg.nii.gz"), "--perslice", "-o", str(out))
    rows = list(csv.DictReader(out.open()))
    # slices along S-I (RPI, I->S; this image is LAS: its third axis is S-I, increasing upwards) that hold cord
    predicted = {int(k) for k in np.flatnonzero(soft.data.sum(axis=(0, 1)) > 0)}
    listed = {int(r["Slice (I->S)"]) for r in rows}
    areas = {int(r["Slice (I->S)"]): float(r["MEAN(area)"] or "nan") for r in rows}
    with_area = {k for k, a in areas.items() if a > 0}
    assert predicted <= listed and with_area == predicted, (sorted(predicted), sorted(with_area))
    assert {r["Filename"] for r in rows} == {str(seg / f"{case}_label-SC_softseg.nii.gz")}
