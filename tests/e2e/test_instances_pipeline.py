"""Slow end-to-end run of the instance phase with the real nnU-Net console scripts (CPU, tiny).

``nnspine convert cutouts`` (small cutouts: 32 x 48 x 24 voxels of 3 mm) → ``nnUNetv2_plan_and_preprocess`` →
``nnUNetv2_train`` (``nnUNetTrainer_budget``: 1 epoch of 2 iterations) → ``nnspine instances`` (nnU-Net's
predictor in-process). The two-step route (``nnspine cutouts`` → the real ``nnUNetv2_predict`` →
``nnspine fuse``) must give the same instance mask. The model is barely trained, so only the plumbing and
the validity of the outputs are checked, not their accuracy (the fusion's accuracy is tested in
``tests/test_fuse.py``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from nnunet_helpers import console_script, nnunet_env, run  # noqa: E402

from nnunet_extensions import labels as L  # noqa: E402
from nnunet_extensions.io import load_image  # noqa: E402

DATASET_ID, NAME = 994, "CutoutsE2E"
DATASET = f"Dataset{DATASET_ID}_{NAME}"
PLANS = "nnUNetPlansCPU"
TRAINER = "nnUNetTrainer_budget"
SIZE, SPACING = "32,48,24", "3,3,3"


def nnspine(env: dict, *args: str):
    return run([console_script("nnspine"), *args], env)


def _convert_cutouts(argv: list[str]) -> int:
    """``nnspine convert cutouts`` through its register function (until it is wired into ``nnspine convert``)."""
    from nnunet_extensions.cli.convert_cutouts import register_cutouts

    parser = argparse.ArgumentParser()
    register_cutouts(parser.add_subparsers())
    args = parser.parse_args(["cutouts", *argv])
    return args.func(args)


@pytest.mark.slow
def test_instances_pipeline_with_real_console_scripts(tmp_path, monkeypatch):
    export = nnspine(nnunet_env(tmp_path), "trainers", "--export").stdout.strip()
    env = nnunet_env(tmp_path, nnUNet_extTrainer=export.split("=", 1)[1].strip("'"), NNSPINE_EPOCHS="1",
                     NNSPINE_ITERATIONS="2", NNSPINE_VAL_ITERATIONS="1", NNSPINE_NO_TTA="1")
    nnspine(env, "phantom", "--kind", "spine", "-o", str(tmp_path / "train"), "--subjects", "1", "--seed", "0")
    nnspine(env, "phantom", "--kind", "spine", "-o", str(tmp_path / "test"), "--subjects", "1", "--seed", "1")
    monkeypatch.setenv("nnUNet_raw", env["nnUNet_raw"])
    assert _convert_cutouts(["-i", str(tmp_path / "train"), "--nnunet-dataset", str(DATASET_ID), "--name", NAME,
                             "--shifts", "1", "--size", SIZE, "--spacing", SPACING, "-q"]) == 0
    run([console_script("nnUNetv2_plan_and_preprocess"), "-d", str(DATASET_ID), "-c", "3d_fullres", "-np", "1",
         "-npfp", "1", "--verify_dataset_integrity", "--no_pbar", "-gpu_memory_target", "1",
         "-overwrite_plans_name", PLANS], {**env, "nnUNet_n_proc_DA": "1"})
    run([console_script("nnUNetv2_train"), str(DATASET_ID), "3d_fullres", "0", "-tr", TRAINER, "-p", PLANS,
         "-device", "cpu"], env, timeout=1200)
    model = Path(env["nnUNet_results"]) / DATASET / f"{TRAINER}__{PLANS}__3d_fullres"
    assert (model / "fold_0" / "checkpoint_final.pth").is_file()

    sem = tmp_path / "test" / "derivatives" / "labels" / "sub-01" / "anat" / "sub-01_T2w_seg-spine_msk.nii.gz"
    nnspine(env, "instances", "--semantic", str(sem), "--model", str(model), "-f", "0", "--device", "cpu",
            "-o", str(tmp_path / "one_call"), "--top-vertebra", "L1", "-q")
    # the same through the real nnUNetv2_predict
    nnspine(env, "cutouts", "--semantic", str(sem), "-o", str(tmp_path / "cut"), "--size", SIZE, "--spacing",
            SPACING, "-q")
    run([console_script("nnUNetv2_predict"), "-i", str(tmp_path / "cut"), "-o", str(tmp_path / "pred"), "-d",
         str(DATASET_ID), "-c", "3d_fullres", "-tr", TRAINER, "-p", PLANS, "-f", "0", "-device", "cpu",
         "-npp", "1", "-nps", "1"], env, timeout=1200)
    assert len(list((tmp_path / "pred").glob("sub-01_T2w_*.nii.gz"))) == 5
    nnspine(env, "fuse", "--semantic", str(sem), "--cutouts", str(tmp_path / "cut"), "--predictions",
            str(tmp_path / "pred"), "-o", str(tmp_path / "two_step"), "--top-vertebra", "L1", "-q")

    names = ("sub-01_T2w_seg-vert_msk.nii.gz", "sub-01_T2w_seg-spine_msk.nii.gz", "sub-01_T2w_seg-spine_ctd.json",
             "sub-01_T2w_seg-spine_snp.png")
    for folder in ("one_call", "two_step"):
        assert sorted(p.name for p in (tmp_path / folder).iterdir()) == sorted(names)
    one = load_image(tmp_path / "one_call" / names[0], "labels")
    two = load_image(tmp_path / "two_step" / names[0], "labels")
    assert np.array_equal(one.data, two.data)
    clean = load_image(tmp_path / "one_call" / names[1], "labels")
    assert L.consistency_problems(clean.data, one.data) == []
    assert any(L.is_vertebra(v) and v != L.SACRUM for v in np.unique(one.data))
