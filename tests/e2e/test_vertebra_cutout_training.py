"""The cutout trainer end to end with the real nnU-Net console scripts (CPU, tiny):

``nnspine phantom --kind spine`` → ``nnspine convert cutouts`` → ``nnUNetv2_plan_and_preprocess`` (small CPU plans)
→ ``nnUNetv2_train -tr nnUNetTrainerVertebraCutout_debug`` → ``nnspine cutouts`` of a held-out phantom →
``nnUNetv2_predict`` (test-time augmentation left on) → ``nnspine fuse``; and the same model through the one-call
``nnspine instances`` (nnU-Net's predictor in-process), which must give the same instance mask.

Asserts what a few CPU iterations can show: the trainer ran on the cutout dataset and logged mirroring along the
left-right axis found here from content (where the left and right costal channels lie in the preprocessed
arrays), the checkpoint tells the stock predictor not to mirror, and every cutout gets a prediction on its own
grid with target labels only. It does not assert learned quality (fusion accuracy: ``tests/test_fuse.py``).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from nnunet_helpers import console_script, nnunet_env, run  # noqa: E402

from nnunet_spine.core.io import load_image  # noqa: E402
from nnunet_spine.core.labels import (
    COSTAL_LEFT,
    CUTOUT_CHANNEL_LABELS,
    CUTOUT_TARGET_LABELS,
    SACRUM,
    consistency_problems,
    is_vertebra,
)

DATASET_ID, NAME = 995, "CutoutTrainer"
DATASET = f"Dataset{DATASET_ID}_{NAME}"
PLANS = "nnUNetPlansCPU"
TRAINER = "nnUNetTrainerVertebraCutout_debug"
SIZE, SPACING = "28,64,32", "3,2,2"  # P, I, R voxels of mm: 84 x 128 x 64 mm


def nnspine(env: dict, *args: str):
    return run([console_script("nnspine"), *args], env)


@pytest.mark.slow
def test_vertebra_cutout_trainer_with_real_console_scripts(tmp_path, trained_models):
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
        "3",
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
        "3",
        "--seed",
        "1",
    )
    nnspine(
        env,
        "convert",
        "cutouts",
        "-i",
        str(tmp_path / "train"),
        "--nnunet-dataset",
        str(DATASET_ID),
        "--name",
        NAME,
        "--shifts",
        "0",
        "--size",
        SIZE,
        "--spacing",
        SPACING,
        "-q",
    )
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
    # the left-right axis of the preprocessed arrays, from content: where the left and right costal channels lie
    data = blosc2.open(urlpath=str(pre / cfg["data_identifier"] / "sub-01_T2w_001.b2nd"), mode="r")[:]
    left = CUTOUT_CHANNEL_LABELS.index(COSTAL_LEFT)
    lr_axis = int(np.argmax(np.abs(np.argwhere(data[left] > 0.5).mean(0) - np.argwhere(data[left + 1] > 0.5).mean(0))))

    run(
        [
            console_script("nnUNetv2_train"),
            str(DATASET_ID),
            "3d_fullres",
            "0",
            "-tr",
            TRAINER,
            "-p",
            PLANS,
            "-device",
            "cpu",
        ],
        env,
    )
    model = Path(env["nnUNet_results"]) / DATASET / f"{TRAINER}__{PLANS}__3d_fullres" / "fold_0"
    trained_models["vertebra_cutout"] = model.parent  # for test_segment_spine_equals_the_command_route
    ckpt = torch.load(model / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    assert ckpt["trainer_name"] == TRAINER
    assert ckpt["inference_allowed_mirroring_axes"] is None
    log = "".join(p.read_text() for p in model.glob("training_log_*.txt"))
    found = re.search(
        r"training mirroring: left-right patch axis (\d) only, swapping input channels (\[[\d, ]+\])", log
    )
    assert found, log[-2000:]
    assert int(found.group(1)) == lr_axis
    assert json.loads(found.group(2)) == [0, 1, 3, 2, 5, 4, 7, 6, 8]  # 43<->44, 45<->46, 47<->48, by hand

    sem = tmp_path / "test" / "derivatives" / "labels" / "sub-01" / "anat" / "sub-01_T2w_seg-spine_msk.nii.gz"
    nnspine(
        env, "cutouts", "--semantic", str(sem), "-o", str(tmp_path / "cut"), "--size", SIZE, "--spacing", SPACING, "-q"
    )
    run(
        [
            console_script("nnUNetv2_predict"),
            "-i",
            str(tmp_path / "cut"),
            "-o",
            str(tmp_path / "pred"),
            "-d",
            str(DATASET_ID),
            "-c",
            "3d_fullres",
            "-f",
            "0",
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
    cases = sorted(p.name[: -len("_0000.nii.gz")] for p in (tmp_path / "cut").glob("*_0000.nii.gz"))
    assert len(cases) == 3  # one cutout per vertebral body of the 3-vertebra phantom
    for case in cases:
        pred = load_image(tmp_path / "pred" / f"{case}.nii.gz", "labels")
        cut = load_image(tmp_path / "cut" / f"{case}_0000.nii.gz")
        assert pred.shape == cut.shape
        np.testing.assert_allclose(pred.affine, cut.affine, atol=1e-4)
        assert set(np.unique(pred.data).tolist()) <= set(CUTOUT_TARGET_LABELS.values())

    # phase 2 in full: fuse the real nnUNetv2_predict output, and the one-call route with the same model
    nnspine(
        env,
        "fuse",
        "--semantic",
        str(sem),
        "--cutouts",
        str(tmp_path / "cut"),
        "--predictions",
        str(tmp_path / "pred"),
        "-o",
        str(tmp_path / "two_step"),
        "--top-vertebra",
        "C2",  # anatomical ids with room for every instance a briefly trained model may give (not L1: 7 from L1
        # would run past L6)
        "-q",
    )
    nnspine(
        env,
        "instances",
        "--semantic",
        str(sem),
        "--model",
        str(model.parent),
        "-f",
        "0",
        "--device",
        "cpu",
        "-o",
        str(tmp_path / "one_call"),
        "--top-vertebra",
        "C2",  # anatomical ids with room for every instance a briefly trained model may give (not L1: 7 from L1
        # would run past L6)
        "-q",
    )
    names = (
        "sub-01_T2w_seg-vert_msk.nii.gz",
        "sub-01_T2w_seg-spine_msk.nii.gz",
        "sub-01_T2w_seg-spine_ctd.json",
        "sub-01_T2w_seg-spine_snp.png",
        "sub-01_T2w_seg-vert_msk.json",  # the sidecar: how the ids were found (and the provenance)
        "sub-01_T2w_label-discs_dlabel.nii.gz",  # SCT disc labels: the ids are anatomical (--top-vertebra)
        "sub-01_T2w_label-discs_dlabel.json",  # provenance sidecars of the other NIfTIs
        "sub-01_T2w_seg-spine_msk.json",
    )
    for folder in ("one_call", "two_step"):
        assert sorted(p.name for p in (tmp_path / folder).iterdir()) == sorted(names)
    one = load_image(tmp_path / "one_call" / names[0], "labels")
    two = load_image(tmp_path / "two_step" / names[0], "labels")
    assert np.array_equal(one.data, two.data)
    clean = load_image(tmp_path / "one_call" / names[1], "labels")
    assert consistency_problems(clean.data, one.data) == []
    assert any(is_vertebra(v) and v != SACRUM for v in np.unique(one.data))


def _without_provenance(sidecar: dict) -> dict:
    """A mask's JSON sidecar without what differs between two routes to the same mask: the provenance keys
    (``GeneratedBy``, ``Sources``, ``Models``; core/provenance.py) and the semantic mask's path."""
    return {k: v for k, v in sidecar.items() if k not in ("GeneratedBy", "Sources", "Models", "semantic")}


@pytest.mark.slow
def test_segment_spine_equals_the_command_route(tmp_path, trained_models):
    """``nnspine segment spine`` (semantic model → SPINEPS values → cutouts → instance model → fusion and labelling)
    equals ``nnUNetv2_predict`` → ``nnspine relabel`` (done in test_spine_pipeline.py) → ``nnspine instances``, file
    for file: the same SPINEPS outputs, or, when the briefly trained semantic model gives no usable vertebral body,
    the same refusal, recorded in failures.csv."""
    import csv
    import subprocess

    if "spine_semantic" not in trained_models or "vertebra_cutout" not in trained_models:
        pytest.skip("needs the models of tests/e2e/test_spine_pipeline.py and the cutout test above (run both files)")
    semantic, cutout = trained_models["spine_semantic"], trained_models["vertebra_cutout"]
    env = nnunet_env(tmp_path)
    env["nnUNet_extTrainer"] = nnspine(env, "trainers", "--export").stdout.strip().split("=", 1)[1].strip("'")
    case = "sub-01_T2w"
    # the command route: the relabelled nnUNetv2_predict output under SPINEPS' name, then `nnspine instances`
    (tmp_path / "sem").mkdir()
    sem = tmp_path / "sem" / f"{case}_seg-spine_msk.nii.gz"
    sem.write_bytes((semantic["semantic"] / f"{case}.nii.gz").read_bytes())
    marks_two, marks_one = [], []
    if "landmarks" in trained_models:  # the landmark model of test_spine_pipeline.py anchors the ids in both routes
        (tmp_path / "lm_in").mkdir()
        (tmp_path / "lm_in" / f"{case}_0000.nii.gz").write_bytes(semantic["image"].read_bytes())
        run([console_script("nnUNetv2_predict_from_modelfolder"), "-i", str(tmp_path / "lm_in"), "-o",
             str(tmp_path / "lm"), "-m", str(trained_models["landmarks"]), "-f", "all", "-device", "cpu",
             "-npp", "1", "-nps", "1"], env)  # fmt: skip
        marks_two = ["--landmarks", str(tmp_path / "lm" / f"{case}.nii.gz")]
        marks_one = ["--landmark-model", str(trained_models["landmarks"])]
    two = subprocess.run(
        [console_script("nnspine"), "instances", "--semantic", str(sem), "--model", str(cutout), "-f", "0",
         "--device", "cpu", "--image", str(semantic["image"]), "-o", str(tmp_path / "two"), "-q", *marks_two],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    one = subprocess.run(
        [console_script("nnspine"), "segment", "spine", "-i", str(semantic["image"]), "-o", str(tmp_path / "one"),
         "--model", str(semantic["model"]), "-f", "all", "--instance-model", str(cutout), "--instance-folds", "0",
         "--device", "cpu", "-q", *marks_one],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    failures = list(csv.DictReader((tmp_path / "one" / "failures.csv").open()))
    if two.returncode != 0:  # the command route refused: segment records the same reason and goes on
        reason = two.stderr.strip().splitlines()[-1].split("error: ", 1)[-1]
        assert one.returncode == 2 and len(failures) == 1 and failures[0]["case"] == case
        assert reason.split(": ", 1)[-1] in failures[0]["reason"], (reason, failures)
        return
    assert one.returncode == 0 and failures == [], one.stderr
    produced = sorted(p.name for p in (tmp_path / "one").glob(f"{case}_*"))
    assert produced == sorted(p.name for p in (tmp_path / "two").iterdir())
    for name in produced:
        a, b = tmp_path / "one" / name, tmp_path / "two" / name
        if name.endswith(".nii.gz"):
            x, y = load_image(a, "labels"), load_image(b, "labels")
            assert np.array_equal(x.data, y.data) and np.allclose(x.affine, y.affine), name
        elif name.endswith("_ctd.json"):
            assert json.loads(a.read_text()) == json.loads(b.read_text()), name
        elif name.endswith("_msk.json"):  # the sidecars: the same content, provenance and paths aside
            x, y = json.loads(a.read_text()), json.loads(b.read_text())
            for side in (x, y):  # every mask has a provenance sidecar (core/provenance.py)
                assert side["GeneratedBy"][0]["Name"].startswith("nnunet-spine"), (name, side)
            assert _without_provenance(x) == _without_provenance(y), name
            if "_seg-vert_" in name:  # the instance mask's own sidecar (fusion_files.sidecar_json)
                assert x["labelling"] is not None or not x["anatomically_labelled"], x
