"""``--exclude-yml`` / ``--include-yml`` on the converters (issue 27 §2): the cases a ``qc_fail.yml`` lists are not
converted and are named, as ``sct_run_batch -exclude-yml`` skips them; the real console script is run."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest


def nnspine(*args) -> subprocess.CompletedProcess:
    return subprocess.run(["nnspine", *map(str, args)], capture_output=True, text=True)


def cases_of(dataset: Path) -> list[str]:
    """Case names of an nnU-Net raw dataset, from its labelsTr (what the converter wrote)."""
    return sorted(p.name[: -len(".nii.gz")] for p in (dataset / "labelsTr").glob("*.nii.gz"))


@pytest.fixture(scope="module")
def cord(tmp_path_factory) -> Path:
    from nnunet_spine.phantoms.cord_dataset import write_cord_dataset

    root = tmp_path_factory.mktemp("cord") / "bids"
    write_cord_dataset(root, n_subjects=3, seed=1)
    return root


def test_softgt_skips_the_files_and_subjects_a_fail_list_names(cord, tmp_path):
    every = sorted(p.name[: -len(".nii.gz")] for p in cord.glob("sub-*/anat/*.nii.gz"))
    t1w = "sub-01/anat/sub-01_T1w.nii.gz"  # not the reference (T2w): sub-01's other contrasts are converted
    fails = tmp_path / "qc_fail.yml"
    fails.write_text(f"FILES_SEG:\n- {t1w}\nFILES_LABEL:\n- sub-02\n")  # one file, one whole subject
    r = nnspine("convert", "softgt", "-i", cord, "--derivatives-out", tmp_path / "d", "--nnunet-dataset", 971,
                "--name", "X", "--raw-root", tmp_path / "raw", "--exclude-yml", fails, "-q")  # fmt: skip
    assert r.returncode == 0, r.stderr
    expected = [c for c in every if c != "sub-01_T1w" and not c.startswith("sub-02_")]
    assert cases_of(tmp_path / "raw" / "Dataset971_X") == expected
    left_out = 1 + sum(c.startswith("sub-02_") for c in every)
    said = [line for line in r.stderr.splitlines() if "skipped" in line and str(fails) in line]
    assert len(said) == 1 and f"skipped {left_out} case(s)" in said[0] and t1w in said[0]
    assert not list((tmp_path / "d").rglob("sub-02_*softseg*"))  # no soft mask for a left-out image either
    assert not list((tmp_path / "d").rglob("sub-01_T1w*softseg*")) and list((tmp_path / "d").rglob("sub-01_T2w*"))


def test_include_list_keeps_only_its_cases_and_a_list_leaving_nothing_is_bad_input(cord, tmp_path):
    keep = tmp_path / "keep.yml"
    keep.write_text("- sub-03\n")  # a plain list, as sct_run_batch reads it
    r = nnspine("convert", "softgt", "-i", cord, "--derivatives-out", tmp_path / "d", "--nnunet-dataset", 972,
                "--name", "X", "--raw-root", tmp_path / "raw", "--include-yml", keep, "-q")  # fmt: skip
    assert r.returncode == 0, r.stderr
    cases = cases_of(tmp_path / "raw" / "Dataset972_X")
    assert cases and all(c.startswith("sub-03_") for c in cases)
    everything = tmp_path / "all.yml"
    everything.write_text("FILES_SEG:\n- sub-01\n- sub-02\n- sub-03\n")
    r = nnspine("convert", "softgt", "-i", cord, "--derivatives-out", tmp_path / "d2", "--nnunet-dataset", 973,
                "--name", "X", "--raw-root", tmp_path / "raw", "--exclude-yml", everything, "-q")  # fmt: skip
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert str(everything) in r.stderr and "left out" in r.stderr
    assert not (tmp_path / "raw" / "Dataset973_X").exists() and not (tmp_path / "d2").exists()
    ref = tmp_path / "ref.yml"  # the reference image left out: its subject cannot be averaged, said
    ref.write_text("FILES_SEG:\n- sub-01_T2w.nii.gz\n")
    r = nnspine("convert", "softgt", "-i", cord, "--derivatives-out", tmp_path / "d4", "--exclude-yml", ref, "-q")
    assert r.returncode == 0 and "sub-01: skipped (no T2w image with a cord mask" in r.stderr, r.stderr
    assert not list((tmp_path / "d4").rglob("sub-01_*softseg*")) and list((tmp_path / "d4").rglob("sub-02_*"))
    bad = tmp_path / "bad.yml"
    bad.write_text("FILES_SEG: sub-01_T2w.nii.gz\n")
    r = nnspine("convert", "softgt", "-i", cord, "--derivatives-out", tmp_path / "d3", "--exclude-yml", bad, "-q")
    assert r.returncode == 2 and str(bad) in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_lesion_spineps_and_landmarks_leave_out_listed_images(tmp_path):
    from nnunet_spine.phantoms.lesion import write_lesion_dataset
    from nnunet_spine.phantoms.spine_dataset import write_spine_dataset

    fails = tmp_path / "qc_fail.yml"
    fails.write_text("FILES_LESION:\n- sub-02_T2w.nii.gz\nFILES_SEG:\n- sub-01/anat/sub-01_T2w.nii.gz\n")
    write_lesion_dataset(tmp_path / "lesion", n_subjects=3, seed=2)
    r = nnspine("convert", "lesion", "-i", tmp_path / "lesion", "--channels", "T2w", "--nnunet-dataset", 974,
                "--name", "L", "--raw-root", tmp_path / "raw", "--exclude-yml", fails, "-q")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert cases_of(tmp_path / "raw" / "Dataset974_L") == ["sub-03_T2w"]
    assert "skipped 2 case(s)" in r.stderr
    write_spine_dataset(tmp_path / "spine", n_subjects=3, n_vertebrae=3, seed=0)
    r = nnspine("convert", "spineps", "-i", tmp_path / "spine", "--nnunet-dataset", 975, "--name", "S",
                "--raw-root", tmp_path / "raw", "--exclude-yml", fails, "-q")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert cases_of(tmp_path / "raw" / "Dataset975_S") == ["sub-03_T2w"]
    r = nnspine("convert", "landmarks", "-i", tmp_path / "spine", "--nnunet-dataset", 976, "--name", "M",
                "--raw-root", tmp_path / "raw", "--include-yml", fails, "-q")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert cases_of(tmp_path / "raw" / "Dataset976_M") == ["sub-01_T2w", "sub-02_T2w"]
    assert "skipped 1 case(s)" in r.stderr and "sub-03" in r.stderr
