"""A tiny soft-segmentation ablation (``benchmarks/bench_softseg_ablation.py``) through the real console scripts.

Plumbing only (two training iterations say nothing about quality): every arm trains with the shared budget
(``nnUNetv2_train``), predicts the held-out subjects (``nnUNetv2_predict``; soft arms through ``nnspine
softmask``), is measured by ``nnspine evaluate csa-variability`` and lands in the comparison table with the
p-value of ``nnspine evaluate compare-variability`` against arm a, which the test recomputes with scipy from the
per-subject CSA tables.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from nnunet_spine.apps.ablation import ARMS, CONFIG, CONTRASTS, DATASETS, PLANS, AblationConfig, run_ablation


@pytest.mark.slow
def test_ablation_every_arm_trains_predicts_and_is_compared(tmp_path):
    import torch
    from scipy.stats import wilcoxon

    # the smallest run through every path: arm c repeats arm b's path with other augmentation, so it is left out
    config = AblationConfig(
        n_train=1, n_test=2, epochs=1, iterations=2, val_iterations=1, target_spacing_mm=1.6, arms=("a", "b", "d")
    )
    result = run_ablation(tmp_path / "ablation", config, say=lambda line: None)
    root = result.folder
    folder = result.budget_folder()
    assert folder == root / "budget_1x2"
    arms = [a for a in ARMS if a.key in config.arms]
    test_subjects = ["sub-01", "sub-02"]
    unseen = config.unseen_contrasts
    assert len(unseen) == 2 and set(unseen).isdisjoint(config.seen_contrasts)

    # every arm trained its trainer with the shared budget, on its own training set
    for arm in arms:
        dataset_id, name = DATASETS[arm.dataset]
        dataset = f"Dataset{dataset_id:03d}_{name}"
        out = folder / "nnUNet_results" / dataset / f"{arm.trainer}__{PLANS}__{CONFIG}" / "fold_0"
        checkpoint = torch.load(out / "checkpoint_final.pth", map_location="cpu", weights_only=False)
        assert checkpoint["trainer_name"] == arm.trainer
        assert len(checkpoint["logging"]["train_losses"]) == config.epochs
        assert checkpoint["inference_allowed_mirroring_axes"] is None  # NNSPINE_NO_TTA reached the trainer
        labels = sorted(p.name for p in (root / "nnUNet_raw" / dataset / "labelsTr").glob("*.nii.gz"))
        trained_on = config.seen_contrasts if arm.dataset == "soft_seen" else CONTRASTS
        assert labels == sorted(f"sub-01_{c}.nii.gz" for c in trained_on)
        plans = json.loads((root / "nnUNet_preprocessed" / dataset / f"{PLANS}.json").read_text())
        assert plans["configurations"][CONFIG]["spacing"] == [1.6, 1.6, 1.6]  # one set of plans for every arm

    # every held-out image predicted (arm d: its unseen contrasts only); soft arms as soft masks on the image grid
    for arm in arms:
        contrasts = unseen if arm.unseen_only else CONTRASTS
        masks = folder / ("soft" if arm.soft else "pred") / arm.name
        assert sorted(p.name for p in masks.glob("*.nii.gz")) == sorted(
            f"{s}_{c}.nii.gz" for s in test_subjects for c in contrasts
        )

    # the table: every arm and reference, a p-value against arm a for each but a itself
    table = result.table.set_index("row")
    expected = [
        "(a) binary",
        "(b) soft",
        "(a) binary, unseen pair",
        "(d) softDA5_unseen",
        "ref: gt_binary",
        "ref: gt_truth",
    ]
    assert list(table.index) == expected
    assert pd.read_csv(folder / "ablation.csv")["row"].tolist() == expected
    for row in expected:
        p = table.loc[row, "wilcoxon_p_vs_a"]
        assert np.isnan(p) if row.startswith("(a)") else 0 <= p <= 1, row
        assert table.loc[row, "n_subjects"] == 2
        assert table.loc[row, "n_contrasts"] == (2 if "unseen" in row else 5)

    # the p-values are the Wilcoxon signed-rank test of the per-subject SDs across contrasts, recomputed here
    def sds(name: str) -> list[float]:
        df = pd.read_csv(folder / "csa" / f"{name}_filled.csv")
        df = df[df["contrast"] != "ALL"]
        return [float(np.std(df.loc[df["subject"] == s, "csa_mm2"])) for s in test_subjects]

    for row, name, baseline in (
        ("(b) soft", "soft", "binary"),
        ("(d) softDA5_unseen", "softDA5_unseen", "binary_unseen"),
        ("ref: gt_truth", "gt_truth", "binary"),
    ):
        a, b = sds(name), sds(baseline)
        expected_p = 1.0 if np.allclose(a, b) else wilcoxon(a, b).pvalue
        assert table.loc[row, "wilcoxon_p_vs_a"] == pytest.approx(expected_p, abs=1e-3), row
        assert table.loc[row, "sd_across_contrasts_mm2"] == pytest.approx(np.mean(a), rel=1e-6), row

    # the evaluation path measures the exact truth masks close to the phantom's true CSA (independent check)
    truth = {
        s: json.loads((root / "phantom_test/derivatives/truth" / s / f"{s}_truth.json").read_text())[
            "csa_per_level_mm2"
        ][str(config.level)]
        for s in test_subjects
    }
    gt = pd.read_csv(folder / "csa" / "gt_truth_filled.csv")
    gt = gt[gt["contrast"] != "ALL"]
    errors = [100 * (r.csa_mm2 - truth[r.subject]) / truth[r.subject] for r in gt.itertuples()]
    assert table.loc["ref: gt_truth", "csa_error_pct"] == pytest.approx(np.mean(errors), abs=1e-3)
    assert table.loc["ref: gt_truth", "abs_csa_error_pct"] < 5.0
    assert table.loc["ref: gt_truth", "n_missing"] == 0 and table.loc["ref: gt_binary", "n_missing"] == 0

    # the halo split adds up: the exact truth as a prediction has inside + halo = its own area (no CSA error)
    row = table.loc["ref: gt_truth"]
    assert row["inside_error_pct"] + row["halo_pct"] == pytest.approx(0.0, abs=1e-6)
    assert row["halo_pct"] > 0  # partial-volume voxels: t (1 - t) > 0
    halo = pd.read_csv(folder / "halo.csv")
    assert set(halo["row"]) == set(expected) and len(halo[halo["row"] == "(b) soft"]) == 10  # 2 subjects x 5
    profile = pd.read_csv(folder / "radial_profile.csv")
    assert {"truth", "ref: soft GT", "(b) soft"} <= set(profile["row"])
    assert (folder / "radial_profile.png").stat().st_size > 0
    curve = pd.read_csv(root / "learning_curve.csv")
    assert set(curve["budget"]) == {"1x2"} and curve["total_iterations"].eq(2).all()
    assert (root / "learning_curve.png").is_file()
