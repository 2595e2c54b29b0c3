"""nnspine demo --no-train: phantoms and CSA per level against the true CSA (seconds)."""

from __future__ import annotations

import subprocess

import pandas as pd


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
    redo = subprocess.run(["nnspine", "demo", "--no-train", "-o", str(out), "--overwrite"], capture_output=True, text=True)
    assert redo.returncode == 0, redo.stderr
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "data.nii.gz").write_bytes(b"keep me")
    refused = subprocess.run(["nnspine", "demo", "--no-train", "-o", str(precious), "--overwrite"],
                             capture_output=True, text=True)
    assert refused.returncode == 2 and "not an nnspine demo folder" in refused.stderr
    assert (precious / "data.nii.gz").read_bytes() == b"keep me"
