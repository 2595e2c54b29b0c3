"""The soft-cord pipeline end to end, every step through its real console script:

phantom BIDS (``nnspine phantom``) → ``nnspine convert softgt`` → ``nnUNetv2_plan_and_preprocess`` →
``nnspine preprocess-soft`` → ``nnUNetv2_train … -tr nnUNetTrainerSoftSeg_debug`` → ``nnUNetv2_predict
--save_probabilities`` → ``nnspine softmask`` → ``nnspine csa`` / ``nnspine evaluate softseg``.

Asserts what a few CPU iterations can show: the trained model's loss is the soft-target loss (recomputed from
scratch on a validation batch), every hand-over keeps the data and geometry right, and each command's outputs
exist and are well formed. It does not assert learned quality.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from nnunet_helpers import (assert_validation_loss_is_soft_target_loss, console_script,  # noqa: E402
                            nnunet_env, run)

from nnunet_extensions.io import load_image  # noqa: E402

DATASET_ID, NAME = 991, "PipelineCord"
DATASET = f"Dataset{DATASET_ID}_{NAME}"
PLANS = "nnUNetPlansCPU"
TRAINER = "nnUNetTrainerSoftSeg_debug"
CONTRASTS = ["T2w", "T1w", "T2starw", "flip-1_mt-on_MTS", "flip-2_mt-off_MTS"]


def nnspine(env: dict, *args: str):
    return run([console_script("nnspine"), *args], env)


@pytest.mark.slow
def test_soft_cord_pipeline_with_real_console_scripts(tmp_path):
    import torch

    export = nnspine(nnunet_env(tmp_path), "trainers", "--export").stdout.strip()
    env = nnunet_env(tmp_path, nnUNet_extTrainer=export.split("=", 1)[1].strip("'"))

    # phantoms: one training subject (5 contrasts = 5 cases), one unseen test subject
    nnspine(env, "phantom", "--kind", "cord", "-o", str(tmp_path / "train_bids"), "--seed", "0", "-q")
    nnspine(env, "phantom", "--kind", "cord", "-o", str(tmp_path / "test_bids"), "--seed", "1", "-q")

    # soft ground truth + nnU-Net raw dataset
    nnspine(env, "convert", "softgt", "-i", str(tmp_path / "train_bids"), "--derivatives-out",
            str(tmp_path / "deriv"), "--nnunet-dataset", str(DATASET_ID), "--name", NAME, "-q")
    raw = Path(env["nnUNet_raw"]) / DATASET
    cases = sorted(p.name[: -len(".nii.gz")] for p in (raw / "labelsTr").glob("*.nii.gz"))
    assert cases == sorted(f"sub-01_{c}" for c in CONTRASTS)
    for case in cases:
        soft = load_image(raw / "labelsTr_soft" / f"{case}.nii.gz", "soft")
        label = load_image(raw / "labelsTr" / f"{case}.nii.gz", "binary")
        assert np.array_equal(label.data > 0, soft.data >= 0.5)
        assert ((soft.data > 0) & (soft.data < 1)).any()  # partial volume is there

    # real planning/preprocessing (small plans for CPU), then the soft step
    run([console_script("nnUNetv2_plan_and_preprocess"), "-d", str(DATASET_ID), "-c", "3d_fullres", "-np", "1",
         "-npfp", "1", "--verify_dataset_integrity", "--no_pbar", "-gpu_memory_target", "1",
         "-overwrite_plans_name", PLANS], {**env, "nnUNet_n_proc_DA": "1"})
    nnspine(env, "preprocess-soft", "-d", str(DATASET_ID), "-c", "3d_fullres", "-p", PLANS, "-q")
    pre = Path(env["nnUNet_preprocessed"]) / DATASET
    plans = json.loads((pre / f"{PLANS}.json").read_text())
    cfg = plans["configurations"]["3d_fullres"]
    assert cfg["preprocessor_name"] == "DefaultPreprocessor" and plans["label_manager"] == "LabelManager"
    assert sorted(p.name for p in (pre / cfg["data_identifier"] / "soft_targets").glob("*.b2nd")) == \
        [f"{c}.b2nd" for c in cases]

    # real training through nnUNet_extTrainer
    run([console_script("nnUNetv2_train"), str(DATASET_ID), "3d_fullres", "all", "-tr", TRAINER, "-p", PLANS,
         "-device", "cpu"], env)
    out = Path(env["nnUNet_results"]) / DATASET / f"{TRAINER}__{PLANS}__3d_fullres" / "fold_all"
    ckpt = torch.load(out / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    log = ckpt["logging"]
    assert len(log["val_mse_soft"]) == len(log["train_losses"]) >= 1
    assert (out / "progress.png").exists()
    # the loss is the soft-target loss: the trained model's validation loss on a batch of the real pipeline's data
    # equals MSE + soft Dice against the converter's soft target (read from preprocess-soft's file at each
    # sample's crop) computed from scratch; a stock-trained model (CE + Dice on the label) fails here
    assert_validation_loss_is_soft_target_loss(env, DATASET_ID, PLANS, out / "checkpoint_final.pth")

    # real prediction with probabilities on the unseen subject, then our soft masks on the original grids
    pred_in = tmp_path / "pred_in"
    pred_in.mkdir()
    test_images = {c: tmp_path / "test_bids" / "sub-01" / "anat" / f"sub-01_{c}.nii.gz" for c in ("T2w", "T2starw")}
    for c, image in test_images.items():
        (pred_in / f"sub-01_{c}_0000.nii.gz").write_bytes(image.read_bytes())
    run([console_script("nnUNetv2_predict"), "-i", str(pred_in), "-o", str(tmp_path / "pred"), "-d", str(DATASET_ID),
         "-c", "3d_fullres", "-f", "all", "-tr", TRAINER, "-p", PLANS, "--save_probabilities", "--disable_tta",
         "-device", "cpu", "-npp", "1", "-nps", "1"], env)
    nnspine(env, "softmask", "-i", str(tmp_path / "pred"), "-o", str(tmp_path / "soft"), "--threshold", "0.5", "-q")
    for c, image in test_images.items():
        src = load_image(image)
        soft = load_image(tmp_path / "soft" / f"sub-01_{c}.nii.gz", "soft")
        assert soft.data.dtype == np.float32 and soft.shape == src.shape
        np.testing.assert_allclose(soft.affine, src.affine, atol=1e-4)
        assert ((soft.data > 0.0) & (soft.data < 1.0)).any()  # a soft output, not a label map
        # nnU-Net's own export is the argmax of the same probabilities (ties at exactly 0.5 go to background)
        nn_seg = load_image(tmp_path / "pred" / f"sub-01_{c}.nii.gz", "labels")
        assert np.array_equal(nn_seg.data > 0, soft.data > 0.5)

    # measurement and evaluation run on the soft predictions
    csa_csv = tmp_path / "csa.csv"
    nnspine(env, "csa", "-i", str(tmp_path / "soft" / "sub-01_T2w.nii.gz"), "--perslice", "-o", str(csa_csv))
    rows = list(csv.DictReader(csa_csv.open()))
    assert rows and all(float(r["MEAN(area)"]) >= 0 for r in rows)
    ref = tmp_path / "ref"
    ref.mkdir()
    for c in test_images:
        truth = tmp_path / "test_bids/derivatives/truth/sub-01/anat" / f"sub-01_{c}_label-SC_softseg.nii.gz"
        (ref / f"sub-01_{c}.nii.gz").write_bytes(truth.read_bytes())
    nnspine(env, "evaluate", "softseg", "--pred", str(tmp_path / "soft"), "--ref", str(ref), "-o",
            str(tmp_path / "eval.csv"), "-q")
    evaluated = list(csv.DictReader((tmp_path / "eval.csv").open()))
    assert [r["case"] for r in evaluated] == ["sub-01_T2starw", "sub-01_T2w", "MEAN"]
    assert all(0.0 <= float(r["soft_dice"]) <= 1.0 for r in evaluated)
