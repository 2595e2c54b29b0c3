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


def test_demo_progress_line_reads_nnunet_epoch_output():
    """nnU-Net prints each epoch as ``print(*args)`` of these values; the demo turns them into one line."""
    import contextlib
    import io

    import numpy as np

    from nnunet_extensions.demo import epoch_progress

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
