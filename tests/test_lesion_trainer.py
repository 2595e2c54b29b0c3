"""Lesion trainers (:mod:`nnunet_spine.trainers.lesion`): nnU-Net's Dice + CE / BCE without Dice smoothing, foreground
oversampling, lesion-wise validation per epoch and after training, variants; plain and region labels.

Uses a toy lesion dataset planned and preprocessed by the real nnU-Net once per session
(:func:`nnunet_helpers.prepared_lesion_toy`); trainers run in-process on the CPU with temporary results.
Lesion counts are checked against an independent count (scipy components + the overlap rule written here).
"""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from nnunet_helpers import LESION_LABELS_REGIONS, console_script, environ, prepared_lesion_toy
from scipy import ndimage

TRAINER_NAMES = [
    "nnUNetTrainerLesion",
    "nnUNetTrainerLesion_DiceFocal",
    "nnUNetTrainerLesion_DiceTopK",
    "nnUNetTrainerLesion_debug",
    "nnUNetTrainerLesion_demo",
]


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return prepared_lesion_toy(tmp_path_factory)


@pytest.fixture(scope="module")
def env(toy, tmp_path_factory):
    import subprocess

    export = subprocess.run(
        [console_script("nnspine"), "trainers", "--export"], capture_output=True, text=True, check=True
    ).stdout.strip()
    return {
        "nnUNet_raw": toy["env"]["nnUNet_raw"],
        "nnUNet_preprocessed": toy["env"]["nnUNet_preprocessed"],
        "nnUNet_results": str(tmp_path_factory.mktemp("lesion_results")),
        "nnUNet_n_proc_DA": "0",
        "nnUNet_compile": "f",
        "nnUNet_extTrainer": export.split("=", 1)[1].strip("'"),
    }


def _dataset_json(toy, labels: dict | None = None) -> dict:
    dj = json.loads((toy["pre"] / "dataset.json").read_text())
    if labels is not None:
        dj.pop("regions_class_order", None)
        dj.update(labels)
    return dj


def _make(env, toy, name="nnUNetTrainerLesion", labels: dict | None = None, initialize=True):
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    with environ(env):
        cls = recursive_find_trainer_class_by_name(name)
        plans = json.loads((toy["pre"] / "nnUNetPlans.json").read_text())
        plans["continue_training"] = False
        trainer = cls(
            plans=plans,
            configuration="3d_fullres",
            fold="all",
            dataset_json=_dataset_json(toy, labels),
            device=torch.device("cpu"),
        )
        if initialize:
            trainer.initialize()
    return trainer


# ============================================================================ independent lesion counting
STRUCTURE_26 = np.ones((3, 3, 3), bool)


def count_by_hand(ref: np.ndarray, pred: np.ndarray) -> dict:
    """The overlap rule from its definition: a reference component is detected when >= 10 % of its voxels are
    predicted; a predicted component is a false positive when it shares no voxel with the reference mask."""
    ref_lab, n_ref = ndimage.label(ref, STRUCTURE_26)
    pred_lab, n_pred = ndimage.label(pred, STRUCTURE_26)
    tp = sum(1 for i in range(1, n_ref + 1) if pred[ref_lab == i].mean() >= 0.10)
    fp = sum(1 for j in range(1, n_pred + 1) if not ref[pred_lab == j].any())
    return {"ref_lesions": n_ref, "pred_lesions": n_pred, "tp": tp, "fp": fp, "fn": n_ref - tp}


def scores_by_hand(c: dict) -> tuple[float, float, float]:
    if c["ref_lesions"] == 0 and c["pred_lesions"] == 0:
        return 1.0, 1.0, 1.0
    sens = c["tp"] / c["ref_lesions"] if c["ref_lesions"] else 1.0
    prec = (c["pred_lesions"] - c["fp"]) / c["pred_lesions"] if c["pred_lesions"] and c["ref_lesions"] else 0.0
    f1 = 2 * sens * prec / (sens + prec) if sens + prec else 0.0
    return sens, prec, f1


# ===================================================================================== setup and losses
@pytest.mark.parametrize("regions", [False, True])
def test_loss_is_nnunet_dice_and_ce_without_dice_smoothing(env, toy, regions):
    from nnunetv2.training.loss.compound_losses import DC_and_BCE_loss, DC_and_CE_loss
    from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper

    from nnunet_spine.trainers.lesion import LesionTarget

    t = _make(env, toy, labels=LESION_LABELS_REGIONS if regions else None)
    assert isinstance(t.loss, DeepSupervisionWrapper)
    inner = t.loss.loss
    assert isinstance(inner, DC_and_BCE_loss if regions else DC_and_CE_loss)
    assert inner.dc.smooth == 0 and type(inner.ce).__name__ == (
        "BCEWithLogitsLoss" if regions else "RobustCrossEntropyLoss"
    )
    assert t.oversample_foreground_percent == 0.66 and t.probabilistic_oversampling
    assert t.lesion_target == (LesionTarget(True, 1, 2, (2,)) if regions else LesionTarget(False, 2, 2, (2,)))
    # an empty patch predicted empty: unsmoothed Dice term 0 (nnU-Net's smooth 1e-5 would give -1, a reward for
    # predicting nothing); a one-voxel lesion under uniform probabilities: by hand
    shape = (1, 2 if regions else 3, 4, 4, 4)
    empty_target = torch.zeros((1, 2, 4, 4, 4) if regions else (1, 1, 4, 4, 4))
    confident_background = torch.full(shape, -20.0)
    if not regions:
        confident_background[:, 0] = 20.0
    assert float(inner.dc(confident_background, empty_target)) == pytest.approx(0.0, abs=1e-6)
    if not regions:
        target = torch.zeros(1, 1, 4, 4, 4)
        target[0, 0, 1, 1, 1] = 2
        # channels 1, 2 have p = 1/3 everywhere: cord Dice 0 (no cord voxel), lesion 2·(1/3) / (1 + 64/3)
        expected = -(0 + (2 / 3) / (1 + 64 / 3)) / 2
        assert float(inner.dc(torch.zeros(shape), target)) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("regions", [False, True])
def test_variants_replace_only_the_voxel_term(env, toy, regions):
    from nnunet_spine.trainers.lesion_losses import (
        FocalBCEWithLogitsLoss,
        FocalCELoss,
        TopKBCEWithLogitsLoss,
        TopKCELoss,
    )

    labels = LESION_LABELS_REGIONS if regions else None
    focal = _make(env, toy, "nnUNetTrainerLesion_DiceFocal", labels).loss.loss
    topk = _make(env, toy, "nnUNetTrainerLesion_DiceTopK", labels).loss.loss
    assert isinstance(focal.ce, FocalBCEWithLogitsLoss if regions else FocalCELoss) and focal.dc.smooth == 0
    assert isinstance(topk.ce, TopKBCEWithLogitsLoss if regions else TopKCELoss) and topk.dc.smooth == 0
    assert topk.ce.k == 10 and focal.ce.gamma == 2


def test_top_k_refuses_regions_with_an_ignore_label(env, toy):
    labels = {"labels": {**LESION_LABELS_REGIONS["labels"], "ignore": 3}, "regions_class_order": [1, 2]}
    focal = _make(env, toy, "nnUNetTrainerLesion_DiceFocal", labels).loss.loss
    assert focal.ce.reduction == "none"  # nnU-Net masks the voxel map itself
    with pytest.raises(RuntimeError, match="ignore label are not supported"):
        _make(env, toy, "nnUNetTrainerLesion_DiceTopK", labels)


def test_short_variants(env, toy):
    dbg = _make(env, toy, "nnUNetTrainerLesion_debug", initialize=False)
    demo = _make(env, toy, "nnUNetTrainerLesion_demo", initialize=False)
    full = _make(env, toy, initialize=False)
    assert (dbg.num_epochs, dbg.num_iterations_per_epoch, dbg.num_val_iterations_per_epoch) == (2, 4, 2)
    assert demo.num_epochs * demo.num_iterations_per_epoch == 200
    # the demo's changes that make it leave the all-background solution every time (bench_lesion_demo.py)
    assert demo.initial_lr == 0.03 == 3 * full.initial_lr and demo.oversample_foreground_percent == 1.0
    assert full.num_epochs == 1000 and full.oversample_foreground_percent == 0.66  # nnU-Net's length, ours sampling
    for t in (dbg, demo, full):
        t.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
    assert dbg.inference_allowed_mirroring_axes is None and demo.inference_allowed_mirroring_axes is None
    assert full.inference_allowed_mirroring_axes


# ================================================================================ lesion masks of patches
def test_patch_masks_plain_and_regions_with_ignore_label():
    from nnunet_spine.trainers.lesion import LesionTarget

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, size=(2, 1, 5, 6, 7))
    ignore = rng.uniform(size=labels.shape) < 0.1
    # plain: argmax of a 3-channel output; ignore label 3
    logits = torch.from_numpy(rng.normal(size=(2, 3, 5, 6, 7)))
    target = torch.from_numpy(np.where(ignore, 3, labels))
    pred, ref = LesionTarget(False, 2, 2, (2,)).patch_masks(logits, target, ignore_label=3)
    valid = ~ignore[:, 0]
    np.testing.assert_array_equal(pred, (logits.numpy().argmax(1) == 2) & valid)
    np.testing.assert_array_equal(ref, (labels[:, 0] == 2) & valid)
    # regions: channel 1 (lesion) above logit 0; the last target channel is nnU-Net's ignore mask
    region_logits = torch.from_numpy(rng.normal(size=(2, 2, 5, 6, 7)))
    region_target = torch.from_numpy(np.concatenate([labels >= 1, labels == 2, ignore], 1).astype(np.float32))
    pred, ref = LesionTarget(True, 1, 2, (2,)).patch_masks(region_logits, region_target, ignore_label=3)
    np.testing.assert_array_equal(pred, (region_logits.numpy()[:, 1] > 0) & valid)
    np.testing.assert_array_equal(ref, (labels[:, 0] == 2) & valid)


# ==================================================================================== epoch validation
def test_epoch_logs_lesion_scores_of_the_validation_patches(env, toy, tmp_path):
    """One short epoch through nnU-Net's hooks: per batch, the lesion counts equal an independent count on the
    network's own output; the logged sensitivity / precision / F1 are those of the summed counts; nnU-Net's
    logging goes on, progress_lesion.png and the log line appear."""
    from pathlib import Path

    torch.manual_seed(0)
    np.random.seed(0)
    t = _make(env, toy, initialize=False)
    with environ(env):
        t.on_train_start()
        try:
            t.on_epoch_start()
            t.on_train_epoch_start()
            t.on_train_epoch_end([t.train_step(next(t.dataloader_train)) for _ in range(2)])
            with torch.no_grad():
                t.on_validation_epoch_start()
                batches = [next(t.dataloader_val) for _ in range(2)]
                outputs = [t.network(b["data"])[0] for b in batches]
                outs = [t.validation_step(b) for b in batches]
                total = dict.fromkeys(("ref_lesions", "pred_lesions", "tp", "fp", "fn"), 0)
                for b, o, out in zip(batches, outputs, outs):
                    pred = o.argmax(1).numpy() == 2
                    ref = b["target"][0][:, 0].numpy() == 2
                    assert ref.any()  # oversampling puts lesions into the validation patches
                    per_batch = dict.fromkeys(total, 0)
                    for p, r in zip(pred, ref):
                        for k, v in count_by_hand(r, p).items():
                            per_batch[k] += v
                    assert out["lesion_counts"].tolist() == list(per_batch.values())
                    total = {k: total[k] + per_batch[k] for k in total}
                t.on_validation_epoch_end(outs)
            t.on_epoch_end()
        finally:
            t.on_train_end()
    log = t.logger.local_logger.my_fantastic_logging
    sens, prec, f1 = scores_by_hand(total)
    assert log["val_lesion_sensitivity"] == [pytest.approx(sens)]
    assert log["val_lesion_precision"] == [pytest.approx(prec)]
    assert log["val_lesion_f1"] == [pytest.approx(f1)]
    assert len(log["mean_fg_dice"]) == 1 and np.isfinite(log["ema_fg_dice"][0])
    out = Path(t.output_folder)
    assert (out / "progress.png").is_file() and (out / "progress_lesion.png").is_file()
    text = "".join(p.read_text() for p in out.glob("training_log_*.txt"))
    assert f"tp {total['tp']} fp {total['fp']} fn {total['fn']}" in text and "val lesion sensitivity" in text


# ================================================================================ final validation file
@pytest.mark.parametrize("regions", [False, True])
def test_final_validation_lesion_metrics_csv_by_hand(tmp_path, regions):
    """Reference: cord (1) with three lesions (2); prediction: lesion A whole, 1 of 27 voxels of lesion B (< 10 %:
    missed, but touching it: not a false positive), nothing of C, one false-positive blob. By hand: 3 reference
    and 3 predicted lesions, tp 1, fp 1, fn 2; sensitivity 1/3, precision 2/3, F1 4/9; voxels 0.8 × 1 × 2 mm."""
    import pandas as pd

    from nnunet_spine.trainers.lesion import LesionTarget, write_validation_lesion_metrics

    shape = (30, 12, 12)
    ref = np.zeros(shape, np.uint8)
    ref[:, 3:9, 3:9] = 1
    ref[2:5, 4:7, 4:7] = 2  # A, 27 voxels
    ref[12:15, 4:7, 4:7] = 2  # B, 27 voxels
    ref[22:25, 4:7, 4:7] = 2  # C, 27 voxels
    pred = ref.copy()
    pred[pred == 2] = 1
    pred[2:5, 4:7, 4:7] = 2  # A found
    pred[13, 5, 5] = 2  # 1 voxel of B
    pred[18:20, 5:7, 5:7] = 2  # false positive, 8 voxels, inside the cord
    affine = np.diag([0.8, 1.0, 2.0, 1.0])
    val, gt = tmp_path / "validation", tmp_path / "gt_segmentations"
    for folder, data in ((val, pred), (gt, ref)):
        folder.mkdir()
        nib.save(nib.Nifti1Image(data, affine), str(folder / "case_000.nii.gz"))
    (val / "summary.json").write_text("{}")  # nnU-Net's own file beside ours is left alone
    target = LesionTarget(True, 1, 2, (2,)) if regions else LesionTarget(False, 2, 2, (2,))
    out = write_validation_lesion_metrics(val, gt, ".nii.gz", target)
    assert out == val / "lesion_metrics.csv"
    table = pd.read_csv(out)
    assert table["case"].tolist() == ["case_000", "ALL", "MEAN", "SD", "N"]
    sizes = pd.read_csv(val / "lesion_detection_by_size.csv")
    assert sizes.columns.tolist() == ["size_bin", "ref_lesions", "detected", "lesion_sensitivity"]
    assert sizes["ref_lesions"].sum() == 3 and sizes["detected"].sum() == 1
    row = table.iloc[0]
    assert (row.ref_lesions, row.pred_lesions, row.tp, row.fp, row.fn) == (3, 3, 1, 1, 2)
    assert row.match == "overlap>=10%" and row.connectivity == 26
    assert row.lesion_sensitivity == pytest.approx(1 / 3, abs=1e-5)
    assert row.lesion_precision == pytest.approx(2 / 3, abs=1e-5)
    assert row.lesion_f1 == pytest.approx(4 / 9, abs=1e-5)
    # Dice 2·28 / (81 + 36); volumes with 1.6 mm³ voxels
    assert row.dice == pytest.approx(56 / 117, abs=1e-5)
    assert row.ref_volume_mm3 == pytest.approx(81 * 1.6) and row.pred_volume_mm3 == pytest.approx(36 * 1.6)
    assert table.iloc[1][["ref_lesions", "tp", "fp", "fn"]].tolist() == [3, 1, 1, 2]
