"""The shared I/O layer: geometry-preserving reads, validation errors that name the file, atomic writes."""

from __future__ import annotations

import gzip
import os

import numpy as np
import pytest

from nnunet_spine.core.geometry import axcodes, reorient, resample_to_grid, si_axis
from nnunet_spine.core.io import (
    InputError,
    OutputExistsError,
    atomic_output,
    check_same_grid,
    load_image,
    save_image,
)


def _affine(codes=("P", "S", "R"), zooms=(0.8, 0.9, 1.5), origin=(10.0, -20.0, 30.0)) -> np.ndarray:
    vec = {"R": (1, 0, 0), "L": (-1, 0, 0), "A": (0, 1, 0), "P": (0, -1, 0), "S": (0, 0, 1), "I": (0, 0, -1)}
    aff = np.eye(4)
    aff[:3, :3] = np.array([vec[c] for c in codes], float).T @ np.diag(zooms)
    aff[:3, 3] = origin
    return aff


@pytest.mark.parametrize("ending", [".nii.gz", ".nii", ".mha"])
def test_roundtrip_keeps_values_and_geometry(tmp_path, ending):
    data = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    aff = _affine()
    p = save_image(data, aff, tmp_path / f"img{ending}")
    img = load_image(p)
    assert img.shape == (4, 5, 6)
    np.testing.assert_array_equal(img.data, data)
    np.testing.assert_allclose(img.affine, aff, atol=1e-5)
    assert axcodes(img.affine) == ("P", "S", "R")
    np.testing.assert_allclose(img.zooms, [0.8, 0.9, 1.5], atol=1e-6)


def test_nifti_and_mha_of_same_image_agree(tmp_path):
    data = np.random.default_rng(1).random((7, 8, 9)).astype(np.float32)
    aff = _affine(("L", "A", "S"), (0.5, 0.5, 3.0))
    a = load_image(save_image(data, aff, tmp_path / "a.nii.gz"))
    b = load_image(save_image(data, aff, tmp_path / "b.mha"))
    check_same_grid(a, b)
    np.testing.assert_array_equal(a.data, b.data)


def test_errors_name_the_file_and_problem(tmp_path):
    aff = _affine()
    with pytest.raises(InputError, match="missing.nii.gz: file not found"):
        load_image(tmp_path / "missing.nii.gz")
    four_d = save_image(np.zeros((3, 3, 3, 2), np.float32), aff, tmp_path / "4d.nii.gz")
    with pytest.raises(InputError, match=r"4d.nii.gz: expected a 3-D image, got 4-D"):
        load_image(four_d)
    nan = np.zeros((3, 3, 3), np.float32)
    nan[1, 1, 1] = np.nan
    with pytest.raises(InputError, match=r"nan.nii.gz: contains 1 NaN"):
        load_image(save_image(nan, aff, tmp_path / "nan.nii.gz"))
    with pytest.raises(InputError, match=r"twos.nii.gz: expected a binary mask"):
        load_image(save_image(np.full((3, 3, 3), 2, np.uint8), aff, tmp_path / "twos.nii.gz"), "binary")
    with pytest.raises(InputError, match=r"big.nii.gz: expected a mask with values in \[0, 1\]"):
        load_image(save_image(np.full((3, 3, 3), 1.5, np.float32), aff, tmp_path / "big.nii.gz"), "soft")
    with pytest.raises(InputError, match=r"empty.nii.gz: mask is empty"):
        load_image(
            save_image(np.zeros((3, 3, 3), np.uint8), aff, tmp_path / "empty.nii.gz"), "binary", allow_empty=False
        )
    # trailing singleton 4th dimension is accepted as 3-D
    assert load_image(save_image(np.zeros((3, 3, 3, 1), np.float32), aff, tmp_path / "s.nii.gz")).shape == (3, 3, 3)


def test_truncated_and_garbage_files(tmp_path):
    good = save_image(
        np.random.default_rng(0).random((20, 20, 20)).astype(np.float32), _affine(), tmp_path / "g.nii.gz"
    )
    raw = good.read_bytes()
    (tmp_path / "trunc.nii.gz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(InputError, match=r"trunc.nii.gz: cannot read image"):
        load_image(tmp_path / "trunc.nii.gz")
    (tmp_path / "junk.nii.gz").write_bytes(gzip.compress(b"hello"))
    with pytest.raises(InputError, match=r"junk.nii.gz: cannot read image"):
        load_image(tmp_path / "junk.nii.gz")
    (tmp_path / "junk.mha").write_text("not an image")
    with pytest.raises(InputError, match=r"junk.mha: cannot read image"):
        load_image(tmp_path / "junk.mha")


def test_grid_mismatch(tmp_path):
    a = load_image(save_image(np.zeros((4, 4, 4), np.uint8), _affine(), tmp_path / "a.nii.gz"))
    b = load_image(save_image(np.zeros((4, 4, 5), np.uint8), _affine(), tmp_path / "b.nii.gz"))
    c = load_image(
        save_image(np.zeros((4, 4, 4), np.uint8), _affine(origin=(10.0, -20.0, 30.5)), tmp_path / "c.nii.gz")
    )
    with pytest.raises(InputError, match=r"b.nii.gz: grid \(4, 4, 5\) differs"):
        check_same_grid(a, b)
    with pytest.raises(InputError, match=r"c.nii.gz: affine differs .* by up to 0.5 mm"):
        check_same_grid(a, c)


def test_outputs_are_atomic_and_not_clobbered(tmp_path):
    target = tmp_path / "out.nii.gz"
    save_image(np.ones((2, 2, 2), np.uint8), np.eye(4), target)
    before = target.read_bytes()
    with pytest.raises(OutputExistsError, match="out.nii.gz: output exists"):
        save_image(np.zeros((2, 2, 2), np.uint8), np.eye(4), target)
    assert target.read_bytes() == before
    # a failure while writing leaves neither a partial file nor a temporary one
    with pytest.raises(RuntimeError):
        with atomic_output(tmp_path / "new.csv") as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash while writing")
    assert sorted(os.listdir(tmp_path)) == ["out.nii.gz"]
    save_image(np.zeros((2, 2, 2), np.uint8), np.eye(4), target, overwrite=True)
    assert load_image(target).data.sum() == 0


def test_reorient_and_resample_preserve_world_positions():
    aff = _affine(("P", "S", "R"), (1.0, 1.0, 1.0))
    data = np.zeros((10, 12, 14), np.float32)
    data[2, 3, 4] = 1
    out, out_aff = reorient(data, aff, ("L", "A", "S"))
    assert axcodes(out_aff) == ("L", "A", "S")
    src_world = aff @ [2, 3, 4, 1]
    idx = np.argwhere(out == 1)[0]
    np.testing.assert_allclose(out_aff @ [*idx, 1], src_world)
    assert si_axis(aff) == 1 and si_axis(out_aff) == 2
    back = resample_to_grid(out, out_aff, data.shape, aff, order=0)
    np.testing.assert_array_equal(back, data)


def test_unwritable_outputs_are_bad_input(tmp_path):
    from nnunet_spine.core.io import check_output, require_folder, write_text

    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    with pytest.raises(InputError, match="a_file.*is a file"):
        check_output(a_file / "out.csv")
    with pytest.raises(InputError, match="cannot create the output folder"):
        check_output("/proc/nnspine_no_such_place/out.csv")
    folder = tmp_path / "folder"
    folder.mkdir()
    for overwrite in (False, True):
        with pytest.raises(InputError, match="folder: is a folder, expected an output file"):
            check_output(folder, overwrite=overwrite)
    with pytest.raises(InputError, match="nowhere: folder not found"):
        require_folder(tmp_path / "nowhere")
    with pytest.raises(InputError, match="a_file: is a file, expected a folder"):
        require_folder(a_file)
    assert sorted(os.listdir(tmp_path)) == ["a_file", "folder"]
    assert write_text(folder / "ok.csv", "a\n").read_text() == "a\n"


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_outputs_get_the_users_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        out = save_image(np.ones((2, 2, 2), np.uint8), np.eye(4), tmp_path / "o.nii.gz")
        # what any tool's new file gets: 0o666 without the umask bits
        assert (out.stat().st_mode & 0o777) == (0o666 & ~umask)
    finally:
        os.umask(old)


def test_non_image_file_is_named_as_such(tmp_path):
    table = tmp_path / "table.csv"
    table.write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match=r"table.csv: not an image"):
        load_image(table)
