"""nnspine convert softgt: soft cord ground truth averaged across contrasts, against exact partial-volume truth.

Accuracy is measured on the 5-contrast cord phantom (shifts 0.5–1.8 mm between scans) in each contrast's
native grid, as the mean absolute error against the exact partial-volume fractions
(``derivatives/truth``) inside a 2-voxel band around the true boundary: voxels within 2 voxels (Euclidean
distance transform in voxel units) of the ``truth >= 0.5`` surface, on both sides. Every voxel of that band
is counted: the averaging space spans the union of all masks (plus margin), so each native voxel of the
band lies in it, and every native voxel lies inside its own contrast's field of view.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from nnunet_spine import __version__
from nnunet_spine.core.dataset_json import LABELS_TR_SOFT
from nnunet_spine.core.io import InputError, OutputExistsError, save_image
from nnunet_spine.dataset_converters.softgt import SoftGTWarning, convert

CONTRASTS = ("T2w", "T1w", "T2starw", "flip-1_mt-on_MTS", "flip-2_mt-off_MTS")


# ============================================================================================== helpers
def tree_hash(root: Path) -> dict[str, str]:
    """SHA-256 of every file under ``root`` (relative path → digest)."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def band(truth: np.ndarray, width: float = 2.0) -> np.ndarray:
    """Voxels within ``width`` voxels of the truth's 0.5 surface, inside and outside."""
    inside = truth >= 0.5
    return (inside & (ndimage.distance_transform_edt(inside) <= width)) | (
        ~inside & (ndimage.distance_transform_edt(~inside) <= width)
    )


def soft_path(deriv_out: Path, sub: str, contrast: str) -> Path:
    return deriv_out / "labels_softseg" / sub / "anat" / f"{sub}_{contrast}_label-SC_softseg.nii.gz"


def read(path: Path) -> np.ndarray:
    return np.asanyarray(nib.load(str(path)).dataobj)


def band_errors(root: Path, deriv_out: Path, sub: str = "sub-01") -> dict[str, tuple[float, float]]:
    """Per contrast: (MAE of the soft GT, MAE of the binary mask) in the truth's 2-voxel boundary band."""
    out = {}
    for c in CONTRASTS:
        truth = read(root / "derivatives/truth" / sub / "anat" / f"{sub}_{c}_label-SC_softseg.nii.gz")
        binary = read(root / "derivatives/labels" / sub / "anat" / f"{sub}_{c}_label-SC_seg.nii.gz")
        soft = read(soft_path(deriv_out, sub, c))
        b = band(truth)
        out[c] = (float(np.abs(soft - truth)[b].mean()), float(np.abs(binary - truth)[b].mean()))
    return out


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["nnspine", "convert", "softgt", *map(str, args)], capture_output=True, text=True, env=env)


def cylinder_bids(root: Path, subjects: dict[str, dict[str, float]]) -> Path:
    """A small BIDS dataset: per subject, contrasts (name → x shift in mm) of a straight cylinder cord.

    T2w: 0.7 mm in-plane, 1.5 mm slices (RAS); other contrasts 1 mm iso, LAS. Radius 3.2 mm.
    """
    (root / "derivatives/labels").mkdir(parents=True)
    (root / "dataset_description.json").write_text('{"Name": "tiny", "BIDSVersion": "1.9.0"}\n')
    for sub, contrasts in subjects.items():
        for c, shift in contrasts.items():
            if c == "T2w":
                shape, aff = (30, 30, 14), np.diag([0.7, 0.7, 1.5, 1.0])
            else:
                shape, aff = (22, 22, 20), np.diag([-1.0, 1.0, 1.0, 1.0])
            aff[:3, 3] = -aff[:3, :3] @ ((np.array(shape) - 1) / 2)
            ijk = np.indices(shape).reshape(3, -1).T
            xyz = ijk @ aff[:3, :3].T + aff[:3, 3]
            mask = (((xyz[:, 0] - shift) ** 2 + (xyz[:, 1] + 0.3) ** 2) < 3.2**2).reshape(shape).astype(np.uint8)
            image = (100 + 50 * mask).astype(np.int16)
            save_image(image, aff, root / sub / "anat" / f"{sub}_{c}.nii.gz")
            save_image(mask, aff, root / "derivatives/labels" / sub / "anat" / f"{sub}_{c}_label-SC_seg.nii.gz")
    return root


@pytest.fixture()
def tiny(tmp_path) -> Path:
    return cylinder_bids(tmp_path / "bids", {"sub-01": {"T2w": 0.0, "T1w": 0.8}})


# ============================================================================================== phantom
@pytest.fixture(scope="module")
def phantom_runs(cord_phantom, tmp_path_factory) -> dict:
    """The phantom converted twice (aligned, with an nnU-Net dataset; and --no-align), inputs hashed around."""
    root = Path(cord_phantom["root"])
    before = tree_hash(root)
    out = tmp_path_factory.mktemp("softgt_phantom")
    raw = out / "nnUNet_raw"
    aligned = convert(root, derivatives_out=out / "aligned", nnunet_dataset=941, name="SoftGTPhantom", raw_root=raw)
    unaligned = convert(root, derivatives_out=out / "unaligned", align=False)
    return {
        "root": root,
        "out": out,
        "raw": raw,
        "aligned": aligned,
        "unaligned": unaligned,
        "truth": cord_phantom["subjects"]["sub-01"],
        "hash_before": before,
        "hash_after": tree_hash(root),
    }


def test_phantom_soft_gt_matches_partial_volume_truth(phantom_runs):
    root, out = phantom_runs["root"], phantom_runs["out"]
    aligned = band_errors(root, out / "aligned")
    unaligned = band_errors(root, out / "unaligned")
    print("\nband MAE per contrast (aligned / --no-align / binary):")
    for c in CONTRASTS:
        print(f"  {c:<20s} {aligned[c][0]:.4f} / {unaligned[c][0]:.4f} / {aligned[c][1]:.4f}")
    mae = np.mean([v[0] for v in aligned.values()])
    mae_binary = np.mean([v[1] for v in aligned.values()])
    mae_unaligned = np.mean([v[0] for v in unaligned.values()])
    print(f"  {'mean':<20s} {mae:.4f} / {mae_unaligned:.4f} / {mae_binary:.4f}")
    # achieved: mean 0.023, worst contrast 0.031 (T2w); thresholds = achieved + ~30 %
    assert mae < 0.030
    assert all(v[0] < 0.040 for v in aligned.values()), aligned
    assert mae < mae_binary - 0.02  # clearly better than the binary masks (~0.07)
    assert all(v[0] < v[1] for v in aligned.values()), aligned  # ... for every contrast
    assert mae_unaligned > mae + 0.05  # the shifts matter, and alignment removes them


def test_phantom_alignment_recovers_the_inter_scan_shifts(phantom_runs):
    report = phantom_runs["aligned"]
    acq = phantom_runs["truth"]["acquisitions"]
    (subject,) = report.subjects
    ref_shift = np.array(acq["T2w"]["shift_mm"])
    for c in subject.contrasts:
        true = np.array(acq[c.entities]["shift_mm"]) - ref_shift
        # the T2w reference planes are axial: the in-plane offset is the (x, y) part of the shift
        assert np.allclose(c.offset_mm[:2], true[:2], atol=0.15), (c.entities, c.offset_mm, true)
        assert abs(c.offset_mm[2]) < 1e-6
        if c.entities != "T2w":
            assert c.aligned_slices > 10


def test_phantom_outputs_sidecars_and_report(phantom_runs):
    root, out, report = phantom_runs["root"], phantom_runs["out"], phantom_runs["aligned"]
    assert phantom_runs["hash_before"] == phantom_runs["hash_after"]  # input dataset untouched
    assert not (root / "derivatives" / "labels_softseg").exists()
    deriv = out / "aligned" / "labels_softseg"
    desc = json.loads((deriv / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative"
    (subject,) = report.subjects
    assert subject.subject == "sub-01" and subject.reference == "T2w"
    assert sorted(subject.used) == sorted(CONTRASTS)
    assert report.skipped == {}
    total_soft = total_binary = 0.0
    for c in subject.contrasts:
        img = nib.load(str(root / "sub-01/anat" / f"sub-01_{c.entities}.nii.gz"))
        soft_img = nib.load(str(soft_path(out / "aligned", "sub-01", c.entities)))
        soft = np.asanyarray(soft_img.dataobj)
        assert soft_img.get_data_dtype() == np.float32
        assert soft.shape == img.shape and np.allclose(soft_img.affine, img.affine, atol=1e-4)
        assert soft.min() >= 0.0 and soft.max() <= 1.0
        assert 0.3 < c.boundary_mean < 0.7  # values at the cord boundary are fractional
        side = json.loads(
            soft_path(out / "aligned", "sub-01", c.entities).with_suffix("").with_suffix(".json").read_text()
        )
        assert side["Reference"] == "T2w"
        assert side["GeneratedBy"][0]["Version"] == __version__
        assert f"sub-01/anat/sub-01_{c.entities}.nii.gz" in side["Sources"]
        assert side["SpatialReference"] == f"sub-01/anat/sub-01_{c.entities}.nii.gz"
        assert sorted(side["ContrastsUsed"]) == sorted(CONTRASTS)
        total_soft += c.soft_volume_mm3
        total_binary += c.binary_volume_mm3
    # volume preservation: the soft masks hold the binary masks' volume (summed over contrasts)
    assert abs(total_soft / total_binary - 1) < 0.003
    assert abs(subject.boundary_offset_mm) < 0.1
    text = "\n".join(report.lines())
    assert "sub-01" in text and "boundary mean soft" in text


def test_phantom_nnunet_raw_dataset(phantom_runs):
    folder = phantom_runs["raw"] / "Dataset941_SoftGTPhantom"
    ds = json.loads((folder / "dataset.json").read_text())
    assert ds["channel_names"] == {"0": "MRI"}
    assert ds["labels"] == {"background": 0, "cord": 1}
    assert ds["numTraining"] == 5 and ds["file_ending"] == ".nii.gz"
    assert phantom_runs["aligned"].num_cases == 5
    for c in CONTRASTS:
        case = f"sub-01_{c}"
        image = nib.load(str(folder / "imagesTr" / f"{case}_0000.nii.gz"))
        label = nib.load(str(folder / "labelsTr" / f"{case}.nii.gz"))
        soft = nib.load(str(folder / LABELS_TR_SOFT / f"{case}.nii.gz"))
        assert soft.get_data_dtype() == np.float32 and label.get_data_dtype() == np.uint8
        for other in (label, soft):  # exactly the image's geometry
            assert other.shape == image.shape
            assert np.array_equal(other.affine, image.affine)
            assert np.array_equal(other.header.get_qform(), image.header.get_qform())
        soft_data = np.asanyarray(soft.dataobj)
        assert np.array_equal(np.asanyarray(label.dataobj), (soft_data >= 0.5).astype(np.uint8))
        derivative = read(soft_path(phantom_runs["out"] / "aligned", "sub-01", c))
        assert np.array_equal(soft_data, derivative)
        original = nib.load(str(phantom_runs["root"] / "sub-01/anat" / f"sub-01_{c}.nii.gz"))
        assert np.array_equal(np.asanyarray(image.dataobj), np.asanyarray(original.dataobj))


# ============================================================================================= real data
@pytest.fixture(scope="module")
def real_run(tmp_path_factory, request) -> dict:
    shared = request.getfixturevalue("shared_data")
    root = shared / "bids_multicontrast"
    if not root.is_dir():
        pytest.skip("../shared/data/bids_multicontrast absent")
    before = tree_hash(root)
    out = tmp_path_factory.mktemp("softgt_real")
    report = convert(
        root, derivatives_out=out / "derivatives", nnunet_dataset=942, name="SoftGTReal", raw_root=out / "nnUNet_raw"
    )
    return {"root": root, "out": out, "report": report, "hash_before": before, "hash_after": tree_hash(root)}


def test_real_subject_every_contrast_gets_a_soft_mask(real_run):
    assert real_run["hash_before"] == real_run["hash_after"]  # the shared input is untouched
    (subject,) = real_run["report"].subjects
    assert sorted(subject.used) == sorted(CONTRASTS)
    for c in subject.contrasts:
        soft = read(soft_path(real_run["out"] / "derivatives", "sub-01", c.entities))
        binary = read(real_run["root"] / "derivatives/labels/sub-01/anat" / f"sub-01_{c.entities}_label-SC_seg.nii.gz")
        assert soft.shape == binary.shape and soft.min() >= 0 and soft.max() <= 1
        # fractional values at the boundary of every contrast's mask
        inside = binary > 0
        edge = inside ^ ndimage.binary_erosion(inside, border_value=1) | ndimage.binary_dilation(inside) & ~inside
        fractional = (soft[edge] > 0) & (soft[edge] < 1)
        assert fractional.mean() > 0.2, c.entities
        assert 0.2 < c.boundary_mean < 0.8, (c.entities, c.boundary_mean)
        # the soft mask is the same cord as the input mask
        dice = 2 * np.sum((soft >= 0.5) & inside) / (np.sum(soft >= 0.5) + inside.sum())
        assert dice > 0.8, (c.entities, dice)
    # T2*w is ~4 mm off the other contrasts in this subject (README): alignment finds it
    t2s = next(c for c in subject.contrasts if c.entities == "T2starw")
    assert np.linalg.norm(t2s.offset_mm) > 2.0


@pytest.mark.slow
def test_nnunet_verify_dataset_integrity(phantom_runs, real_run, tmp_path):
    """The real nnU-Net console script accepts both datasets (phantom: oblique slabs; real: PSR/RAS/LAS)."""
    real_raw = real_run["out"] / "nnUNet_raw"
    raw = tmp_path / "nnUNet_raw"
    raw.mkdir()
    for src in (phantom_runs["raw"] / "Dataset941_SoftGTPhantom", real_raw / "Dataset942_SoftGTReal"):
        (raw / src.name).symlink_to(src, target_is_directory=True)
    env = {
        **os.environ,
        "nnUNet_raw": str(raw),
        "nnUNet_preprocessed": str(tmp_path / "pre"),
        "nnUNet_results": str(tmp_path / "results"),
    }
    proc = subprocess.run(
        ["nnUNetv2_extract_fingerprint", "-d", "941", "942", "--verify_dataset_integrity", "-np", "1"],
        capture_output=True,
        text=True,
        env=env,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    assert "verify_dataset_integrity Done" in log
    assert "Error" not in log and "mismatch" not in log, log[-3000:]
    for ds in ("Dataset941_SoftGTPhantom", "Dataset942_SoftGTReal"):
        assert (tmp_path / "pre" / ds / "dataset_fingerprint.json").is_file()
    folder = real_raw / "Dataset942_SoftGTReal"
    for label in (folder / "labelsTr").glob("*.nii.gz"):
        soft = read(folder / LABELS_TR_SOFT / label.name)
        assert np.array_equal(read(label), (soft >= 0.5).astype(np.uint8))


# ============================================================================================ API, jobs
def test_jobs_give_identical_results(tmp_path):
    root = cylinder_bids(
        tmp_path / "bids",
        {
            "sub-01": {"T2w": 0.0, "T1w": 0.8, "T2starw": -0.6},
            "sub-02": {"T2w": 0.2, "T1w": -0.9},
            "sub-03": {"T2w": -0.1, "T1w": 0.5, "T2starw": 1.1},
        },
    )
    serial = convert(
        root, derivatives_out=tmp_path / "serial", nnunet_dataset=943, name="Jobs", raw_root=tmp_path / "raw1"
    )
    parallel = convert(
        root, derivatives_out=tmp_path / "parallel", jobs=2, nnunet_dataset=943, name="Jobs", raw_root=tmp_path / "raw2"
    )

    def strip(r):
        return [
            (s.subject, [(c.entities, c.offset_mm, c.boundary_mean, c.soft_volume_mm3) for c in s.contrasts])
            for s in r.subjects
        ]

    assert strip(serial) == strip(parallel)
    files = sorted(p.relative_to(tmp_path / "serial") for p in (tmp_path / "serial").rglob("*") if p.is_file())
    assert len(files) == 17  # 8 contrasts × (mask + sidecar) + dataset_description.json
    for rel in files:
        a, b = tmp_path / "serial" / rel, tmp_path / "parallel" / rel
        if rel.name.endswith(".nii.gz"):
            assert np.array_equal(read(a), read(b)), rel
        else:
            assert a.read_text() == b.read_text(), rel
    for rel in sorted(p.relative_to(tmp_path / "raw1") for p in (tmp_path / "raw1").rglob("*.nii.gz")):
        assert np.array_equal(read(tmp_path / "raw1" / rel), read(tmp_path / "raw2" / rel)), rel
    # the shifts of the tiny dataset are pure x shifts: recovered
    sub1 = serial.subjects[0]
    offsets = {c.entities: c.offset_mm for c in sub1.contrasts}
    assert offsets["T1w"][0] == pytest.approx(0.8, abs=0.15) and offsets["T2starw"][0] == pytest.approx(-0.6, abs=0.15)


def test_overwrite_is_refused_then_allowed(tiny, tmp_path):
    convert(tiny, derivatives_out=tmp_path / "out")
    with pytest.raises(OutputExistsError):
        convert(tiny, derivatives_out=tmp_path / "out")
    report = convert(tiny, derivatives_out=tmp_path / "out", overwrite=True)
    assert report.subjects[0].used == ["T1w", "T2w"]
    # the nnU-Net dataset too, and a second name for one ID is refused
    convert(tiny, derivatives_out=tmp_path / "out2", nnunet_dataset=5, name="A", raw_root=tmp_path / "raw")
    assert (tmp_path / "raw" / "Dataset005_A" / "dataset.json").is_file()
    with pytest.raises(OutputExistsError):
        convert(tiny, derivatives_out=tmp_path / "out3", nnunet_dataset=5, name="A", raw_root=tmp_path / "raw")
    with pytest.raises(InputError, match="already used"):
        convert(tiny, derivatives_out=tmp_path / "out4", nnunet_dataset=5, name="B", raw_root=tmp_path / "raw")


def test_subject_without_reference_is_skipped_with_a_warning(tmp_path):
    root = cylinder_bids(tmp_path / "bids", {"sub-01": {"T2w": 0.0, "T1w": 0.5}, "sub-02": {"T1w": 0.0}})
    with pytest.warns(SoftGTWarning, match="sub-02"):
        report = convert(root, derivatives_out=tmp_path / "out", reference="T2w")
    assert [s.subject for s in report.subjects] == ["sub-01"]
    assert "sub-02" in report.skipped
    # another reference: both subjects have T1w
    report = convert(root, derivatives_out=tmp_path / "out_t1", reference="T1w")
    assert [s.subject for s in report.subjects] == ["sub-01", "sub-02"]
    # no reference given: T2w for sub-01 (two contrasts), sub-02's only labelled contrast for sub-02
    report = convert(root, derivatives_out=tmp_path / "out_auto")
    assert [(s.subject, s.reference, s.averaged_across_contrasts) for s in report.subjects] == [
        ("sub-01", "T2w", True),
        ("sub-02", "T1w", False),
    ]


# ============================================================================================ CLI
def test_cli_runs_and_prints_the_report(tiny, tmp_path):
    proc = run_cli("-i", tiny, "--derivatives-out", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    assert "sub-01: reference T2w, 2 contrasts used" in proc.stdout
    assert "boundary mean soft" in proc.stdout
    assert soft_path(tmp_path / "out", "sub-01", "T1w").is_file()
    again = run_cli("-i", tiny, "--derivatives-out", tmp_path / "out")
    assert again.returncode == 2 and "exists" in again.stderr and len(again.stderr.strip().splitlines()) == 1
    assert run_cli("-i", tiny, "--derivatives-out", tmp_path / "out", "--overwrite", "-q").returncode == 0


def test_cli_skipped_subject_warns_on_stderr(tmp_path):
    root = cylinder_bids(tmp_path / "bids", {"sub-01": {"T2w": 0.0, "T1w": 0.5}, "sub-02": {"T1w": 0.0}})
    proc = run_cli("-i", root, "--derivatives-out", tmp_path / "out", "--reference", "T2w")
    assert proc.returncode == 0, proc.stderr
    assert "warning" in proc.stderr and "sub-02" in proc.stderr and "skipped" in proc.stderr
    assert not (tmp_path / "out/labels_softseg/sub-02").exists()


def _corrupt(root: Path, how: str) -> Path:
    """Break the T1w mask of sub-01 in one way; returns the file that the error must name."""
    mask = root / "derivatives/labels/sub-01/anat/sub-01_T1w_label-SC_seg.nii.gz"
    img = nib.load(str(mask))
    data = np.asanyarray(img.dataobj)
    aff = img.affine.copy()
    if how == "grid":
        aff[:3, 3] += [2.0, 0.0, 0.0]
    elif how == "nan":
        data = data.astype(np.float32)
        data[3, 3, 3] = np.nan
    elif how == "nonbinary":
        data = data.copy()
        data[data > 0] = 2
    elif how == "4d":
        data = np.stack([data, data], axis=-1)
    elif how == "shape":
        data = data[:-1]
    mask.unlink()
    nib.save(nib.Nifti1Image(data, aff), str(mask))
    return mask


@pytest.mark.parametrize("how", ["grid", "shape", "nan", "nonbinary", "4d"])
def test_cli_bad_mask_exits_2_with_one_line(tiny, tmp_path, how):
    bad = _corrupt(tiny, how)
    before = tree_hash(tiny)
    proc = run_cli("-i", tiny, "--derivatives-out", tmp_path / "out")
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert bad.name in proc.stderr
    assert not (tmp_path / "out" / "labels_softseg" / "sub-01").exists()  # nothing written
    assert tree_hash(tiny) == before


@pytest.mark.parametrize("case", ["missing", "inside", "no_labels", "nnunet_without_name", "bad_id"])
def test_cli_bad_usage_exits_2_with_one_line(tiny, tmp_path, case):
    args = {
        "missing": ["-i", tmp_path / "nope", "--derivatives-out", tmp_path / "out"],
        "inside": ["-i", tiny, "--derivatives-out", tiny / "sub-01"],
        "no_labels": ["-i", tiny, "--derivatives-out", tmp_path / "out"],
        "nnunet_without_name": ["-i", tiny, "--derivatives-out", tmp_path / "out", "--nnunet-dataset", "7"],
        "bad_id": ["-i", tiny, "--derivatives-out", tmp_path / "out", "--nnunet-dataset", "1000", "--name", "X"],
    }[case]
    if case == "no_labels":
        import shutil

        shutil.rmtree(tiny / "derivatives")
    env = {**os.environ, "nnUNet_raw": str(tmp_path / "raw")}
    proc = run_cli(*args, env=env)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    if case == "missing":
        assert "nope" in proc.stderr
    if case == "inside":
        assert "derivatives/" in proc.stderr and not (tiny / "sub-01" / "labels_softseg").exists()


def test_bids_derivatives_folder_of_the_input_is_accepted_and_inputs_untouched(tiny, tmp_path):
    before = tree_hash(tiny)
    proc = run_cli("-i", tiny, "--derivatives-out", tiny / "derivatives", "-q")
    assert proc.returncode == 0, proc.stderr
    after = tree_hash(tiny)
    assert {k: after[k] for k in before} == before  # every input file as it was
    added = sorted(set(after) - set(before))
    assert added and all(k.startswith("derivatives/labels_softseg/") for k in added)


def test_convert_group_lists_softgt():
    proc = subprocess.run(["nnspine", "convert", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "softgt" in proc.stdout
    proc = subprocess.run(["nnspine", "convert"], capture_output=True, text=True)
    assert proc.returncode == 2 and "softgt" in proc.stderr


def test_bad_input_found_by_a_worker_process(tmp_path):
    root = cylinder_bids(tmp_path / "bids", {"sub-01": {"T2w": 0.0, "T1w": 0.5}, "sub-02": {"T2w": 0.0, "T1w": 0.3}})
    bad = _corrupt(root, "nonbinary")
    proc = run_cli("-i", root, "--derivatives-out", tmp_path / "out", "--jobs", "2")
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert bad.name in proc.stderr


def test_empty_mask_is_left_out_with_a_warning(tmp_path):
    root = cylinder_bids(tmp_path / "bids", {"sub-01": {"T2w": 0.0, "T1w": 0.5, "T2starw": 0.0}})
    mask = root / "derivatives/labels/sub-01/anat/sub-01_T2starw_label-SC_seg.nii.gz"
    img = nib.load(str(mask))
    mask.unlink()
    nib.save(nib.Nifti1Image(np.zeros(img.shape, np.uint8), img.affine), str(mask))
    with pytest.warns(SoftGTWarning, match="empty"):
        report = convert(root, derivatives_out=tmp_path / "out")
    assert report.subjects[0].used == ["T1w", "T2w"]
    assert not soft_path(tmp_path / "out", "sub-01", "T2starw").exists()


def test_sessions_keep_their_folders(tmp_path):
    root = cylinder_bids(tmp_path / "bids", {"sub-01": {"T2w": 0.0, "T1w": 0.5}})
    for base in (root, root / "derivatives/labels"):
        src, dst = base / "sub-01/anat", base / "sub-01/ses-01/anat"
        dst.mkdir(parents=True)
        for f in sorted(src.iterdir()):
            f.rename(dst / f.name.replace("sub-01_", "sub-01_ses-01_"))
        src.rmdir()
    report = convert(root, derivatives_out=tmp_path / "out")
    assert [s.subject for s in report.subjects] == ["sub-01_ses-01"]
    assert report.subjects[0].used == ["T1w", "T2w"]
    assert (tmp_path / "out/labels_softseg/sub-01/ses-01/anat/sub-01_ses-01_T1w_label-SC_softseg.nii.gz").is_file()


def test_cli_reference_without_any_image_fails_and_writes_nothing(tiny, tmp_path):
    """A typo in --reference (no such contrast anywhere) is bad input: exit 2 naming what was looked for."""
    env = {**os.environ, "nnUNet_raw": str(tmp_path / "raw")}
    proc = run_cli(
        "-i",
        tiny,
        "--derivatives-out",
        tmp_path / "out",
        "--reference",
        "T9w",
        "--nnunet-dataset",
        "9",
        "--name",
        "Typo",
        env=env,
    )
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert "nothing to convert" in proc.stderr and "no T9w image with a cord mask" in proc.stderr
    assert "T1w, T2w" in proc.stderr  # what there is instead
    assert not (tmp_path / "out").exists() and not (tmp_path / "raw").exists()


@pytest.mark.parametrize("which", ["input", "derivatives_out", "nnunet_raw"])
def test_cli_file_where_a_folder_is_expected(tiny, tmp_path, which):
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder\n")
    inp, out, raw = tiny, tmp_path / "out", tmp_path / "raw"
    if which == "input":
        inp = a_file
    elif which == "derivatives_out":
        out = a_file
    else:
        raw = a_file
    proc = run_cli(
        "-i",
        inp,
        "--derivatives-out",
        out,
        "--nnunet-dataset",
        "9",
        "--name",
        "F",
        env={**os.environ, "nnUNet_raw": str(raw)},
    )
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert f"{a_file}: is a file, expected a" in proc.stderr and "not found" not in proc.stderr
    assert a_file.read_text() == "not a folder\n"
