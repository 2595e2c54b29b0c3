"""The whole-spine semantic pipeline end to end with the real nnU-Net console scripts:

``nnspine phantom --kind spine`` → ``convert spineps`` → ``nnUNetv2_plan_and_preprocess`` → ``nnUNetv2_train -tr
nnUNetTrainerSpineSemantic_debug`` → ``nnUNetv2_predict`` (test-time mirroring on) → ``nnspine relabel`` →
``nnspine qc spine``.

Asserts what a few CPU iterations can show: the checkpoint tells the stock predictor to mirror every axis except
the left-right one (found here from where the phantom's left and right processes lie), predictions keep the
input's grid, and relabelling maps nnU-Net's labels back voxel for voxel. It does not assert learned quality.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from nnunet_helpers import console_script, nnunet_env, run  # noqa: E402

from nnunet_extensions.core.io import load_image  # noqa: E402
from nnunet_extensions.core.labels import SEMANTIC_LABELS

DATASET_ID, NAME = 993, "PipelineSpine"
DATASET = f"Dataset{DATASET_ID}_{NAME}"
PLANS = "nnUNetPlansCPU"
TRAINER = "nnUNetTrainerSpineSemantic_debug"


def nnspine(env: dict, *args: str):
    return run([console_script("nnspine"), *args], env)


@pytest.mark.slow
def test_spine_semantic_pipeline_with_real_console_scripts(tmp_path, trained_models):
    import blosc2
    import torch

    export = nnspine(nnunet_env(tmp_path), "trainers", "--export").stdout.strip()
    env = nnunet_env(tmp_path, nnUNet_extTrainer=export.split("=", 1)[1].strip("'"))
    nnspine(
        env,
        "phantom",
        "--kind",
        "spine",
        "-o",
        str(tmp_path / "train"),
        "--subjects",
        "2",
        "--vertebrae",
        "2",
        "--seed",
        "0",
    )
    nnspine(
        env,
        "phantom",
        "--kind",
        "spine",
        "-o",
        str(tmp_path / "test"),
        "--subjects",
        "1",
        "--vertebrae",
        "2",
        "--seed",
        "1",
    )

    nnspine(
        env,
        "convert",
        "spineps",
        "-i",
        str(tmp_path / "train"),
        "--nnunet-dataset",
        str(DATASET_ID),
        "--name",
        NAME,
        "-q",
    )
    raw = Path(env["nnUNet_raw"]) / DATASET
    dataset_json = json.loads((raw / "dataset.json").read_text())
    to_spineps = {int(k): v for k, v in dataset_json["nnspine_label_map"]["values"].items()}

    run(
        [
            console_script("nnUNetv2_plan_and_preprocess"),
            "-d",
            str(DATASET_ID),
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
    pre = Path(env["nnUNet_preprocessed"]) / DATASET
    cfg = json.loads((pre / f"{PLANS}.json").read_text())["configurations"]["3d_fullres"]
    # the left-right axis of the preprocessed arrays, from content: where left and right costal processes lie
    seg = blosc2.open(urlpath=str(pre / cfg["data_identifier"] / "sub-01_T2w_seg.b2nd"), mode="r")[:][0]
    left = np.argwhere(seg == dataset_json["labels"]["Costal_Process_Left"]).mean(0)
    right = np.argwhere(seg == dataset_json["labels"]["Costal_Process_Right"]).mean(0)
    lr_axis = int(np.argmax(np.abs(left - right)))

    run(
        [
            console_script("nnUNetv2_train"),
            str(DATASET_ID),
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
    model = Path(env["nnUNet_results"]) / DATASET / f"{TRAINER}__{PLANS}__3d_fullres"
    ckpt = torch.load(model / "fold_all" / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    assert tuple(ckpt["inference_allowed_mirroring_axes"]) == tuple(a for a in (0, 1, 2) if a != lr_axis)
    assert ckpt["trainer_name"] == TRAINER

    pred_in = tmp_path / "pred_in"
    pred_in.mkdir()
    image = tmp_path / "test" / "sub-01" / "anat" / "sub-01_T2w.nii.gz"
    (pred_in / "sub-01_T2w_0000.nii.gz").write_bytes(image.read_bytes())
    run(
        [
            console_script("nnUNetv2_predict"),
            "-i",
            str(pred_in),
            "-o",
            str(tmp_path / "pred"),
            "-d",
            str(DATASET_ID),
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
    pred = load_image(tmp_path / "pred" / "sub-01_T2w.nii.gz", "labels")
    src = load_image(image)
    assert pred.shape == src.shape
    np.testing.assert_allclose(pred.affine, src.affine, atol=1e-4)
    assert set(np.unique(pred.data).tolist()) <= set(to_spineps)

    # relabel by dataset id (nnUNet_raw), voxel for voxel
    nnspine(
        env,
        "relabel",
        "-i",
        str(tmp_path / "pred"),
        "-o",
        str(tmp_path / "spineps"),
        "--dataset",
        str(DATASET_ID),
        "-q",
    )
    back = load_image(tmp_path / "spineps" / "sub-01_T2w.nii.gz", "labels")
    lut = np.zeros(256, np.int64)
    for k, v in to_spineps.items():
        lut[k] = v
    assert np.array_equal(back.data, lut[pred.data.astype(np.int64)])
    assert set(np.unique(back.data).tolist()) <= set(SEMANTIC_LABELS) | {0}
    np.testing.assert_allclose(back.affine, pred.affine, atol=1e-6)
    # for `segment spine` (tests/e2e/test_vertebra_cutout_training.py): the model, its input and its SPINEPS mask
    trained_models["spine_semantic"] = {"model": model, "image": image, "semantic": tmp_path / "spineps"}
    # the prediction folder carries dataset.json (nnU-Net copies it): relabel works from it too
    nnspine(
        env,
        "relabel",
        "-i",
        str(tmp_path / "pred" / "sub-01_T2w.nii.gz"),
        "-o",
        str(tmp_path / "b.nii.gz"),
        "--dataset",
        str(tmp_path / "pred"),
        "-q",
    )
    assert np.array_equal(load_image(tmp_path / "b.nii.gz", "labels").data, back.data)

    if back.data.any():  # a QC picture of what the few iterations produced
        nnspine(
            env,
            "qc",
            "spine",
            "-i",
            str(tmp_path / "spineps" / "sub-01_T2w.nii.gz"),
            "--image",
            str(image),
            "-o",
            str(tmp_path / "qc.png"),
        )
        assert (tmp_path / "qc.png").stat().st_size > 1000
