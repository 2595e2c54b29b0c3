"""The README's soft-cord walk-through, verbatim, then checks of every hand-over.

``tests/e2e/readme_walkthrough.sh`` holds the README's command block (phantom BIDS → ``nnspine convert softgt``
→ ``nnUNetv2_plan_and_preprocess`` → ``nnspine preprocess-soft`` → ``nnUNetv2_train … -tr
nnUNetTrainerSoftSeg_debug -device cpu`` → ``nnUNetv2_predict --save_probabilities -device cpu`` → ``nnspine
softmask`` → ``nnspine csa``); this test runs it with ``bash -euo pipefail`` in an empty folder, in an environment
without any ``nnUNet_*`` variable (the script sets them, as the README tells a user to), and
``tests/test_readme_walkthrough.py`` checks that the README shows the same commands.

Asserts what a few CPU iterations can show: the trained model's loss is the soft-target loss (recomputed from
scratch on a validation batch), every hand-over keeps the data and geometry right, and each command's outputs
exist and are well formed. It does not assert learned quality.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from nnunet_helpers import assert_validation_loss_is_soft_target_loss, console_script, run  # noqa: E402

from nnunet_spine.core.io import load_image  # noqa: E402

WALKTHROUGH = Path(__file__).with_name("readme_walkthrough.sh")
DATASET_ID, NAME = 101, "SoftCord"
DATASET = f"Dataset{DATASET_ID}_{NAME}"
PLANS = "nnUNetPlansCPU"
TRAINER = "nnUNetTrainerSoftSeg_debug"
CONTRASTS = ["T2w", "T1w", "T2starw", "flip-1_mt-on_MTS", "flip-2_mt-off_MTS"]


def run_walkthrough(folder: Path) -> subprocess.CompletedProcess:
    """The README's commands in ``folder``: a user's shell (PATH with this interpreter's console scripts first,
    no nnUNet_* variables), stopping at the first failing command."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("nnUNet_")}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.setdefault("MPLBACKEND", "Agg")
    proc = subprocess.run(
        ["bash", "-euo", "pipefail", str(WALKTHROUGH)],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if proc.returncode != 0:
        raise AssertionError(
            f"README walk-through failed ({proc.returncode})\n--- stdout ---\n"
            f"{proc.stdout[-6000:]}\n--- stderr ---\n{proc.stderr[-6000:]}"
        )
    return proc


def nnspine(env: dict, *args: str):
    return run([console_script("nnspine"), *args], env)


@pytest.mark.slow
def test_readme_soft_cord_walkthrough_on_cpu(tmp_path):
    import torch

    run_walkthrough(tmp_path)
    env = {
        **os.environ,
        "nnUNet_raw": str(tmp_path / "nnUNet_raw"),
        "nnUNet_preprocessed": str(tmp_path / "nnUNet_preprocessed"),
        "nnUNet_results": str(tmp_path / "nnUNet_results"),
        "nnUNet_n_proc_DA": "0",
        "nnUNet_def_n_proc": "1",
        "nnUNet_compile": "f",
        "MPLBACKEND": "Agg",
    }
    env["nnUNet_extTrainer"] = nnspine(env, "trainers", "--export").stdout.strip().split("=", 1)[1].strip("'")

    # soft ground truth + nnU-Net raw dataset: one training subject, 5 contrasts = 5 cases
    raw = Path(env["nnUNet_raw"]) / DATASET
    cases = sorted(p.name[: -len(".nii.gz")] for p in (raw / "labelsTr").glob("*.nii.gz"))
    assert cases == sorted(f"sub-01_{c}" for c in CONTRASTS)
    for case in cases:
        soft = load_image(raw / "labelsTr_soft" / f"{case}.nii.gz", "soft")
        label = load_image(raw / "labelsTr" / f"{case}.nii.gz", "binary")
        assert np.array_equal(label.data > 0, soft.data >= 0.5)
        assert ((soft.data > 0) & (soft.data < 1)).any()  # partial volume is there

    # planning with stock components, then the soft step beside nnU-Net's cases
    pre = Path(env["nnUNet_preprocessed"]) / DATASET
    plans = json.loads((pre / f"{PLANS}.json").read_text())
    cfg = plans["configurations"]["3d_fullres"]
    assert cfg["preprocessor_name"] == "DefaultPreprocessor" and plans["label_manager"] == "LabelManager"
    assert sorted(p.name for p in (pre / cfg["data_identifier"] / "soft_targets").glob("*.b2nd")) == [
        f"{c}.b2nd" for c in cases
    ]

    # real training through nnUNet_extTrainer, on the CPU
    out = Path(env["nnUNet_results"]) / DATASET / f"{TRAINER}__{PLANS}__3d_fullres" / "fold_all"
    ckpt = torch.load(out / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    assert ckpt["trainer_name"] == TRAINER
    log = ckpt["logging"]
    assert len(log["val_mse_soft"]) == len(log["train_losses"]) >= 1
    assert (out / "progress.png").exists()
    # the loss is the soft-target loss: the trained model's validation loss on a batch of the real pipeline's data
    # equals MSE + soft Dice against the converter's soft target (read from preprocess-soft's file at each
    # sample's crop) computed from scratch; a stock-trained model (CE + Dice on the label) fails here
    assert_validation_loss_is_soft_target_loss(env, DATASET_ID, PLANS, out / "checkpoint_final.pth")

    # prediction with probabilities on the unseen subject, then our soft masks on the original grids
    test_images = {c: tmp_path / "test_bids" / "sub-01" / "anat" / f"sub-01_{c}.nii.gz" for c in ("T2w", "T2starw")}
    for c, image in test_images.items():
        src = load_image(image)
        soft = load_image(tmp_path / "pred_soft" / f"sub-01_{c}.nii.gz", "soft")
        assert soft.data.dtype == np.float32 and soft.shape == src.shape
        np.testing.assert_allclose(soft.affine, src.affine, atol=1e-4)
        assert ((soft.data > 0.0) & (soft.data < 1.0)).any()  # a soft output, not a label map
        # nnU-Net's own export is the argmax of the same probabilities (ties at exactly 0.5 go to background)
        nn_seg = load_image(tmp_path / "pred" / f"sub-01_{c}.nii.gz", "labels")
        assert np.array_equal(nn_seg.data > 0, soft.data > 0.5)

    # CSA per slice of the predicted soft mask (mm²), and an evaluation against the phantom's exact truth
    rows = list(csv.DictReader((tmp_path / "csa_perslice.csv").open()))
    assert rows and all(float(r["MEAN(area)"]) >= 0 for r in rows)
    ref = tmp_path / "ref"
    ref.mkdir()
    for c in test_images:
        truth = tmp_path / "test_bids/derivatives/truth/sub-01/anat" / f"sub-01_{c}_label-SC_softseg.nii.gz"
        (ref / f"sub-01_{c}.nii.gz").write_bytes(truth.read_bytes())
    nnspine(
        env,
        "evaluate",
        "softseg",
        "--pred",
        str(tmp_path / "pred_soft"),
        "--ref",
        str(ref),
        "-o",
        str(tmp_path / "eval.csv"),
        "-q",
    )
    evaluated = list(csv.DictReader((tmp_path / "eval.csv").open()))
    assert [r["case"] for r in evaluated] == ["sub-01_T2starw", "sub-01_T2w", "MEAN"]
    dices = []
    for row in evaluated[:2]:  # soft Dice 2 Σps / (Σp + Σs) of the files, computed here
        p = load_image(tmp_path / "pred_soft" / f"{row['case']}.nii.gz", "soft").data.astype(np.float64)
        t = load_image(ref / f"{row['case']}.nii.gz", "soft").data.astype(np.float64)
        dices.append(2 * (p * t).sum() / (p.sum() + t.sum()))
        assert float(row["soft_dice"]) == pytest.approx(dices[-1], abs=1e-4)
    assert float(evaluated[2]["soft_dice"]) == pytest.approx(np.mean(dices), abs=1e-4)

    # ---- one command: `nnspine segment cord` equals nnUNetv2_predict + softmask + csa (voxel for voxel, row for row)
    model = Path(env["nnUNet_results"]) / DATASET / f"{TRAINER}__{PLANS}__3d_fullres"
    seg = tmp_path / "segment"
    common = ["--model", str(model), "-f", "all", "--device", "cpu", "-q"]
    nnspine(env, "segment", "cord", "-i", str(test_images["T2w"]), "-o", str(seg), *common)
    one = load_image(seg / "sub-01_T2w_label-SC_softseg.nii.gz", "soft")
    multi = load_image(tmp_path / "pred_soft" / "sub-01_T2w.nii.gz", "soft")
    assert np.array_equal(one.data, multi.data) and np.allclose(one.affine, multi.affine)

    def csa_rows(path: Path) -> list[dict]:
        return [{k: v for k, v in r.items() if k not in ("Timestamp", "Filename")} for r in csv.DictReader(path.open())]

    assert csa_rows(seg / "sub-01_T2w_csa_perslice.csv") == csa_rows(tmp_path / "csa_perslice.csv")
    assert (seg / "sub-01_T2w_csa.png").stat().st_size > 5000

    # ---- cohorts: a BIDS cohort with one unreadable image; 2 parts = 1 part, case by case; failures recorded
    import shutil

    cohort = tmp_path / "cohort"
    shutil.copytree(tmp_path / "test_bids" / "sub-01", cohort / "sub-01")
    (cohort / "sub-02" / "anat").mkdir(parents=True)
    (cohort / "sub-02" / "anat" / "sub-02_T2w.nii.gz").write_bytes(b"not a nifti")
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    bad = subprocess.run(
        [console_script("nnspine"), "segment", "cord", "-i", str(cohort), "-o", str(whole), *common],
        env=env,
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2, bad.stderr
    failures = list(csv.DictReader((whole / "failures.csv").open()))
    assert [f["case"] for f in failures] == ["sub-02_T2w"] and "sub-02_T2w.nii.gz" in failures[0]["reason"]
    summary = list(csv.DictReader((whole / "segment_summary.csv").open()))
    ok = sorted(r["case"] for r in summary if r["status"] == "ok")
    assert ok == sorted(f"sub-01_{c}" for c in CONTRASTS)
    for k in (0, 1):
        r = subprocess.run(
            [console_script("nnspine"), "segment", "cord", "-i", str(cohort), "-o", str(parts), *common,
             "--num-parts", "2", "--part-id", str(k)],
            env=env, capture_output=True, text=True,
        )  # fmt: skip
        assert r.returncode in (0, 2), r.stderr
    for case in ok:
        a = load_image(whole / "sub-01" / "anat" / f"{case}_label-SC_softseg.nii.gz", "soft")
        b = load_image(parts / "sub-01" / "anat" / f"{case}_label-SC_softseg.nii.gz", "soft")
        assert np.array_equal(a.data, b.data) and np.array_equal(a.affine, b.affine)
        name = f"{case}_csa_perslice.csv"
        rows_a, rows_b = (csa_rows(d / "sub-01" / "anat" / name) for d in (whole, parts))
        assert rows_a == rows_b
    part_cases = [
        sorted(r["case"] for r in csv.DictReader((parts / f"segment_summary_part-{k}.csv").open())) for k in (0, 1)
    ]
    assert sorted(part_cases[0] + part_cases[1]) == sorted(ok + ["sub-02_T2w"]) and not set(part_cases[0]) & set(
        part_cases[1]
    )
    # resume: finished cases are skipped and left untouched, the failing one is tried again
    done = whole / "sub-01" / "anat" / "sub-01_T2w_label-SC_softseg.nii.gz"
    stamp = done.stat().st_mtime_ns
    again = subprocess.run(
        [console_script("nnspine"), "segment", "cord", "-i", str(cohort), "-o", str(whole), *common,
         "--skip-existing"],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert again.returncode == 2 and done.stat().st_mtime_ns == stamp
    # the summary keeps every case: the finished ones' earlier rows, the retried one's new row
    rows = {r["case"]: r["status"] for r in csv.DictReader((whole / "segment_summary.csv").open())}
    assert rows == {**{c: "ok" for c in ok}, "sub-02_T2w": "failed"}
