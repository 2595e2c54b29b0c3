"""nnspine evaluate: soft-segmentation metrics and CSA variability across contrasts, against phantom truth."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nnunet_spine.core.io import load_image, save_image
from nnunet_spine.postprocessing.cord.soft_metrics import dice_at, evaluate_softseg_case, mse, soft_dice

CONTRASTS = ["T2w", "T1w", "T2starw", "flip-1_mt-on_MTS", "flip-2_mt-off_MTS"]


def nnspine(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["nnspine", *args], capture_output=True, text=True)


def test_soft_metrics_on_arrays_computed_by_hand():
    p = np.array([1.0, 0.5, 0.0, 0.25])
    r = np.array([1.0, 1.0, 0.5, 0.0])
    # Σp·r = 1 + 0.5 = 1.5, Σp = 1.75, Σr = 2.5 → 2·1.5 / 4.25 = 12/17
    assert soft_dice(p, r) == pytest.approx(12 / 17, rel=1e-12)
    # differences 0, −0.5, −0.5, 0.25 → (0.25 + 0.25 + 0.0625) / 4
    assert mse(p, r) == pytest.approx(0.140625, rel=1e-12)
    # at 0.5: p → 1 1 0 0, r → 1 1 1 0: 2·2 / (2 + 3)
    assert dice_at(p, r) == pytest.approx(0.8, rel=1e-12)
    assert soft_dice(np.zeros(3), np.zeros(3)) == 1.0  # both empty: defined as perfect
    assert soft_dice(np.zeros(3), np.array([0, 1.0, 0])) == 0.0


def _two_slice_case(tmp_path: Path, pred_data: np.ndarray, ref_data: np.ndarray) -> dict:
    aff = np.diag([0.5, 0.5, 2.0, 1.0])  # 0.25 mm² in-plane voxels, 2 mm slices
    save_image(ref_data, aff, tmp_path / "ref.nii.gz", overwrite=True)
    save_image(pred_data, aff, tmp_path / "pred.nii.gz", overwrite=True)
    return evaluate_softseg_case(tmp_path / "pred.nii.gz", tmp_path / "ref.nii.gz", case="c")


def test_softseg_case_computed_by_hand(tmp_path):
    """Reference: 4×4 voxels on slice 0 (4 mm²) and 6×4 on slice 1 (6 mm²), centred on one vertical line, so
    the centreline is straight and the angle correction is 1: mean CSA 5 mm². 16·12·2 = 384 voxels."""
    ref = np.zeros((16, 12, 2), np.float32)
    ref[6:10, 4:8, 0] = 1
    ref[5:11, 4:8, 1] = 1
    # prediction 1: slice 0 at 0.4 (partial volume), slice 1 exact
    pred = ref.copy()
    pred[:, :, 0] *= 0.4
    m = _two_slice_case(tmp_path, pred, ref)
    assert m["csa_ref_mm2"] == pytest.approx(5.0, rel=1e-6)
    assert m["csa_pred_mm2"] == pytest.approx((16 * 0.4 * 0.25 + 6.0) / 2, rel=1e-6)  # 3.8 mm²
    assert m["csa_error_mm2"] == pytest.approx(-1.2, rel=1e-5)
    assert m["csa_error_pct"] == pytest.approx(-24.0, rel=1e-5)
    # Σp = 6.4 + 24, Σp·r = 30.4, Σr = 40 → 60.8 / 70.4
    assert m["soft_dice"] == pytest.approx(60.8 / 70.4, rel=1e-6)
    assert m["mse"] == pytest.approx(16 * 0.6**2 / 384, rel=1e-6)
    assert m["dice_0.5"] == pytest.approx(2 * 24 / (24 + 40), rel=1e-12)  # slice 0 falls below 0.5
    # prediction 2: slice 1 missed entirely → its area counts as 0 over the reference's slices
    pred = ref.copy()
    pred[:, :, 1] = 0
    m = _two_slice_case(tmp_path, pred, ref)
    assert m["csa_pred_mm2"] == pytest.approx(2.0, rel=1e-6)
    assert m["csa_error_mm2"] == pytest.approx(-3.0, rel=1e-6) and m["csa_error_pct"] == pytest.approx(-60.0, rel=1e-6)
    assert m["soft_dice"] == pytest.approx(2 * 16 / (16 + 40), rel=1e-6)
    assert m["mse"] == pytest.approx(24 / 384, rel=1e-6)


def _truth(phantom: dict, contrast: str) -> Path:
    return Path(phantom["root"]) / "derivatives/truth/sub-01/anat" / f"sub-01_{contrast}_label-SC_softseg.nii.gz"


def _binary(phantom: dict, contrast: str) -> Path:
    return Path(phantom["root"]) / "derivatives/labels/sub-01/anat" / f"sub-01_{contrast}_label-SC_seg.nii.gz"


def test_softseg_binarized_truth_against_the_truth(cord_phantom):
    truth = _truth(cord_phantom, "T2w")
    binary = evaluate_softseg_case(_binary(cord_phantom, "T2w"), truth)
    assert binary["mse"] > 0.0 and binary["dice_0.5"] == 1.0  # the binary mask is the truth at 0.5
    assert binary["soft_dice"] < 1.0
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
    t2 = evaluate_softseg_case(pred / "sub-01_T2w.nii.gz", ref / "sub-01_T2w.nii.gz")
    t1 = evaluate_softseg_case(pred / "sub-01_T1w.nii.gz", ref / "sub-01_T1w.nii.gz")
    assert df.iloc[2]["soft_dice"] == pytest.approx((t1["soft_dice"] + t2["soft_dice"]) / 2, rel=1e-9)
    assert df.iloc[2]["csa_error_mm2"] == pytest.approx((t1["csa_error_mm2"] + t2["csa_error_mm2"]) / 2, rel=1e-9)
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
    r = nnspine(
        "evaluate",
        "csa-variability",
        "-i",
        *map(str, masks),
        "--discs",
        str(Path(cord_phantom["root"]) / "derivatives/labels"),
        "--vert",
        "3",
        "-o",
        str(out),
        "--plot",
        str(png),
        "-q",
    )
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
    r = nnspine(
        "evaluate",
        "csa-variability",
        "-i",
        str(tmp_path / "sub-01_T2w.nii.gz"),
        "--discs",
        str(tmp_path),
        "-o",
        str(tmp_path / "v.csv"),
    )
    assert r.returncode == 2 and "sub-01_T2w.nii.gz: file not found" in r.stderr and "Traceback" not in r.stderr


def test_csa_variability_missing_level_file(cord_phantom, tmp_path):
    r = nnspine(
        "evaluate",
        "csa-variability",
        "-i",
        str(_truth(cord_phantom, "T2w")),
        "--discs",
        str(tmp_path),
        "-o",
        str(tmp_path / "v.csv"),
    )
    assert r.returncode == 2 and "no level file" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("which", ["pred", "ref", "discs"])
def test_file_where_a_folder_is_expected(cord_phantom, tmp_path, which):
    a_file = tmp_path / "a_file.nii.gz"
    a_file.write_bytes(b"x")
    folder = tmp_path / "folder"
    folder.mkdir()
    if which == "discs":
        r = nnspine(
            "evaluate",
            "csa-variability",
            "-i",
            str(_truth(cord_phantom, "T2w")),
            "--discs",
            str(a_file),
            "-o",
            str(tmp_path / "v.csv"),
        )
    else:
        pred, ref = (a_file, folder) if which == "pred" else (folder, a_file)
        r = nnspine("evaluate", "softseg", "--pred", str(pred), "--ref", str(ref), "-o", str(tmp_path / "e.csv"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert f"{a_file}: is a file, expected a folder" in r.stderr, r.stderr
    assert not list(tmp_path.glob("*.csv"))
