"""``nnspine demo --lesion --no-train``: lesion phantoms → ``convert lesion`` → ``nnspine lesions`` →
``nnspine evaluate lesions`` on the phantom's prediction with known errors (seconds, no nnU-Net)."""

from __future__ import annotations

import json
import subprocess

import nibabel as nib
import numpy as np
import pandas as pd
import pytest


def _demo(*args) -> subprocess.CompletedProcess:
    return subprocess.run(["nnspine", "demo", "--lesion", *map(str, args)], capture_output=True, text=True)


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("lesion_demo") / "demo"
    proc = _demo("--no-train", "-o", out)
    return out, proc


def test_quick_lesion_demo_runs_the_stages(quick):
    out, proc = quick
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    for n in (1, 2, 3):
        assert f"[{n}/3]" in proc.stdout
    assert "[4/" not in proc.stdout and not (out / "nnUNet_preprocessed").exists()
    assert "counts equal the truth's expected counts" in proc.stdout and "FAILED" not in proc.stdout
    assert "Yardstick: the phantom's known-error prediction gives exactly the expected counts" in proc.stdout
    assert "sens" in proc.stdout and "phantom prediction (known errors)" in proc.stdout
    for name in (
        "lesion_metrics.csv",
        "lesions_phantom_prediction.csv",
        "lesions_qc_phantom_prediction.png",
        "timings_s.json",
    ):
        assert (out / name).is_file(), name
    assert (out / "lesions_qc_phantom_prediction.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_quick_lesion_demo_conversion(quick):
    """The test subject's nnU-Net dataset: T2w is channel 0 and the grid, T1w (axial 1 mm) resampled onto
    it as channel 1, the lesion mask copied voxel for voxel."""
    out, _ = quick
    ds = out / "nnUNet_raw/Dataset992_nnspineDemoLesionTest"
    meta = json.loads((ds / "dataset.json").read_text())
    assert meta["channel_names"] == {"0": "T2w", "1": "T1w"} and meta["labels"] == {"background": 0, "lesion": 1}
    t2 = nib.load(str(out / "phantom_test/sub-01/anat/sub-01_T2w.nii.gz"))
    c0, c1 = (nib.load(str(ds / f"imagesTr/sub-01_T2w_{i:04d}.nii.gz")) for i in (0, 1))
    assert c0.shape == c1.shape == t2.shape
    np.testing.assert_allclose(c1.affine, t2.affine, atol=1e-4)
    np.testing.assert_array_equal(np.asarray(c0.dataobj), np.asarray(t2.dataobj))
    t1 = nib.load(str(out / "phantom_test/sub-01/anat/sub-01_T1w.nii.gz"))
    assert t1.shape != t2.shape and np.asarray(c1.dataobj).max() > 0  # really resampled, and not empty
    ref = np.asarray(nib.load(str(ds / "labelsTr/sub-01_T2w.nii.gz")).dataobj)
    mask = np.asarray(
        nib.load(str(out / "phantom_test/derivatives/labels/sub-01/anat/sub-01_T2w_label-lesion_seg.nii.gz")).dataobj
    )
    np.testing.assert_array_equal(ref, mask)


def test_quick_lesion_demo_metrics_match_the_phantom_design(quick):
    """The phantom's prediction has 10 true lesions of which the face pair and the corner pair merge at
    26-connectivity (8 reference lesions); 'medium' is missed (FN 1), 'large' is split in two and one
    false-positive blob is added, so 8 - 1 + 1 + 1 = 9 predicted lesions, 7 of the 8 detected."""
    out, _ = quick
    truth = json.loads((out / "phantom_test/derivatives/truth/sub-01/sub-01_truth.json").read_text())
    assert truth["n_lesions"] == 10 and truth["prediction"]["missed"] and truth["prediction"]["split"]["parts"] == 2
    metrics = pd.read_csv(out / "lesion_metrics.csv").set_index("prediction")
    row = metrics.loc["phantom prediction (known errors)"]
    assert (row["match"], row["connectivity"]) == ("overlap>=10%", 26)
    assert [int(row[k]) for k in ("ref_lesions", "pred_lesions", "tp", "fp", "fn")] == [8, 9, 7, 1, 1]
    expected = truth["prediction"]["expected_counts"]["26"]
    assert all(int(row[k]) == expected[k] for k in ("ref_lesions", "pred_lesions", "tp", "fp", "fn"))
    assert row["lesion_sensitivity"] == pytest.approx(7 / 8, abs=1e-4)
    assert row["lesion_precision"] == pytest.approx(8 / 9, abs=1e-4)  # 9 predicted, 1 of them touches no lesion
    assert row["lesion_f1"] == pytest.approx(2 * (7 / 8) * (8 / 9) / (7 / 8 + 8 / 9), abs=1e-4)
    # Dice and volumes from the files themselves
    ref = (
        np.asarray(
            nib.load(str(out / "nnUNet_raw/Dataset992_nnspineDemoLesionTest/labelsTr/sub-01_T2w.nii.gz")).dataobj
        )
        > 0
    )
    pred = (
        np.asarray(
            nib.load(
                str(out / "phantom_test/derivatives/prediction/sub-01/anat/sub-01_T2w_label-lesion_seg.nii.gz")
            ).dataobj
        )
        > 0
    )
    vox = float(np.prod(truth["voxel_mm"]))
    # the CSV uses the file's float32 voxel (0.8 mm is 0.80000001 mm): equal to 1e-6, not to 1e-3 mm³
    assert row["dice"] == pytest.approx(2 * (ref & pred).sum() / (ref.sum() + pred.sum()), abs=1e-4)
    assert row["volume_error_mm3"] == pytest.approx((pred.sum() - ref.sum()) * vox, rel=1e-6, abs=1e-3)
    assert row["ref_volume_mm3"] == pytest.approx(truth["total_lesion_volume_mm3"], rel=1e-6)


def test_quick_lesion_demo_lesion_table(quick):
    """``nnspine lesions`` on the phantom's prediction (cord proximity, no volume threshold): all 9
    predicted lesions are inside the cord and kept, numbered 1..9 from superior to inferior, their
    volumes adding up to the predicted volume."""
    out, _ = quick
    table = pd.read_csv(out / "lesions_phantom_prediction.csv", dtype={"lesion": str})
    lesions = table[table["lesion"] != "total"]
    assert lesions["lesion"].tolist() == [str(n) for n in range(1, 10)] and lesions["removed"].isna().all()
    assert (np.diff(lesions["centroid_z_mm"]) < 0).all()  # numbered S→I
    truth = json.loads((out / "phantom_test/derivatives/truth/sub-01/sub-01_truth.json").read_text())
    total = table[table["lesion"] == "total"].iloc[0]
    assert total["volume_mm3"] == pytest.approx(
        truth["prediction"]["pred_voxels"] * truth["voxel_volume_mm3"], rel=1e-6
    )
    labelled = np.asarray(nib.load(str(out / "phantom_prediction_lesions/sub-01_T2w.nii.gz")).dataobj)
    assert set(np.unique(labelled)) == set(range(10))


def test_missed_lesions_are_named_by_the_phantom_truth(quick):
    """The phantom's prediction misses the lesion the truth lists under ``prediction.missed`` ('medium')."""
    from nnunet_spine.apps.demo_lesion import missed_lesions
    from nnunet_spine.postprocessing.lesion.metrics import evaluate_lesions

    out, _ = quick
    truth = json.loads((out / "phantom_test/derivatives/truth/sub-01/sub-01_truth.json").read_text())
    _, per_lesion = evaluate_lesions(
        out / "phantom_test/derivatives/prediction/sub-01/anat/sub-01_T2w_label-lesion_seg.nii.gz",
        out / "nnUNet_raw/Dataset992_nnspineDemoLesionTest/labelsTr/sub-01_T2w.nii.gz",
    )
    (missed_id,) = truth["prediction"]["missed"]
    lesion = next(t for t in truth["lesions"] if t["id"] == missed_id)
    assert missed_lesions(per_lesion, truth) == [f"{lesion['role']} ({lesion['volume_mm3']:.1f} mm³)"]


def test_lesion_demo_folder_rules_and_options(quick, tmp_path):
    out, _ = quick
    again = _demo("--no-train", "-o", out)
    assert again.returncode == 2 and "exists" in again.stderr and "Traceback" not in again.stderr
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "keep.txt").write_text("keep me")
    refused = _demo("--no-train", "-o", precious, "--overwrite")
    assert refused.returncode == 2 and "not an nnspine demo folder" in refused.stderr
    assert (precious / "keep.txt").read_text() == "keep me"
    wrong = subprocess.run(
        ["nnspine", "demo", "--no-train", "--trainer", "X", "-o", tmp_path / "d"], capture_output=True, text=True
    )
    assert wrong.returncode == 2 and "--lesion" in wrong.stderr and not (tmp_path / "d").exists()


def test_trainer_epochs_reads_the_trainer_class():
    from nnunet_spine.trainers.registry import trainer_epochs
    from nnunet_spine.trainers.softseg import nnUNetTrainerSoftSeg_demo

    # the demo trainer trains the 150 iterations the README and --help promise
    assert trainer_epochs("nnUNetTrainerSoftSeg_demo") * nnUNetTrainerSoftSeg_demo.NUM_ITERATIONS == 150
    assert trainer_epochs("nnUNetTrainerLesion_debug") == 2
    assert trainer_epochs("NoSuchTrainer") is None


def test_progress_line_shows_the_lesion_trainers_lesion_f1():
    """nnUNetTrainerLesion prints its per-epoch lesion scores through ``print_to_log_file`` (``print(*args)``
    of numpy scalars) before nnU-Net's epoch summary; the demo's progress line carries the F1."""
    import contextlib
    import io

    from nnunet_spine.apps.demo import epoch_progress

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        for epoch, (sens, prec) in enumerate([(0.5, 0.25), (1.0, 0.5)]):
            f1 = 2 * sens * prec / (sens + prec)
            print("2026-01-01 00:00:00.000000:", f"Epoch {epoch}")
            print(
                "2026-01-01 00:00:01.000000:",
                "val lesion sensitivity",
                np.round(np.float64(sens), 4),
                "precision",
                np.round(np.float64(prec), 4),
                "F1",
                np.round(np.float64(f1), 4),
                "(patches: 4 reference, 8 predicted lesions, tp 2 fp 6 fn 2; overlap rule, 26-connectivity)",
            )
            print("2026-01-01 00:00:02.000000:", "train_loss", np.round(np.float32(-0.5), 4))
            print("2026-01-01 00:00:02.000000:", "val_loss", np.round(np.float32(-0.25), 4))
            print("2026-01-01 00:00:02.000000:", "Pseudo dice", [np.round(np.float32(0.4), 4)])
            print("2026-01-01 00:00:02.000000:", f"Epoch time: {np.round(10.0, 2)} s")
    said: list[str] = []
    handle = epoch_progress(6, said.append)
    for line in buf.getvalue().splitlines():
        handle(line)
    assert len(said) == 2
    assert "lesion F1 0.3333" in said[0] and "lesion F1 0.6667" in said[1] and "epoch 2/6" in said[1]
    unknown: list[str] = []
    handle = epoch_progress(None, unknown.append)  # a trainer whose length is not known: no total, no time left
    for line in buf.getvalue().splitlines():
        handle(line)
    assert unknown[0].startswith("      epoch 1: ") and "left" not in unknown[0]


class _StopAtTraining(Exception):
    pass


def test_lesion_demo_trains_seeded_with_its_seed_and_prints_its_commands(tmp_path, monkeypatch):
    """The lesion demo runs nnU-Net as the soft demo does (the shared steps): every ``$`` line is a command it
    ran, and the training goes through the seeded launcher with the demo's ``seed`` (which also picks the
    phantoms). nnU-Net is replaced by a recorder that stops at the training (stages 1-3 run for real)."""
    import shlex
    import sys

    from nnunet_spine.apps import demo_lesion, demo_steps

    ran: list[list[str]] = []

    def record(cmd, env, log, on_line=None):
        ran.append(list(cmd))
        if "--seed" in cmd:
            raise _StopAtTraining

    monkeypatch.setattr(demo_steps, "console", record)
    said: list[str] = []
    with pytest.raises(_StopAtTraining):
        demo_lesion.run_lesion_demo(tmp_path / "demo", seed=7, n_train_subjects=1, say=said.append)
    printed = [line.strip()[2:] for line in said if line.strip().startswith("$ ")]
    assert printed == [demo_steps.shell_line(c) for c in ran] and len(ran) == 2
    plan, train = (shlex.split(p) for p in printed)
    assert plan[0] == "nnUNetv2_plan_and_preprocess" and plan[plan.index("-d") + 1] == str(demo_lesion.DEMO_DATASET_ID)
    assert plan[plan.index("-gpu_memory_target") + 1] == str(demo_lesion.GPU_MEMORY_TARGET_GB)
    assert "-overwrite_target_spacing" not in plan
    assert train[:6] == ["python", "-m", "nnunet_spine.apps.demo", "train", "--seed", "7"]
    assert ran[1][0] == sys.executable
    assert train[train.index("-tr") + 1] == demo_lesion.DEMO_TRAINER
    assert train[train.index("-p") + 1] == plan[plan.index("-overwrite_plans_name") + 1]
    stage5 = next(line for line in said if line.startswith("[5/6]"))
    assert f"nnUNetv2_train {shlex.join(train[6:])}, seeded with 7" in stage5
    assert "seed 7" in demo_lesion.unseeded(7) and "not seeded" in demo_lesion.unseeded(7)
