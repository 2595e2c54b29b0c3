"""``nnspine segment`` over a cohort tells the truth: per-case records written as cases end, resume that retries
what failed or is incomplete, ``--overwrite`` that leaves no stale outputs, SIGTERM that leaves records and no
temporary folder, the step that failed, and one-line notices (a part with no case, BIDS without --channels,
which disc files were found). The network is simulated (:mod:`sim_nnunet`: the phantom's own cord mask as the
prediction); everything after it (masks, CSA, records) is the product's own code.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sim_nnunet  # noqa: E402
from test_segment import cutout_model, fake_model  # noqa: E402

from nnunet_spine.apps.segment import segment  # noqa: E402
from nnunet_spine.apps.segment_cases import check_model_for, read_model  # noqa: E402
from nnunet_spine.apps.segment_tasks import Options  # noqa: E402
from nnunet_spine.core.io import InputError  # noqa: E402

CASES = ["sub-01_T1w", "sub-01_T2starw", "sub-01_T2w", "sub-01_flip-1_mt-on_MTS", "sub-01_flip-2_mt-off_MTS"]


@pytest.fixture(scope="module")
def phantom(tmp_path_factory) -> Path:
    """A cord phantom: one subject, five contrasts (five cases without --channels), with its cord masks,
    vertebral level files (``_label-SC_seg_labeled``) and disc labels (``_label-discs_dlabel``)."""
    root = tmp_path_factory.mktemp("phantom") / "bids"
    subprocess.run(["nnspine", "phantom", "--kind", "cord", "-o", str(root), "--subjects", "1", "--seed", "0", "-q"],
                   check=True, capture_output=True)  # fmt: skip
    return root


@pytest.fixture
def sim(phantom, monkeypatch):
    sim_nnunet.install(phantom / "derivatives", setattr=monkeypatch.setattr)
    sim_nnunet.LOADS.clear()
    return phantom


def rows(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def levels_without(phantom: Path, tmp: Path, case: str | None) -> Path:
    """A copy of the phantom's level files, without ``case``'s."""
    folder = tmp / "levels"
    folder.mkdir(exist_ok=True)
    for p in (phantom / "derivatives" / "labels").rglob("*_label-SC_seg_labeled.nii.gz"):
        if case is None or not p.name.startswith(case + "_label"):
            (folder / p.name).write_bytes(p.read_bytes())
    return folder


def run(sim: Path, out: Path, model: Path, **kw):
    opts = Options(qc=False, vertfiles=kw.pop("vertfiles", None))
    return segment("cord", sim, out, model, options=opts, **kw)


def test_records_resume_retries_failed_and_incomplete_cases(sim, tmp_path):
    model = fake_model(tmp_path, {"background": 0, "cord": 1})
    out = tmp_path / "out"
    bad = "sub-01_T2w"
    report = run(sim, out, model, vertfiles=levels_without(sim, tmp_path, bad))
    assert report.failures == [(bad, "levels", report.failures[0][2])] and "no level file" in report.failures[0][2]
    summary = {r["case"]: r for r in rows(out / "segment_summary.csv")}
    assert sorted(summary) == CASES and summary[bad]["status"] == "failed"
    assert [r["step"] for r in rows(out / "failures.csv")] == ["levels"]
    assert not list(out.rglob(f"{bad}_label-SC_seg.nii.gz"))  # the failed case's partial outputs are removed
    assert "predicting (simulated)" in (out / "logs" / "nnunet.log").read_text()  # nnU-Net's prints: the log

    # resume: only the failed case runs again; the earlier rows are kept
    report = run(sim, out, model, vertfiles=levels_without(sim, tmp_path, None), skip_existing=True)
    assert [c for c, *_ in report.done] == [bad] and report.failures == [] and len(report.skipped) == 4
    assert {r["case"]: r["status"] for r in rows(out / "segment_summary.csv")} == dict.fromkeys(CASES, "ok")
    assert rows(out / "failures.csv") == []
    # a resume that skips everything keeps every row
    report = run(sim, out, model, vertfiles=tmp_path / "levels", skip_existing=True)
    assert report.done == [] and len(rows(out / "segment_summary.csv")) == 5
    # a case whose later output is gone is not finished
    next(out.rglob("sub-01_T1w_csa_perslice.csv")).unlink()
    report = run(sim, out, model, vertfiles=tmp_path / "levels", skip_existing=True)
    assert [c for c, s, *_ in report.done] == ["sub-01_T1w"]


def test_overwrite_leaves_no_old_output_beside_a_failed_record(sim, tmp_path):
    model = fake_model(tmp_path, {"background": 0, "cord": 1})
    out = tmp_path / "out"
    run(sim, out, model, vertfiles=levels_without(sim, tmp_path, None))
    assert len(list(out.rglob("*_csa_perslice.csv"))) == 5
    (tmp_path / "levels" / "sub-01_T2w_label-SC_seg_labeled.nii.gz").unlink()
    report = run(sim, out, model, vertfiles=tmp_path / "levels", overwrite=True)
    assert [f[0] for f in report.failures] == ["sub-01_T2w"]
    assert not list(out.rglob("sub-01_T2w_*")), "old outputs of the case that now fails"
    assert {r["case"]: r["status"] for r in rows(out / "segment_summary.csv")}["sub-01_T2w"] == "failed"


def test_sigterm_leaves_records_and_no_temporary_folder(phantom, tmp_path):
    model = fake_model(tmp_path, {"background": 0, "cord": 1})
    out, tmpdir = tmp_path / "out", tmp_path / "tmp"
    tmpdir.mkdir()
    env = {**os.environ, "TMPDIR": str(tmpdir), "NNSPINE_SIM_SLEEP": "2", "MPLBACKEND": "Agg"}
    cmd = [sys.executable, str(Path(__file__).parent / "sim_nnunet.py"), str(phantom / "derivatives"), "segment",
           "cord", "-i", str(phantom), "-o", str(out), "--model", str(model), "--device", "cpu", "--no-qc"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline:  # until the first case is recorded
        summary = out / "segment_summary.csv"
        if summary.exists() and any(r["status"] == "ok" for r in rows(summary)):
            break
        time.sleep(0.2)
    time.sleep(0.5)  # inside the next case (the simulated network takes 2 s)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    statuses = [r["status"] for r in rows(out / "segment_summary.csv")]
    assert statuses[0] == "ok" and statuses[-1] == "interrupted" and len(statuses) < 5
    assert rows(out / "failures.csv")[-1]["reason"] == "interrupted (SIGTERM)"
    assert list(tmpdir.glob("nnspine-segment-*")) == []
    assert "Traceback" not in err and "predicting (simulated)" not in err


def test_quiet_keeps_errors_and_the_count(phantom, tmp_path):
    model = fake_model(tmp_path, {"background": 0, "cord": 1})
    img = phantom / "sub-01" / "anat" / "sub-01_T2w.nii.gz"
    bad = tmp_path / "in"
    bad.mkdir()
    (bad / "sub-02_T2w.nii.gz").write_bytes(b"not an image")
    (bad / "sub-01_T2w.nii.gz").write_bytes(img.read_bytes())
    r = subprocess.run([sys.executable, str(Path(__file__).parent / "sim_nnunet.py"), str(phantom / "derivatives"),
                        "segment", "cord", "-i", str(bad), "-o", str(tmp_path / "out"), "--model", str(model),
                        "--device", "cpu", "--no-qc", "-q"], capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "sub-02_T2w (inputs):" in r.stderr
    assert "1 case(s) segmented, 1 failed" in r.stdout


def test_disc_files_of_either_name_are_found(sim, tmp_path):
    model = fake_model(tmp_path, {"background": 0, "cord": 1})
    said = []
    opts = Options(qc=False, discfiles=sim / "derivatives" / "labels")
    report = segment("cord", sim / "sub-01" / "anat" / "sub-01_T2w.nii.gz", tmp_path / "out", model, options=opts,
                     say=said.append)  # fmt: skip
    assert report.failures == [], report.failures
    assert "--discfiles: <case>_label-discs_dlabel found" in said
    table = rows(next((tmp_path / "out").rglob("*_csa_perslice.csv")))
    assert {r["VertLevel"] for r in table} - {""}, "levels from the discs"


def test_notices_bids_without_channels_and_an_empty_part(sim, tmp_path):
    model = fake_model(tmp_path, {"background": 0, "cord": 1})
    said = []
    report = segment("cord", sim, tmp_path / "out", model, options=Options(qc=False), say=said.append,
                     num_parts=5, part_id=4)  # fmt: skip
    assert [c for c, *_ in report.done] == [CASES[4]]
    assert any(s.startswith("no --channels: every image is a case (T1w, T2starw, T2w,") for s in said), said
    img = sim / "sub-01" / "anat" / "sub-01_T2w.nii.gz"
    with pytest.raises(InputError, match="part 1 of 2 has no case \\(1 case\\(s\\) in all"):
        segment("cord", img, tmp_path / "out2", model, num_parts=2, part_id=1)
    assert not (tmp_path / "out2").exists()


@pytest.mark.parametrize(
    "labels, ok",
    [
        ({"background": 0, "lesion": 1}, True),
        ({"background": 0, "Lesion": 1}, True),
        ({"background": 0, "cord": [1, 2], "lesion": 2}, True),
        ({"background": 0, "cord": 1}, False),
        ({"background": 0, "spinal_cord": 1}, False),
        ({"background": 0, "foreground": 1}, False),
    ],
)
def test_a_lesion_model_has_a_lesion_label(tmp_path, labels, ok):
    model = read_model(fake_model(tmp_path, labels), None, "checkpoint_final.pth")
    if ok:
        check_model_for(model, "lesion")
    else:
        with pytest.raises(InputError, match="a lesion model has a 'lesion' label or region"):
            check_model_for(model, "lesion")


def test_instances_finds_fold_all_and_checks_landmarks_first(sim, tmp_path):
    from nnunet_spine.cli import main

    model = cutout_model(tmp_path / "c")
    (model / "fold_0" / "checkpoint_final.pth").unlink()
    (model / "fold_all").mkdir()
    (model / "fold_all" / "checkpoint_final.pth").write_bytes(b"")
    semantic = tmp_path / "sub-01_T2w_seg-spine_msk.nii.gz"
    import nibabel as nib
    import numpy as np

    sem = np.zeros((20, 30, 10), np.uint8)
    sem[5:15, 5:10, 2:8], sem[5:15, 15:20, 2:8] = 49, 49
    nib.save(nib.Nifti1Image(sem, np.eye(4)), semantic)
    args = ["instances", "--semantic", str(semantic), "--model", str(model), "--device", "cpu", "-o",
            str(tmp_path / "o"), "-q"]  # fmt: skip
    assert main([*args, "--landmarks", str(tmp_path / "nope")]) == 2
    assert sim_nnunet.LOADS == []  # refused before the model loaded
    main(args)  # the simulated cutout model predicts nothing: fusion refuses; what matters is the load
    assert [(p.resolve(), f) for p, f in sim_nnunet.LOADS] == [(model.resolve(), ("all",))]


def test_segment_lesion_then_evaluate_lesions(sim, tmp_path):
    """The chain as written: ``segment lesion`` outputs (``<case>_label-lesion_seg.nii.gz``, lesions 1..N with
    their sidecar) are read by ``nnspine evaluate lesions`` against reference masks of the same names' cases.
    The simulated network predicts the phantom's cord as the lesion, so the reference is the cord mask."""
    model = fake_model(tmp_path, {"background": 0, "lesion": 1})
    img = sim / "sub-01" / "anat" / "sub-01_T2w.nii.gz"
    report = segment("lesion", img, tmp_path / "out", model, options=Options(qc=False))
    assert report.failures == []
    ref = tmp_path / "ref"
    ref.mkdir()
    cord = next((sim / "derivatives" / "labels").rglob("sub-01_T2w_label-SC_seg.nii.gz"))
    (ref / "sub-01_T2w.nii.gz").write_bytes(cord.read_bytes())
    r = subprocess.run(["nnspine", "evaluate", "lesions", "--pred", str(tmp_path / "out"), "--ref", str(ref), "-o",
                        str(tmp_path / "eval.csv"), "-q"], capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 0, r.stderr
    case = next(r for r in rows(tmp_path / "eval.csv") if r["case"] == "sub-01_T2w")
    assert (case["tp"], case["fp"], case["fn"], float(case["dice"])) == ("1", "0", "0", 1.0)
