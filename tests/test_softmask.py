"""nnspine softmask: probabilities written the way nnUNetv2_predict writes them come back on the original grid."""

from __future__ import annotations

import pickle
import subprocess

import nibabel as nib
import numpy as np
import pytest

from nnunet_spine.core.io import load_image, save_image
from nnunet_spine.postprocessing.cord.softmask import convert_case


def _oblique_psr_affine() -> np.ndarray:
    """A sagittal PSR grid (0.8 × 0.9 × 1.7 mm) rotated 7° about R-L, off-centre origin."""
    t = np.radians(7)
    rot = np.array([[1, 0, 0], [0, np.cos(t), -np.sin(t)], [0, np.sin(t), np.cos(t)]])
    dirs = np.array([[0, 0, 1], [-1, 0, 0], [0, 1, 0]], float)  # columns: i→P, j→S, k→R
    aff = np.eye(4)
    aff[:3, :3] = rot @ dirs @ np.diag([0.8, 0.9, 1.7])
    aff[:3, 3] = [-12.3, 40.1, -55.7]
    return aff


@pytest.fixture(scope="module")
def soft_case(tmp_path_factory):
    """An input image and a known soft mask on the same oblique grid."""
    root = tmp_path_factory.mktemp("softmask_in")
    rng = np.random.default_rng(0)
    shape = (21, 34, 13)
    soft = np.clip(rng.random(shape).astype(np.float32) * 1.4 - 0.2, 0, 1)
    aff = _oblique_psr_affine()
    img_path = save_image(rng.random(shape).astype(np.float32), aff, root / "case_0000.nii.gz")
    soft_path = save_image(soft, aff, root / "soft.nii.gz")
    return img_path, soft_path, soft, aff


READERS = ["SimpleITKIO", "SimpleITKIOWithReorient", "NibabelIO", "NibabelIOWithReorient"]


def _write_like_nnunet(reader_name: str, img_path, soft_path, out_dir):
    """Write <case>.npz/.pkl exactly as nnU-Net's export does: probabilities in the reader's array layout,
    properties from the reader (the predictor passes the reader's properties through to export)."""
    import nnunetv2.imageio.nibabel_reader_writer as nrw
    import nnunetv2.imageio.simpleitk_reader_writer as srw

    reader = getattr(srw, reader_name, None) or getattr(nrw, reader_name)
    _, props = reader().read_images([str(img_path)])
    soft_reader_space, _ = reader().read_seg(str(soft_path))
    fg = soft_reader_space[0].astype(np.float32)
    probs = np.stack([1 - fg, fg])
    out_dir.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out_dir / "case.npz", probabilities=probs)
    with open(out_dir / "case.pkl", "wb") as f:
        pickle.dump(props, f)
    reader().write_seg((fg > 0.5).astype(np.uint8), str(out_dir / "case.nii.gz"), props)


@pytest.mark.parametrize("reader_name", READERS)
def test_soft_mask_restored_on_original_grid(reader_name, soft_case, tmp_path):
    img_path, soft_path, soft, aff = soft_case
    _write_like_nnunet(reader_name, img_path, soft_path, tmp_path / "pred")
    r = convert_case(tmp_path / "pred", "case", tmp_path / "out", threshold=0.5)
    out = load_image(r.soft_path, "soft")
    assert out.data.dtype == np.float32
    assert out.shape == soft.shape
    np.testing.assert_allclose(out.affine, aff, atol=1e-4)
    np.testing.assert_allclose(out.data, soft, atol=1e-6)
    # nnU-Net's own integer segmentation of the same case agrees voxel for voxel with our binary output
    nn_seg = load_image(tmp_path / "pred" / "case.nii.gz", "labels")
    ours = load_image(r.binary_path, "binary")
    np.testing.assert_allclose(nn_seg.affine, ours.affine, atol=1e-4)
    assert np.array_equal(nn_seg.data > 0, ours.data > 0)
    assert r.volume_mm3 == pytest.approx(float(soft.sum()) * 0.8 * 0.9 * 1.7, rel=1e-5)


def test_cli_refuses_overwrite_and_reports_bad_input(soft_case, tmp_path):
    img_path, soft_path, _, _ = soft_case
    pred = tmp_path / "pred"
    _write_like_nnunet("NibabelIO", img_path, soft_path, pred)
    out = tmp_path / "out"
    ok = subprocess.run(["nnspine", "softmask", "-i", str(pred), "-o", str(out), "-q"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    before = (out / "case.nii.gz").read_bytes()
    again = subprocess.run(["nnspine", "softmask", "-i", str(pred), "-o", str(out)], capture_output=True, text=True)
    assert again.returncode == 2
    assert "exists" in again.stderr and "Traceback" not in again.stderr
    assert (out / "case.nii.gz").read_bytes() == before
    forced = subprocess.run(
        ["nnspine", "softmask", "-i", str(pred), "-o", str(out), "--overwrite", "-q"], capture_output=True, text=True
    )
    assert forced.returncode == 0, forced.stderr

    (pred / "case.pkl").unlink()
    missing = subprocess.run(
        ["nnspine", "softmask", "-i", str(pred), "-o", str(tmp_path / "o2")], capture_output=True, text=True
    )
    assert missing.returncode == 2
    assert "case.pkl" in missing.stderr and "Traceback" not in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1

    (pred / "case.npz").write_bytes(b"not a zip file")
    broken = subprocess.run(
        ["nnspine", "softmask", "-i", str(pred), "-o", str(tmp_path / "o3")], capture_output=True, text=True
    )
    assert broken.returncode == 2 and "case.npz" in broken.stderr and "Traceback" not in broken.stderr


def test_nibabel_header_written_is_float32(soft_case, tmp_path):
    img_path, soft_path, _, _ = soft_case
    _write_like_nnunet("SimpleITKIO", img_path, soft_path, tmp_path / "pred")
    r = convert_case(tmp_path / "pred", "case", tmp_path / "out")
    assert nib.load(str(r.soft_path)).get_data_dtype() == np.float32
    assert r.binary_path is None and not (tmp_path / "out" / "binary").exists()
