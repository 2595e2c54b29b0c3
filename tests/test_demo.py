"""nnspine demo --no-train: phantoms and CSA per level against the true CSA (seconds)."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest


def test_quick_demo_measures_true_csa(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run(["nnspine", "demo", "--no-train", "-o", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "[2/2]" in proc.stdout and "true CSA" in proc.stdout
    table = pd.read_csv(out / "csa_per_level.csv")
    assert list(table["level"]) == ["C2", "C3", "C4", "C5", "C6"]
    # the exact partial-volume mask measures the true per-level CSA within 0.5 %, the binary mask within 1 %
    assert table["exact soft mask error %"].abs().max() < 0.5
    assert table["binary mask error %"].abs().max() < 1.0
    assert (out / "csa_profile.png").stat().st_size > 10_000
    # a second run into the same folder is refused, nothing lost
    again = subprocess.run(["nnspine", "demo", "--no-train", "-o", str(out)], capture_output=True, text=True)
    assert again.returncode == 2 and "exists" in again.stderr and "Traceback" not in again.stderr
    assert (out / "csa_per_level.csv").exists()
    # --overwrite redoes a demo folder, but never deletes a folder the demo did not write
    redo = subprocess.run(
        ["nnspine", "demo", "--no-train", "-o", str(out), "--overwrite"], capture_output=True, text=True
    )
    assert redo.returncode == 0, redo.stderr
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "data.nii.gz").write_bytes(b"keep me")
    refused = subprocess.run(
        ["nnspine", "demo", "--no-train", "-o", str(precious), "--overwrite"], capture_output=True, text=True
    )
    assert refused.returncode == 2 and "not an nnspine demo folder" in refused.stderr
    assert (precious / "data.nii.gz").read_bytes() == b"keep me"


def test_demo_progress_line_reads_nnunet_epoch_output():
    """nnU-Net prints each epoch as ``print(*args)`` of these values; the demo turns them into one line."""
    import contextlib
    import io

    import numpy as np

    from nnunet_spine.apps.demo import epoch_progress

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):  # the way nnUNetTrainer.on_epoch_end prints (numpy scalars)
        for epoch, (tl, vl, d, t) in enumerate([(-0.25, -0.5, 0.8123, 40.0), (-0.5, -0.625, 0.9, 20.0)]):
            print(f"Epoch {epoch}")
            print("Current learning rate", np.round(0.01, decimals=5))
            print("train_loss", np.round(np.float32(tl), decimals=4))
            print("val_loss", np.round(np.float32(vl), decimals=4))
            print("Pseudo dice", [np.round(np.float32(d), decimals=4)])
            print(f"Epoch time: {np.round(t, decimals=2)} s")
    said: list[str] = []
    handle = epoch_progress(6, said.append)
    for line in buf.getvalue().splitlines():
        handle(line)
    assert len(said) == 2
    assert "epoch 1/6" in said[0] and "train_loss -0.250" in said[0] and "val_loss -0.500" in said[0]
    assert "pseudo Dice 0.8123" in said[0] and "np.float" not in said[0]
    # time left = mean epoch time so far x epochs left: 40 s x 5, then 30 s x 4
    assert "about 200 s left" in said[0] and "about 120 s left" in said[1]


def test_demo_verdict_states_what_its_own_figures_show():
    """The demo's conclusion follows its numbers: soft GT effect first, then the model, 'NOT' when it fails."""
    from nnunet_spine.apps.demo import verdict

    table = pd.DataFrame(
        {
            "level": ["C2", "C3"],
            "true CSA": [70.0, 72.0],
            "predicted soft mask": [72.8, 73.0],
            "predicted soft mask error %": [4.0, 1.39],
        }
    )
    spread = pd.DataFrame(
        {
            "contrast": ["T2w", "T1w", "SD across contrasts"],
            "binary mask": [71.0, 72.0, 0.5],
            "soft GT (converter)": [71.5, 71.7, 0.25],
            "predicted soft mask": [73.0, 75.0, 1.9],
        }
    )
    lines = verdict(table, spread)
    assert "0.25 mm² vs 0.50 mm²" in lines[0] and "(-50 %)" in lines[0] and "reduces" in lines[0]
    assert "1.90 mm² NOT below the binary masks' 0.50 mm²" in lines[1]
    assert "up to 4.0 % (NOT within 3 %)" in lines[1]
    assert "does not show the method's claim" in lines[2]
    good = spread.assign(**{"predicted soft mask": [71.6, 71.7, 0.3]})
    ok_table = table.assign(**{"predicted soft mask error %": [2.0, -1.0]})
    lines = verdict(ok_table, good)
    assert "0.30 mm² below" in lines[1] and "(within 3 %)" in lines[1] and len(lines) == 2
    assert verdict(table, None) == []


class _StopAtTraining(Exception):
    pass


def test_demo_prints_the_commands_it_runs_with_the_plans_it_planned(tmp_path, monkeypatch):
    """Every ``$`` line the demo prints is a command it really ran; the training line names the plans the planning
    wrote (``-overwrite_plans_name``) and runs nnU-Net's train entry point seeded. nnU-Net itself is replaced by a
    recorder that stops at the training (stages 1-3 run for real, in seconds)."""
    import shlex

    from nnunet_spine.apps import demo, demo_steps

    ran: list[list[str]] = []

    def record(cmd, env, log, on_line=None):
        ran.append(list(cmd))
        if "train" in cmd and "--seed" in cmd:
            raise _StopAtTraining

    monkeypatch.setattr(demo_steps, "console", record)
    said: list[str] = []
    with pytest.raises(_StopAtTraining):
        demo.run_demo(tmp_path / "demo", say=said.append)
    printed = [line.strip()[2:] for line in said if line.strip().startswith("$ ")]
    assert printed == [demo.shell_line(c) for c in ran] and len(ran) == 3
    plan, _, train = (shlex.split(p) for p in printed)
    plans_name = plan[plan.index("-overwrite_plans_name") + 1]
    assert plans_name == demo.DEMO_PLANS
    assert train[train.index("-p") + 1] == plans_name and train[train.index("-tr") + 1] == demo.DEMO_TRAINER
    assert train[:6] == ["python", "-m", "nnunet_spine.apps.demo", "train", "--seed", str(demo.DEMO_TRAIN_SEED)]
    assert ran[2][0] == sys.executable
    # the stage line states the same nnUNetv2_train arguments
    stage5 = next(line for line in said if line.startswith("[5/6]"))
    assert f"nnUNetv2_train {shlex.join(train[6:])}, seeded with {demo.DEMO_TRAIN_SEED}" in stage5


def test_seeded_train_seeds_random_numpy_and_torch_before_nnunet(monkeypatch):
    """``python -m nnunet_spine.apps.demo train --seed S ...`` hands nnUNetv2_train's arguments to nnU-Net's
    entry point after seeding: the draws nnU-Net then makes are those of generators freshly seeded with S."""
    import random

    import numpy as np
    import torch

    from nnunet_spine.apps import demo

    seen = {}

    def fake_entry():
        seen["argv"] = list(sys.argv)
        seen["draws"] = (random.random(), float(np.random.rand()), float(torch.rand(1)))

    monkeypatch.setattr("nnunetv2.run.run_training.run_training_entry", fake_entry)
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    random.random(), np.random.rand(), torch.rand(1)  # state before: anything
    demo.seeded_train(["train", "--seed", "7", "990", "3d_fullres", "all", "-p", "P"])
    assert seen["argv"] == ["nnUNetv2_train", "990", "3d_fullres", "all", "-p", "P"]
    expected = (
        random.Random(7).random(),
        float(np.random.RandomState(7).rand()),
        float(torch.rand(1, generator=torch.Generator().manual_seed(7))),
    )
    assert seen["draws"] == expected
    with pytest.raises(ValueError, match="usage"):
        demo.seeded_train(["990", "3d_fullres"])


def test_demo_model_folder_and_segment_line(tmp_path):
    from nnunet_spine.apps.demo import DemoResult, model_folder

    m = model_folder(tmp_path / "nnUNet_results", "nnUNetTrainerSoftSeg_demo")
    assert (
        m
        == tmp_path
        / "nnUNet_results/Dataset990_nnspineDemoSoftCord/nnUNetTrainerSoftSeg_demo__nnUNetPlansCPUDemo__3d_fullres"
    )
    r = DemoResult(tmp_path, pd.DataFrame(), tmp_path / "a.csv", tmp_path / "b.png", True, model=m)
    line = r.segment_command()
    assert line.startswith("nnspine segment cord -i ") and f"--model {m}" in line
    assert DemoResult(tmp_path, pd.DataFrame(), tmp_path / "a.csv", tmp_path / "b.png", False).segment_command() is None
