"""The lesion pipeline end to end with region labels, every step through its real console script:

``nnspine phantom --kind lesion`` → ``nnspine convert lesion --channels T2w,T1w --regions`` →
``nnUNetv2_plan_and_preprocess`` → ``nnUNetv2_train … -tr nnUNetTrainerLesion_debug -device cpu`` (found through
``nnUNet_extTrainer``) → ``nnUNetv2_predict -device cpu`` on an unseen subject → ``nnspine lesions`` →
``nnspine evaluate lesions``.

Asserts what a few CPU iterations can show: the lesion-wise validation ran every epoch and at the end (log,
checkpoint, progress_lesion.png, validation/lesion_metrics.csv whose counts equal an independent recount of
nnU-Net's own validation files), and the prediction goes through postprocessing and evaluation with its
geometry and the region label map intact. It does not assert learned quality (8 iterations).
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from nnunet_helpers import console_script, nnunet_env, run  # noqa: E402

from nnunet_spine.core.io import load_image  # noqa: E402

TRAIN_ID, TEST_ID = 981, 982
TRAIN, TEST = f"Dataset{TRAIN_ID}_LesionE2E", f"Dataset{TEST_ID}_LesionE2ETest"
PLANS = "nnUNetPlansCPU"
TRAINER = "nnUNetTrainerLesion_debug"
STRUCTURE_26 = np.ones((3, 3, 3), bool)


def nnspine(env: dict, *args: str):
    return run([console_script("nnspine"), *args], env)


def count_by_hand(ref: np.ndarray, pred: np.ndarray) -> list[int]:
    """ref_lesions, pred_lesions, tp, fp, fn under the overlap rule, 26-connectivity (scipy, from the definition)."""
    from scipy import ndimage

    ref_lab, n_ref = ndimage.label(ref, STRUCTURE_26)
    pred_lab, n_pred = ndimage.label(pred, STRUCTURE_26)
    tp = sum(1 for i in range(1, n_ref + 1) if pred[ref_lab == i].mean() >= 0.10)
    fp = sum(1 for j in range(1, n_pred + 1) if not ref[pred_lab == j].any())
    return [n_ref, n_pred, tp, fp, n_ref - tp]


@pytest.mark.slow
def test_lesion_pipeline_with_real_console_scripts(tmp_path):
    import torch

    env = nnunet_env(tmp_path)
    env["nnUNet_extTrainer"] = nnspine(env, "trainers", "--export").stdout.strip().split("=", 1)[1].strip("'")

    # phantoms → nnU-Net raw datasets with region labels (cord [1, 2], lesion 2)
    nnspine(env, "phantom", "--kind", "lesion", "-o", str(tmp_path / "train_bids"), "--subjects", "2", "-q")
    nnspine(env, "phantom", "--kind", "lesion", "-o", str(tmp_path / "test_bids"), "--seed", "1000", "-q")
    for bids, dataset_id, name in (
        (tmp_path / "train_bids", TRAIN_ID, "LesionE2E"),
        (tmp_path / "test_bids", TEST_ID, "LesionE2ETest"),
    ):
        nnspine(
            env,
            "convert",
            "lesion",
            "-i",
            str(bids),
            "--channels",
            "T2w,T1w",
            "--regions",
            "--nnunet-dataset",
            str(dataset_id),
            "--name",
            name,
            "-q",
        )
    dataset_json = json.loads((Path(env["nnUNet_raw"]) / TRAIN / "dataset.json").read_text())
    assert dataset_json["labels"]["lesion"] == 2 and dataset_json["regions_class_order"] == [1, 2]

    # plan (small CPU plans; planning needs nnUNet_n_proc_DA >= 1) and train on the CPU
    run(
        [
            console_script("nnUNetv2_plan_and_preprocess"),
            "-d",
            str(TRAIN_ID),
            "-c",
            "3d_fullres",
            "-np",
            "1",
            "-npfp",
            "1",
            "--verify_dataset_integrity",
            "--no_pbar",
            "-gpu_memory_target",
            "1",
            "-overwrite_plans_name",
            PLANS,
        ],
        {**env, "nnUNet_n_proc_DA": "1"},
    )
    run(
        [
            console_script("nnUNetv2_train"),
            str(TRAIN_ID),
            "3d_fullres",
            "all",
            "-tr",
            TRAINER,
            "-p",
            PLANS,
            "-device",
            "cpu",
        ],
        env,
    )
    out = Path(env["nnUNet_results"]) / TRAIN / f"{TRAINER}__{PLANS}__3d_fullres" / "fold_all"
    ckpt = torch.load(out / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    log = ckpt["logging"]
    n_epochs = len(log["train_losses"])
    assert n_epochs == 2
    for k in ("val_lesion_sensitivity", "val_lesion_precision", "val_lesion_f1"):
        assert len(log[k]) == n_epochs and all(0.0 <= v <= 1.0 for v in log[k]), k
    assert (out / "progress.png").is_file() and (out / "progress_lesion.png").is_file()
    text = "".join(p.read_text() for p in out.glob("training_log_*.txt"))
    assert text.count("val lesion sensitivity") == n_epochs

    # final validation: lesion_metrics.csv beside nnU-Net's summary.json, counts equal to a recount of the files
    validation = out / "validation"
    assert (validation / "summary.json").is_file()
    rows = list(csv.DictReader((validation / "lesion_metrics.csv").open()))
    gt = Path(env["nnUNet_preprocessed"]) / TRAIN / "gt_segmentations"
    cases = sorted(p.name[: -len(".nii.gz")] for p in validation.glob("*.nii.gz"))
    assert [r["case"] for r in rows] == cases + ["ALL", "MEAN", "SD", "N"] and len(cases) == 2
    assert (validation / "lesion_detection_by_size.csv").is_file()
    keys = ("ref_lesions", "pred_lesions", "tp", "fp", "fn")
    total = np.zeros(5, int)
    for row in rows[: len(cases)]:
        pred = load_image(validation / f"{row['case']}.nii.gz", "labels").data == 2
        ref = load_image(gt / f"{row['case']}.nii.gz", "labels").data == 2
        expected = count_by_hand(ref, pred)
        assert [int(row[k]) for k in keys] == expected, row["case"]
        assert expected[0] == 8  # the phantom's 10 lesions are 8 components under 26-connectivity
        total += expected
    assert [int(rows[len(cases)][k]) for k in keys] == total.tolist()  # the ALL row: counts summed

    # prediction of the unseen subject (its converted images: T1w already on the T2w grid)
    test_raw = Path(env["nnUNet_raw"]) / TEST
    run(
        [
            console_script("nnUNetv2_predict"),
            "-i",
            str(test_raw / "imagesTr"),
            "-o",
            str(tmp_path / "pred"),
            "-d",
            str(TRAIN_ID),
            "-c",
            "3d_fullres",
            "-f",
            "all",
            "-tr",
            TRAINER,
            "-p",
            PLANS,
            "-device",
            "cpu",
            "-npp",
            "1",
            "-nps",
            "1",
        ],
        env,
    )
    image = load_image(test_raw / "imagesTr" / "sub-01_T2w_0000.nii.gz")
    seg = load_image(tmp_path / "pred" / "sub-01_T2w.nii.gz", "labels")
    assert seg.shape == image.shape and np.allclose(seg.affine, image.affine, atol=1e-4)
    assert set(np.unique(seg.data).tolist()) <= {0, 1, 2}  # region label map: cord 1, lesion 2

    # postprocessing and lesion-wise evaluation of the prediction (label 2 = lesion)
    nnspine(
        env,
        "lesions",
        "-i",
        str(tmp_path / "pred"),
        "--label",
        "2",
        "-o",
        str(tmp_path / "pred_post"),
        "--table",
        str(tmp_path / "lesions.csv"),
        "-q",
    )
    table = list(csv.DictReader((tmp_path / "lesions.csv").open()))
    totals = [r for r in table if r["lesion"] == "total"]
    assert len(totals) == 1
    nnspine(
        env,
        "evaluate",
        "lesions",
        "--pred",
        str(tmp_path / "pred"),
        "--ref",
        str(test_raw / "labelsTr"),
        "--label",
        "2",
        "-o",
        str(tmp_path / "eval.csv"),
        "-q",
    )
    evaluated = list(csv.DictReader((tmp_path / "eval.csv").open()))
    assert [r["case"] for r in evaluated] == ["sub-01_T2w", "ALL", "MEAN", "SD", "N"]
    ref = load_image(test_raw / "labelsTr" / "sub-01_T2w.nii.gz", "labels").data == 2
    assert [int(evaluated[0][k]) for k in keys] == count_by_hand(ref, seg.data == 2)

    # ---- one command: `nnspine segment lesion` on the BIDS test subject (T1w resampled onto T2w as the converter
    # does) equals nnUNetv2_predict + the cord region + `nnspine lesions --cord`, voxel for voxel and row for row
    import nibabel as nib

    cord = tmp_path / "pred_cord"
    cord.mkdir()
    nib.save(nib.Nifti1Image(np.isin(seg.data, [1, 2]).astype(np.uint8), seg.affine), cord / "sub-01_T2w.nii.gz")
    nnspine(env, "lesions", "-i", str(tmp_path / "pred"), "--label", "2", "--cord", str(cord),
            "-o", str(tmp_path / "pred_cordpost"), "--table", str(tmp_path / "lesions_cord.csv"), "-q")  # fmt: skip
    model = Path(env["nnUNet_results"]) / TRAIN / f"{TRAINER}__{PLANS}__3d_fullres"
    out = tmp_path / "segment"
    nnspine(env, "segment", "lesion", "-i", str(tmp_path / "test_bids"), "--channels", "T2w,T1w", "-o", str(out),
            "--model", str(model), "-f", "all", "--device", "cpu", "-q")  # fmt: skip
    got = out / "sub-01" / "anat"
    one = load_image(got / "sub-01_T2w_label-lesion_seg.nii.gz", "labels")
    multi = load_image(tmp_path / "pred_cordpost" / "sub-01_T2w.nii.gz", "labels")
    assert np.array_equal(one.data, multi.data) and np.allclose(one.affine, multi.affine)
    assert np.array_equal(load_image(got / "sub-01_T2w_label-SC_seg.nii.gz", "labels").data, cord_data := (
        np.isin(seg.data, [1, 2]).astype(np.uint8)
    )) and cord_data.any()  # fmt: skip

    def rows(path: Path) -> list[dict]:
        return [{k: v for k, v in r.items() if k != "filename"} for r in csv.DictReader(path.open())]

    assert rows(got / "sub-01_T2w_lesions.csv") == rows(tmp_path / "lesions_cord.csv")

    # ---- --crop-to-cord (the phantom's cord masks, box grown 2 mm): equals nnUNetv2_predict on the images cropped
    # here by hand (bounding box of the cord, 2 mm = 3 voxels of 0.8 mm each side) and pasted back into zeros
    labels = tmp_path / "test_bids" / "derivatives" / "labels"
    truth_cord = load_image(labels / "sub-01" / "anat" / "sub-01_T2w_label-SC_seg.nii.gz", "labels")
    idx = np.argwhere(truth_cord.data > 0)
    lo, hi = np.maximum(idx.min(0) - 3, 0), np.minimum(idx.max(0) + 4, truth_cord.shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    assert any(b - a < n for a, b, n in zip(lo, hi, truth_cord.shape))  # the box is smaller than the image
    cropped_in, cropped_out = tmp_path / "cropped_in", tmp_path / "cropped_out"
    cropped_in.mkdir()
    for k in (0, 1):
        img = load_image(test_raw / "imagesTr" / f"sub-01_T2w_{k:04d}.nii.gz")
        shifted = img.affine.copy()
        shifted[:3, 3] += img.affine[:3, :3] @ lo
        nib.save(nib.Nifti1Image(img.data[box].astype(np.float32), shifted), cropped_in / f"sub-01_T2w_{k:04d}.nii.gz")
    run([console_script("nnUNetv2_predict"), "-i", str(cropped_in), "-o", str(cropped_out), "-d", str(TRAIN_ID),
         "-c", "3d_fullres", "-f", "all", "-tr", TRAINER, "-p", PLANS, "-device", "cpu", "-npp", "1", "-nps", "1"],
        env)  # fmt: skip
    pasted = np.zeros(truth_cord.shape, np.uint8)
    pasted[box] = load_image(cropped_out / "sub-01_T2w.nii.gz", "labels").data
    out_crop = tmp_path / "segment_crop"
    nnspine(env, "segment", "lesion", "-i", str(tmp_path / "test_bids"), "--channels", "T2w,T1w", "-o", str(out_crop),
            "--model", str(model), "-f", "all", "--device", "cpu", "--crop-to-cord", str(labels),
            "--crop-margin-mm", "2", "-q")  # fmt: skip
    got = out_crop / "sub-01" / "anat"
    assert np.array_equal(load_image(got / "sub-01_T2w_label-SC_seg.nii.gz", "labels").data, np.isin(pasted, [1, 2]))
    # and the lesions equal `nnspine lesions --cord` on the pasted label map, row for row
    (tmp_path / "pasted").mkdir()
    (tmp_path / "pasted_cord").mkdir()
    nib.save(nib.Nifti1Image(pasted, truth_cord.affine), tmp_path / "pasted" / "sub-01_T2w.nii.gz")
    nib.save(nib.Nifti1Image(np.isin(pasted, [1, 2]).astype(np.uint8), truth_cord.affine),
             tmp_path / "pasted_cord" / "sub-01_T2w.nii.gz")  # fmt: skip
    nnspine(env, "lesions", "-i", str(tmp_path / "pasted"), "--label", "2", "--cord", str(tmp_path / "pasted_cord"),
            "-o", str(tmp_path / "pasted_post"), "--table", str(tmp_path / "lesions_pasted.csv"), "-q")  # fmt: skip
    one = load_image(got / "sub-01_T2w_label-lesion_seg.nii.gz", "labels")
    assert np.array_equal(one.data, load_image(tmp_path / "pasted_post" / "sub-01_T2w.nii.gz", "labels").data)
    assert rows(got / "sub-01_T2w_lesions.csv") == rows(tmp_path / "lesions_pasted.csv")
