"""Lesion evaluation on the field's terms: voxel-wise rates and MEAN/SD rows (numpy/pandas), detection by lesion
size, the configuration table (scipy.stats.wilcoxon), surface distances (panoptica), the matching rules' named
parameters, refused labels, and SCT's lesion measures on a tilted-cord phantom (analytic values)."""

from __future__ import annotations

import math
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage, stats

from nnunet_spine.core.io import InputError
from nnunet_spine.core.lesion_matching import MatchRule, lesion_counts
from nnunet_spine.postprocessing.lesion.configurations import SUMMARY_METRICS, configuration_table
from nnunet_spine.postprocessing.lesion.metrics import (
    AVERAGED_KEYS,
    detection_by_size,
    evaluate_lesion_arrays,
    evaluate_lesions,
    parse_size_edges,
    size_bin_names,
)


def save(path: Path, data: np.ndarray, affine=None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(data).astype(np.uint8), np.eye(4) if affine is None else affine), str(path))
    return path


def nnspine(*args) -> subprocess.CompletedProcess:
    return subprocess.run(["nnspine", *map(str, args)], capture_output=True, text=True)


def random_pair(seed: int, shape=(20, 18, 12)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ref = ndimage.binary_opening(rng.random(shape) < 0.5)
    pred = ref ^ (rng.random(shape) < 0.05)
    return ref, pred


# --------------------------------------------------------------------------------------------- voxel rates
@pytest.mark.parametrize("seed", range(3))
def test_voxel_rates_equal_numpy(seed):
    ref, pred = random_pair(seed)
    affine = np.diag([0.5, 0.8, 2.0, 1.0])
    row, _ = evaluate_lesion_arrays(ref, pred, affine)
    tp, fp = np.sum(ref & pred), np.sum(~ref & pred)
    fn, tn = np.sum(ref & ~pred), np.sum(~ref & ~pred)
    assert row["dice"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert row["voxel_sensitivity"] == pytest.approx(tp / (tp + fn))
    assert row["voxel_specificity"] == pytest.approx(tn / (tn + fp))
    assert row["voxel_precision"] == pytest.approx(tp / (tp + fp))
    assert row["image_volume_mm3"] == pytest.approx(ref.size * 0.8)


def test_empty_masks_give_defined_or_nan_rates():
    empty = np.zeros((6, 6, 6), bool)
    some = empty.copy()
    some[1:3, 1:3, 1:3] = True
    row, _ = evaluate_lesion_arrays(empty, some, np.eye(4))
    assert math.isnan(row["voxel_sensitivity"]) and row["voxel_precision"] == 0.0 and row["dice"] == 0.0
    assert row["voxel_specificity"] == pytest.approx(1 - 8 / 216)
    assert math.isnan(row["hd95_mm"]) and row["nsd"] == 0.0
    both, _ = evaluate_lesion_arrays(empty, empty, np.eye(4))
    assert both["dice"] == 1.0 and math.isnan(both["voxel_precision"]) and both["hd95_mm"] == 0.0


def test_mean_sd_and_n_rows_equal_pandas_with_nan_skipped(tmp_path):
    cases = {"a": random_pair(0), "b": random_pair(1), "c": (np.zeros((20, 18, 12), bool), random_pair(2)[1])}
    for name, (ref, pred) in cases.items():
        save(tmp_path / "ref" / f"{name}.nii.gz", ref)
        save(tmp_path / "pred" / f"{name}.nii.gz", pred)
    rows, _ = evaluate_lesions(tmp_path / "pred", tmp_path / "ref")
    df = pd.DataFrame(rows).set_index("case")
    per_case = df.loc[["a", "b", "c"], AVERAGED_KEYS].astype(float)
    sens = per_case["voxel_sensitivity"].to_numpy()
    assert math.isnan(sens[2])  # empty reference
    assert df.loc["MEAN", "voxel_sensitivity"] == pytest.approx(np.mean(sens[:2]))
    assert df.loc["SD", "voxel_sensitivity"] == pytest.approx(np.std(sens[:2], ddof=1))
    assert df.loc["N", "voxel_sensitivity"] == 2 and df.loc["N", "dice"] == 3
    dice = per_case["dice"].to_numpy()
    assert df.loc["MEAN", "dice"] == pytest.approx(dice.mean()) and df.loc["SD", "dice"] == pytest.approx(
        dice.std(ddof=1)
    )
    # the pooled row is not the mean: Dice from summed volumes
    inter, r, p = (per_case[k].sum() for k in ("intersection_mm3", "ref_volume_mm3", "pred_volume_mm3"))
    assert df.loc["ALL", "dice"] == pytest.approx(2 * inter / (r + p))


# --------------------------------------------------------------------------------------------- by size
def test_detection_by_size_bins_and_names():
    assert parse_size_edges("20,100") == (20.0, 100.0)
    assert size_bin_names((20.0, 100.0)) == ["<20", "20-100", ">=100"]
    for bad in ("100,20", "0,5", "a,b", ""):
        with pytest.raises(InputError, match="--by-size-mm3"):
            parse_size_edges(bad)
    lesions = [
        {"ref_volume_mm3": v, "detected": d}
        for v, d in [(5, False), (19.9, True), (20, True), (99, False), (100, True), (400, True)]
    ]
    table = detection_by_size(lesions, (20.0, 100.0))
    assert [r["size_bin"] for r in table] == ["<20", "20-100", ">=100"]
    assert [(r["ref_lesions"], r["detected"]) for r in table] == [(2, 1), (2, 1), (2, 2)]
    assert [r["lesion_sensitivity"] for r in table] == [0.5, 0.5, 1.0]
    assert math.isnan(detection_by_size([], (20.0,))[0]["lesion_sensitivity"])


def test_cli_by_size_table_pools_cases(tmp_path):
    """Two cases, lesions of 8, 27 and 125 voxels (1 mm³): the small one missed in case a, all found in b."""
    for name, missed in (("a", True), ("b", False)):
        ref = np.zeros((30, 10, 10), bool)
        ref[1:3, 1:3, 1:3] = True  # 8 mm³
        ref[6:9, 1:4, 1:4] = True  # 27 mm³
        ref[14:19, 1:6, 1:6] = True  # 125 mm³
        pred = ref.copy()
        if missed:
            pred[1:3, 1:3, 1:3] = False
        save(tmp_path / "ref" / f"{name}.nii.gz", ref)
        save(tmp_path / "pred" / f"{name}.nii.gz", pred)
    out, by = tmp_path / "m.csv", tmp_path / "by.csv"
    r = nnspine("evaluate", "lesions", "--pred", tmp_path / "pred", "--ref", tmp_path / "ref", "-o", out,
                "--by-size-mm3", "20,100", "--by-size-output", by, "-q")  # fmt: skip
    assert r.returncode == 0, r.stderr
    table = pd.read_csv(by)
    assert table.columns.tolist() == ["size_bin", "ref_lesions", "detected", "lesion_sensitivity"]
    assert table.values.tolist() == [["<20", 2, 1, 0.5], ["20-100", 2, 2, 1.0], [">=100", 2, 2, 1.0]]
    assert pd.read_csv(out)["case"].tolist() == ["a", "b", "ALL", "MEAN", "SD", "N"]
    lines = [line.split(",") for line in out.read_text().splitlines()]
    tp = lines[0].index("tp")
    assert all(r[tp].isdigit() for r in lines[1:4])  # counts written as integers in case and ALL rows
    lonely = nnspine("evaluate", "lesions", "--pred", tmp_path / "pred", "--ref", tmp_path / "ref",
                     "-o", tmp_path / "x.csv", "--by-size-mm3", "20")  # fmt: skip
    assert lonely.returncode == 2 and "go together" in lonely.stderr and not (tmp_path / "x.csv").exists()


# --------------------------------------------------------------------------------------------- configuration table
def _table(values: dict[str, list[float]], cases=("s1", "s2", "s3", "s4", "s5", "s6")) -> pd.DataFrame:
    df = pd.DataFrame({"case": list(cases), **{m: values.get(m, [0.5] * len(cases)) for m in SUMMARY_METRICS}})
    summary = pd.DataFrame({"case": ["ALL", "MEAN"], **{m: [9.0, 9.0] for m in SUMMARY_METRICS}})
    return pd.concat([df, summary], ignore_index=True)


def test_configuration_table_equals_numpy_and_scipy():
    rng = np.random.default_rng(3)
    base = rng.uniform(0.4, 0.8, 6)
    other = base + rng.uniform(0.01, 0.1, 6)
    other_nan = other.copy()
    other_nan[2] = np.nan
    t = configuration_table(
        {"T2w_3d": _table({"dice": base.tolist()}), "both_3d": _table({"dice": other_nan.tolist()})}
    )
    assert t["config"].tolist() == ["T2w_3d", "both_3d"] and t["n_cases"].tolist() == [6, 6]
    row = t.set_index("config").loc["both_3d"]
    keep = ~np.isnan(other_nan)
    assert row["dice_mean"] == pytest.approx(np.nanmean(other_nan))
    assert row["dice_sd"] == pytest.approx(np.nanstd(other_nan, ddof=1))
    assert row["wilcoxon_p_dice"] == pytest.approx(stats.wilcoxon(other_nan[keep], base[keep]).pvalue)
    assert math.isnan(t.set_index("config").loc["T2w_3d", "wilcoxon_p_dice"])
    assert row["wilcoxon_p_lesion_f1"] == 1.0  # identical values: no difference
    later = configuration_table({"a": _table({"dice": base.tolist()}), "b": _table({})}, baseline="b")
    assert math.isnan(later.set_index("config").loc["b", "wilcoxon_p_dice"])


def test_configuration_table_refuses_different_cases():
    with pytest.raises(InputError, match="configuration T1w lacks s6"):
        configuration_table({"T2w": _table({}), "T1w": _table({}, cases=("s1", "s2", "s3", "s4", "s5"))})
    with pytest.raises(InputError, match="--baseline X"):
        configuration_table({"T2w": _table({})}, baseline="X")


def test_configurations_pair_by_subject_across_sequences():
    """T1w and T2w datasets name their cases sub-XX_T1w / sub-XX_T2w: pairing by subject (and session) lines
    them up; pairing by case refuses them; a non-BIDS case cannot be paired by subject."""
    rng = np.random.default_rng(8)
    subjects = ("sub-01", "sub-02_ses-1", "sub-02_ses-2", "sub-03", "sub-04", "sub-05")
    t1 = rng.uniform(0.3, 0.6, 6)
    t2 = t1 + rng.uniform(0.05, 0.2, 6)
    order = [3, 0, 5, 1, 4, 2]  # the second table lists its cases in another order
    tables = {
        "T1w": _table({"dice": t1.tolist()}, cases=[f"{s}_T1w" for s in subjects]),
        "T2w": _table({"dice": t2[order].tolist()}, cases=[f"{subjects[i]}_T2w" for i in order]),
    }
    with pytest.raises(InputError, match="lacks"):
        configuration_table(tables)
    row = configuration_table(tables, pair="subject").set_index("config").loc["T2w"]
    assert row["wilcoxon_p_dice"] == pytest.approx(stats.wilcoxon(t2, t1).pvalue)
    assert row["dice_mean"] == pytest.approx(t2.mean())
    with pytest.raises(InputError, match="not a BIDS name"):
        configuration_table({"a": _table({}), "b": _table({})}, pair="subject")


def test_cli_evaluate_summary_writes_table_and_picture(tmp_path):
    rng = np.random.default_rng(5)
    paths = {}
    for name in ("T2w", "T1w", "both"):
        paths[name] = tmp_path / f"{name}.csv"
        _table({m: rng.uniform(0, 1, 6).tolist() for m in SUMMARY_METRICS}).to_csv(paths[name], index=False)
    out = tmp_path / "table.csv"
    r = nnspine("evaluate", "summary", *(f"{k}={v}" for k, v in paths.items()), "-o", out, "--baseline", "both", "-q")
    assert r.returncode == 0, r.stderr
    t = pd.read_csv(out)
    assert t["config"].tolist() == ["T2w", "T1w", "both"] and set(t["baseline"]) == {"both"}
    assert {f"{m}_{s}" for m in SUMMARY_METRICS for s in ("mean", "sd")} <= set(t.columns)
    assert (tmp_path / "table.png").stat().st_size > 10_000
    short = tmp_path / "short.csv"
    _table({}, cases=("s1", "s2")).to_csv(short, index=False)
    bad = nnspine("evaluate", "summary", f"T2w={paths['T2w']}", f"x={short}", "-o", tmp_path / "t2.csv")
    assert bad.returncode == 2 and "lacks s3, s4, s5, s6" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "t2.csv").exists()


# --------------------------------------------------------------------------------------------- surface distances
@pytest.mark.parametrize("seed", range(2))
def test_surface_distances_equal_panoptica(seed):
    from panoptica.metrics import _surface_distances as sd  # a test extra: the reference definitions

    from nnunet_spine.postprocessing.lesion.surface import surface_metrics

    ref, pred = random_pair(seed)
    zooms = (0.5, 0.7, 1.5)
    d_ref, d_pred = sd._surface_distance_pair(ref, pred, zooms)
    ours = surface_metrics(ref, pred, zooms, tolerance_mm=1.0)
    assert ours["hd95_mm"] == pytest.approx(sd._hd95_from_pair(d_ref, d_pred))
    assert ours["assd_mm"] == pytest.approx(sd._assd_from_pair(d_ref, d_pred))
    assert ours["nsd"] == pytest.approx(sd._nsd_from_pair(d_ref, d_pred, zooms, 1.0))


@pytest.mark.parametrize("seed", range(3))
def test_border_equals_scipy_erosion_including_array_edges(seed):
    from scipy import ndimage

    from nnunet_spine.postprocessing.lesion.surface import _border

    mask = np.random.default_rng(seed).random((9, 11, 7)) < 0.7  # dense: many voxels touch the array's faces
    eroded = ndimage.binary_erosion(mask, structure=ndimage.generate_binary_structure(3, 1))
    assert np.array_equal(_border(mask), mask & ~eroded)
    assert np.array_equal(_border(np.asfortranarray(mask)), mask & ~eroded)  # NIfTI arrays are Fortran-ordered
    assert np.array_equal(_border(mask[1:-1, 2:, :5]), _border(mask[1:-1, 2:, :5].copy()))  # views


# --------------------------------------------------------------------------------------------- matching rules
def line(n: int, length: int = 40) -> np.ndarray:
    m = np.zeros((length, 3, 3), bool)
    m[0:n, 1, 1] = True
    return m


def test_match_any_overlap_fraction_and_names():
    ref = line(20)
    one = np.zeros_like(ref)
    one[0, 1, 1] = True  # 1 of 20 voxels = 5 %
    assert lesion_counts(ref, one, match="overlap")["tp"] == 0
    assert lesion_counts(ref, one, match="any")["tp"] == 1  # ATLAS / ISLES
    assert lesion_counts(ref, one, match=MatchRule("overlap", overlap_fraction=0.05))["tp"] == 1
    assert MatchRule("overlap").name == "overlap>=10%"
    assert MatchRule("iou", strict=True).name == "iou>0.5"
    assert MatchRule("overlap", fp_limits=(0.7, 0.65), min_lesion_mm3=3).name == "overlap>=10%,fp<=0.7/0.65,min=3mm3"
    with pytest.raises(InputError, match="--overlap-fraction"):
        MatchRule("overlap", overlap_fraction=1.5)


def test_anima_false_positive_limits():
    """A prediction covering the reference lesion (4 voxels) but spreading 36 voxels beyond it: 90 % of it is
    outside (> β = 0.7), so with the limits the lesion is not detected; without them it is."""
    ref = line(4)
    pred = line(40)
    assert lesion_counts(ref, pred)["tp"] == 1
    assert lesion_counts(ref, pred, match=MatchRule("overlap", fp_limits=(0.7, 0.65)))["tp"] == 0
    tight = line(5)  # 20 % outside: fine
    assert lesion_counts(ref, tight, match=MatchRule("overlap", fp_limits=(0.7, 0.65)))["tp"] == 1


def test_min_lesion_volume_drops_small_lesions_from_both_masks():
    ref = np.zeros((20, 5, 5), bool)
    ref[0:2, 1, 1] = True  # 2 voxels × 2 mm³ = 4 mm³
    ref[10:15, 1, 1] = True  # 10 mm³
    pred = np.zeros_like(ref)
    pred[10:15, 1, 1] = True
    pred[18, 3, 3] = True  # 2 mm³ false positive
    rule = MatchRule("overlap", min_lesion_mm3=5)
    assert lesion_counts(ref, pred) == {"ref_lesions": 2, "pred_lesions": 2, "tp": 1, "fp": 1, "fn": 1}
    assert lesion_counts(ref, pred, match=rule, voxel_mm3=2.0) == {
        "ref_lesions": 1, "pred_lesions": 1, "tp": 1, "fp": 0, "fn": 0,
    }  # fmt: skip


def test_cli_iou_threshold_strict_and_rule_in_the_csv(tmp_path):
    ref = save(tmp_path / "ref.nii.gz", line(4))
    pred = save(tmp_path / "pred.nii.gz", line(2))  # IoU exactly 0.5
    for extra, tp, name in (
        ([], 1, "iou>=0.5"),
        (["--strict"], 0, "iou>0.5"),
        (["--iou-threshold", "0.4"], 1, "iou>=0.4"),
    ):
        out = tmp_path / f"m{len(extra)}{tp}.csv"
        r = nnspine("evaluate", "lesions", "--pred", pred, "--ref", ref, "--match", "iou", *extra, "-o", out, "-q")
        assert r.returncode == 0, r.stderr
        row = pd.read_csv(out).iloc[0]
        assert (row["tp"], row["match"]) == (tp, name)


# --------------------------------------------------------------------------------------------- refused labels
def test_multi_label_prediction_without_label_is_refused(tmp_path):
    multi = np.zeros((8, 8, 8), np.uint8)
    multi[1:7, 1:7, :] = 1  # cord
    multi[3:5, 3:5, 3:5] = 2  # lesion
    pred = save(tmp_path / "pred.nii.gz", multi)
    ref = save(tmp_path / "ref.nii.gz", multi == 2)
    out = tmp_path / "m.csv"
    r = nnspine("evaluate", "lesions", "--pred", pred, "--ref", ref, "-o", out)
    assert r.returncode == 2 and "several labels [1, 2]" in r.stderr and "--label" in r.stderr
    assert "Traceback" not in r.stderr and not out.exists()
    ok = nnspine("evaluate", "lesions", "--pred", pred, "--ref", ref, "--label", "2", "--ref-label", "all", "-o", out)
    assert ok.returncode == 0 and pd.read_csv(out).iloc[0]["dice"] == 1.0
    table, lesions_out = tmp_path / "l.csv", tmp_path / "l.nii.gz"
    r = nnspine("lesions", "-i", pred, "-o", lesions_out, "--table", table)
    assert r.returncode == 2 and "several labels" in r.stderr and not table.exists() and not lesions_out.exists()


def test_label_absent_from_every_mask_is_refused(tmp_path):
    binary = line(4).astype(np.uint8)
    pred = save(tmp_path / "pred" / "a.nii.gz", binary)
    save(tmp_path / "pred" / "b.nii.gz", np.zeros_like(binary))  # an empty case stays valid
    save(tmp_path / "ref" / "a.nii.gz", binary)
    save(tmp_path / "ref" / "b.nii.gz", np.zeros_like(binary))
    out = tmp_path / "m.csv"
    r = nnspine(
        "evaluate", "lesions", "--pred", tmp_path / "pred", "--ref", tmp_path / "ref", "--label", "2", "-o", out
    )
    assert r.returncode == 2 and "no voxel has label 2" in r.stderr and "labels present: [1]" in r.stderr
    assert not out.exists()
    table = tmp_path / "l.csv"
    r = nnspine("lesions", "-i", pred, "--label", "3", "-o", tmp_path / "l.nii.gz", "--table", table)
    assert r.returncode == 2 and "no voxel has label 3" in r.stderr and not table.exists()


# --------------------------------------------------------------------------------------------- SCT's measures
def tilted_cord_phantom(theta_deg: float, zooms=(0.4, 0.4, 2.0), shape=(80, 100, 40)):
    """A cord (radius 4 mm) tilted by θ in the sagittal (y-z) plane, and a lesion: the part of a coaxial cylinder
    of radius 2.5 mm between axial slices 15 and 24 (10 slices). Voxel centres sampled exactly, RPI axes."""
    t = math.radians(theta_deg)
    i, j, k = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    x, y, z = i * zooms[0] - 16.0, j * zooms[1] - 20.0, k * zooms[2] - 40.0
    # distance from the axis through the origin with direction (0, sin t, cos t)
    along = y * math.sin(t) + z * math.cos(t)
    dist = np.sqrt(x**2 + (y - along * math.sin(t)) ** 2 + (z - along * math.cos(t)) ** 2)
    cord = dist <= 4.0
    lesion = (dist <= 2.5) & (k >= 15) & (k <= 24)
    affine = np.diag([*zooms, 1.0])
    affine[0, 0] = -zooms[0]  # RPI storage: +i towards the left, so the affine flips x
    return cord, lesion, affine, t


@pytest.mark.parametrize("theta", [0.0, 25.0])
def test_sct_measures_on_a_tilted_cord_within_3_percent(tmp_path, theta):
    cord, lesion, affine, t = tilted_cord_phantom(theta)
    save(tmp_path / "cord.nii.gz", cord, affine)
    save(tmp_path / "lesion.nii.gz", lesion, affine)
    table = tmp_path / "lesions.csv"
    r = nnspine("lesions", "-i", tmp_path / "lesion.nii.gz", "--cord", tmp_path / "cord.nii.gz",
                "-o", tmp_path / "out.nii.gz", "--table", table, "--connectivity", "18", "-q")  # fmt: skip
    assert r.returncode == 0, r.stderr
    row = pd.read_csv(table).iloc[0]
    # SCT's length: 10 slices × 2 mm / cos θ; SCT's diameter: the slice area × cos θ is the cylinder's
    # cross-section π r², so 2 r = 5 mm; the lesion lies inside the cord, so its volume is all in the cord
    assert row["length_along_cord_mm"] == pytest.approx(10 * 2.0 / math.cos(t), rel=0.03)
    assert row["max_equivalent_diameter_mm"] == pytest.approx(5.0, rel=0.03)
    assert row["volume_in_cord_mm3"] == pytest.approx(row["volume_mm3"])
    assert row["volume_mm3"] == pytest.approx(lesion.sum() * 0.4 * 0.4 * 2.0)


def test_sct_measures_of_a_lesion_outside_the_cord_and_without_cord(tmp_path):
    cord, _, affine, _ = tilted_cord_phantom(0.0)
    outside = np.zeros_like(cord)
    outside[70:75, 5:10, 10:14] = True  # far from the cord, 4 slices
    save(tmp_path / "cord.nii.gz", cord, affine)
    save(tmp_path / "lesion.nii.gz", outside, affine)
    table = tmp_path / "t.csv"
    r = nnspine("lesions", "-i", tmp_path / "lesion.nii.gz", "--cord", tmp_path / "cord.nii.gz",
                "--cord-dilation-mm", "100", "-o", tmp_path / "o.nii.gz", "--table", table, "-q")  # fmt: skip
    assert r.returncode == 0, r.stderr
    row = pd.read_csv(table).iloc[0]
    # SCT measures lesion ∩ cord (its measure() zeroes lesion voxels outside the cord): empty here, so all three
    # are 0, not the lesion's own 4 slices × 2 mm = 8 mm and 2 √(25 × 0.16 mm² / π)
    assert (row["volume_in_cord_mm3"], row["length_along_cord_mm"], row["max_equivalent_diameter_mm"]) == (0, 0, 0)
    assert row["volume_mm3"] == pytest.approx(5 * 5 * 4 * 0.4 * 0.4 * 2.0)
    plain = tmp_path / "p.csv"
    r = nnspine("lesions", "-i", tmp_path / "lesion.nii.gz", "-o", tmp_path / "p.nii.gz", "--table", plain, "-q")
    assert r.returncode == 0 and pd.read_csv(plain)[["length_along_cord_mm"]].isna().all().all()
