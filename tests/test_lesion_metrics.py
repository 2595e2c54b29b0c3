"""Lesion-wise metrics (nnunet_spine.postprocessing.lesion.metrics, ``nnspine evaluate lesions``) against hand-computed
cases, an independent brute-force implementation (scipy.ndimage.label + Python loops) and the lesion
phantom's truth."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from nnunet_spine.core.io import InputError
from nnunet_spine.core.lesion_matching import (
    COUNT_KEYS,
    DEFAULT_CONNECTIVITY,
    MATCH_RULES,
    MatchRule,
    label_lesions,
    lesion_counts,
    lesion_scores,
    si_order,
    sum_counts,
)
from nnunet_spine.postprocessing.lesion.metrics import (
    CASE_COLUMNS,
    PER_LESION_COLUMNS,
    evaluate_lesion_arrays,
    evaluate_lesion_case,
    evaluate_lesions,
    summary_row,
)


def box(shape, *slices) -> np.ndarray:
    m = np.zeros(shape, bool)
    for s in slices:
        m[s] = True
    return m


def save(path: Path, data: np.ndarray, affine=None, dtype=np.uint8) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(data).astype(dtype), np.eye(4) if affine is None else affine), str(path))
    return path


# --------------------------------------------------------------------------------------------- brute force
def brute_counts(ref: np.ndarray, pred: np.ndarray, connectivity: int, match: str) -> dict:
    """The rules written out with scipy.ndimage.label and loops over component pairs."""
    rank = {6: 1, 18: 2, 26: 3}[connectivity]
    st = ndimage.generate_binary_structure(3, rank)
    lr, nr = ndimage.label(ref, st)
    lp, np_ = ndimage.label(pred, st)
    if match == "overlap":
        tp = sum(1 for i in range(1, nr + 1) if pred[lr == i].sum() >= 0.1 * (lr == i).sum() - 1e-9)
        fp = sum(1 for j in range(1, np_ + 1) if not ref[lp == j].any())
    else:
        candidates = []
        for i in range(1, nr + 1):
            for j in range(1, np_ + 1):
                a, b = lr == i, lp == j
                iou = (a & b).sum() / (a | b).sum()
                if iou >= 0.5:
                    candidates.append((-iou, i, j))
        used_i, used_j = set(), set()
        for _, i, j in sorted(candidates, key=lambda c: c[0]):  # greedy by decreasing IoU, one-to-one
            if i not in used_i and j not in used_j:
                used_i.add(i)
                used_j.add(j)
        tp = len(used_i)
        fp = np_ - tp
    return {"ref_lesions": nr, "pred_lesions": np_, "tp": tp, "fp": fp, "fn": nr - tp}


# --------------------------------------------------------------------------------------------- components
def test_corner_pair_is_one_lesion_at_26_two_at_6_and_18():
    m = box((6, 6, 6), np.s_[0:2, 0:2, 0:2], np.s_[2:4, 2:4, 2:4])  # touch at one corner only
    assert label_lesions(m, 26)[1] == 1
    assert label_lesions(m, 18)[1] == 2
    assert label_lesions(m, 6)[1] == 2
    assert DEFAULT_CONNECTIVITY == 26 and label_lesions(m)[1] == 1
    edge = box((6, 6, 6), np.s_[0:2, 0:2, 0:2], np.s_[2:4, 2:4, 0:2])  # share an edge (along axis 2)
    assert [label_lesions(edge, c)[1] for c in (6, 18, 26)] == [2, 1, 1]
    labels, n = label_lesions(m, 6)
    assert labels.shape == m.shape and set(np.unique(labels)) == {0, 1, 2}
    assert (labels[0:2, 0:2, 0:2] == labels[0, 0, 0]).all() and labels[3, 3, 3] != labels[0, 0, 0]


def test_counts_follow_connectivity():
    ref = box((6, 6, 6), np.s_[0:2, 0:2, 0:2], np.s_[2:4, 2:4, 2:4])
    pred = box((6, 6, 6), np.s_[0:2, 0:2, 0:2])  # finds the first box only
    assert lesion_counts(ref, pred, connectivity=26) == {"ref_lesions": 1, "pred_lesions": 1, "tp": 1, "fp": 0, "fn": 0}
    assert lesion_counts(ref, pred, connectivity=6) == {"ref_lesions": 2, "pred_lesions": 1, "tp": 1, "fp": 0, "fn": 1}


# --------------------------------------------------------------------------------------------- overlap rule
def test_overlap_rule_ten_percent_of_the_volume():
    shape = (12, 3, 3)
    line10 = box(shape, np.s_[0:10, 1, 1])
    line11 = box(shape, np.s_[0:11, 1, 1])
    one = box(shape, np.s_[0, 1, 1])
    # 1 of 10 voxels = 10 %: detected
    assert lesion_counts(line10, one) == {"ref_lesions": 1, "pred_lesions": 1, "tp": 1, "fp": 0, "fn": 0}
    # 1 of 11 voxels < 10 %: missed, but the predicted lesion overlaps the reference, so it is no FP
    c = lesion_counts(line11, one)
    assert c == {"ref_lesions": 1, "pred_lesions": 1, "tp": 0, "fp": 0, "fn": 1}
    assert lesion_scores(c) == {"lesion_sensitivity": 0.0, "lesion_precision": 1.0, "lesion_f1": 0.0}
    # 3 of 30 voxels = 10 % exactly (0.1 × 30 is not exactly 3 in floating point)
    ref30 = box((30, 3, 3), np.s_[0:30, 1, 1])
    assert lesion_counts(ref30, box((30, 3, 3), np.s_[0:3, 1, 1]))["tp"] == 1
    assert lesion_counts(ref30, box((30, 3, 3), np.s_[0:2, 1, 1]))["tp"] == 0


def test_overlap_rule_touching_is_sharing_a_voxel():
    ref = box((8, 8, 8), np.s_[0:2, 0:2, 0:2])
    adjacent = box((8, 8, 8), np.s_[2:4, 0:2, 0:2])  # face-adjacent, no shared voxel
    c = lesion_counts(ref, adjacent)
    assert c == {"ref_lesions": 1, "pred_lesions": 1, "tp": 0, "fp": 1, "fn": 1}


def test_overlap_rule_merge_and_split():
    shape = (10, 4, 4)
    two_refs = box(shape, np.s_[0:2, 0:2, 0:2], np.s_[5:7, 0:2, 0:2])
    one_pred = box(shape, np.s_[0:7, 0:2, 0:2])  # covers both
    assert lesion_counts(two_refs, one_pred) == {"ref_lesions": 2, "pred_lesions": 1, "tp": 2, "fp": 0, "fn": 0}
    one_ref = box(shape, np.s_[0:7, 0:2, 0:2])
    two_preds = box(shape, np.s_[0:3, 0:2, 0:2], np.s_[4:7, 0:2, 0:2])
    c = lesion_counts(one_ref, two_preds)
    assert c == {"ref_lesions": 1, "pred_lesions": 2, "tp": 1, "fp": 0, "fn": 0}
    assert lesion_scores(c)["lesion_precision"] == 1.0


# --------------------------------------------------------------------------------------------- iou rule
def test_iou_rule_at_least_one_half_one_to_one():
    shape = (8, 3, 3)
    ref = box(shape, np.s_[0:4, 1, 1])
    half = box(shape, np.s_[0:2, 1, 1])  # IoU 2/4 = 0.5: a match (panoptica), not with --strict (Kirillov)
    assert lesion_counts(ref, half, match="iou") == {"ref_lesions": 1, "pred_lesions": 1, "tp": 1, "fp": 0, "fn": 0}
    strict = MatchRule("iou", strict=True)
    assert lesion_counts(ref, half, match=strict) == {"ref_lesions": 1, "pred_lesions": 1, "tp": 0, "fp": 1, "fn": 1}
    three = box(shape, np.s_[0:3, 1, 1])  # IoU 0.75
    assert lesion_counts(ref, three, match="iou") == {"ref_lesions": 1, "pred_lesions": 1, "tp": 1, "fp": 0, "fn": 0}
    # one prediction over two equal references: IoU 2/5 each, no match (overlap would count both)
    refs = box((10, 3, 3), np.s_[0:2, 1, 1], np.s_[3:5, 1, 1])
    pred = box((10, 3, 3), np.s_[0:5, 1, 1])
    assert lesion_counts(refs, pred, match="iou") == {"ref_lesions": 2, "pred_lesions": 1, "tp": 0, "fp": 1, "fn": 2}
    assert lesion_counts(refs, pred, match="overlap")["tp"] == 2


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("connectivity", [6, 18, 26])
@pytest.mark.parametrize("match", ["overlap", "iou"])
def test_counts_equal_brute_force_on_random_masks(seed, connectivity, match):
    rng = np.random.default_rng(seed)
    ref = ndimage.binary_opening(rng.random((14, 14, 10)) < 0.35) | (rng.random((14, 14, 10)) < 0.02)
    pred = ref.copy()
    pred ^= rng.random(ref.shape) < 0.06  # flips: splits, merges, misses, false positives
    assert lesion_counts(ref, pred, connectivity=connectivity, match=match) == brute_counts(
        ref, pred, connectivity, match
    )


# --------------------------------------------------------------------------------------------- scores
def test_scores_on_empty_cases_are_defined():
    z = np.zeros((4, 4, 4), bool)
    les = box((4, 4, 4), np.s_[1:3, 1:3, 1:3])
    for match in MATCH_RULES:
        assert lesion_scores(lesion_counts(z, z, match=match)) == {
            "lesion_sensitivity": 1.0,
            "lesion_precision": 1.0,
            "lesion_f1": 1.0,
        }
        assert lesion_scores(lesion_counts(z, les, match=match)) == {
            "lesion_sensitivity": 1.0,
            "lesion_precision": 0.0,
            "lesion_f1": 0.0,
        }
        assert lesion_scores(lesion_counts(les, z, match=match)) == {
            "lesion_sensitivity": 0.0,
            "lesion_precision": 0.0,
            "lesion_f1": 0.0,
        }


def test_scores_from_sums_not_means():
    a = {"ref_lesions": 1, "pred_lesions": 1, "tp": 1, "fp": 0, "fn": 0}
    b = {"ref_lesions": 3, "pred_lesions": 2, "tp": 0, "fp": 1, "fn": 3}
    total = sum_counts([a, b])
    assert total == {"ref_lesions": 4, "pred_lesions": 3, "tp": 1, "fp": 1, "fn": 3}
    s = lesion_scores(total)
    assert s["lesion_sensitivity"] == pytest.approx(1 / 4)  # the mean of per-case rates would be 0.5
    assert s["lesion_precision"] == pytest.approx(2 / 3)
    assert s["lesion_f1"] == pytest.approx(2 * (1 / 4) * (2 / 3) / (1 / 4 + 2 / 3))


def test_two_dimensional_masks_are_one_slice():
    ref = np.zeros((5, 5), bool)
    ref[0, 0] = ref[1, 1] = True  # diagonal neighbours: one lesion at 26 (8 in-plane), two at 6 (4)
    assert lesion_counts(ref, ref, connectivity=26)["ref_lesions"] == 1
    assert lesion_counts(ref, ref, connectivity=6)["ref_lesions"] == 2


# --------------------------------------------------------------------------------------------- rows
def test_case_row_and_per_lesion_rows_on_anisotropic_voxels():
    affine = np.diag([0.5, 1.0, 3.0, 1.0])  # 1.5 mm³ voxels
    shape = (10, 10, 10)
    ref = box(shape, np.s_[0:2, 0:2, 0:2], np.s_[5:7, 5:7, 7:9])  # 8 voxels each; the second is superior
    pred = box(shape, np.s_[0:2, 0:2, 0:1], np.s_[8:9, 8:9, 0:1])  # half of the first + one FP voxel
    row, lesions = evaluate_lesion_arrays(ref, pred, affine, case="c", per_lesion=True)
    assert (row["ref_lesions"], row["pred_lesions"], row["tp"], row["fp"], row["fn"]) == (2, 2, 1, 1, 1)
    assert row["lesion_sensitivity"] == 0.5 and row["lesion_precision"] == 0.5 and row["lesion_f1"] == 0.5
    assert row["ref_volume_mm3"] == pytest.approx(16 * 1.5) and row["pred_volume_mm3"] == pytest.approx(5 * 1.5)
    assert row["intersection_mm3"] == pytest.approx(4 * 1.5)
    assert row["volume_error_mm3"] == pytest.approx(-11 * 1.5)
    assert row["dice"] == pytest.approx(2 * 4 / (16 + 5))
    assert row["match"] == "overlap>=10%" and row["connectivity"] == 26 and list(row) == CASE_COLUMNS
    assert [r["lesion"] for r in lesions] == [1, 2]
    sup, inf = lesions  # numbered superior first: the second box (z 7-8) is lesion 1
    assert sup["centroid_z_mm"] == pytest.approx(7.5 * 3.0) and sup["centroid_x_mm"] == pytest.approx(5.5 * 0.5)
    assert not sup["detected"] and sup["dice"] == 0 and sup["volume_error_mm3"] == pytest.approx(-8 * 1.5)
    assert inf["detected"] and inf["coverage"] == 0.5 and inf["n_pred_lesions"] == 1
    assert inf["dice"] == pytest.approx(2 * 4 / (8 + 4)) and inf["iou"] == pytest.approx(0.5)
    assert inf["volume_error_mm3"] == pytest.approx(-4 * 1.5)
    assert list(sup) == PER_LESION_COLUMNS


def test_si_order_follows_world_superior_on_flipped_axes():
    flipped = np.diag([1.0, 1.0, -2.0, 1.0])  # voxel index k grows toward inferior
    cent = np.array([[0, 0, 1.0], [0, 0, 5.0], [0, 0, 3.0]])
    assert si_order(cent, flipped).tolist() == [0, 2, 1]
    psr = np.array([[0, 0, 1.0, 0], [-1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 0, 1]])  # S along voxel axis 1
    assert si_order(np.array([[9, 1, 0], [0, 4, 0.0]]), psr).tolist() == [1, 0]


def test_summary_row_sums():
    rows = [
        evaluate_lesion_arrays(r, p, np.eye(4), case=c)[0]
        for c, r, p in [
            ("a", box((4, 4, 4), np.s_[0:2, 0, 0]), box((4, 4, 4), np.s_[0:2, 0, 0])),
            ("b", box((4, 4, 4), np.s_[0, 0, 0], np.s_[3, 3, 3]), np.zeros((4, 4, 4), bool)),
        ]
    ]
    s = summary_row(rows)
    assert s["case"] == "ALL" and (s["ref_lesions"], s["tp"], s["fn"]) == (3, 1, 2)
    assert s["lesion_sensitivity"] == pytest.approx(1 / 3) and s["dice"] == pytest.approx(2 * 2 / (4 + 2))


# --------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "bad, words",
    [
        (np.zeros((3, 3, 3, 2)), "4-D"),
        (np.full((3, 3, 3), np.nan), "NaN"),
        (np.full((3, 3, 3), 2), "binary"),
    ],
)
def test_bad_arrays_raise_input_error(bad, words):
    with pytest.raises(InputError, match=words):
        lesion_counts(np.zeros((3, 3, 3)), bad)


def test_bad_options_and_shapes_raise_input_error():
    z = np.zeros((3, 3, 3), bool)
    with pytest.raises(InputError, match="shape"):
        lesion_counts(z, np.zeros((3, 3, 4), bool))
    with pytest.raises(InputError, match="connectivity"):
        lesion_counts(z, z, connectivity=4)
    with pytest.raises(InputError, match="matching rule"):
        lesion_counts(z, z, match="dice")


# --------------------------------------------------------------------------------------------- files
def test_case_files_labels_and_grid(tmp_path):
    multi = np.zeros((6, 6, 6), np.uint8)
    multi[1:5, 1:5, :] = 1  # cord
    multi[2:4, 2:4, 2:4] = 2  # lesion inside it
    ref = (multi == 2).astype(np.uint8)
    p = save(tmp_path / "pred.nii.gz", multi)
    r = save(tmp_path / "ref.nii.gz", ref)
    row = evaluate_lesion_case(p, r, label=2)
    assert (row["tp"], row["fp"], row["fn"], row["dice"]) == (1, 0, 0, 1.0)
    with pytest.raises(InputError, match=r"pred.nii.gz: several labels \[1, 2\]; choose the lesion with --label"):
        evaluate_lesion_case(p, r)  # a cord + lesion prediction is not a lesion mask
    everything, _ = evaluate_lesions(p, r, all_foreground=True)  # asked for: the cord is the lesion
    assert everything[0]["dice"] == pytest.approx(2 * 8 / (8 + 96))
    assert evaluate_lesion_case(p, r, label=2, ref_label=2)["ref_lesions"] == 0  # binary ref has no label 2
    moved = save(tmp_path / "moved.nii.gz", ref, affine=np.diag([1, 1, 1.5, 1]))
    with pytest.raises(InputError, match="moved.nii.gz"):
        evaluate_lesion_case(p, moved, label=2)
    soft = save(tmp_path / "soft.nii.gz", ref * 0.5, dtype=np.float32)
    with pytest.raises(InputError, match="soft.nii.gz.*integer"):
        evaluate_lesion_case(soft, r)
    four = save(tmp_path / "four.nii.gz", np.zeros((6, 6, 6, 2)))
    with pytest.raises(InputError, match="four.nii.gz.*3-D"):
        evaluate_lesion_case(four, r)


def test_folders_matched_by_case_name(tmp_path):
    les = np.zeros((6, 6, 6), np.uint8)
    les[1:3, 1:3, 1:3] = 1
    for sub in ("01", "02"):
        save(tmp_path / "pred" / f"sub-{sub}_T2w.nii.gz", les)
        anat = tmp_path / "labels" / f"sub-{sub}" / "anat"
        save(anat / f"sub-{sub}_T2w_label-lesion_seg.nii.gz", les if sub == "01" else np.zeros_like(les))
        save(anat / f"sub-{sub}_T2w_label-SC_seg.nii.gz", np.ones_like(les))  # must not be taken
    rows, lesions = evaluate_lesions(tmp_path / "pred", tmp_path / "labels")
    by = {r["case"]: r for r in rows}
    assert list(by) == ["sub-01_T2w", "sub-02_T2w", "ALL", "MEAN", "SD", "N"]
    assert (by["sub-01_T2w"]["tp"], by["sub-01_T2w"]["dice"]) == (1, 1.0)
    assert (by["sub-02_T2w"]["ref_lesions"], by["sub-02_T2w"]["fp"]) == (0, 1)
    assert (by["ALL"]["ref_lesions"], by["ALL"]["pred_lesions"], by["ALL"]["tp"], by["ALL"]["fp"]) == (1, 2, 1, 1)
    assert [r["case"] for r in lesions] == ["sub-01_T2w"]
    save(tmp_path / "pred" / "sub-03_T2w.nii.gz", les)
    with pytest.raises(InputError, match="sub-03_T2w"):
        evaluate_lesions(tmp_path / "pred", tmp_path / "labels")


# --------------------------------------------------------------------------------------------- phantom truth
@pytest.fixture(scope="module")
def lesion_phantom(tmp_path_factory):
    from nnunet_spine.phantoms.lesion import write_lesion_dataset

    root = tmp_path_factory.mktemp("lesion_metrics") / "ds"
    write_lesion_dataset(root, seed=0)
    truth = json.loads((root / "derivatives/truth/sub-01/sub-01_truth.json").read_text())
    ref = np.asarray(nib.load(str(root / truth["files"]["lesion"])).dataobj) > 0
    pred = np.asarray(nib.load(str(root / truth["files"]["prediction"])).dataobj) > 0
    return root, truth, ref, pred


def test_phantom_truth_counts(lesion_phantom):
    _, truth, ref, pred = lesion_phantom
    p = truth["prediction"]
    assert p["expected_counts"]["match"] == "overlap"
    for c in (6, 26):
        counts = lesion_counts(ref, pred, connectivity=c)
        n_ref = truth["connected_components"][str(c)]
        # the design: medium missed (FN), one false positive, large split in two (both parts detect it)
        assert counts == {"ref_lesions": n_ref, "pred_lesions": n_ref + 1, "tp": n_ref - 1, "fp": 1, "fn": 1}
        assert counts == {k: p["expected_counts"][str(c)][k] for k in COUNT_KEYS}
        assert counts == brute_counts(ref, pred, c, "overlap")


def test_phantom_iou_counts_from_the_design(lesion_phantom):
    _, truth, ref, pred = lesion_phantom
    p = truth["prediction"]
    dice_b = p["boundary_error"]["dice"]
    border_matched = dice_b / (2 - dice_b) > 0.5  # IoU of the over-segmented border lesion
    for c in (6, 26):
        n_ref = truth["connected_components"][str(c)]
        # under iou the split large lesion is missed (each half < half of it) and both halves are FPs
        tp = n_ref - 1 - 1 - (0 if border_matched else 1)
        want = {"ref_lesions": n_ref, "pred_lesions": n_ref + 1, "tp": tp, "fp": n_ref + 1 - tp, "fn": n_ref - tp}
        assert lesion_counts(ref, pred, connectivity=c, match="iou") == want == brute_counts(ref, pred, c, "iou")


def test_phantom_per_lesion_volumes(lesion_phantom):
    root, truth, ref, pred = lesion_phantom
    affine = nib.load(str(root / truth["files"]["lesion"])).affine
    _, lesions = evaluate_lesion_arrays(ref, pred, affine, per_lesion=True)
    medium = next(les for les in truth["lesions"] if les["role"] == "medium")
    missed = [r for r in lesions if not r["detected"]]
    assert len(missed) == 1
    assert missed[0]["ref_volume_mm3"] == pytest.approx(medium["volume_mm3"], rel=1e-6)
    assert [missed[0][f"centroid_{a}_mm"] for a in "xyz"] == pytest.approx(medium["centroid_mm"], abs=1e-3)
    z = [r["centroid_z_mm"] for r in lesions]
    assert z == sorted(z, reverse=True)


# --------------------------------------------------------------------------------------------- CLI
def _parser() -> argparse.ArgumentParser:
    from nnunet_spine.cli.evaluate_lesions import register_lesions

    p = argparse.ArgumentParser()
    register_lesions(p.add_subparsers(dest="what"))
    return p


def test_parser_registers_options():
    a = _parser().parse_args(["lesions", "--pred", "p", "--ref", "r"])
    assert (a.match, a.connectivity, a.label, a.ref_label, a.per_lesion) == ("overlap", 26, None, None, None)
    a = _parser().parse_args(
        [
            "lesions",
            "--pred",
            "p",
            "--ref",
            "r",
            "--label",
            "2",
            "--ref-label",
            "all",
            "--match",
            "iou",
            "--connectivity",
            "6",
        ]
    )
    assert (a.label, a.ref_label, a.match, a.connectivity) == (2, "all", "iou", 6)
    with pytest.raises(SystemExit):
        _parser().parse_args(["lesions", "--pred", "p", "--ref", "r", "--connectivity", "8"])
    with pytest.raises(SystemExit):
        _parser().parse_args(["lesions", "--pred", "p", "--ref", "r", "--label", "0"])


def test_parser_run_writes_tables_and_refuses_bad_input(lesion_phantom, tmp_path):
    root = lesion_phantom[0]
    out, per = tmp_path / "m.csv", tmp_path / "pl.csv"
    a = _parser().parse_args(
        [
            "lesions",
            "--pred",
            str(root / "derivatives/prediction"),
            "--ref",
            str(root / "derivatives/labels"),
            "-o",
            str(out),
            "--per-lesion",
            str(per),
            "--connectivity",
            "6",
            "-q",
        ]
    )
    assert a.func(a) == 0
    df = pd.read_csv(out)
    assert list(df.columns) == [*CASE_COLUMNS, "subject", "session"]
    assert df["case"].tolist() == ["sub-01_T2w", "ALL", "MEAN", "SD", "N"]
    assert df["subject"].fillna("").tolist() == ["sub-01", "", "", "", ""]  # parsed from the case's BIDS name
    assert (df.loc[0, "tp"], df.loc[0, "fn"], df.loc[0, "fp"], df.loc[0, "connectivity"]) == (8, 1, 1, 6)
    assert len(pd.read_csv(per)) == 9
    bad = save(tmp_path / "bad" / "sub-01_T2w.nii.gz", np.full((3, 3, 3), np.nan), dtype=np.float32)
    out2 = tmp_path / "m2.csv"
    a = _parser().parse_args(
        ["lesions", "--pred", str(bad), "--ref", str(root / "derivatives/labels"), "-o", str(out2), "-q"]
    )
    with pytest.raises(InputError, match="NaN"):
        a.func(a)
    assert not out2.exists()


def test_cli_evaluate_lesions_exit_codes(lesion_phantom, tmp_path, capsys):
    """Through ``nnspine evaluate lesions`` (needs :func:`register_lesions` wired into cli/evaluate.py)."""
    from nnunet_spine.cli import main

    root = lesion_phantom[0]
    out = tmp_path / "m.csv"
    assert (
        main(
            [
                "evaluate",
                "lesions",
                "--pred",
                str(root / "derivatives/prediction"),
                "--ref",
                str(root / "derivatives/labels"),
                "--match",
                "iou",
                "-o",
                str(out),
                "-q",
            ]
        )
        == 0
    )
    assert pd.read_csv(out)["match"].tolist() == ["iou>=0.5"] * 5
    bad = save(tmp_path / "four.nii.gz", np.zeros((3, 3, 3, 2)))
    out2 = tmp_path / "m2.csv"
    code = main(["evaluate", "lesions", "--pred", str(bad), "--ref", str(bad), "-o", str(out2)])
    err = capsys.readouterr().err
    assert code == 2 and "four.nii.gz" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out2.exists()
