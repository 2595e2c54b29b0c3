"""``nnspine convert landmarks``: landmark discs (C2-C3, C7-T1, T12-L1, L5-S1 as classes 1-4) from instance masks
with VerSe ids; checked against the phantom's own disc instances and ids (truth JSON), through the console script.
(Training a landmark model and labelling a crop from its prediction: ``tests/e2e/test_spine_pipeline.py``.)"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from nnunet_spine.phantoms.spine_dataset import write_spine_dataset


@pytest.fixture(scope="module")
def spine7(tmp_path_factory) -> Path:
    """Two subjects, seven vertebrae T11 … L5 on the sacrum: discs 118 … 124 (T12-L1 = 119, L5-S1 = 124)."""
    root = tmp_path_factory.mktemp("landmarks") / "bids"
    write_spine_dataset(root, n_subjects=2, seed=3, n_vertebrae=7)
    return root


def nnspine(*args) -> subprocess.CompletedProcess:
    return subprocess.run(["nnspine", *map(str, args)], capture_output=True, text=True)


def test_landmark_dataset_holds_the_landmark_discs(spine7, tmp_path):
    r = nnspine("convert", "landmarks", "-i", spine7, "--nnunet-dataset", 531, "--name", "Marks",
                "--raw-root", tmp_path / "raw")  # fmt: skip
    assert r.returncode == 0, r.stderr
    ds = tmp_path / "raw" / "Dataset531_Marks"
    meta = json.loads((ds / "dataset.json").read_text())
    assert meta["labels"] == {"background": 0, "C2-C3": 1, "C7-T1": 2, "T12-L1": 3, "L5-S1": 4}
    assert "T12-L1 in 2, L5-S1 in 2" in r.stdout and "C2-C3 in 0" in r.stdout
    for sub in ("sub-01", "sub-02"):
        truth = json.loads((spine7 / "derivatives" / "truth" / sub / f"{sub}_truth.json").read_text())
        assert truth["vertebra_ids"] == list(range(18, 25))
        inst = nib.load(spine7 / "derivatives" / "labels" / sub / "anat" / f"{sub}_T2w_seg-vert_msk.nii.gz")
        lab = nib.load(ds / "labelsTr" / f"{sub}_T2w.nii.gz")
        ref = np.asarray(inst.dataobj)
        expected = np.where(ref == 119, 3, 0) + np.where(ref == 124, 4, 0)  # T12-L1, L5-S1; nothing else
        assert np.array_equal(np.asarray(lab.dataobj), expected) and np.allclose(lab.affine, inst.affine)
        assert (ds / "imagesTr" / f"{sub}_T2w_0000.nii.gz").is_file()
    splits = json.loads((ds / "splits_final.json").read_text())
    for fold in splits:  # one case per subject here: each subject is the validation of one fold
        assert not set(fold["train"]) & set(fold["val"])


def test_not_labelled_masks_are_left_out_and_semantic_masks_refused(spine7, tmp_path):
    src = tmp_path / "bids"
    shutil.copytree(spine7, src)
    anat = src / "derivatives" / "labels" / "sub-02" / "anat"
    (anat / "sub-02_T2w_seg-vert_msk.json").write_text(json.dumps({"labelling": {"anatomical": False}}))
    r = nnspine("convert", "landmarks", "-i", src, "--nnunet-dataset", 532, "--name", "Marks",
                "--raw-root", tmp_path / "raw")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "not anatomically labelled" in r.stderr and "sub-02_T2w_seg-vert_msk" in r.stderr
    assert sorted(p.name for p in (tmp_path / "raw" / "Dataset532_Marks" / "labelsTr").iterdir()) == [
        "sub-01_T2w.nii.gz"
    ]
    # a semantic mask where the instance mask belongs: one line naming the file, nothing written
    sem = anat / "sub-02_T2w_seg-spine_msk.nii.gz"
    (anat / "sub-02_T2w_seg-vert_msk.json").unlink()
    shutil.copy(sem, anat / "sub-02_T2w_seg-vert_msk.nii.gz")
    r = nnspine("convert", "landmarks", "-i", src, "--nnunet-dataset", 533, "--name", "Bad",
                "--raw-root", tmp_path / "raw")  # fmt: skip
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "sub-02_T2w_seg-vert_msk.nii.gz" in r.stderr and "not SPINEPS instance values" in r.stderr
    assert not (tmp_path / "raw" / "Dataset533_Bad").exists()


def test_a_landmark_with_two_equally_large_components_is_ignored_and_said():
    """A landmark class whose largest 26-connected component is not unique names no disc: ignored, with the reason;
    with one of the two made larger, that one anchors the vertebra just above it (hand-placed bodies, 1 mm grid)."""
    from nnunet_spine.postprocessing.spine.anchors import find_landmarks

    bodies = np.array([[0.0, 0.0, 60.0], [0.0, 0.0, 30.0], [0.0, 0.0, 0.0]])  # world mm, top to bottom
    lab = np.zeros((10, 10, 80), np.uint8)  # identity affine: voxel z = world z
    lab[2:5, 2:5, 20:23] = 3  # T12-L1, 27 voxels, 10 mm below the middle body
    lab[6:9, 6:9, 50:53] = 3  # 27 voxels, 10 mm below the top body
    found, skipped = find_landmarks(lab, np.eye(4), bodies)
    assert found == [] and skipped == ["landmark T12-L1: 2 components of equal size, ignored"]
    lab[2, 2, 23] = 3  # the lower one grows by a voxel (26-connected to it)
    found, skipped = find_landmarks(lab, np.eye(4), bodies)
    assert found == [(1, 19, "T12-L1")] and skipped == []
