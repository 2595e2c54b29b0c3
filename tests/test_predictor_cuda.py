"""Predictors on a GPU, simulated on this CPU machine: several models loaded in one process, each once per run.

The one simulated part is CUDA itself (and so the checkpoints, which a CUDA run would load onto the card):
``torch.cuda.is_available`` says yes, ``torch.set_num_interop_threads`` refuses a second call as real torch does
("cannot set number of interop threads after parallel work has started or set_num_interop_threads called"),
and ``nnUNetPredictor.initialize_from_trained_model_folder`` records which model folder it was given instead of
reading a checkpoint. ``segment spine`` then runs for real over a phantom cohort (relabelling, cutouts, fusion,
labelling, records), with oracle predictions written where nnU-Net would write them: the phantom's own
semantic mask and perfect cutout predictions from its instance mask.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_segment import cutout_model, fake_model  # noqa: E402

from nnunet_spine.core.labels import LANDMARK_NAMES, SEMANTIC_LABELS  # noqa: E402


@pytest.fixture
def simulated_cuda(monkeypatch):
    """CUDA as torch reports it on a GPU machine, the interop-thread rule of real torch, and checkpoint loading
    that records the folder; yields the Counter of loads per model folder."""
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    from nnunet_spine.integration import predictor as predictor_module

    calls = {"interop": 0, "threads": []}

    def set_num_interop_threads(n: int) -> None:
        calls["interop"] += 1
        if calls["interop"] > 1:
            raise RuntimeError(
                "Error: cannot set number of interop threads after parallel work has started or "
                "set_num_interop_threads called"
            )

    loads: Counter = Counter()

    def initialize(self, folder, use_folds, checkpoint_name="checkpoint_final.pth"):
        loads[str(Path(folder).resolve())] += 1
        self.model_folder = Path(folder)
        self.dataset_json = json.loads((Path(folder) / "dataset.json").read_text())

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch, "set_num_interop_threads", set_num_interop_threads)
    monkeypatch.setattr(torch, "set_num_threads", lambda n: calls["threads"].append(n))
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", torch.backends.cudnn.benchmark)  # restored after
    monkeypatch.setattr(nnUNetPredictor, "initialize_from_trained_model_folder", initialize)
    monkeypatch.setattr(predictor_module, "_THREADS_SET", set())  # a fresh process
    loads.calls = calls  # type: ignore[attr-defined]
    yield loads


def landmark_model(root: Path) -> Path:
    """A fake results folder of a landmark model (labels as 'nnspine convert landmarks' writes them)."""
    return fake_model(root, {"background": 0, **{name: k for k, name in LANDMARK_NAMES.items()}})


def semantic_model(root: Path) -> Path:
    """A fake results folder of a SPINEPS semantic model whose nnU-Net labels are the SPINEPS values."""
    from nnunet_spine.core.dataset_json import LABEL_MAP_KEY

    labels = {"background": 0, **{f"label_{v}": int(v) for v in SEMANTIC_LABELS}}
    folder = fake_model(root, labels)
    ds = json.loads((folder / "dataset.json").read_text())
    ds[LABEL_MAP_KEY] = {"convention": "spineps", "values": {str(v): int(v) for v in labels.values()}}
    (folder / "dataset.json").write_text(json.dumps(ds))
    return folder


def test_several_models_load_in_one_cuda_process(tmp_path, simulated_cuda):
    """segment's model, the instance model and the landmark model, loaded one after the other on CUDA, as
    ``segment spine --landmark-model`` loads them (and a second run in the same process): no RuntimeError."""
    from nnunet_spine.apps.instances import load_instance_model
    from nnunet_spine.apps.segment_cases import make_predictor, read_model

    sem, lm = read_model(semantic_model(tmp_path / "s"), None, "checkpoint_final.pth"), None
    lm = read_model(landmark_model(tmp_path / "l"), None, "checkpoint_final.pth")
    for _ in range(2):
        predictors = [
            make_predictor(sem, None, "checkpoint_final.pth", "cuda", progress=False),
            load_instance_model(cutout_model(tmp_path / f"c{_}"), device="cuda").predictor,
            make_predictor(lm, None, "checkpoint_final.pth", "cuda", progress=False),
        ]
        assert all(p.device.type == "cuda" and p.perform_everything_on_device for p in predictors)
    calls = simulated_cuda.calls
    assert calls["interop"] == 1 and calls["threads"] == [1]  # set once per process, as nnUNetv2_predict's process


def _oracle_predictions(truth: Path, cutouts: Path, landmarks: Path):
    """``predict_from_files_sequential`` writing what a perfect model would: the phantom's semantic mask for the
    semantic model, perfect cutout predictions for the cutout model, no landmark for the landmark model."""
    from test_fuse import perfect_predictions

    from nnunet_spine.core.cutouts import load_semantic, read_description
    from nnunet_spine.core.io import load_image

    def truth_of(case: str, what: str) -> Path:
        return next(truth.rglob(f"{case}_seg-{what}_msk.nii.gz"))

    def predict(self, inputs, outputs, save_probabilities=False, overwrite=True, *args, **kwargs):
        folder = self.model_folder.resolve()
        if folder == cutouts.resolve():
            _, records = read_description(inputs)
            Path(outputs).mkdir(parents=True, exist_ok=True)
            for record in records:
                case = record.case.removesuffix("_seg-spine_msk")
                sem = load_semantic(truth_of(case, "spine"))
                perfect = perfect_predictions(sem, load_image(truth_of(case, "vert"), "labels"), record)
                for c in record.cutouts:
                    nib.save(nib.Nifti1Image(perfect[c.name], c.affine), Path(outputs) / f"{c.name}.nii.gz")
            return
        for files, out in zip(inputs, outputs):
            case = Path(files[0]).name.split(".nii")[0]
            img = nib.load(files[0])
            if folder == landmarks.resolve():  # no landmark found
                data = np.zeros(img.shape, np.uint8)
            else:
                data = np.asarray(nib.load(truth_of(case, "spine")).dataobj).astype(np.uint8)
            nib.save(nib.Nifti1Image(data, img.affine), f"{out}.nii.gz")

    return predict


def test_segment_spine_loads_each_model_once_for_a_cohort(tmp_path, simulated_cuda, monkeypatch):
    """``segment spine`` over 3 cases on (simulated) CUDA: every case segmented, and the semantic, instance and
    landmark models each loaded once (before, the instance model was loaded per case and the second load
    failed on a GPU)."""
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    from nnunet_spine.apps.segment import segment
    from nnunet_spine.apps.segment_tasks import Options

    subprocess.run(
        ["nnspine", "phantom", "--kind", "spine", "-o", str(tmp_path / "bids"), "--subjects", "3",
         "--vertebrae", "2", "--seed", "0", "-q"], check=True, capture_output=True,
    )  # fmt: skip
    sem, cut, lm = semantic_model(tmp_path / "s"), cutout_model(tmp_path / "c"), landmark_model(tmp_path / "l")
    oracle = _oracle_predictions(tmp_path / "bids" / "derivatives", cut, lm)
    monkeypatch.setattr(nnUNetPredictor, "predict_from_files_sequential", oracle)
    opts = Options(device="cuda", instance_model=cut, landmark_model=lm, qc=False)
    report = segment("spine", tmp_path / "bids", tmp_path / "out", sem, channels=["T2w"], options=opts)
    assert report.failures == [] and [s for _, s, _, _ in report.done] == ["ok"] * 3
    assert dict(simulated_cuda) == {str(m.resolve()): 1 for m in (sem, cut, lm)}
    for case in ("sub-01_T2w", "sub-02_T2w", "sub-03_T2w"):  # the perfect predictions give the phantom's ids
        unit = tmp_path / "out" / case.split("_")[0] / "anat"
        got = np.asarray(nib.load(unit / f"{case}_seg-vert_msk.nii.gz").dataobj)
        truth = next((tmp_path / "bids" / "derivatives").rglob(f"{case}_seg-vert_msk.nii.gz"))
        assert np.array_equal(got, np.asarray(nib.load(truth).dataobj)), case
    # the summary carries each case's labelling status, the same as the instance mask's sidecar says
    import csv
    import json

    for row in csv.DictReader((tmp_path / "out" / "segment_summary.csv").open()):
        unit = tmp_path / "out" / row["case"].split("_")[0] / "anat"
        side = json.loads((unit / f"{row['case']}_seg-vert_msk.json").read_text())["labelling"]
        assert row["labelling"] == ("anatomical" if side["anatomical"] else "not anatomical")
        assert row["verified"] == str(side["verified"]).lower() and row["reason"] == side["reason"] != ""


def test_spine_outputs_feed_evaluate_instances_and_csa(tmp_path, simulated_cuda, monkeypatch):
    """The chains as written: ``segment spine`` (fusion) outputs → ``nnspine evaluate instances`` against the
    phantom's masks, and → ``nnspine csa --vertfile`` (the instance mask as the level file of a cord mask)."""
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    from nnunet_spine.apps.segment import segment
    from nnunet_spine.apps.segment_tasks import Options

    subprocess.run(
        ["nnspine", "phantom", "--kind", "spine", "-o", str(tmp_path / "bids"), "--subjects", "1",
         "--vertebrae", "3", "--seed", "2", "-q"], check=True, capture_output=True,
    )  # fmt: skip
    sem, cut = semantic_model(tmp_path / "s"), cutout_model(tmp_path / "c")
    oracle = _oracle_predictions(tmp_path / "bids" / "derivatives", cut, tmp_path / "none")
    monkeypatch.setattr(nnUNetPredictor, "predict_from_files_sequential", oracle)
    opts = Options(device="cpu", instance_model=cut, qc=False)
    report = segment("spine", tmp_path / "bids", tmp_path / "out", sem, channels=["T2w"], options=opts)
    assert report.failures == []
    out, ref = tmp_path / "out" / "sub-01" / "anat", next((tmp_path / "bids" / "derivatives").rglob("anat"))
    r = subprocess.run(["nnspine", "evaluate", "instances", "--pred", str(out), "--ref", str(ref), "-o",
                        str(tmp_path / "inst.csv"), "-q"], capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 0, r.stderr
    import csv

    vert = [r for r in csv.DictReader((tmp_path / "inst.csv").open()) if r["structure"] == "vertebra"]
    assert vert and all(r["fp"] == "0" and r["fn"] == "0" for r in vert), vert
    # a cord mask on the image's grid (the semantic mask's spinal cord, 60) and the instance mask as levels
    semantic = nib.load(out / "sub-01_T2w_seg-spine_msk.nii.gz")
    cord = (np.asarray(semantic.dataobj) == 60).astype(np.uint8)
    assert cord.any(), "the phantom has a spinal cord label"
    nib.save(nib.Nifti1Image(cord, semantic.affine), tmp_path / "cord.nii.gz")
    r = subprocess.run(["nnspine", "csa", "-i", str(tmp_path / "cord.nii.gz"), "--vertfile",
                        str(out / "sub-01_T2w_seg-vert_msk.nii.gz"), "--perlevel", "-o", str(tmp_path / "csa.csv"),
                        "-q"], capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 0, r.stderr
    levels = [r["VertLevel"] for r in csv.DictReader((tmp_path / "csa.csv").open())]
    assert levels and all(levels), levels
