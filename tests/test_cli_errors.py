"""Traps a new user falls into: every wrong output or input is exit 2 with one line naming the path."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import nibabel as nib
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
    _one_line_exit_2(
        _nnspine("phantom", "--kind", kind, "-o", "/proc/nnspine_nowhere/ds", "-q"), "/proc/nnspine_nowhere"
    )


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


# ------------------------------------------------------------------------------ bad input on real data
REAL_GM = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "gm_challenge"
#: Two real sessions copied for each case (the copies are spoiled one way each).
REAL_SUBJECTS = ("sub-9709Ses1", "sub-9584")


@pytest.fixture()
def real_bids(tmp_path):
    """A copy of two Grey Matter Challenge sessions (images of run-1 and run-2, run-1 cord masks)."""
    if not REAL_GM.is_dir():
        pytest.skip(f"real test data absent: {REAL_GM} (see ../shared/data/README.md)")
    root = tmp_path / "gm"
    for sub in REAL_SUBJECTS:
        shutil.copytree(REAL_GM / sub, root / sub)
        shutil.copytree(REAL_GM / "derivatives/labels" / sub, root / "derivatives/labels" / sub)
    return root


def _spoil(path: Path, change) -> None:
    """Rewrite a NIfTI file with ``change(data, affine) -> (data, affine)``, header kept."""
    img = nib.load(str(path))
    data, affine = change(np.asarray(img.dataobj), img.affine.copy())
    nib.save(nib.Nifti1Image(data, affine, img.header), str(path))


SPOILERS = {
    # a mask on another grid than its image: one slice fewer
    "mask_grid": ("derivatives/labels/sub-9584/anat/sub-9584_run-1_T2starw_seg-manual.nii.gz",
                  lambda d, a: (d[:, :, :-1], a), "differs from"),
    # a 4-D image (two volumes)
    "image_4d": ("sub-9584/anat/sub-9584_run-1_T2starw.nii.gz", lambda d, a: (np.stack([d, d], axis=-1), a), "3-D"),
    # a mask stored as 0/255
    "mask_255": ("derivatives/labels/sub-9584/anat/sub-9584_run-1_T2starw_seg-manual.nii.gz",
                 lambda d, a: ((d > 0).astype(np.uint8) * 255, a), "binary"),
}  # fmt: skip


def _nothing_written(tmp_path: Path) -> None:
    assert not (tmp_path / "deriv").exists() and not (tmp_path / "raw" / "Dataset612_Bad").exists()


@pytest.mark.parametrize("spoiler", sorted(SPOILERS))
def test_convert_softgt_bad_real_files_are_one_line(tmp_path, real_bids, spoiler):
    rel, change, words = SPOILERS[spoiler]
    _spoil(real_bids / rel, change)
    proc = _nnspine("convert", "softgt", "-i", str(real_bids), "--derivatives-out", str(tmp_path / "deriv"),
                    "--nnunet-dataset", "612", "--name", "Bad", "--raw-root", str(tmp_path / "raw"))  # fmt: skip
    _one_line_exit_2(proc, Path(rel).name, words)
    _nothing_written(tmp_path)


def test_convert_softgt_image_without_mask_beside_a_mask_for_another_run(tmp_path, real_bids):
    """sub-9584's run-1 image renamed run-3: its mask names a run that is not there while run-2 and run-3 have no
    mask; the command names the mask, exit 2, nothing written."""
    anat = real_bids / "sub-9584" / "anat"
    (anat / "sub-9584_run-1_T2starw.nii.gz").rename(anat / "sub-9584_run-3_T2starw.nii.gz")
    proc = _nnspine("convert", "softgt", "-i", str(real_bids), "--derivatives-out", str(tmp_path / "deriv"),
                    "--nnunet-dataset", "612", "--name", "Bad", "--raw-root", str(tmp_path / "raw"))  # fmt: skip
    _one_line_exit_2(proc, "sub-9584_run-1_T2starw_seg-manual.nii.gz", "not an image of sub-9584/anat")
    _nothing_written(tmp_path)
