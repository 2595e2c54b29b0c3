"""Traps a new user falls into: every wrong output or input is exit 2 with one line naming the path."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from nnunet_spine.core.io import save_image


def _nnspine(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["nnspine", *args], capture_output=True, text=True)


@pytest.fixture()
def mask(tmp_path):
    data = np.zeros((12, 12, 10), np.uint8)
    data[4:8, 4:8, :] = 1
    aff = np.diag([0.5, 0.5, 1.0, 1.0])
    return save_image(data, aff, tmp_path / "sub-01_T2w_seg.nii.gz")


def _one_line_exit_2(proc: subprocess.CompletedProcess, *words: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for w in words:
        assert w in lines[0], lines[0]


def test_csa_unwritable_output(tmp_path, mask):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder should be")
    _one_line_exit_2(_nnspine("csa", "-i", str(mask), "-o", str(blocker / "out.csv")), str(blocker))
    _one_line_exit_2(_nnspine("csa", "-i", str(mask), "-o", "/proc/nnspine_nowhere/out.csv"), "/proc/nnspine_nowhere")


def test_csa_output_is_a_folder(tmp_path, mask):
    folder = tmp_path / "results"
    folder.mkdir()
    _one_line_exit_2(_nnspine("csa", "-i", str(mask), "-o", str(folder), "--overwrite"), str(folder), "is a folder")


def test_csa_input_not_an_image(tmp_path):
    table = tmp_path / "table.csv"
    table.write_text("a,b\n1,2\n")
    _one_line_exit_2(_nnspine("csa", "-i", str(table), "-o", str(tmp_path / "o.csv")), "table.csv", "not an image")
    assert not (tmp_path / "o.csv").exists()


def test_demo_output_is_a_file(tmp_path):
    f = tmp_path / "existing.txt"
    f.write_text("keep")
    _one_line_exit_2(_nnspine("demo", "--no-train", "-o", str(f)), str(f), "is a file")
    assert f.read_text() == "keep"


@pytest.mark.parametrize("kind", ["cord", "spine", "lesion"])
def test_phantom_bad_seed_and_unwritable_output(tmp_path, kind):
    """A negative seed and an output folder that cannot be created are bad input (exit 2, one line), not internal
    errors; nothing is written."""
    out = tmp_path / "out"
    _one_line_exit_2(_nnspine("phantom", "--kind", kind, "-o", str(out), "--seed", "-1"), "--seed", ">= 0")
    assert not out.exists()
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder should be")
    _one_line_exit_2(_nnspine("phantom", "--kind", kind, "-o", str(blocker / "ds"), "-q"), str(blocker / "ds"))
    assert blocker.read_text() == "a file where a folder should be"
    _one_line_exit_2(_nnspine("phantom", "--kind", kind, "-o", "/proc/nnspine_nowhere/ds", "-q"), "/proc/nnspine_nowhere")


def test_phantom_library_refuses_a_negative_seed_before_writing(tmp_path):
    from nnunet_spine.core.io import InputError
    from nnunet_spine.phantoms.cord_dataset import write_cord_dataset
    from nnunet_spine.phantoms.lesion import write_lesion_dataset
    from nnunet_spine.phantoms.spine_dataset import write_spine_dataset

    for i, write in enumerate((write_cord_dataset, write_spine_dataset, write_lesion_dataset)):
        with pytest.raises(InputError, match="seed must be a whole number >= 0, got -1"):
            write(tmp_path / f"ds{i}", seed=-1)
        with pytest.raises(InputError, match="number of subjects"):
            write(tmp_path / f"ds{i}", n_subjects=0)
        assert not (tmp_path / f"ds{i}").exists()


def test_missing_input_and_usage_errors_are_one_line(tmp_path):
    missing = tmp_path / "nowhere" / "seg.nii.gz"
    _one_line_exit_2(_nnspine("csa", "-i", str(missing)), str(missing), "not found", "--help")
    _one_line_exit_2(_nnspine("csa", "-i", str(tmp_path), "--no-such-option"), "--no-such-option")
    _one_line_exit_2(_nnspine("convert", "lesion", "-i", str(tmp_path)), "--channels", "required")


def test_every_command_module_is_registered():
    """No command is silently left out of `nnspine --help` (a broken module fails loudly instead)."""
    from nnunet_spine.cli import COMMAND_MODULES, build_parser

    help_text = build_parser().format_help()
    for name in COMMAND_MODULES:
        assert name.replace("_", "-") in help_text, name
