"""The README's main command, ``nnspine demo``: the whole soft-cord pipeline with real nnU-Net on CPU.

The demo trains ``nnUNetTrainerSoftSeg_demo`` (150 iterations); this test passes ``--trainer`` with the
``_debug`` variant (:data:`TRAINER`) to stay short: every stage runs all the same.
"""

from __future__ import annotations

import subprocess

import numpy as np
import pandas as pd
import pytest

#: The trainer of the test run (the demo's default, nnUNetTrainerSoftSeg_demo, takes minutes longer).
TRAINER = "nnUNetTrainerSoftSeg_debug"


@pytest.mark.slow
def test_full_demo(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run(
        ["nnspine", "demo", "--trainer", TRAINER, "-o", str(out)], capture_output=True, text=True, timeout=1500
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for n in range(1, 7):
        assert f"[{n}/6]" in proc.stdout
    table = pd.read_csv(out / "csa_per_level.csv")
    assert {"true CSA", "soft GT (converter)", "predicted soft mask"} <= set(table.columns)
    # the converter's soft GT (from 5 binary masks) recovers the true CSA per level within 1.5 %
    assert table["soft GT (converter) error %"].abs().max() < 1.5
    # the prediction went through nnU-Net and back: finite CSA for every level (quality is not asserted)
    assert np.isfinite(table["predicted soft mask"]).all() and (table["predicted soft mask"] > 0).all()
    spread = pd.read_csv(out / "csa_C3_across_contrasts.csv")
    assert spread["contrast"].iloc[-1] == "SD across contrasts" and len(spread) == 6
    # the model was found through nnUNet_extTrainer and trained with the soft target
    log = (out / "nnunet.log").read_text()
    assert "val soft Dice" in log and f"-tr {TRAINER}" in log
    # one progress line per epoch, and the verdict from the demo's own figures (soft GT first)
    assert "epoch 2/2:" in proc.stdout and "Soft GT: C3 CSA SD across the 5 contrasts" in proc.stdout
    for name in ("csa_profile.png", "prediction_soft/sub-01_T2w.nii.gz", "prediction/sub-01_T2w.npz"):
        assert (out / name).exists(), name
