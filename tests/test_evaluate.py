"""nnspine evaluate: soft-segmentation metrics and CSA variability across contrasts, against phantom truth."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nnunet_extensions.io import load_image, save_image
from postprocessing.metrics import dice_at, evaluate_softseg_case, mse, soft_dice

CONTRASTS = ["T2w", "T1w", "T2starw", "flip-1_mt-on_MTS", "flip-2_mt-off_MTS"]


def nnspine(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["nnspine", *args], capture_output=True, text=True)


def test_soft_metrics_definitions():
    r = np.array([0.0, 0.25, 0.5, 1.0, 1.0])
    assert soft_dice(r, r) == pytest.approx(2 * (r * r).sum() / (2 * r.sum()))
    assert soft_dice((r >= 0.5).astype(float), (r >= 0.5).astype(float)) == 1.0
    assert soft_dice(np.zeros(3), np.zeros(3)) == 1.0
    assert mse(r, r) == 0.0
    assert mse(r, np.ones(5)) == pytest.approx(np.mean((r - 1) ** 2))
    assert dice_at(r, np.array([0, 0, 1, 1, 1.0])) == 1.0


def _truth(phantom: dict, contrast: str) -> Path:
    return Path(phantom["root"]) / "derivatives/truth/sub-01/anat" / f"sub-01_{contrast}_label-SC_softseg.nii.gz"


def _binary(phantom: dict, contrast: str) -> Path:
    return Path(phantom["root"]) / "derivatives/labels/sub-01/anat" / f"sub-01_{contrast}_label-SC_seg.nii.gz"


def test_softseg_perfect_and_binarized_predictions(cord_phantom):
    truth = _truth(cord_phantom, "T2w")
    perfect = evaluate_softseg_case(truth, truth)
    r = load_image(truth).data.astype(np.float64)
    assert perfect["soft_dice"] == pytest.approx((r * r).sum() / r.sum())  # 2Σr²/(2Σr): below 1 for soft masks
    assert 0.9 < perfect["soft_dice"] < 1.0
    assert perfect["mse"] == 0.0 and perfect["dice_0.5"] == 1.0
    assert perfect["csa_error_mm2"] == 0.0
    binary = evaluate_softseg_case(_binary(cord_phantom, "T2w"), truth)
    assert binary["mse"] > 0.0 and binary["dice_0.5"] == 1.0  # the binary mask is the truth at 0.5
    # binarizing keeps the area on average (partial volume is symmetric around 0.5): small CSA error
    assert abs(binary["csa_error_pct"]) < 2.0


def test_softseg_cli_matches_files_and_skips_bad_ones(cord_phantom, tmp_path):
    pred, ref = tmp_path / "pred", tmp_path / "ref"
    pred.mkdir(), ref.mkdir()
    for c in ("T2w", "T1w"):
        shutil.copy(_truth(cord_phantom, c), ref / f"sub-01_{c}.nii.gz")
        shutil.copy(_binary(cord_phantom, c), pred / f"sub-01_{c}.nii.gz")
    out = tmp_path / "eval.csv"
    ok = nnspine("evaluate", "softseg", "--pred", str(pred), "--ref", str(ref), "-o", str(out), "-q")
    assert ok.returncode == 0, ok.stderr
    df = pd.read_csv(out)
    assert list(df["case"]) == ["sub-01_T1w", "sub-01_T2w", "MEAN"]
    assert (df["dice_0.5"] == 1.0).all() and (df["mse"] > 0).all()
    # a prediction on another grid is reported and skipped; the rest is still measured
    img = load_image(pred / "sub-01_T1w.nii.gz")
    save_image(img.data[:-1], img.affine, pred / "sub-01_T1w.nii.gz", overwrite=True)
    out2 = tmp_path / "eval2.csv"
    bad = nnspine("evaluate", "softseg", "--pred", str(pred), "--ref", str(ref), "-o", str(out2), "-q")
    assert bad.returncode == 2
    assert "sub-01_T1w.nii.gz" in bad.stderr and "grid" in bad.stderr and "Traceback" not in bad.stderr
    assert list(pd.read_csv(out2)["case"]) == ["sub-01_T2w", "MEAN"]
    refused = nnspine("evaluate", "softseg", "--pred", str(pred), "--ref", str(ref), "-o", str(out2))
    assert refused.returncode == 2 and "exists" in refused.stderr


def test_csa_variability_on_truth_masks(cord_phantom, tmp_path):
    masks = [_truth(cord_phantom, c) for c in CONTRASTS]
    out, png = tmp_path / "var.csv", tmp_path / "var.png"
    r = nnspine("evaluate", "csa-variability", "-i", *map(str, masks), "--discs",
                str(Path(cord_phantom["root"]) / "derivatives/labels"), "--vert", "3", "-o", str(out),
                "--plot", str(png), "-q")
    assert r.returncode == 0, r.stderr
    df = pd.read_csv(out)
    per = df[df["contrast"] != "ALL"].set_index("contrast")
    assert sorted(per.index) == sorted(CONTRASTS)
    truth = cord_phantom["subjects"]["sub-01"]["csa_per_level_mm2"]["3"]
    # every contrast's exact partial-volume mask measures the true level-3 CSA closely ...
    assert np.allclose(per["csa_mm2"], truth, rtol=0.04), per["csa_mm2"].to_dict()
    assert (per["n_slices"] >= 3).all()
    # ... so the spread across contrasts is small, and reported on the ALL row
    all_row = df[df["contrast"] == "ALL"].iloc[0]
    assert all_row["csa_std_across_contrasts_mm2"] == pytest.approx(np.std(per["csa_mm2"]), rel=1e-6)
    assert all_row["csa_std_across_contrasts_mm2"] < 2.0
    assert png.stat().st_size > 5000


def test_csa_variability_missing_mask(cord_phantom, tmp_path):
    r = nnspine("evaluate", "csa-variability", "-i", str(tmp_path / "sub-01_T2w.nii.gz"), "--discs", str(tmp_path),
                "-o", str(tmp_path / "v.csv"))
    assert r.returncode == 2 and "sub-01_T2w.nii.gz: file not found" in r.stderr and "Traceback" not in r.stderr


def test_csa_variability_missing_level_file(cord_phantom, tmp_path):
    r = nnspine("evaluate", "csa-variability", "-i", str(_truth(cord_phantom, "T2w")), "--discs", str(tmp_path),
                "-o", str(tmp_path / "v.csv"))
    assert r.returncode == 2 and "no level file" in r.stderr and "Traceback" not in r.stderr
