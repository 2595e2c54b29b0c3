"""``nnspine demo --lesion``: the whole lesion pipeline with the real nnU-Net console scripts on CPU.

The full demo trains ``nnUNetTrainerLesion_demo``; this test passes ``--trainer`` with the shorter
``_debug`` variant (:data:`TRAINER`) so that it stays short; every stage runs all the same.
"""

from __future__ import annotations

import json
import subprocess

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

#: The trainer of the test run (the demo's default, nnUNetTrainerLesion_demo, takes longer).
TRAINER = "nnUNetTrainerLesion_debug"


@pytest.mark.slow
def test_full_lesion_demo(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run(
        ["nnspine", "demo", "--lesion", "--trainer", TRAINER, "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for n in range(1, 7):
        assert f"[{n}/6]" in proc.stdout
    log = (out / "nnunet.log").read_text()
    # the lesion trainer was found through nnUNet_extTrainer, trained and used for prediction
    assert (
        f"-tr {TRAINER}" in log
        and (
            out / f"nnUNet_results/Dataset991_nnspineDemoLesion/"
            f"{TRAINER}__nnUNetPlansCPUDemo__3d_fullres/fold_all/checkpoint_final.pth"
        ).is_file()
    )
    pred_path = out / "prediction/sub-01_T2w.nii.gz"
    ref_path = out / "nnUNet_raw/Dataset992_nnspineDemoLesionTest/labelsTr/sub-01_T2w.nii.gz"
    pred, ref = nib.load(str(pred_path)), nib.load(str(ref_path))
    assert pred.shape == ref.shape and np.allclose(pred.affine, ref.affine, atol=1e-4)

    metrics = pd.read_csv(out / "lesion_metrics.csv").set_index("prediction")
    raw, post = metrics.loc["nnU-Net prediction"], metrics.loc["nnU-Net + nnspine lesions"]
    # the reference is the phantom truth: 10 lesions, 8 components at 26-connectivity
    truth = json.loads((out / "phantom_test/derivatives/truth/sub-01/sub-01_truth.json").read_text())
    assert raw["ref_lesions"] == post["ref_lesions"] == truth["connected_components"]["26"]
    # the raw row describes the prediction file: its volume and Dice recomputed here
    p, r = np.asarray(pred.dataobj) > 0, np.asarray(ref.dataobj) > 0
    # the volume of the file's own voxel (its header stores float32: 0.8 mm is 0.80000001 mm, which at
    # 25,000 mm³ is 0.001 mm³ away from the truth's decimal voxel), checked against the phantom's voxel
    vox = float(np.prod([float(z) for z in pred.header.get_zooms()[:3]]))
    assert vox == pytest.approx(float(np.prod(truth["voxel_mm"])), rel=1e-6)
    assert raw["pred_volume_mm3"] == pytest.approx(p.sum() * vox, abs=1e-3)
    expected_dice = 2 * (p & r).sum() / (p.sum() + r.sum()) if (p.sum() + r.sum()) else 1.0
    assert raw["dice"] == pytest.approx(expected_dice, abs=1e-4)
    # postprocessing only removes lesions: never more lesions, true or false, than before
    assert post["pred_lesions"] <= raw["pred_lesions"] and post["fp"] <= raw["fp"] and post["tp"] <= raw["tp"]
    for col in ("lesion_sensitivity", "lesion_precision", "lesion_f1", "dice"):
        assert 0.0 <= raw[col] <= 1.0 and 0.0 <= post[col] <= 1.0  # defined even for an empty prediction
    table = pd.read_csv(out / "lesions.csv", dtype={"lesion": str})
    kept = table[(table["lesion"] != "total") & table["removed"].isna()]
    assert len(kept) == post["pred_lesions"]  # the table's kept lesions are the postprocessed prediction's
    assert (out / "lesions_qc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Lesion-wise metrics" in proc.stdout and "nnU-Net + nnspine lesions" in proc.stdout
    assert f"nnU-Net after {TRAINER}: found {int(post['tp'])} of {int(post['ref_lesions'])}" in proc.stdout
    assert "nnspine lesions removed" in proc.stdout
