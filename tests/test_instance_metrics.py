"""``nnunet_spine.postprocessing.spine.panoptic`` / ``nnspine evaluate instances``: panoptic metrics by hand,
panoptica's published figures on its spine example, per-label Dice, and bad input."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nnunet_spine.core.io import InputError, load_image, save_image
from nnunet_spine.postprocessing.spine.panoptic import (
    GROUP_NAMES,
    INSTANCE_COLUMNS,
    MATCH_RULES,
    SEMANTIC_COLUMNS,
    SUMMARY_CASE,
    evaluate_instances,
    evaluate_semantic,
    instance_metrics,
    semantic_dice,
    summary_rows,
)

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
PANOPTICA = SHARED / "panoptica_spine_seg"


def _by_group(rows):
    return {r["structure"]: r for r in rows}


def _golden_case():
    """panoptica's golden 2-D instance case: a perfect pair (1), a pair whose prediction lacks the top row
    (2: IoU 90/100), a reference instance without prediction (3) and a prediction without reference (4)."""
    ref = np.zeros((50, 50), np.int32)
    pred = np.zeros((50, 50), np.int32)
    ref[5:15, 5:15] = pred[5:15, 5:15] = 1
    ref[20:30, 20:30] = 2
    pred[21:30, 20:30] = 2
    ref[40:48, 5:13] = 3
    pred[40:48, 40:48] = 4
    return ref, pred


@pytest.mark.parametrize("match", MATCH_RULES)
def test_metrics_by_hand(match):
    ref, pred = _golden_case()
    row = _by_group(instance_metrics(ref, pred, (1.0, 1.0), match=match))["vertebra"]
    assert (row["ref_instances"], row["pred_instances"], row["tp"], row["fp"], row["fn"]) == (3, 3, 2, 1, 1)
    assert row["precision"] == row["recall"] == row["rq"] == pytest.approx(2 / 3)
    iou2, dice2 = 90 / 100, 2 * 90 / 190
    assert row["sq"] == pytest.approx((1 + iou2) / 2) and row["sq_dsc"] == pytest.approx((1 + dice2) / 2)
    assert row["pq"] == pytest.approx((1 + iou2) / 2 * 2 / 3) and row["pq_dsc"] == pytest.approx(
        (1 + dice2) / 2 * 2 / 3
    )
    # pair 2: the prediction's top row (8 inner pixels of its 34 surface pixels) lies 1 px from the
    # reference's top row; all 10 pixels of that row (of the reference's 36) lie 1 px from the prediction
    assd2 = 0.5 * (8 / 34 + 10 / 36)
    assert row["assd_mm"] == pytest.approx(assd2 / 2)
    assert row["assd_mm"] == pytest.approx(0.12826797385620914)  # panoptica's frozen golden value
    # union of everything: 264 reference px, 254 predicted, 190 shared
    assert row["global_dice"] == pytest.approx(2 * 190 / (264 + 254))
    assert _by_group(instance_metrics(ref, pred, (1.0, 1.0)))["all"]["global_dice"] == pytest.approx(0.7335907335907336)


def test_label_and_iou_matching_differ_when_values_are_swapped():
    ref, pred = _golden_case()
    pred = np.where(pred == 1, 2, np.where(pred == 2, 1, pred))  # right shapes, wrong numbers
    by_label = _by_group(instance_metrics(ref, pred, (1.0, 1.0), match="label"))["vertebra"]
    by_iou = _by_group(instance_metrics(ref, pred, (1.0, 1.0), match="iou"))["vertebra"]
    assert (by_label["tp"], by_label["fp"], by_label["fn"]) == (0, 3, 3)
    assert by_label["rq"] == by_label["pq"] == 0.0 and math.isnan(by_label["sq"]) and math.isnan(by_label["assd_mm"])
    assert (by_iou["tp"], by_iou["fp"], by_iou["fn"]) == (2, 1, 1)
    assert by_label["global_dice"] == by_iou["global_dice"]  # the union does not care about numbers


def test_tp_threshold_dice_versus_iou():
    ref = np.zeros((10, 10, 3), np.int32)
    pred = np.zeros_like(ref)
    ref[0:6, 0:2, :] = 20  # 36 voxels
    pred[2:8, 0:2, :] = 20  # 36 voxels, 24 shared: Dice 2/3, IoU 1/2
    pred[0:2, 5:6, :] = 120  # a predicted disc where the reference has none
    dsc = _by_group(instance_metrics(ref, pred, (1.0, 1.0, 1.0), tp_metric="dsc"))
    iou = _by_group(instance_metrics(ref, pred, (1.0, 1.0, 1.0)))  # the default: IoU, as panoptica
    assert dsc["vertebra"]["tp"] == iou["vertebra"]["tp"] == 1  # IoU exactly 0.5 counts (>=)
    assert dsc["vertebra"]["sq_dsc"] == pytest.approx(2 / 3) and dsc["vertebra"]["sq"] == pytest.approx(0.5)
    assert _by_group(instance_metrics(ref, pred, (1.0, 1.0, 1.0), match="iou"))["vertebra"]["tp"] == 1  # >= 0.5
    pred[2, 0, 0] = 0  # Dice 46/71 ≥ 0.5 still, IoU 23/48 < 0.5
    assert _by_group(instance_metrics(ref, pred, (1.0, 1.0, 1.0), tp_metric="dsc"))["vertebra"]["tp"] == 1
    assert _by_group(instance_metrics(ref, pred, (1.0, 1.0, 1.0)))["vertebra"]["tp"] == 0
    assert _by_group(instance_metrics(ref, pred, (1.0, 1.0, 1.0), match="iou"))["vertebra"]["tp"] == 0
    ivd = dsc["ivd"]
    assert (ivd["ref_instances"], ivd["pred_instances"], ivd["tp"], ivd["fp"], ivd["fn"]) == (0, 1, 0, 1, 0)
    assert math.isnan(ivd["recall"]) and ivd["precision"] == 0.0 and ivd["rq"] == 0.0 and ivd["global_dice"] == 0.0
    end = dsc["endplate"]
    assert (end["ref_instances"], end["pred_instances"]) == (0, 0)
    assert all(math.isnan(end[k]) for k in ("precision", "recall", "rq", "sq", "pq", "global_dice"))


def test_groups_and_assd_in_mm():
    """Vertebra 20 (slices 7-10) with its endplate 220 (slice 11) above the disc 120 (slices 5-6) and the
    sacrum (0-3). The prediction puts the vertebra one 3 mm slice lower (6-9, over the disc's upper
    layer) and labels the disc's lower layer 221 (an endplate of vertebra 21)."""
    ref = np.zeros((8, 8, 12), np.int32)
    ref[2:6, 2:6, 7:11] = 20
    ref[2:6, 2:6, 11] = 220
    ref[2:6, 2:6, 5:7] = 120
    ref[1:7, 1:7, 0:4] = 26
    pred = ref.copy()
    pred[ref == 20] = 0
    pred[2:6, 2:6, 6:10] = 20
    pred[2:6, 2:6, 5] = 221
    spacing = (1.0, 1.0, 3.0)
    g = _by_group(instance_metrics(ref, pred, spacing))
    v = g["vertebra"]  # 64 and 64 voxels, 48 shared: IoU 48/80, Dice 96/128
    assert (v["tp"], v["sq"], v["sq_dsc"]) == (1, pytest.approx(0.6), pytest.approx(0.75))
    assert v["assd_mm"] == pytest.approx(_brute_assd(ref == 20, pred == 20, spacing))
    assert 0.5 < v["assd_mm"] < 3.0  # some surface voxels coincide, the others lie one 3 mm slice apart
    d = g["ivd"]  # no disc left in the prediction
    assert (d["ref_instances"], d["pred_instances"], d["tp"], d["fn"]) == (1, 0, 0, 1)
    assert d["global_dice"] == 0.0 and d["recall"] == 0.0 and math.isnan(d["precision"])
    e = g["endplate"]  # 220 unchanged, 221 a false positive
    assert (e["ref_instances"], e["pred_instances"], e["tp"], e["fp"], e["fn"]) == (1, 2, 1, 1, 0)
    assert e["global_dice"] == pytest.approx(2 * 16 / (16 + 32))
    s = g["sacrum"]
    assert (s["tp"], s["sq"], s["assd_mm"], s["global_dice"]) == (1, 1.0, 0.0, 1.0)
    a = g["all"]
    assert (a["ref_instances"], a["pred_instances"], a["tp"], a["fp"], a["fn"]) == (4, 4, 3, 1, 1)
    shared = np.count_nonzero((ref > 0) & (pred > 0))
    assert a["global_dice"] == pytest.approx(2 * shared / (np.count_nonzero(ref) + np.count_nonzero(pred)))


def _brute_assd(a: np.ndarray, b: np.ndarray, spacing) -> float:
    """ASSD by explicit surface-voxel distances (surface: a voxel with a face neighbour outside)."""

    def surface(m):
        pad = np.pad(m, 1)
        inner = np.ones_like(m)
        for axis in range(m.ndim):
            for shift in (-1, 1):
                inner &= np.roll(pad, shift, axis)[tuple(slice(1, -1) for _ in range(m.ndim))]
        return np.argwhere(m & ~inner) * np.asarray(spacing)

    sa, sb = surface(a), surface(b)
    d = np.sqrt(((sa[:, None, :] - sb[None, :, :]) ** 2).sum(-1))
    return 0.5 * (d.min(1).mean() + d.min(0).mean())


@pytest.mark.skipif(not PANOPTICA.exists(), reason=f"shared test data not found at {PANOPTICA}")
def test_panoptica_published_spine_example():
    """panoptica's matched-instance spine example (tutorial notebook, iou_threshold 0.5, voxel units):
    22/22 instances, tp 19, RQ 0.8636, SQ 0.8328, PQ 0.7193, SQ_DSC 0.9003, PQ_DSC 0.7775, ASSD 0.2503."""
    ref = load_image(PANOPTICA / "matched_instance" / "ref.nii.gz", "labels").data
    pred = load_image(PANOPTICA / "matched_instance" / "pred.nii.gz", "labels").data
    row = _by_group(instance_metrics(ref, pred, (1.0, 1.0, 1.0), tp_metric="iou", groups=["all"]))["all"]
    assert (row["ref_instances"], row["pred_instances"], row["tp"], row["fp"], row["fn"]) == (22, 22, 19, 3, 3)
    published = {
        "rq": 0.8636363636363636,
        "sq": 0.8328184295330798,
        "pq": 0.7192522800512963,
        "sq_dsc": 0.900292616009954,
        "pq_dsc": 0.7775254410995057,
        "assd_mm": 0.25033188787922506,
    }
    for key, value in published.items():
        assert row[key] == pytest.approx(value, rel=1e-9), key


def _cli(tmp_path, *args):
    parser = argparse.ArgumentParser()
    from nnunet_spine.cli.evaluate_instances import register_instances

    register_instances(parser.add_subparsers(dest="what"))
    ns = parser.parse_args(["instances", *map(str, args)])
    return ns.func(ns)


@pytest.mark.skipif(not PANOPTICA.exists(), reason=f"shared test data not found at {PANOPTICA}")
def test_cli_on_the_panoptica_pair_in_mm(tmp_path, capsys):
    out = tmp_path / "m.csv"
    assert (
        _cli(
            tmp_path,
            "--pred",
            PANOPTICA / "matched_instance" / "pred.nii.gz",
            "--ref",
            PANOPTICA / "matched_instance" / "ref.nii.gz",
            "--tp-metric",
            "iou",
            "-o",
            out,
        )
        == 0
    )
    df = pd.read_csv(out)
    assert list(df.columns) == [*INSTANCE_COLUMNS, "subject", "session"]
    assert df["structure"].tolist() == [*GROUP_NAMES, *GROUP_NAMES]  # the case, then ALL
    everything = df[(df["structure"] == "all") & (df["case"] == "pred")].iloc[0]
    assert (everything["tp"], everything["pq"]) == (19, pytest.approx(0.7192522800512963, rel=1e-9))
    # voxels of 0.586 × 0.586 × 3.3 mm: every distance lies between 0.586 and 3.3 times its voxel count
    assert 0.58593 * 0.25033188787922506 <= everything["assd_mm"] <= 3.3 * 0.25033188787922506
    counts = df[df["case"] == "pred"].set_index("structure")[["ref_instances", "tp"]]
    assert counts.loc[["vertebra", "ivd", "endplate", "sacrum"]].sum().tolist() == [22, 19]
    assert "wrote" in capsys.readouterr().out


def test_semantic_dice_by_hand(tmp_path):
    ref = np.zeros((6, 6, 4), np.uint8)
    pred = np.zeros_like(ref)
    ref[0:2, 0:2, :] = 49  # 16 voxels
    pred[0:2, 0:1, :] = 49  # 8 voxels inside
    ref[4:6, 4:6, 0] = 60
    pred[4:6, 4:6, 0] = 61  # cord called canal
    pred[3, 3, 3] = 43
    rows = {r["label"]: r for r in semantic_dice(ref, pred, voxel_mm3=2.0)}
    assert rows[49]["dice"] == pytest.approx(2 * 8 / 24) and rows[49]["ref_volume_mm3"] == 32.0
    assert rows[60]["dice"] == 0.0 and rows[61]["dice"] == 0.0 and rows[43]["dice"] == 0.0
    assert math.isnan(rows[100]["dice"]) and rows[100]["pred_volume_mm3"] == 0.0
    aff = np.diag([2.0, 1.0, 1.0, 1.0])
    for folder, data in (("pred", pred), ("ref", ref)):
        (tmp_path / folder).mkdir()
    save_image(pred, aff, tmp_path / "pred" / "sub-01_T2w.nii.gz")
    save_image(ref, aff, tmp_path / "ref" / "sub-01_T2w_seg-spine_msk.nii.gz")
    assert (
        _cli(
            tmp_path,
            "--semantic",
            "--pred",
            tmp_path / "pred",
            "--ref",
            tmp_path / "ref",
            "-o",
            tmp_path / "d.csv",
            "-q",
        )
        == 0
    )
    df = pd.read_csv(tmp_path / "d.csv")
    assert list(df.columns) == [*SEMANTIC_COLUMNS, "subject", "session"]
    assert set(df["case"]) == {"sub-01_T2w", SUMMARY_CASE} and set(df["subject"].fillna("")) == {"sub-01", ""}
    assert df.set_index(["case", "label"]).loc[("sub-01_T2w", 49), "dice"] == pytest.approx(2 / 3)


def test_summary_rows_sum_counts_and_average_the_rest():
    ref, pred = _golden_case()
    one = instance_metrics(ref, pred, (1.0, 1.0))
    two = instance_metrics(ref, ref, (1.0, 1.0))
    rows = [{"case": "a", **r} for r in one] + [{"case": "b", **r} for r in two]
    summary = _by_group(summary_rows(rows, "structure"))["vertebra"]
    assert (summary["case"], summary["tp"], summary["fp"], summary["fn"]) == (SUMMARY_CASE, 5, 1, 1)
    assert summary["pq"] == pytest.approx((0.95 * 2 / 3 + 1.0) / 2)
    assert summary["match"] == "label"


# --------------------------------------------------------------------------------------------- bad input
def _write(path, data, zooms=(1.0, 1.0, 1.0)):
    return save_image(np.asarray(data, np.uint8), np.diag([*zooms, 1.0]), path)


@pytest.mark.parametrize(
    "semantic_mode, values, expect",
    [
        (False, (41, 49, 100), "looks like a SPINEPS semantic mask"),
        (True, (20, 120, 220), "looks like a SPINEPS instance mask"),
        (False, (20, 50), "not SPINEPS instance labels"),
        (True, (49, 7), "not SPINEPS semantic labels"),
    ],
)
def test_wrong_kind_of_mask_is_named(tmp_path, semantic_mode, values, expect):
    data = np.zeros((6, 6, 4), np.uint8)
    for n, v in enumerate(values):
        data[n, :, :] = v
    bad = _write(tmp_path / "bad.nii.gz", data)
    good = _write(tmp_path / "good.nii.gz", np.where(data > 0, 26, 0))
    with pytest.raises(InputError, match=expect) as err:
        (evaluate_semantic if semantic_mode else evaluate_instances)(bad, good)
    assert str(err.value).startswith(f"{bad}: ")


def test_grid_mismatch_and_cli_writes_nothing(tmp_path):
    data = np.zeros((6, 6, 4), np.uint8)
    data[1:4, 1:4, 1:3] = 20
    ref = _write(tmp_path / "ref.nii.gz", data)
    pred = _write(tmp_path / "pred.nii.gz", data, zooms=(1.0, 1.0, 2.0))
    with pytest.raises(InputError, match="pred.nii.gz: affine differs"):
        evaluate_instances(pred, ref)
    out = tmp_path / "m.csv"
    with pytest.raises(InputError):
        _cli(tmp_path, "--pred", pred, "--ref", ref, "-o", out)
    assert not out.exists()


@pytest.mark.skipif(not PANOPTICA.exists(), reason=f"shared test data not found at {PANOPTICA}")
def test_qc_snapshot_of_each_prediction(tmp_path):
    """--qc writes one sagittal picture per predicted case (and refuses to replace it without --overwrite)."""
    qc = tmp_path / "qc"
    args = (
        "--pred",
        PANOPTICA / "matched_instance" / "pred.nii.gz",
        "--ref",
        PANOPTICA / "matched_instance" / "ref.nii.gz",
        "--qc",
        qc,
    )
    assert _cli(tmp_path, *args, "-o", tmp_path / "a.csv") == 0
    png = qc / "pred_qc.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    with pytest.raises(InputError, match="pred_qc.png: output exists"):
        _cli(tmp_path, *args, "-o", tmp_path / "b.csv")
    assert not (tmp_path / "b.csv").exists()  # refused before anything was written


# --------------------------------------------------------------------------------------------- labelling warning
def test_label_matching_warns_when_the_sidecar_says_ids_are_not_anatomical_or_not_verified(tmp_path, capsys):
    """Three predicted cases equal to their references: one whose sidecar says ids 1..n from the top, one whose ids
    came from one anchor (not verified), one verified. Label matching warns (CSV column and one stderr line per
    case) for the first two only; iou matching (values ignored) does not warn."""
    import json

    from nnunet_spine.postprocessing.spine.panoptic import LABELLING_WARNING

    ref = np.zeros((6, 6, 6), np.uint8)
    ref[0:2] = 20
    ref[3:5] = 21
    (tmp_path / "pred").mkdir()
    (tmp_path / "ref").mkdir()
    sidecars = {
        "sub-01_T2w": {"anatomically_labelled": False, "labelling": {"method": "not anatomically labelled: no anchor"}},
        "sub-02_T2w": {
            "anatomically_labelled": True,
            "labelling": {"verified": False, "reason": "one anchor only (sacrum): the count is not checked"},
        },
        "sub-03_T2w": {"anatomically_labelled": True, "labelling": {"verified": True, "reason": "sacrum and dens"}},
    }
    for case, side in sidecars.items():
        _write(tmp_path / "pred" / f"{case}_seg-vert_msk.nii.gz", ref)
        (tmp_path / "pred" / f"{case}_seg-vert_msk.json").write_text(json.dumps(side))
        _write(tmp_path / "ref" / f"{case}_seg-vert_msk.nii.gz", ref)
    out = tmp_path / "m.csv"
    assert _cli(tmp_path, "--pred", tmp_path / "pred", "--ref", tmp_path / "ref", "-o", out, "-q") == 0
    err = capsys.readouterr().err.splitlines()
    df = pd.read_csv(out, keep_default_na=False)
    assert list(df.columns) == [*INSTANCE_COLUMNS, "subject", "session"]
    said = df.groupby("case")[LABELLING_WARNING].agg(set).to_dict()
    assert said["sub-01_T2w"] == {
        "ids are not anatomical (not anatomically labelled: no anchor): 1..n from the top compared by value with the "
        "reference's VerSe ids"
    }
    assert said["sub-02_T2w"] == {"ids not verified: one anchor only (sacrum): the count is not checked"}
    assert said["sub-03_T2w"] == {""} and said[SUMMARY_CASE] == {"2 of 3 case(s) warned"}
    assert err == [
        f"nnspine evaluate instances: warning: sub-01_T2w: {next(iter(said['sub-01_T2w']))}",
        f"nnspine evaluate instances: warning: sub-02_T2w: {next(iter(said['sub-02_T2w']))}",
    ]
    vertebra = df[(df["case"] == "sub-01_T2w") & (df["structure"] == "vertebra")].iloc[0]
    assert vertebra["tp"] == 2  # the metrics themselves are unchanged
    out2 = tmp_path / "iou.csv"
    assert (
        _cli(tmp_path, "--pred", tmp_path / "pred", "--ref", tmp_path / "ref", "--match", "iou", "-o", out2, "-q") == 0
    )
    assert capsys.readouterr().err == ""
    assert set(pd.read_csv(out2, keep_default_na=False)[LABELLING_WARNING]) == {""}
