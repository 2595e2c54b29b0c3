"""nnspine convert lesion: multi-sequence BIDS lesion datasets → nnU-Net raw datasets.

Checked on the lesion phantom (T2w sagittal 0.8 mm PSR + T1w-like axial 1 mm RAS), on the real
``../shared/data/sct_testing_data`` fake-lesion T2w (+ the subject's T1w) and with nnU-Net's own
``verify_dataset_integrity``. Resampled channels are compared with nibabel's ``resample_from_to`` (its own
voxel-to-voxel mapping from the two affines) and with world-coordinate facts (lesion signal, centroids).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from nibabel.processing import resample_from_to

from nnunet_spine.core.io import InputError, OutputExistsError
from nnunet_spine.dataset_converters.lesion import LesionConversionWarning, convert


# ============================================================================================== helpers
def tree_hash(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def read(path: Path) -> np.ndarray:
    return np.asanyarray(nib.load(str(path)).dataobj)


def resampled_like(src: Path, like: Path, order: int) -> np.ndarray:
    """``src`` on ``like``'s grid by nibabel (world coordinates, 0 outside the field of view)."""
    target = nib.load(str(like))
    out = resample_from_to(nib.load(str(src)), (target.shape, target.affine), order=order, mode="constant", cval=0)
    return np.asanyarray(out.dataobj)


def anat(root: Path, sub: str, name: str) -> Path:
    return root / sub / "anat" / f"{sub}_{name}.nii.gz"


def label(root: Path, sub: str, name: str) -> Path:
    return root / "derivatives/labels" / sub / "anat" / f"{sub}_{name}.nii.gz"


def largest_centroid(mask: np.ndarray) -> np.ndarray:
    """Voxel centroid of the largest 26-connected component."""
    from scipy import ndimage

    lab, n = ndimage.label(mask, np.ones((3, 3, 3)))
    sizes = ndimage.sum(mask, lab, range(1, n + 1))
    return np.argwhere(lab == 1 + int(np.argmax(sizes))).mean(0)


def cli(*args, raw: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["nnspine", "convert", "lesion", *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, "nnUNet_raw": str(raw)},
    )


def verify_with_nnunet(folder: Path) -> None:
    """nnU-Net's own dataset check (as ``nnUNetv2_plan_and_preprocess --verify_dataset_integrity``)."""
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    verify_dataset_integrity(str(folder), 1)  # raises on any problem


@pytest.fixture(scope="module")
def phantom(tmp_path_factory) -> Path:
    from nnunet_spine.phantoms.lesion import write_lesion_dataset

    return Path(write_lesion_dataset(tmp_path_factory.mktemp("lesion_phantom") / "bids", n_subjects=2, seed=0)["root"])


@pytest.fixture()
def copy(phantom, tmp_path) -> Path:
    """A private copy of the phantom (tests may delete or break files)."""
    return Path(shutil.copytree(phantom, tmp_path / "bids"))


@pytest.fixture(scope="module")
def t2_t1(phantom, tmp_path_factory) -> dict:
    """The phantom converted with channels T2w,T1w (plain labels); inputs hashed around."""
    raw = tmp_path_factory.mktemp("raw")
    before = tree_hash(phantom)
    report = convert(phantom, channels="T2w,T1w", nnunet_dataset=301, name="LesionPhantom", raw_root=raw)
    return {"report": report, "folder": raw / "Dataset301_LesionPhantom", "unchanged": tree_hash(phantom) == before}


# ============================================================================================== phantom
def test_phantom_channels_labels_and_dataset_json(phantom, t2_t1):
    folder, report = t2_t1["folder"], t2_t1["report"]
    assert t2_t1["unchanged"]
    ds = json.loads((folder / "dataset.json").read_text())
    assert ds["channel_names"] == {"0": "T2w", "1": "T1w"}
    assert ds["labels"] == {"background": 0, "lesion": 1} and "regions_class_order" not in ds
    assert ds["numTraining"] == 2 and ds["file_ending"] == ".nii.gz"
    assert sorted(ds["nnspine"]["cases"]) == ["sub-01_T2w", "sub-02_T2w"]  # case = the first channel's BIDS stem
    assert [c.case for c in report.cases] == ["sub-01_T2w", "sub-02_T2w"] and report.skipped == {}
    for sub in ("sub-01", "sub-02"):
        case = f"{sub}_T2w"
        t2 = nib.load(str(anat(phantom, sub, "T2w")))
        c0 = nib.load(str(folder / "imagesTr" / f"{case}_0000.nii.gz"))
        c1 = nib.load(str(folder / "imagesTr" / f"{case}_0001.nii.gz"))
        lab = nib.load(str(folder / "labelsTr" / f"{case}.nii.gz"))
        for img in (c0, c1, lab):  # every file on the reference (T2w) grid
            assert img.shape == t2.shape and np.allclose(img.affine, t2.affine, atol=1e-5)
        assert np.array_equal(np.asanyarray(c0.dataobj), np.asanyarray(t2.dataobj))  # reference unchanged
        assert lab.get_data_dtype() == np.uint8
        assert np.array_equal(np.asanyarray(lab.dataobj), read(label(phantom, sub, "T2w_label-lesion_seg")))
        # the T1w channel is the T1w image resampled (linear) to the T2w grid in world coordinates
        expected = resampled_like(anat(phantom, sub, "T1w"), anat(phantom, sub, "T2w"), order=1)
        got = np.asanyarray(c1.dataobj)
        assert c1.get_data_dtype() == np.float32
        assert np.allclose(got, expected, atol=1e-5)
        # ... so the T1w-hypointense lesions fall on the T2w lesion label, inside the bright T1w cord
        les = np.asanyarray(lab.dataobj) > 0
        cord = read(label(phantom, sub, "T2w_label-SC_seg")) > 0
        from scipy import ndimage

        core = cord & ~ndimage.binary_dilation(les, iterations=2) & ndimage.binary_erosion(cord, iterations=2)
        assert got[les].mean() < got[core].mean() - 0.15, (got[les].mean(), got[core].mean())
    assert report.resampled == {"T1w": 2}
    text = "\n".join(report.lines())
    assert "T1w (resampled)" in text and "T1w: resampled to the T2w grid (linear, world coordinates) in 2 of 2" in text


def test_phantom_nnunet_verify_dataset_integrity(t2_t1):
    verify_with_nnunet(t2_t1["folder"])


def test_regions_on_the_t1w_grid_with_masks_drawn_on_t2w(copy, tmp_path):
    """--channels T1w,T2w --regions with the T1w masks removed: the T2w lesion and cord masks are resampled
    (nearest) to the T1w grid; cord 1, lesion 2; the T2w channel is resampled (linear)."""
    for sub in ("sub-01", "sub-02"):
        for suffix in ("label-lesion_seg", "label-SC_seg"):
            label(copy, sub, f"T1w_{suffix}").unlink()
    raw = tmp_path / "raw"
    report = convert(copy, channels=["T1w", "T2w"], regions=True, nnunet_dataset=302, name="Regions", raw_root=raw)
    folder = raw / "Dataset302_Regions"
    ds = json.loads((folder / "dataset.json").read_text())
    assert ds["channel_names"] == {"0": "T1w", "1": "T2w"}
    assert ds["labels"] == {"background": 0, "cord": [1, 2], "lesion": 2} and ds["regions_class_order"] == [1, 2]
    for r in report.cases:
        sub = r.unit
        assert r.case == f"{sub}_T1w" and r.resampled == ["T2w"]
        assert r.lesion_resampled and r.cord_resampled
        assert r.lesion_mask == f"derivatives/labels/{sub}/anat/{sub}_T2w_label-lesion_seg.nii.gz"
        t1 = anat(copy, sub, "T1w")
        les = resampled_like(label(copy, sub, "T2w_label-lesion_seg"), t1, order=0) > 0
        cord = resampled_like(label(copy, sub, "T2w_label-SC_seg"), t1, order=0) > 0
        expected = np.where(les, 2, np.where(cord, 1, 0))
        got = read(folder / "labelsTr" / f"{r.case}.nii.gz")
        assert np.array_equal(got, expected)
        assert r.lesion_voxels == int(les.sum()) and r.lesion_voxels_outside_cord == int((les & ~cord).sum())
        t2_on_t1 = resampled_like(anat(copy, sub, "T2w"), t1, order=1)
        assert np.allclose(read(folder / "imagesTr" / f"{r.case}_0001.nii.gz"), t2_on_t1, atol=1e-5)
        assert np.array_equal(read(folder / "imagesTr" / f"{r.case}_0000.nii.gz"), read(t1))
        # the lesions keep their place in the world: the largest one's centroid agrees within half a T1w voxel
        src = nib.load(str(label(copy, sub, "T2w_label-lesion_seg")))
        c_src = nib.affines.apply_affine(src.affine, largest_centroid(np.asanyarray(src.dataobj) > 0))
        c_got = nib.affines.apply_affine(nib.load(str(t1)).affine, largest_centroid(got == 2))
        assert np.linalg.norm(c_src - c_got) < 0.5, (c_src, c_got)
    verify_with_nnunet(folder)


def test_missing_sequence_is_skipped_with_a_warning(copy, tmp_path):
    anat(copy, "sub-02", "T1w").unlink()
    with pytest.warns(LesionConversionWarning, match="sub-02: skipped \\(no T1w image"):
        report = convert(copy, channels="T2w,T1w", nnunet_dataset=303, name="Skip", raw_root=tmp_path / "raw")
    assert [c.case for c in report.cases] == ["sub-01_T2w"] and list(report.skipped) == ["sub-02"]
    folder = tmp_path / "raw/Dataset303_Skip"
    assert json.loads((folder / "dataset.json").read_text())["numTraining"] == 1
    assert sorted(p.name for p in (folder / "imagesTr").iterdir()) == [
        "sub-01_T2w_0000.nii.gz",
        "sub-01_T2w_0001.nii.gz",
    ]
    # the CLI: one warning line on stderr naming the subject and the missing sequence; exit 0
    proc = cli("-i", copy, "--channels", "T2w,T1w", "--nnunet-dataset", 304, "--name", "SkipCli", raw=tmp_path / "raw")
    assert proc.returncode == 0, proc.stderr
    warning_lines = [ln for ln in proc.stderr.splitlines() if "warning" in ln]
    assert len(warning_lines) == 1 and "sub-02" in warning_lines[0] and "no T1w image" in warning_lines[0]
    assert "sub-01_T2w: channels T2w, T1w (resampled)" in proc.stdout


def test_missing_lesion_mask_skipped_or_written_empty(copy, tmp_path):
    for name in ("T2w_label-lesion_seg", "T1w_label-lesion_seg"):
        label(copy, "sub-02", name).unlink()
    with pytest.warns(LesionConversionWarning, match="sub-02: skipped \\(no lesion mask"):
        report = convert(copy, channels="T2w", nnunet_dataset=305, name="NoMask", raw_root=tmp_path / "raw")
    assert [c.case for c in report.cases] == ["sub-01_T2w"]
    report = convert(
        copy, channels="T2w", allow_missing=True, nnunet_dataset=306, name="Empty", raw_root=tmp_path / "raw"
    )
    by = {c.case: c for c in report.cases}
    assert sorted(by) == ["sub-01_T2w", "sub-02_T2w"] and report.skipped == {}
    assert by["sub-02_T2w"].lesion_mask == "" and by["sub-02_T2w"].lesion_voxels == 0
    empty = read(tmp_path / "raw/Dataset306_Empty/labelsTr/sub-02_T2w.nii.gz")
    assert empty.shape == nib.load(str(anat(copy, "sub-02", "T2w"))).shape and not empty.any()
    assert "empty mask (--allow-missing)" in "\n".join(report.lines())
    verify_with_nnunet(tmp_path / "raw/Dataset306_Empty")


def _break(mask: Path, how: str) -> None:
    img = nib.load(str(mask))
    data, aff = np.asanyarray(img.dataobj).copy(), img.affine.copy()
    if how == "grid":
        aff[:3, 3] += [1.5, 0.0, 0.0]
    elif how == "shape":
        data = data[:-1]
    elif how == "nonbinary":
        data[data > 0] = 3
    elif how == "nan":
        data = data.astype(np.float32)
        data[0, 0, 0] = np.nan
    elif how == "4d":
        data = np.stack([data, data], -1)
    mask.unlink()
    nib.save(nib.Nifti1Image(data, aff), str(mask))


@pytest.mark.parametrize("how", ["grid", "shape", "nonbinary", "nan", "4d"])
def test_bad_mask_exits_2_and_writes_nothing(copy, tmp_path, how):
    bad = label(copy, "sub-02", "T2w_label-lesion_seg")
    _break(bad, how)
    before = tree_hash(copy)
    raw = tmp_path / "raw"
    proc = cli("-i", copy, "--channels", "T2w,T1w", "--nnunet-dataset", 307, "--name", "Bad", raw=raw)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert bad.name in proc.stderr
    assert not raw.exists()  # nothing written
    assert tree_hash(copy) == before


def test_bad_image_found_by_a_worker_exits_2(copy, tmp_path):
    img = anat(copy, "sub-01", "T1w")
    _break(img, "nan")
    proc = cli(
        "-i",
        copy,
        "--channels",
        "T2w,T1w",
        "--nnunet-dataset",
        308,
        "--name",
        "BadJobs",
        "--jobs",
        "2",
        raw=tmp_path / "raw",
    )
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert img.name in proc.stderr and "NaN" in proc.stderr and not (tmp_path / "raw").exists()


@pytest.mark.parametrize(
    "channels, message",
    [
        ("T9w", "nothing to convert, every subject was skipped (sub-01: no T9w image (images: T1w, T2w)"),
        ("T2w,T2w", "a sequence is named twice"),
        ("T2w,", "give one or more image specs"),
        ("sub-01_T2w", "names a contrast, not a subject"),
    ],
)
def test_bad_channels_exit_2(phantom, tmp_path, channels, message):
    proc = cli("-i", phantom, "--channels", channels, "--nnunet-dataset", 309, "--name", "Ch", raw=tmp_path / "raw")
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and message in proc.stderr, proc.stderr
    assert not (tmp_path / "raw").exists()


def test_file_where_a_folder_is_expected(phantom, tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    proc = cli("-i", a_file, "--channels", "T2w", "--nnunet-dataset", 310, "--name", "F", raw=tmp_path / "raw")
    assert proc.returncode == 2 and f"{a_file}: is a file, expected a dataset folder" in proc.stderr
    proc = cli("-i", phantom, "--channels", "T2w", "--nnunet-dataset", 310, "--name", "F", raw=a_file)
    assert proc.returncode == 2 and f"{a_file}: is a file, expected a folder" in proc.stderr


def test_overwrite_refused_then_allowed_and_jobs_give_identical_files(phantom, tmp_path):
    raw = tmp_path / "raw"
    convert(phantom, channels="T2w,T1w", nnunet_dataset=311, name="Jobs", raw_root=raw)
    with pytest.raises(OutputExistsError):
        convert(phantom, channels="T2w,T1w", nnunet_dataset=311, name="Jobs", raw_root=raw)
    with pytest.raises(InputError, match="already used"):
        convert(phantom, channels="T2w", nnunet_dataset=311, name="Other", raw_root=raw)
    convert(phantom, channels="T2w,T1w", nnunet_dataset=311, name="Jobs", raw_root=tmp_path / "raw2", jobs=2)
    a, b = raw / "Dataset311_Jobs", tmp_path / "raw2" / "Dataset311_Jobs"
    files = sorted(p.relative_to(a) for p in a.rglob("*.nii.gz"))
    assert len(files) == 6
    for rel in files:
        assert np.array_equal(read(a / rel), read(b / rel)), rel
    # --overwrite with fewer channels: no stale channel files remain
    convert(phantom, channels="T2w", nnunet_dataset=311, name="Jobs", raw_root=raw, overwrite=True)
    assert sorted(p.name for p in (a / "imagesTr").iterdir()) == ["sub-01_T2w_0000.nii.gz", "sub-02_T2w_0000.nii.gz"]
    assert json.loads((a / "dataset.json").read_text())["channel_names"] == {"0": "T2w"}


def test_convert_group_lists_lesion():
    proc = subprocess.run(["nnspine", "convert", "lesion", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "--channels" in proc.stdout and "regions_class_order" in proc.stdout


# ============================================================================================ real data
@pytest.fixture()
def real_bids(shared_data, tmp_path) -> Path:
    """The SCT fake-lesion T2w (+ the subject's T1w) arranged as BIDS through symbolic links (nothing copied)."""
    t2 = shared_data / "sct_testing_data" / "t2"
    if not (t2 / "t2_fake_lesion.nii.gz").is_file():
        pytest.skip("../shared/data/sct_testing_data/t2/t2_fake_lesion* absent")
    root = tmp_path / "real"
    links = {
        anat(root, "sub-01", "T2w"): t2 / "t2_fake_lesion.nii.gz",
        anat(root, "sub-01", "T1w"): shared_data / "sct_testing_data" / "t1" / "t1w.nii.gz",
        label(root, "sub-01", "T2w_label-lesion_seg"): t2 / "t2_fake_lesion_lesion_seg.nii.gz",
        label(root, "sub-01", "T2w_label-SC_seg"): t2 / "t2_fake_lesion_sc_seg.nii.gz",
    }
    for link, target in links.items():
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(target)
    return root


def test_real_fake_lesion(real_bids, shared_data, tmp_path):
    before = tree_hash(shared_data / "sct_testing_data")
    raw = tmp_path / "raw"
    report = convert(real_bids, channels="T2w,T1w", regions=True, nnunet_dataset=312, name="RealLesion", raw_root=raw)
    folder = raw / "Dataset312_RealLesion"
    (case,) = report.cases
    assert case.case == "sub-01_T2w" and case.resampled == ["T1w"] and not case.lesion_resampled
    t2 = shared_data / "sct_testing_data/t2"
    lesion = read(t2 / "t2_fake_lesion_lesion_seg.nii.gz") > 0
    cord = read(t2 / "t2_fake_lesion_sc_seg.nii.gz") > 0
    got = read(folder / "labelsTr/sub-01_T2w.nii.gz")
    assert int((got == 2).sum()) == int(lesion.sum()) == 163  # one lesion, ~83 mm³ at 0.8 mm
    assert int((got == 1).sum()) == int((cord & ~lesion).sum())
    assert case.lesion_volume_mm3 == pytest.approx(163 * 0.8**3, rel=1e-3) and case.lesion_voxels_outside_cord == 0
    expected = resampled_like(shared_data / "sct_testing_data/t1/t1w.nii.gz", t2 / "t2_fake_lesion.nii.gz", order=1)
    assert np.allclose(read(folder / "imagesTr/sub-01_T2w_0001.nii.gz"), expected, atol=1e-3)
    assert np.array_equal(read(folder / "imagesTr/sub-01_T2w_0000.nii.gz"), read(t2 / "t2_fake_lesion.nii.gz"))
    verify_with_nnunet(folder)
    assert tree_hash(shared_data / "sct_testing_data") == before  # the shared input is untouched


def _add_lesion_lost_by_nearest(mask: Path, like: Path) -> None:
    """Add a one-voxel lesion to ``mask`` (in place) in a plane of voxels that nibabel's nearest-neighbour
    resampling onto ``like``'s grid never samples, inside the target's view and 4+ voxels from other lesions."""
    from scipy import ndimage

    src = nib.load(str(mask))
    data = np.asanyarray(src.dataobj).astype(np.uint8)
    index = nib.Nifti1Image(np.arange(1, data.size + 1, dtype=np.float64).reshape(data.shape), src.affine)
    target = nib.load(str(like))
    hit = np.asanyarray(resample_from_to(index, (target.shape, target.affine), order=0, cval=0).dataobj)
    ijk = np.unravel_index(hit[hit > 0].astype(np.int64) - 1, data.shape)
    per_axis = [np.unique(a) for a in ijk]  # source indices sampled along each axis
    skipped = [i for i in range(per_axis[0][2], per_axis[0][-3]) if i not in set(per_axis[0])]
    assert skipped, "nearest-neighbour resampling samples every plane"
    near_lesion = ndimage.binary_dilation(data > 0, iterations=4)
    for i in skipped:
        for j in per_axis[1][4:-4]:
            for k in per_axis[2][4:-4]:
                if not near_lesion[i, j, k]:
                    data[i, j, k] = 1
                    mask.unlink()
                    nib.save(nib.Nifti1Image(data, src.affine), str(mask))
                    return
    raise AssertionError("no free voxel in a skipped plane")


def test_resampling_that_loses_a_lesion_is_refused_then_accounted_for(copy, tmp_path):
    """A one-voxel lesion on the T2w grid that the T1w grid never samples: converting with the T1w channel
    first (masks resampled, nearest) exits 2 naming the mask and --allow-lesion-loss, writing nothing; with
    --allow-lesion-loss the dataset holds lesion_resampling.csv whose counts match scipy's on both grids."""
    import pandas as pd
    from scipy import ndimage

    for sub in ("sub-01", "sub-02"):
        for suffix in ("label-lesion_seg", "label-SC_seg"):
            label(copy, sub, f"T1w_{suffix}").unlink()
    mask = label(copy, "sub-01", "T2w_label-lesion_seg")
    _add_lesion_lost_by_nearest(mask, anat(copy, "sub-01", "T1w"))
    before = tree_hash(copy)
    raw = tmp_path / "raw"
    args = ("-i", copy, "--channels", "T1w,T2w", "--nnunet-dataset", 311, "--name", "Loss")
    proc = cli(*args, raw=raw)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert mask.name in proc.stderr and "--allow-lesion-loss" in proc.stderr and "loses 1 of" in proc.stderr
    assert not (raw / "Dataset311_Loss").exists() and tree_hash(copy) == before

    proc = cli(*args, "--allow-lesion-loss", raw=raw)
    assert proc.returncode == 0, proc.stderr
    folder = raw / "Dataset311_Loss"
    table = pd.read_csv(folder / "lesion_resampling.csv").set_index("case")
    assert set(table.index) == {"sub-01_T1w", "sub-02_T1w"}
    full = np.ones((3, 3, 3))
    for sub in ("sub-01", "sub-02"):
        row = table.loc[f"{sub}_T1w"]
        src = nib.load(str(label(copy, sub, "T2w_label-lesion_seg")))
        src_data = np.asanyarray(src.dataobj) > 0
        written = read(folder / "labelsTr" / f"{sub}_T1w.nii.gz") > 0
        assert row.lesions_before == ndimage.label(src_data, full)[1]
        assert row.lesions_after == ndimage.label(written, full)[1]
        assert row.volume_before_mm3 == pytest.approx(src_data.sum() * np.prod(src.header.get_zooms()[:3]), rel=1e-3)
    assert table.loc["sub-01_T1w"].lesions_before == table.loc["sub-01_T1w"].lesions_after + 1
    assert bool(table.loc["sub-01_T1w"].changed)
