"""End to end with the real console scripts: toy dataset → ``nnUNetv2_plan_and_preprocess`` → ``nnspine
preprocess-soft`` → ``nnUNetv2_train ... -tr nnUNetTrainerSoftSeg_debug`` (found through ``nnUNet_extTrainer``,
CPU) → ``nnUNetv2_predict --save_probabilities --disable_tta``.

Asserts that the soft targets reached the training (soft metrics in the log and the checkpoint, the soft loss in
debug.json, the trained model's validation loss equal to the soft-target loss recomputed from scratch), that
nnU-Net's logging contract holds (progress.png, checkpoint selection, final validation) and that predictions have
the input's geometry.
It does not assert learned quality (2 epochs of 4 iterations). About 2-3 minutes on 2 CPU cores.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from nnunet_helpers import (  # noqa: E402
    TOY_ID,
    TOY_NAME,
    assert_validation_loss_is_soft_target_loss,
    console_script,
    make_toy_dataset,
    nnunet_env,
    plan_and_preprocess,
    preprocess_soft,
    run,
)

TRAINER = "nnUNetTrainerSoftSeg_debug"


@pytest.mark.slow
def test_softseg_training_and_prediction_with_stock_nnunet(tmp_path):
    import nibabel as nib
    import torch

    t_start = time.perf_counter()
    timings = {}
    export = run([console_script("nnspine"), "trainers", "--export"], nnunet_env(tmp_path)).stdout.strip()
    assert export.startswith("export nnUNet_extTrainer=")
    env = nnunet_env(tmp_path, nnUNet_extTrainer=export.split("=", 1)[1].strip("'"))

    # small cases of nearly equal size: every case fits one patch, which keeps the final validation short
    raw = make_toy_dataset(env["nnUNet_raw"], n_cases=5, shape=(20, 32, 32), spacing_jitter=0.03)
    t = time.perf_counter()
    plan_and_preprocess(env, TOY_ID, "3d_fullres")
    timings["plan_and_preprocess"] = time.perf_counter() - t

    t = time.perf_counter()
    preprocess_soft(env, TOY_ID, "3d_fullres")
    timings["preprocess_soft"] = time.perf_counter() - t
    pre = Path(env["nnUNet_preprocessed"]) / TOY_NAME
    plans = json.loads((pre / "nnUNetPlans.json").read_text())
    cfg = plans["configurations"]["3d_fullres"]
    assert cfg["preprocessor_name"] == "DefaultPreprocessor" and plans["label_manager"] == "LabelManager"
    assert len(list((pre / cfg["data_identifier"] / "soft_targets").glob("*.b2nd"))) == 5

    t = time.perf_counter()
    run([console_script("nnUNetv2_train"), str(TOY_ID), "3d_fullres", "all", "-tr", TRAINER, "-device", "cpu"], env)
    timings["train"] = time.perf_counter() - t

    out = Path(env["nnUNet_results"]) / TOY_NAME / f"{TRAINER}__nnUNetPlans__3d_fullres" / "fold_all"
    for f in (
        "checkpoint_final.pth",
        "checkpoint_best.pth",
        "progress.png",
        "progress_soft.png",
        "debug.json",
        "validation/summary.json",
    ):
        assert (out / f).is_file(), f
    ckpt = torch.load(out / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    log = ckpt["logging"]
    n_epochs = len(log["train_losses"])
    assert n_epochs >= 1
    for k in ("val_soft_dice", "val_mse_soft", "val_mse_binary", "mean_fg_dice", "ema_fg_dice"):
        assert len(log[k]) == n_epochs and all(np.isfinite(v) for v in log[k]), k
    debug = json.loads((out / "debug.json").read_text())
    assert "SoftTargetLoss" in debug["loss"] and "weight_mse" in debug["soft_loss_weights"]
    text = "".join(p.read_text() for p in out.glob("training_log_*.txt"))
    assert text.count("val soft Dice") == n_epochs
    summary = json.loads((out / "validation" / "summary.json").read_text())
    assert "foreground_mean" in summary
    # the trained model's loss is the soft-target loss (recomputed from scratch on one validation batch)
    assert_validation_loss_is_soft_target_loss(env, TOY_ID, "nnUNetPlans", out / "checkpoint_final.pth")

    t = time.perf_counter()
    pred = tmp_path / "pred"
    run(
        [
            console_script("nnUNetv2_predict"),
            "-i",
            str(raw / "imagesTs"),
            "-o",
            str(pred),
            "-d",
            str(TOY_ID),
            "-c",
            "3d_fullres",
            "-f",
            "all",
            "-tr",
            TRAINER,
            "--save_probabilities",
            "--disable_tta",
            "-device",
            "cpu",
        ],
        env,
    )
    timings["predict"] = time.perf_counter() - t

    image = nib.load(str(raw / "imagesTs" / "toy_000_0000.nii.gz"))
    seg = nib.load(str(pred / "toy_000.nii.gz"))
    assert seg.shape == image.shape
    assert np.allclose(seg.affine, image.affine, atol=1e-4)
    labels = np.unique(np.asarray(seg.dataobj))
    assert set(labels.tolist()) <= {0, 1}
    prob = np.load(pred / "toy_000.npz")["probabilities"]
    assert prob.shape == (2, *image.shape[::-1])  # SimpleITK order (z, y, x)
    assert prob.dtype == np.float32 and prob.min() >= 0 and prob.max() <= 1
    assert np.allclose(prob.sum(0), 1, atol=1e-4)
    # the exported label map is the soft foreground probability thresholded by argmax (0.5)
    fg = np.transpose(prob[1], (2, 1, 0))
    agree = np.mean((fg > 0.5) == (np.asarray(seg.dataobj) == 1))
    assert agree > 0.999
    assert (pred / "toy_000.pkl").is_file()

    timings["total"] = time.perf_counter() - t_start
    print("e2e timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
