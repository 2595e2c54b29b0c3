"""Whole-spine converters and relabelling: ``convert spineps`` (+ ``relabel`` round trips) and ``convert spider``.

Truth is computed independently: label values from the phantom / real SPINEPS masks compared voxel by voxel,
SPIDER geometry against SimpleITK's own index→point transform, instance ids written out by hand.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from nnunet_spine.core import bids
from nnunet_spine.core.dataset_json import INSTANCES_TR, LABEL_MAP_KEY, label_map_entry, read_label_map
from nnunet_spine.core.io import InputError, OutputExistsError
from nnunet_spine.core.labels import SEMANTIC_LABELS, VERSE_IDS, instance_name
from nnunet_spine.dataset_converters import spider, spineps
from nnunet_spine.postprocessing.spine.relabel import relabel, relabel_array


# ----------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def phantom(tmp_path_factory) -> Path:
    """Two-subject spine phantom (BIDS; masks in derivatives/labels). Tests copy it before changing it."""
    from nnunet_spine.phantoms.spine_dataset import write_spine_dataset

    root = tmp_path_factory.mktemp("spine_phantom") / "bids"
    write_spine_dataset(root, n_subjects=2, n_vertebrae=2, seed=3)
    return root


def _mask(root: Path, sub: str, kind: str = "spine") -> Path:
    return root / "derivatives" / "labels" / sub / "anat" / f"{sub}_T2w_seg-{kind}_msk.nii.gz"


def _nothing_written(raw_root: Path) -> bool:
    return not raw_root.exists() or not any(raw_root.iterdir())


def _cli(register, argv: list[str]):
    """Parse ``argv`` with a parser holding only ``register``'s subcommand and run it (exit codes come from
    ``nnspine``'s main, which turns InputError into exit 2)."""
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)


# ------------------------------------------------------------------------------------------ convert spineps
def test_spineps_labels_consecutive_mapping_stored_and_voxels_unchanged(phantom, tmp_path):
    report = spineps.convert(phantom, nnunet_dataset=511, name="SpineT", raw_root=tmp_path)
    folder = tmp_path / "Dataset511_SpineT"
    dj = json.loads((folder / "dataset.json").read_text())
    assert report.cases == ["sub-01_T2w", "sub-02_T2w"]  # BIDS stems
    present = sorted(
        set().union(
            *[set(np.unique(nib.load(_mask(phantom, s)).get_fdata()).astype(int)) for s in ("sub-01", "sub-02")]
        )
        - {0}
    )
    assert present == sorted(SEMANTIC_LABELS)  # the phantom holds all 14 structures
    # consecutive labels in SPINEPS value order, named after SPINEPS, mapping under its own key
    assert list(dj["labels"].values()) == list(range(len(present) + 1))
    values = {int(k): v for k, v in dj[LABEL_MAP_KEY]["values"].items()}
    assert dj[LABEL_MAP_KEY]["convention"] == "spineps"
    assert [values[k] for k in range(1, len(present) + 1)] == present
    for name, k in dj["labels"].items():
        if k:
            assert SEMANTIC_LABELS[values[k]] == name
    for sub in ("sub-01", "sub-02"):
        src = nib.load(_mask(phantom, sub))
        lab = nib.load(folder / "labelsTr" / f"{sub}_T2w.nii.gz")
        s, t = np.asarray(src.dataobj), np.asarray(lab.dataobj)
        for k, v in values.items():  # every voxel of SPINEPS value v carries nnU-Net label k, and only those
            assert np.array_equal(t == k, s == v)
        img_src = nib.load(phantom / sub / "anat" / f"{sub}_T2w.nii.gz")
        img = nib.load(folder / "imagesTr" / f"{sub}_T2w_0000.nii.gz")
        assert np.array_equal(np.asarray(img.dataobj), np.asarray(img_src.dataobj))
        assert np.allclose(img.affine, img_src.affine) and nib.aff2axcodes(img.affine) == ("P", "I", "R")
        assert np.allclose(lab.affine, img_src.affine)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Dataset511_SpineT"]  # no staging leftovers


def test_spineps_round_trip_relabel_gives_the_original_exactly(phantom, tmp_path):
    spineps.convert(phantom, nnunet_dataset=512, name="RoundTrip", raw_root=tmp_path / "raw")
    folder = tmp_path / "raw" / "Dataset512_RoundTrip"
    relabel(folder / "labelsTr", tmp_path / "back", folder / "dataset.json")
    for sub in ("sub-01", "sub-02"):
        orig = nib.load(_mask(phantom, sub))
        back = nib.load(tmp_path / "back" / f"{sub}_T2w.nii.gz")
        assert np.array_equal(np.asarray(back.dataobj), np.asarray(orig.dataobj))
        assert np.asarray(back.dataobj).dtype == np.uint8
        assert np.allclose(back.affine, orig.affine, atol=1e-5) and back.shape == orig.shape


def test_spineps2_labels_round_trip_exactly(phantom, tmp_path):
    """SPINEPS 2.x masks (body core 50, dens 51, endplates split 52/53) convert and relabel back exactly:
    each extended label is a class of its own, named as TPTBox's Location names it."""
    root = Path(shutil.copytree(phantom, tmp_path / "bids"))
    for sub in ("sub-01", "sub-02"):
        p = _mask(root, sub)
        img = nib.load(p)
        data = np.asarray(img.dataobj).copy()
        ep = np.argwhere(data == 62)
        half = ep[:, 1] < np.median(ep[:, 1])
        data[tuple(ep[half].T)] = 52
        data[tuple(ep[~half].T)] = 53
        body = np.argwhere(data == 49)
        data[tuple(body[: len(body) // 3].T)] = 50
        data[tuple(body[len(body) // 3 : len(body) // 3 + 20].T)] = 51
        p.unlink()
        nib.save(nib.Nifti1Image(data, img.affine, img.header), p)
    spineps.convert(root, nnunet_dataset=519, name="Spineps2", raw_root=tmp_path / "raw")
    folder = tmp_path / "raw" / "Dataset519_Spineps2"
    labels = json.loads((folder / "dataset.json").read_text())["labels"]
    assert {"Vertebra_Corpus", "Dens_axis", "Vertebral_Body_Endplate_Superior"} <= set(labels)
    relabel(folder / "labelsTr", tmp_path / "back", folder / "dataset.json")
    for sub in ("sub-01", "sub-02"):
        orig = np.asarray(nib.load(_mask(root, sub)).dataobj)
        back = np.asarray(nib.load(tmp_path / "back" / f"{sub}_T2w.nii.gz").dataobj)
        assert {50, 51, 52, 53} <= set(np.unique(orig).tolist()) and np.array_equal(back, orig)


def test_spineps_round_trip_on_real_tptbox_masks_side_by_side(shared_data, tmp_path):
    src = shared_data / "tptbox_sample_mri"  # flat folder, TPTBox naming sub-mri_seg-subreg_label-6_msk
    report = spineps.convert(src, nnunet_dataset=513, name="Tpt", raw_root=tmp_path / "raw")
    assert report.cases == ["sub-mri_label-6_T2w"]
    assert 26 not in report.values.values() and len(report.values) == 14  # 13 structures + background
    folder = Path(report.nnunet_dataset)
    out = relabel(folder / "labelsTr" / "sub-mri_label-6_T2w.nii.gz", tmp_path / "back.nii.gz", folder)
    assert len(out.files) == 1
    orig = nib.load(src / "sub-mri_seg-subreg_label-6_msk.nii.gz")
    back = nib.load(tmp_path / "back.nii.gz")
    assert np.array_equal(np.asarray(back.dataobj), np.asarray(orig.dataobj))
    assert np.allclose(back.affine, orig.affine, atol=1e-3)


def test_spineps_native_naming_multichannel_and_missing_masks(phantom, tmp_path):
    root = tmp_path / "bids"
    shutil.copytree(phantom, root)
    # sub-01: SPINEPS' own naming with mod-T2w; a T1w channel beside the T2w; sub-02: no semantic mask
    d = root / "derivatives" / "labels" / "sub-01" / "anat"
    _mask(root, "sub-01").rename(d / "sub-01_mod-T2w_seg-spine_msk.nii.gz")
    _mask(root, "sub-02").unlink()
    for sub in ("sub-01", "sub-02"):
        shutil.copy(root / sub / "anat" / f"{sub}_T2w.nii.gz", root / sub / "anat" / f"{sub}_T1w.nii.gz")
    report = spineps.convert(root, nnunet_dataset=514, name="Multi", channels=["T2w", "T1w"], raw_root=tmp_path / "raw")
    assert report.cases == ["sub-01_T2w"]
    assert any("sub-02_T2w" in w and "no SPINEPS semantic mask" in w for w in report.warnings)
    folder = Path(report.nnunet_dataset)
    assert sorted(p.name for p in (folder / "imagesTr").iterdir()) == [
        "sub-01_T2w_0000.nii.gz",
        "sub-01_T2w_0001.nii.gz",
    ]
    assert json.loads((folder / "dataset.json").read_text())["channel_names"] == {"0": "T2w", "1": "T1w"}


def test_bids_spineps_mask_names():
    image = bids.parse_name("sub-01_acq-sag_T2w")
    ok = [
        "sub-01_acq-sag_T2w_seg-spine_msk",
        "sub-01_acq-sag_seg-spine_msk",
        "sub-01_acq-sag_mod-T2w_seg-spine_msk",
        "sub-01_acq-sag_seg-subreg_msk",
    ]
    no = [
        "sub-01_acq-sag_seg-vert_msk",
        "sub-01_acq-sag_mod-T1w_seg-spine_msk",
        "sub-01_seg-spine_msk",
        "sub-02_acq-sag_seg-spine_msk",
        "sub-01_acq-sag_T2w_seg-spine_dseg",
    ]
    for name in ok:
        assert bids.is_spineps_mask_of(bids.parse_name(name), image), name
    for name in no:
        assert not bids.is_spineps_mask_of(bids.parse_name(name), image), name


@pytest.mark.parametrize(
    "defect, message",
    [
        ("instance", "looks like an instance mask"),
        ("values", "not SPINEPS semantic labels"),
        ("grid", "affine differs"),
    ],
)
def test_spineps_bad_masks_are_named_and_nothing_is_written(phantom, tmp_path, monkeypatch, defect, message):
    root = tmp_path / "bids"
    shutil.copytree(phantom, root)
    bad = _mask(root, "sub-02")
    img = nib.load(bad)
    data, affine = np.asarray(img.dataobj).copy(), img.affine.copy()
    if defect == "instance":
        data = np.asarray(nib.load(_mask(root, "sub-02", "vert")).dataobj)
    elif defect == "values":
        data[data == 41] = 3
    else:
        affine[:3, 3] += 0.5  # half a millimetre off
    bad.unlink()
    nib.save(nib.Nifti1Image(data, affine), str(bad))
    with pytest.raises(InputError, match=message) as err:
        spineps.convert(root, nnunet_dataset=515, name="Bad", raw_root=tmp_path / "raw")
    assert str(bad) in str(err.value) and "\n" not in str(err.value)
    assert _nothing_written(tmp_path / "raw")
    # the same through the CLI function
    from nnunet_spine.cli.convert_spine import register_spineps

    monkeypatch.setenv("nnUNet_raw", str(tmp_path / "raw"))
    with pytest.raises(InputError, match=message):
        _cli(register_spineps, ["spineps", "-i", str(root), "--nnunet-dataset", "515", "--name", "Bad", "-q"])
    assert _nothing_written(tmp_path / "raw")


def test_spineps_refuses_existing_dataset_and_overwrite_keeps_other_folders(phantom, tmp_path, monkeypatch):
    from nnunet_spine.cli.convert_spine import register_spineps

    monkeypatch.setenv("nnUNet_raw", str(tmp_path / "raw"))
    argv = ["spineps", "-i", str(phantom), "--nnunet-dataset", "516", "--name", "Again", "-q"]
    assert _cli(register_spineps, argv) == 0
    folder = tmp_path / "raw" / "Dataset516_Again"
    (folder / "imagesTs").mkdir()
    (folder / "imagesTs" / "keep.nii.gz").write_bytes(b"x")
    (folder / "labelsTr" / "stale.nii.gz").write_bytes(b"x")
    with pytest.raises(OutputExistsError):
        _cli(register_spineps, argv)
    assert _cli(register_spineps, argv + ["--overwrite"]) == 0
    assert (folder / "imagesTs" / "keep.nii.gz").exists()  # not ours: kept
    assert sorted(p.name for p in (folder / "labelsTr").iterdir()) == ["sub-01_T2w.nii.gz", "sub-02_T2w.nii.gz"]
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == ["Dataset516_Again"]


# ------------------------------------------------------------------------------------------------- relabel
def test_relabel_array_by_hand():
    pred = np.array([[[0, 1, 2], [3, 3, 0]]], np.uint8)
    out = relabel_array(pred, {0: 0, 1: 41, 2: 100, 3: 26})
    assert out.tolist() == [[[0, 41, 100], [26, 26, 0]]] and out.dtype == np.uint8
    with pytest.raises(ValueError, match=r"\[3\]"):
        relabel_array(pred, {0: 0, 1: 41, 2: 100})


def test_relabel_keeps_header_and_checks_inputs(phantom, tmp_path, monkeypatch):
    spineps.convert(phantom, nnunet_dataset=517, name="Hdr", raw_root=tmp_path / "raw")
    monkeypatch.setenv("nnUNet_raw", str(tmp_path / "raw"))
    folder = tmp_path / "raw" / "Dataset517_Hdr"
    # a prediction written by SimpleITK, like nnU-Net's (its header, not nibabel's)
    import SimpleITK as sitk

    lab = sitk.ReadImage(str(folder / "labelsTr" / "sub-01_T2w.nii.gz"))
    pred_dir = tmp_path / "pred"
    pred_dir.mkdir()
    sitk.WriteImage(lab, str(pred_dir / "sub-01_T2w.nii.gz"), True)
    (pred_dir / "plans.json").write_text("{}")  # other files of a prediction folder are ignored
    report = relabel(pred_dir, tmp_path / "out", "517")  # dataset by id through nnUNet_raw
    assert report.dataset_json == str(folder / "dataset.json")
    a, b = nib.load(pred_dir / "sub-01_T2w.nii.gz"), nib.load(tmp_path / "out" / "sub-01_T2w.nii.gz")
    for key in (
        "dim",
        "pixdim",
        "qform_code",
        "sform_code",
        "quatern_b",
        "quatern_c",
        "quatern_d",
        "qoffset_x",
        "qoffset_y",
        "qoffset_z",
        "srow_x",
        "srow_y",
        "srow_z",
        "xyzt_units",
    ):
        assert np.array_equal(a.header[key], b.header[key]), key
    assert np.array_equal(np.asarray(b.dataobj), np.asarray(nib.load(_mask(phantom, "sub-01")).dataobj))
    with pytest.raises(OutputExistsError):
        relabel(pred_dir, tmp_path / "out", "517")
    # a label the model cannot have produced: named, nothing written
    nib.save(nib.Nifti1Image(np.full((3, 3, 3), 15, np.uint8), np.eye(4)), str(pred_dir / "sub-09_T2w.nii.gz"))
    with pytest.raises(InputError, match=r"sub-09_T2w.nii.gz: labels \[15\]"):
        relabel(pred_dir, tmp_path / "out2", folder)
    assert not (tmp_path / "out2").exists()
    with pytest.raises(InputError, match="nnspine_label_map"):
        (tmp_path / "plain.json").write_text(json.dumps({"labels": {"background": 0, "a": 1}}))
        relabel(pred_dir / "sub-01_T2w.nii.gz", tmp_path / "x.nii.gz", tmp_path / "plain.json")


def test_relabel_cli_exit_codes(phantom, tmp_path):
    from nnunet_spine.cli import main

    spineps.convert(phantom, nnunet_dataset=518, name="Cli", raw_root=tmp_path / "raw")
    folder = tmp_path / "raw" / "Dataset518_Cli"
    pred = folder / "labelsTr" / "sub-02_T2w.nii.gz"
    assert main(["relabel", "-i", str(pred), "-o", str(tmp_path / "o.nii.gz"), "--dataset", str(folder), "-q"]) == 0
    assert main(["relabel", "-i", str(pred), "-o", str(tmp_path / "o.nii.gz"), "--dataset", str(folder)]) == 2
    assert (
        main(
            ["relabel", "-i", str(tmp_path / "nope.nii.gz"), "-o", str(tmp_path / "p.nii.gz"), "--dataset", str(folder)]
        )
        == 2
    )
    assert not (tmp_path / "p.nii.gz").exists()


# -------------------------------------------------------------------------------------------- convert spider
#: A tiny SPIDER-like mask (x, y, z index order of SimpleITK): vertebrae 1-3 from the bottom (z index grows
#: upwards), a partially visible vertebra 104 at the top, discs 201-203 below vertebrae 1-3, canal 100 behind.
def _spider_mask() -> np.ndarray:
    m = np.zeros((12, 10, 40), np.uint8)  # x (R-L) 12, y (A-P) 10, z (S-I) 40
    bottoms = {1: 2, 2: 12, 3: 22, 104: 32}
    for v, z0 in bottoms.items():
        m[2:10, 1:6, z0 : z0 + 7] = v
        if v < 100:
            m[2:10, 1:6, z0 + 7 : z0 + 10] = 200 + v  # the disc above vertebra v is numbered like v
    m[4:8, 7:9, :] = 100  # canal
    return m


def _write_spider(root: Path, stems=("1_t2", "1_t1", "2_t2")) -> dict:
    import SimpleITK as sitk

    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir(parents=True)
    mask = _spider_mask()
    rng = np.random.default_rng(0)
    written = {}
    for n, stem in enumerate(stems):
        img_arr = rng.normal(100, 10, mask.shape).astype(np.float32) + mask
        for arr, folder in ((img_arr, "images"), (mask, "masks")):
            im = sitk.GetImageFromArray(np.transpose(arr, (2, 1, 0)))  # sitk arrays are (z, y, x)
            im.SetSpacing((3.3, 0.6 + 0.1 * n, 0.6))
            im.SetOrigin((10.0, -20.0, 35.0 + n))
            # x index towards the subject's right (LPS -x), y towards posterior, z towards superior: RPS
            im.SetDirection((-1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
            sitk.WriteImage(im, str(root / folder / f"{stem}.mha"))
        written[stem] = img_arr
    return written


def test_spider_semantic_geometry_and_labels(tmp_path):
    import SimpleITK as sitk

    images = _write_spider(tmp_path / "SPIDER")
    report = spider.convert(tmp_path / "SPIDER", nnunet_dataset=521, name="Spider", raw_root=tmp_path / "raw")
    folder = Path(report.nnunet_dataset)
    assert report.cases == ["1_t1", "1_t2", "2_t2"]
    assert json.loads((folder / "dataset.json").read_text())["labels"] == {
        "background": 0,
        "vertebra": 1,
        "disc": 2,
        "canal": 3,
    }
    m = _spider_mask()
    expected = np.zeros_like(m)
    expected[(m >= 1) & (m <= 25)] = 1  # partial vertebra 104 -> background without --keep-partial
    expected[m >= 201] = 2
    expected[m == 100] = 3
    for stem in report.cases:
        lab = nib.load(folder / "labelsTr" / f"{stem}.nii.gz")
        assert np.array_equal(np.asarray(lab.dataobj), expected)
        img = nib.load(folder / "imagesTr" / f"{stem}_0000.nii.gz")
        assert np.allclose(np.asarray(img.dataobj), images[stem])
        # geometry: the NIfTI (RAS) voxel centres are SimpleITK's (LPS) points with x, y negated
        ref = sitk.ReadImage(str(tmp_path / "SPIDER" / "images" / f"{stem}.mha"))
        for idx in [(0, 0, 0), (11, 9, 39), (3, 7, 20)]:
            lps = np.array(ref.TransformIndexToPhysicalPoint(idx))
            ras = img.affine @ np.array([*idx, 1.0])
            assert np.allclose(ras[:3], lps * [-1, -1, 1], atol=1e-4)
    assert nib.aff2axcodes(img.affine) == ("R", "P", "S")
    # --keep-partial: the partial vertebra becomes vertebra
    spider.convert(
        tmp_path / "SPIDER",
        nnunet_dataset=522,
        name="SpiderP",
        keep_partial=True,
        sequences=["t2"],
        raw_root=tmp_path / "raw",
    )
    lab = np.asarray(nib.load(tmp_path / "raw" / "Dataset522_SpiderP" / "labelsTr" / "1_t2.nii.gz").dataobj)
    assert np.array_equal(lab == 1, ((m >= 1) & (m <= 25)) | (m == 104))
    assert sorted(p.name for p in (tmp_path / "raw" / "Dataset522_SpiderP" / "labelsTr").iterdir()) == [
        "1_t2.nii.gz",
        "2_t2.nii.gz",
    ]


def test_spider_instances_top_down_and_verse(tmp_path):
    _write_spider(tmp_path / "SPIDER", stems=("1_t2",))
    m = _spider_mask()
    # top-down: highest vertebra number present is 4 (the partial 104) -> id 1; 3 -> 2; 2 -> 3; 1 -> 4
    r = spider.convert(tmp_path / "SPIDER", nnunet_dataset=523, name="Top", instances=True, raw_root=tmp_path / "raw")
    ins = np.asarray(nib.load(Path(r.nnunet_dataset) / INSTANCES_TR / "1_t2.nii.gz").dataobj)
    by_hand = {0: 0, 100: 0, 1: 4, 2: 3, 3: 2, 104: 0, 201: 104, 202: 103, 203: 102}
    assert np.array_equal(ins, np.vectorize(by_hand.get)(m))
    # VerSe ids with SPIDER's 1 = L5 (24): 2 = L4 (23), 3 = L3 (22), partial 4 = L2 (21) kept with --keep-partial
    r = spider.convert(
        tmp_path / "SPIDER",
        nnunet_dataset=524,
        name="Verse",
        instances=True,
        lowest="L5",
        keep_partial=True,
        raw_root=tmp_path / "raw",
    )
    ins = np.asarray(nib.load(Path(r.nnunet_dataset) / INSTANCES_TR / "1_t2.nii.gz").dataobj)
    by_hand = {0: 0, 100: 0, 1: 24, 2: 23, 3: 22, 104: 21, 201: 124, 202: 123, 203: 122}
    assert np.array_equal(ins, np.vectorize(by_hand.get)(m))
    sem = np.asarray(nib.load(Path(r.nnunet_dataset) / "labelsTr" / "1_t2.nii.gz").dataobj)
    vert_ids = [VERSE_IDS[n] for n in ("L2", "L3", "L4", "L5")]
    assert np.array_equal(np.isin(ins, vert_ids), sem == 1)  # the two masks agree
    assert np.array_equal(ins > 100, sem == 2)
    assert [instance_name(v) for v in (124, 122)] == ["L5-S1 disc", "L3-L4 disc"]
    assert spider.verse_ids_upwards(VERSE_IDS["L6"], 3) == [25, 24, 23]


@pytest.mark.parametrize(
    "change, kwargs, message",
    [
        ("semantic", {}, "looks like a SPINEPS semantic mask"),
        ("grid", {}, "grid"),
        (None, {"lowest": "L5"}, "with --instances"),
        (None, {"lowest": "S1", "instances": True}, "mobile vertebra"),
        (None, {"lowest": "C2", "instances": True}, "run past C1"),
    ],
)
def test_spider_bad_input(tmp_path, change, kwargs, message):
    import SimpleITK as sitk

    _write_spider(tmp_path / "SPIDER", stems=("1_t2", "2_t2"))
    bad = tmp_path / "SPIDER" / "masks" / "2_t2.mha"
    if change == "semantic":
        im = sitk.ReadImage(str(bad))
        arr = sitk.GetArrayFromImage(im)
        lut = np.zeros(256, np.uint8)
        lut[[1, 2, 3, 104]] = 49  # vertebrae -> body, canal -> 61, discs -> 100: a SPINEPS semantic mask
        lut[100], lut[201:204] = 61, 100
        new = sitk.GetImageFromArray(lut[arr])
        new.CopyInformation(im)
        sitk.WriteImage(new, str(bad))
    elif change == "grid":
        im = sitk.ReadImage(str(bad))
        sitk.WriteImage(im[:, :, 1:], str(bad))
    with pytest.raises(InputError, match=message):
        spider.convert(tmp_path / "SPIDER", nnunet_dataset=525, name="Bad", raw_root=tmp_path / "raw", **kwargs)
    assert _nothing_written(tmp_path / "raw")


def test_spider_cli(tmp_path, monkeypatch):
    from nnunet_spine.cli.convert_spine import register_spider

    _write_spider(tmp_path / "SPIDER", stems=("3_t2",))
    monkeypatch.setenv("nnUNet_raw", str(tmp_path / "raw"))
    argv = [
        "spider",
        "-i",
        str(tmp_path / "SPIDER"),
        "--nnunet-dataset",
        "526",
        "--name",
        "S",
        "--instances",
        "--lowest",
        "L5",
        "-q",
    ]
    assert _cli(register_spider, argv) == 0
    dj = json.loads((tmp_path / "raw" / "Dataset526_S" / "dataset.json").read_text())
    assert dj["numTraining"] == 1 and dj["nnspine_spider"]["instances"] == "VerSe ids, lowest L5"
    with pytest.raises(InputError, match="SPIDER folder not found"):
        _cli(register_spider, ["spider", "-i", str(tmp_path / "none"), "--nnunet-dataset", "527", "--name", "T"])


def test_failure_while_writing_leaves_existing_dataset_untouched(phantom, tmp_path):
    """An image that only fails when written (NaN voxels) stops the conversion: no staging folder is left and an
    existing dataset, even with overwrite, keeps its files (all-or-nothing writes)."""
    spineps.convert(phantom, nnunet_dataset=519, name="Keep", raw_root=tmp_path / "raw")
    folder = tmp_path / "raw" / "Dataset519_Keep"
    before = {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    root = tmp_path / "bids"
    shutil.copytree(phantom, root)
    image = root / "sub-02" / "anat" / "sub-02_T2w.nii.gz"
    img = nib.load(image)
    data = np.asarray(img.dataobj).astype(np.float32)
    data[0, 0, 0] = np.nan
    nib.save(nib.Nifti1Image(data, img.affine), str(image))
    with pytest.raises(InputError, match="NaN"):
        spineps.convert(root, nnunet_dataset=519, name="Keep", raw_root=tmp_path / "raw", overwrite=True)
    after = {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    assert after == before
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == ["Dataset519_Keep"]


def test_read_label_map_checks():
    dj = {"labels": {"background": 0, "a": 1, "b": 2}, LABEL_MAP_KEY: label_map_entry("spineps", {0: 0, 1: 41, 2: 100})}
    assert read_label_map(dj, "spineps") == {0: 0, 1: 41, 2: 100}
    with pytest.raises(InputError, match="'spineps' convention, not 'other'"):
        read_label_map(dj, "other")
    dj["labels"]["c"] = 3
    with pytest.raises(InputError, match=r"labels \[3\] have no entry"):
        read_label_map(dj, "spineps")
