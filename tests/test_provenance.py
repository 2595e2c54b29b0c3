"""Provenance sidecars (BIDS-derivatives ``GeneratedBy``, as ``sct_deepseg`` writes them) beside every NIfTI and
CSV a results command writes: the command line, version and date, the inputs of the output's own subject, and for
network outputs the model folder, folds and each checkpoint's SHA-256 (computed here with hashlib)."""

from __future__ import annotations

import datetime
import hashlib
import json
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_segment import fake_model  # noqa: E402

from nnunet_spine.core.io import save_image  # noqa: E402

SIM = Path(__file__).resolve().parent / "sim_nnunet.py"


@pytest.fixture(scope="module")
def phantom(tmp_path_factory) -> Path:
    """A two-subject cord phantom in BIDS layout."""
    root = tmp_path_factory.mktemp("prov") / "bids"
    subprocess.run(["nnspine", "phantom", "--kind", "cord", "-o", str(root), "--subjects", "2", "-q"], check=True)
    return root


def _sidecar(path: Path) -> dict:
    name = path.name
    stem = name[: -len(".nii.gz")] if name.endswith(".nii.gz") else path.stem
    return json.loads((path.parent / f"{stem}.json").read_text())


def _check_generated_by(side: dict, command: str) -> None:
    (entry,) = side["GeneratedBy"]
    assert entry["Name"] == "nnunet-spine" and entry["Version"] == version("nnunet-spine")
    assert entry["CommandLine"].startswith(f"nnspine {command} ")
    age = datetime.datetime.now(datetime.timezone.utc) - datetime.datetime.fromisoformat(entry["Date"])
    assert datetime.timedelta(0) <= age < datetime.timedelta(minutes=10)


def test_csa_table_gets_a_sidecar_naming_the_command_and_its_inputs(phantom, tmp_path):
    labels = phantom / "derivatives" / "labels" / "sub-01" / "anat"
    mask, levels = labels / "sub-01_T2w_label-SC_seg.nii.gz", labels / "sub-01_T2w_label-SC_seg_labeled.nii.gz"
    out = tmp_path / "csa.csv"
    r = subprocess.run(["nnspine", "csa", "-i", str(mask), "--vertfile", str(levels), "-o", str(out)],
                       capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 0, r.stderr
    side = _sidecar(out)
    _check_generated_by(side, "csa")
    assert str(mask) in side["GeneratedBy"][0]["CommandLine"]
    assert sorted(side["Sources"]) == sorted([str(mask), str(levels)])
    assert "Models" not in side  # no network ran


def test_bad_input_writes_no_sidecar(tmp_path):
    (tmp_path / "notes.txt").write_text("not an image")
    r = subprocess.run(["nnspine", "csa", "-i", str(tmp_path / "notes.txt"), "-o", str(tmp_path / "c.csv")],
                       capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 2 and sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_library_use_writes_no_sidecar(tmp_path):
    save_image(np.zeros((2, 2, 2), np.uint8), np.eye(4), tmp_path / "x.nii.gz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.nii.gz"]


def test_segment_outputs_name_the_model_folds_and_checkpoint_hash(phantom, tmp_path):
    model = fake_model(tmp_path, {"background": 0, "cord": 1})
    weights = b"not really weights, but bytes with a known hash"
    (model / "fold_0" / "checkpoint_final.pth").write_bytes(weights)
    out = tmp_path / "out"
    cmd = [sys.executable, str(SIM), str(phantom / "derivatives"), "segment", "cord", "-i", str(phantom),
           "-o", str(out), "--model", str(model), "-f", "0", "--device", "cpu", "--no-qc", "--channels", "T2w"]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    masks = sorted(p for p in out.rglob("*.nii.gz") if p.name.startswith("sub-0"))
    assert {m.name.split("_")[0] for m in masks} == {"sub-01", "sub-02"}
    for mask in masks:
        side = _sidecar(mask)
        _check_generated_by(side, "segment")
        (m,) = side["Models"]
        assert Path(m["ModelFolder"]) == model.resolve() and m["Folds"] == ["0"]
        assert m["CheckpointSHA256"] == {"0": hashlib.sha256(weights).hexdigest()}
        subject = mask.name.split("_")[0]
        assert side["Sources"] and all(Path(s).name.startswith(subject + "_") for s in side["Sources"])
    summary = _sidecar(out / "segment_summary.csv")
    assert {Path(s).name.split("_")[0] for s in summary["Sources"]} == {"sub-01", "sub-02"}
