"""A simulated nnU-Net predictor for the cohort tests of ``nnspine segment`` (records, resume, interruption):
what is under test there is how cases are run and recorded, not the network. ``install(truth)`` replaces
checkpoint loading (the model folder is remembered) and ``predict_from_files_sequential`` (writes the phantom's
own cord mask ``<case>_label-SC_seg.nii.gz`` found under ``truth``, after ``NNSPINE_SIM_SLEEP`` seconds).

``python tests/sim_nnunet.py TRUTH nnspine-args...`` runs the ``nnspine`` CLI with it installed.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

#: (model folder, folds) of every simulated checkpoint load in this process.
LOADS: list[tuple[Path, tuple | None]] = []


def install(truth: str | os.PathLike, setattr=setattr) -> None:
    """Patch nnU-Net's predictor class in this process (``setattr``: pytest's ``monkeypatch.setattr`` to undo it
    after a test)."""
    import nibabel as nib
    import numpy as np
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    def initialize(self, folder, use_folds, checkpoint_name="checkpoint_final.pth"):
        LOADS.append((Path(folder), use_folds))
        self.model_folder = Path(folder)
        self.dataset_json = json.loads((Path(folder) / "dataset.json").read_text())

    def predict(self, inputs, outputs, save_probabilities=False, overwrite=True, *args, **kwargs):
        time.sleep(float(os.environ.get("NNSPINE_SIM_SLEEP", "0")))
        print("nnU-Net: predicting (simulated)")  # nnU-Net prints; segment sends it to its log
        if isinstance(inputs, str):  # a folder of cases (the cutouts of `nnspine instances`): no prediction
            Path(outputs).mkdir(parents=True, exist_ok=True)
            return
        for files, out in zip(inputs, outputs):
            case = Path(files[0]).name.split(".nii")[0]
            img = nib.load(files[0])
            hits = list(Path(truth).rglob(f"{case}_label-SC_seg.nii.gz"))
            data = np.asarray(nib.load(hits[0]).dataobj).astype(np.uint8) if hits else np.zeros(img.shape, np.uint8)
            nib.save(nib.Nifti1Image(data, img.affine), f"{out}.nii.gz")

    setattr(nnUNetPredictor, "initialize_from_trained_model_folder", initialize)
    setattr(nnUNetPredictor, "predict_from_files_sequential", predict)


if __name__ == "__main__":
    install(sys.argv[1])
    from nnunet_spine.cli import main

    sys.exit(main(sys.argv[2:]))
