"""``nnspine segment``: inputs, models and cohorts checked before the network loads (fast; the one-command
results against the multi-command route, sharding, resume and failure isolation with a trained model are in
``tests/e2e/test_pipeline.py``)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from nnunet_spine.apps.segment_cases import Case, find_cases, read_model, shard


def fake_model(root: Path, labels: dict, channels: int = 1, trainer: str = "nnUNetTrainer") -> Path:
    """A results folder with dataset.json, plans.json and an (empty) fold_0 checkpoint: enough for the checks
    that run before nnU-Net loads anything."""
    folder = root / "Dataset900_X" / f"{trainer}__nnUNetPlans__3d_fullres"
    (folder / "fold_0").mkdir(parents=True)
    ds = {"labels": labels, "channel_names": {str(i): f"c{i}" for i in range(channels)}, "file_ending": ".nii.gz"}
    (folder / "dataset.json").write_text(json.dumps(ds))
    (folder / "plans.json").write_text("{}")
    (folder / "fold_0" / "checkpoint_final.pth").write_bytes(b"")
    return folder


def cutout_model(root: Path) -> Path:
    """A fake results folder of an instance-phase cutout model (9 channels, labels above / centre / below)."""
    from nnunet_spine.core.labels import CUTOUT_CHANNEL_LABELS, CUTOUT_TARGET_LABELS

    folder = fake_model(root, CUTOUT_TARGET_LABELS, channels=len(CUTOUT_CHANNEL_LABELS))
    return folder


def image(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.eye(4)), path)
    return path


def segment(*args) -> subprocess.CompletedProcess:
    return subprocess.run(["nnspine", "segment", *map(str, args)], capture_output=True, text=True)


def test_cases_of_a_file_a_folder_and_a_bids_dataset(tmp_path):
    one = image(tmp_path / "flat" / "a_T2w.nii.gz")
    image(tmp_path / "flat" / "b_T2w.nii.gz")
    assert [c.name for c in find_cases(one, 1)] == ["a_T2w"]
    assert [c.name for c in find_cases(tmp_path / "flat", 1)] == ["a_T2w", "b_T2w"]
    bids = tmp_path / "bids"
    for sub in ("sub-01", "sub-02"):
        for seq in ("T2w", "T1w"):
            image(bids / sub / "anat" / f"{sub}_{seq}.nii.gz")
    image(bids / "sub-03" / "anat" / "sub-03_T2w.nii.gz")  # no T1w: not a two-channel case
    cases = find_cases(bids, 2, ["T2w", "T1w"])
    assert [c.name for c in cases] == ["sub-01_T2w", "sub-02_T2w"]
    assert [p.name for p in cases[0].images] == ["sub-01_T2w.nii.gz", "sub-01_T1w.nii.gz"]
    assert cases[0].rel_dir == "sub-01/anat"
    assert len(find_cases(bids, 1)) == 5  # every image a case


def test_shards_follow_nnunet_and_cover_every_case_once():
    cases = [Case(f"c{i}", []) for i in range(7)]
    parts = [shard(cases, 3, k) for k in range(3)]
    assert [c.name for c in parts[1]] == ["c1", "c4"]  # nnU-Net: list[part_id::num_parts]
    assert sorted(c.name for p in parts for c in p) == sorted(c.name for c in cases)


def test_model_checks(tmp_path):
    m = fake_model(tmp_path, {"background": 0, "cord": 1})
    assert read_model(m, ["0"], "checkpoint_final.pth").channels == ["c0"]
    with pytest.raises(Exception, match="fold_3"):
        read_model(m, ["3"], "checkpoint_final.pth")


@pytest.mark.parametrize(
    "case, needle",
    [
        ("missing model", "not found"),
        ("not a model", "not a trained nnU-Net model folder"),
        ("wrong kind", "a cord model has background and one foreground label"),
        ("channels", "the model takes 2 channels"),
        ("spine kind", "not a SPINEPS semantic model"),
    ],
)
def test_bad_inputs_one_line_exit_2_nothing_written(tmp_path, case, needle):
    img = image(tmp_path / "in" / "sub-01_T2w.nii.gz")
    out = tmp_path / "out"
    task, model = "cord", fake_model(tmp_path, {"background": 0, "cord": 1})
    extra = []
    if case == "missing model":
        model = tmp_path / "nope"
    elif case == "not a model":
        model = tmp_path / "in"
    elif case == "wrong kind":
        model = fake_model(tmp_path / "k", {"background": 0, "a": 1, "b": 2})
    elif case == "channels":
        model = fake_model(tmp_path / "c", {"background": 0, "cord": 1}, channels=2)
    else:
        task, extra = "spine", ["--instance-model", tmp_path]
        model = fake_model(tmp_path / "s", {"background": 0, "Vertebra_Corpus_border": 1})
    r = segment(task, "-i", img, "-o", out, "--model", model, "--device", "cpu", *extra)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in r.stderr
    assert not out.exists()


def test_crop_box_and_affine_keep_world_positions():
    from nnunet_spine.core.geometry import crop_affine, mask_box

    affine = np.array([[0.0, 0, -0.8, 10], [-0.8, 0, 0, 20], [0, 2.0, 0, -5], [0, 0, 0, 1]])  # 0.8, 2.0, 0.8 mm
    mask = np.zeros((30, 20, 25), bool)
    mask[10:13, 5:9, 12:14] = True
    box = mask_box(mask, affine, margin_mm=4.0)
    # 4 mm is 5 voxels of 0.8 mm and 2 voxels of 2 mm; the box stops at the array's edges
    assert box == (slice(5, 18), slice(3, 11), slice(7, 19))
    assert mask_box(mask, affine, margin_mm=100.0) == (slice(0, 30), slice(0, 20), slice(0, 25))
    assert mask_box(np.zeros_like(mask), affine, 4.0) is None
    # a voxel of the crop sits where the same voxel of the whole image sits, in world mm
    cropped = crop_affine(affine, box)
    for ijk in ([0, 0, 0], [3, 2, 5]):
        whole = np.array([ijk[0] + 5, ijk[1] + 3, ijk[2] + 7, 1.0])
        assert np.allclose(cropped @ np.array([*ijk, 1.0]), affine @ whole)


@pytest.mark.parametrize(
    "extra, task, needle",
    [
        (["--crop-to-cord", "nope"], "lesion", "--crop-to-cord"),
        (["--crop-to-cord", "nope"], "cord", "--crop-to-cord is an option of 'nnspine segment lesion', not of"),
        (["--crop-margin-mm", "-1", "--crop-to-cord", "x"], "lesion", "--crop-margin-mm -1.0: must be >= 0"),
    ],
)
def test_crop_to_cord_bad_inputs(tmp_path, extra, task, needle):
    img = image(tmp_path / "in" / "sub-01_T2w.nii.gz")
    model = fake_model(tmp_path, {"background": 0, "lesion": 1})
    extra = [str(tmp_path / e) if e in ("nope", "x") else e for e in extra]
    r = segment(task, "-i", img, "-o", tmp_path / "out", "--model", model, "--device", "cpu", *extra)
    assert r.returncode == 2, r.stderr
    assert needle in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "out").exists()


def test_one_level_or_cord_file_for_several_cases_is_refused(tmp_path):
    for sub in ("sub-01", "sub-02"):
        image(tmp_path / "in" / f"{sub}_T2w.nii.gz")
    one = image(tmp_path / "levels" / "sub-01_T2w_label-SC_seg_labeled.nii.gz")
    cord = fake_model(tmp_path, {"background": 0, "cord": 1})
    r = segment("cord", "-i", tmp_path / "in", "-o", tmp_path / "out", "--model", cord, "--vertfiles", one)
    assert r.returncode == 2 and "--vertfiles" in r.stderr and "one file for 2 cases" in r.stderr
    lesion = fake_model(tmp_path / "l", {"background": 0, "lesion": 1})
    r = segment("lesion", "-i", tmp_path / "in", "-o", tmp_path / "out", "--model", lesion, "--crop-to-cord", one)
    assert r.returncode == 2 and "--crop-to-cord" in r.stderr and "one file for 2 cases" in r.stderr
    assert not (tmp_path / "out").exists()


def test_landmark_model_checked_before_anything_runs(tmp_path):
    img = image(tmp_path / "in" / "sub-01_T2w.nii.gz")
    sem = fake_model(tmp_path / "s", {"background": 0, "Vertebra_Corpus_border": 1})
    lesion = fake_model(tmp_path / "l", {"background": 0, "lesion": 1})
    r = segment("lesion", "-i", img, "-o", tmp_path / "out", "--model", lesion, "--landmark-model", sem)
    assert r.returncode == 2 and "is an option of 'nnspine segment spine'" in r.stderr  # a spine option only
    r = segment("spine", "-i", img, "-o", tmp_path / "out", "--model", sem, "--instance-model", tmp_path,
                "--landmark-model", lesion)  # fmt: skip
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "not a SPINEPS semantic model" in r.stderr  # the semantic model is checked first
    from nnunet_spine.core.dataset_json import LABEL_MAP_KEY

    ds = json.loads((sem / "dataset.json").read_text())
    (sem / "dataset.json").write_text(json.dumps({**ds, LABEL_MAP_KEY: {"convention": "spineps", "map": {"1": 49}}}))
    r = segment("spine", "-i", img, "-o", tmp_path / "out", "--model", sem, "--instance-model", tmp_path,
                "--landmark-model", lesion)  # fmt: skip
    assert r.returncode == 2 and "not a trained nnU-Net model folder" in r.stderr  # checked before anything loads
    r = segment("spine", "-i", img, "-o", tmp_path / "out", "--model", sem, "--instance-model",
                cutout_model(tmp_path / "cut"), "--landmark-model", lesion)  # fmt: skip
    assert r.returncode == 2 and "not a landmark model" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "out").exists()


def test_default_folds_are_nnunets_and_all_when_only_all_was_trained(tmp_path):
    only_all = fake_model(tmp_path / "a", {"background": 0, "cord": 1})
    (only_all / "fold_0" / "checkpoint_final.pth").rename(only_all / "fold_0" / "x")
    (only_all / "fold_all").mkdir()
    (only_all / "fold_all" / "checkpoint_final.pth").write_bytes(b"")
    assert read_model(only_all, None, "checkpoint_final.pth").default_folds() == ["all"]
    both = fake_model(tmp_path / "b", {"background": 0, "cord": 1})
    (both / "fold_all").mkdir()
    (both / "fold_all" / "checkpoint_final.pth").write_bytes(b"")
    assert read_model(both, None, "checkpoint_final.pth").default_folds() == ["0"]  # nnU-Net's detection: 0-4


def test_disc_files_are_found_by_the_names_sct_and_bids_give_them(tmp_path):
    """``--discfiles FOLDER``: SCT's ``<case>_label-SC_seg_labeled_discs`` before BIDS' ``<case>_label-discs_dlabel``,
    at any depth; ``--disc-suffix`` names the one file looked for; a case with neither is one line naming both
    names and the option."""
    from nnunet_spine.apps.segment_tasks import disc_file
    from nnunet_spine.core.io import InputError

    bids_name = image(tmp_path / "d" / "derivatives" / "sub-01" / "anat" / "sub-01_T2w_label-discs_dlabel.nii.gz")
    assert disc_file(tmp_path / "d", "sub-01_T2w", None) == bids_name
    sct_name = image(tmp_path / "d" / "sub-01_T2w_label-SC_seg_labeled_discs.nii.gz")
    assert disc_file(tmp_path / "d", "sub-01_T2w", None) == sct_name
    assert disc_file(tmp_path / "d", "sub-01_T2w", "_label-discs_dlabel") == bids_name
    assert disc_file(None, "sub-01_T2w", None) is None
    with pytest.raises(InputError) as err:
        disc_file(tmp_path / "d", "sub-02_T2w", None)
    message = str(err.value)
    assert "\n" not in message and "--disc-suffix" in message
    for name in ("sub-02_T2w_label-SC_seg_labeled_discs.nii.gz", "sub-02_T2w_label-discs_dlabel.nii.gz"):
        assert name in message, message
