"""``nnspine csa`` / ``nnunet_spine.postprocessing.cord.csa``: accuracy against phantom truth and SCT, levels, CLI
behaviour."""

from __future__ import annotations

import csv
import functools
import math
import re
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nnunet_spine.core.geometry import axcodes, reorient
from nnunet_spine.core.io import Image, InputError, load_image, save_image
from nnunet_spine.phantoms.cord import (
    CordModel,
    default_cervical_model,
    disc_points,
    level_map,
    render_fraction,
)
from nnunet_spine.postprocessing.cord import csa, csa_table
from nnunet_spine.postprocessing.cord.centreline import fit_centreline
from nnunet_spine.postprocessing.cord.levels import assign_slice_levels

ISO = (0.8, 0.8, 0.8)
ANISO = (0.5, 0.5, 3.0)
#: (tilt_rl_deg, tilt_ap_deg): straight, split tilts, and 30° in total (22.2° + 22.2°).
TILTS = [(0.0, 0.0), (-10.0, 15.0), (0.0, 30.0), (22.2, 22.2)]


# ============================================================================================ helpers
def _grid(model: CordModel, zooms, z_range=(-30.0, 30.0), margin_mm=3.5):
    """A nibabel-LAS (SCT RPI) grid whose in-plane field of view holds the whole cord at every height."""
    dx, dy, dz = zooms
    nz = int(round((z_range[1] - z_range[0]) / dz))
    z = z_range[0] + dz / 2 + np.arange(nz) * dz
    c = model.centre(z)
    half = max(model.semi_axes(z)[0].max(), model.semi_axes(z)[1].max()) + margin_mm
    x_lo, x_hi = c[:, 0].min() - half, c[:, 0].max() + half
    y_lo, y_hi = c[:, 1].min() - half, c[:, 1].max() + half
    shape = (int(math.ceil((x_hi - x_lo) / dx)) + 1, int(math.ceil((y_hi - y_lo) / dy)) + 1, nz)
    affine = np.diag([-dx, dy, dz, 1.0])
    affine[:3, 3] = [x_hi, y_lo, z[0]]
    return shape, affine


@functools.cache
def _tilted(tilt, zooms):
    model = CordModel(tilt_rl_deg=tilt[0], tilt_ap_deg=tilt[1])
    shape, affine = _grid(model, zooms)
    return model, render_fraction(model, shape, affine), affine


@functools.cache
def _cervical():
    """Default cervical phantom (curved, 10° AP tilt, C5 enlargement, discs 2-7), 0.8 mm iso."""
    model = default_cervical_model()
    shape, affine = _grid(model, ISO, z_range=(14.0, 122.0))
    frac = render_fraction(model, shape, affine)
    levels = level_map(model, shape, affine, frac > 0)
    discs = disc_points(model, shape, affine)
    return model, frac, levels, discs, affine


def _relerr(df, model):
    return np.abs(df["area"].to_numpy() / model.area(df["z_mm"].to_numpy()) - 1.0)


def _nnspine(*args, cwd=None):
    return subprocess.run(["nnspine", "csa", *map(str, args)], capture_output=True, text=True, cwd=cwd)


def _ellipse_mask(shape=(24, 24, 12), a=6.0, b=4.0, value=1.0, dtype=np.float32):
    i, j = np.meshgrid(np.arange(shape[0]) - shape[0] / 2, np.arange(shape[1]) - shape[1] / 2, indexing="ij")
    disc = ((i / a) ** 2 + (j / b) ** 2 <= 1).astype(dtype) * value
    return np.repeat(disc[:, :, None], shape[2], axis=2)


def _save_mask(path, data, zooms=(1.0, 1.0, 1.0)):
    return save_image(np.asarray(data), np.diag([-zooms[0], zooms[1], zooms[2], 1.0]), path)


# ============================================================================================ phantom accuracy
@pytest.mark.parametrize("zooms", [ISO, ANISO], ids=["iso0.8", "0.5x0.5x3"])
@pytest.mark.parametrize("tilt", TILTS, ids=[f"rl{t[0]:g}_ap{t[1]:g}" for t in TILTS])
def test_soft_phantom_area_matches_truth(tilt, zooms):
    model, frac, affine = _tilted(tilt, zooms)
    df = csa.compute_csa(Image(frac, affine))
    err = _relerr(df, model)
    end = 3 if zooms[2] < 1 else 2  # first/last slices: centreline least determined
    assert np.median(err) < 0.002, f"median error {np.median(err):.4%}"
    assert err[end:-end].max() < 0.006, f"worst interior error {err[end:-end].max():.4%}"


@pytest.mark.parametrize("zooms", [ISO, ANISO], ids=["iso0.8", "0.5x0.5x3"])
@pytest.mark.parametrize("tilt", TILTS[1:], ids=[f"rl{t[0]:g}_ap{t[1]:g}" for t in TILTS[1:]])
def test_angles_length_and_shape_match_phantom(tilt, zooms):
    model, frac, affine = _tilted(tilt, zooms)
    df = csa.compute_csa(Image(frac, affine))
    sagittal, coronal = model.angles_deg(df["z_mm"].to_numpy())
    # SCT's names: angle_RL = rotation about R-L (sagittal inclination, + anterior going up);
    # angle_AP = rotation about A-P (coronal inclination, + toward the subject's left going up = -RAS x).
    np.testing.assert_allclose(df["angle_RL"], sagittal, atol=0.1)
    np.testing.assert_allclose(df["angle_AP"], -coronal, atol=0.1)
    t = model.tangent(df["z_mm"].to_numpy())
    np.testing.assert_allclose(df["length"], zooms[2] * np.linalg.norm(t, axis=1), rtol=1e-3)
    a, b = model.a0, model.b0
    u = np.linspace(-csa.AP_BAND_MM / 2, csa.AP_BAND_MM / 2, 20001)
    band_ap = float(np.mean(2 * b * np.sqrt(1 - (u / a) ** 2)))  # SCT's diameter_AP of an ellipse
    assert np.median(np.abs(df["diameter_RL"] / (2 * a) - 1)) < 0.01
    assert np.median(np.abs(df["diameter_AP_ellipse"] / (2 * b) - 1)) < 0.01
    assert np.median(np.abs(df["diameter_AP"] / band_ap - 1)) < 0.01
    for half in ("length_anterior", "length_posterior"):  # a centred ellipse: half the band's extent each
        assert np.median(np.abs(df[half] / (band_ap / 2) - 1)) < 0.01, half
    assert np.median(np.abs(df["eccentricity"] - math.sqrt(1 - (b / a) ** 2))) < 0.01
    assert np.abs(df["orientation"]).max() < 1.0
    assert df["solidity"].between(0.97, 1.0).all()


def test_no_angle_correction_reports_slice_area():
    model, frac, affine = _tilted((0.0, 30.0), ISO)
    df = csa.compute_csa(Image(frac, affine), angle_correction=False)
    assert (df["angle_AP"] == 0).all() and (df["angle_RL"] == 0).all()
    np.testing.assert_allclose(df["length"], ISO[2])
    truth = model.area(df["z_mm"].to_numpy()) / math.cos(math.radians(30.0))  # oblique cut of the tube
    assert np.median(np.abs(df["area"] / truth - 1)) < 0.002


def test_anterior_posterior_lengths_of_an_egg():
    """Two half-ellipses (semi-axes a across, b_ant in front, b_post behind) glued at y = 0: the centre of
    mass lies 4 (b_ant - b_post) / (3 pi) in front of the seam, and over the 3 mm band each length is the
    mean extent on its side of the centre."""
    a, b_ant, b_post, h = 6.0, 5.0, 3.0, 0.1  # mm; 0.1 mm voxels, 20 subsamples per voxel in-plane
    n, sub = 160, 20
    x = (np.arange(n * sub) + 0.5) / sub * h - n * h / 2
    xx, yy = np.meshgrid(x, x, indexing="ij")
    b = np.where(yy >= 0, b_ant, b_post)
    inside = ((xx / a) ** 2 + (yy / b) ** 2 <= 1).reshape(n, sub, n, sub).mean(axis=(1, 3))
    data = np.repeat(inside[:, :, None].astype(np.float32), 6, axis=2)
    affine = np.diag([-h, h, 1.0, 1.0])  # RPI: axis 1 runs P→A
    df = csa.compute_csa(Image(data, affine))
    y_c = 4 * (b_ant - b_post) / (3 * math.pi)
    u = np.linspace(-csa.AP_BAND_MM / 2, csa.AP_BAND_MM / 2, 20001)
    root = np.sqrt(1 - (u / a) ** 2)
    np.testing.assert_allclose(df["length_anterior"], np.mean(b_ant * root) - y_c, rtol=2e-3)
    np.testing.assert_allclose(df["length_posterior"], np.mean(b_post * root) + y_c, rtol=2e-3)
    np.testing.assert_allclose(df["length_anterior"] + df["length_posterior"], df["diameter_AP"], rtol=1e-12)


def test_threshold_binarizes_first():
    model, frac, affine = _tilted((0.0, 0.0), ISO)
    soft = csa.compute_csa(Image(frac, affine))
    binary = csa.compute_csa(Image(frac, affine), threshold=0.5)
    same = csa.compute_csa(Image((frac >= 0.5).astype(np.float32), affine))
    pd.testing.assert_frame_equal(binary, same)
    assert not np.allclose(binary["area"], soft["area"])
    assert np.median(_relerr(binary, model)) < 0.03  # a binarized ellipse is a few % off at 0.8 mm
    with pytest.raises(InputError, match="threshold"):
        csa.compute_csa(Image(frac * 0.4, affine), threshold=0.5)


@pytest.mark.parametrize("codes", [("L", "A", "S"), ("P", "S", "R"), ("R", "A", "S"), ("P", "I", "R"), ("I", "R", "P")])
def test_same_numbers_in_any_orientation(tmp_path, codes):
    _, frac, levels, discs, affine = _cervical()
    files = {}
    for name, data in (("seg", frac), ("levels", levels), ("discs", discs)):
        save_image(data, affine, tmp_path / f"{name}_las.nii.gz")  # reference, as written to disk
        out, out_aff = reorient(data, affine, codes)
        files[name] = save_image(out, out_aff, tmp_path / f"{name}.nii.gz")
    assert axcodes(load_image(files["seg"]).affine) == codes
    ref = csa.measure_file(tmp_path / "seg_las.nii.gz", vertfile=tmp_path / "levels_las.nii.gz")
    df = csa.measure_file(files["seg"], vertfile=files["levels"])
    # NIfTI keeps the affine in float32, so the scanner z of a flipped grid's origin moves by ~1e-6 mm.
    np.testing.assert_allclose(df["z_mm"], ref["z_mm"], atol=1e-4)
    pd.testing.assert_frame_equal(
        df.drop(columns="z_mm"), ref.drop(columns="z_mm"), check_exact=False, rtol=1e-12, atol=1e-12
    )
    via_discs = csa.measure_file(files["seg"], discfile=files["discs"])
    ref_discs = csa.measure_file(tmp_path / "seg_las.nii.gz", discfile=tmp_path / "discs_las.nii.gz")
    np.testing.assert_array_equal(via_discs["level"], ref_discs["level"])


def test_discfile_levels_match_level_map_truth():
    model, frac, levels, discs, affine = _cervical()
    from_discs = csa.compute_csa(Image(frac, affine), discs=Image(discs, affine))
    from_map = csa.compute_csa(Image(frac, affine), levels=Image(levels, affine))
    a, b = from_discs["level"].to_numpy(), from_map["level"].to_numpy()
    # SCT's rule also labels the cord above the top disc (top - 1) and below the lowest disc (its value):
    # compare on the slices the level map labels
    a = np.where(b > 0, a, 0)
    assert set(np.unique(a[a > 0])) >= {2, 3, 4, 5, 6}
    differ = np.flatnonzero(a != b)
    boundaries = np.flatnonzero(np.diff(b) != 0)  # last slice before each change in the truth
    for k in differ:  # only right at a level boundary, and by one slice at most
        assert np.min(np.abs(boundaries + 0.5 - k)) <= 1.5, f"slice {k}: {a[k]} vs truth {b[k]}"
    assert len(differ) <= len(boundaries)
    per_level = csa_table.summarize(from_discs, per="level", vert=[2, 3, 4, 5, 6]).set_index("VertLevel")
    for level, area in model.level_truth().items():
        if str(level) in per_level.index:
            assert abs(per_level.loc[str(level), "MEAN(area)"] / area - 1) < 0.005


# ============================================================================================ levels & aggregation
def test_slice_level_rule_majority_and_discs():
    weights = np.zeros((4, 4, 5))
    weights[1:3, 1:3, :] = 1.0
    lv = np.zeros((4, 4, 5), int)
    lv[1:3, 1:3, :] = 3
    lv[1, 1, 2] = 4  # 1 of 4 cord voxels in slice 2
    lv[1:3, 1:3, 4] = [[4, 4], [4, 3]]
    lv[0, 0, 0] = 9  # a label outside the cord does not vote while cord voxels carry one
    lv[1:3, 1:3, 3] = 0
    lv[3, 3, 3] = 5  # slice 3: cord carries no label → the slice's labelled voxels decide
    np.testing.assert_array_equal(assign_slice_levels(weights, level_data=lv), [3, 3, 3, 5, 4])

    discs = np.zeros((4, 4, 12), int)
    discs[2, 2, 10] = 2
    discs[2, 2, 6] = 3
    discs[2, 2, 0] = 5  # disc 4 missing: placed halfway, at slice 3
    cord = np.zeros((4, 4, 12))
    cord[1, 1, :] = 1.0  # a straight cord: each disc goes to its own slice (SCT's projection)
    got = assign_slice_levels(cord, disc_data=discs, zooms_mm=(1.0, 1.0, 1.0))
    # SCT's rule: no interpolation of disc 4 (its slices take level 3), below the lowest disc its value,
    # above the top disc its value - 1
    np.testing.assert_array_equal(got, [5, 3, 3, 3, 3, 3, 3, 2, 2, 2, 2, 1])
    discs[2, 2, 0], discs[2, 2, 10] = 2, 5  # upside down
    with pytest.raises(InputError, match="superior"):
        assign_slice_levels(cord, disc_data=discs, zooms_mm=(1.0, 1.0, 1.0), name="d.nii.gz")


def test_format_ranges_and_summaries():
    assert csa_table.format_ranges([3, 1, 2, 5, 7, 8]) == "1:3;5;7:8"
    assert csa_table.format_ranges([]) == ""
    per_slice = pd.DataFrame(
        {
            "slice": [0, 1, 2, 3],
            "level": [3, 3, 2, 0],
            "z_mm": [0.0, 1, 2, 3],
            **{m: [1.0, 2.0, 4.0, 8.0] for m in csa.METRICS},
        }
    )
    per_slice.attrs["filename"] = "x.nii.gz"
    one = csa_table.summarize(per_slice)
    assert list(one.columns)[: len(csa_table.SCT_COLUMNS)] == csa_table.SCT_COLUMNS
    assert list(one.columns)[len(csa_table.SCT_COLUMNS) :] == ["subject", "session"]
    assert (one.iloc[0]["subject"], one.iloc[0]["session"]) == ("", "")  # not a BIDS name
    row = one.iloc[0]
    assert row["SCT Version"].startswith("nnunet-spine ") and row["DistancePMJ"] == ""
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", row["Timestamp"])
    assert csa_table.summarize(per_slice, timestamp="2001-02-03 04:05:06")["Timestamp"].tolist() == [
        "2001-02-03 04:05:06"
    ]
    assert (row["Filename"], row["Slice (I->S)"], row["VertLevel"]) == ("x.nii.gz", "0:3", "2:3")
    assert row["MEAN(area)"] == pytest.approx(3.75) and row["STD(area)"] == pytest.approx(np.std([1, 2, 4, 8]))
    assert row["SUM(length)"] == pytest.approx(15.0)
    levels = csa_table.summarize(per_slice, per="level")
    assert levels["Slice (I->S)"].tolist() == ["0:1", "2"] and levels["VertLevel"].tolist() == ["3", "2"]
    slices = csa_table.summarize(per_slice, per="slice", vert=[3])
    assert slices["Slice (I->S)"].tolist() == ["0", "1"] and (slices["STD(area)"] == 0).all()
    assert csa_table.summarize(per_slice, vert=[7]).empty


def test_fit_centreline_reproduces_cubics():
    z = np.linspace(0, 150, 151)
    xy = np.stack([0.3 * z + 2, 1e-5 * (z - 40) ** 3 - 0.002 * z**2], 1)
    fit, slope = fit_centreline(z, xy)
    np.testing.assert_allclose(fit, xy, atol=1e-4)  # the tiny smoothing penalty bends cubics by ~1e-6 mm
    np.testing.assert_allclose(slope[:, 0], 0.3, atol=1e-9)  # and leaves straight lines exact
    np.testing.assert_allclose(slope[:, 1], 3e-5 * (z - 40) ** 2 - 0.004 * z, atol=1e-5)


# ============================================================================================ real data vs SCT
def test_real_mask_agrees_with_sct(shared_data):
    t2 = shared_data / "sct_testing_data" / "t2"
    ref = pd.read_csv(shared_data / "reference" / "sct_csa_t2_seg-manual_perslice.csv")
    df = csa.measure_file(t2 / "t2_seg-manual.nii.gz")
    ours = csa_table.summarize(df, per="slice").set_index("Slice (I->S)")
    ref = ref.assign(key=ref["Slice (I->S)"].astype(str)).set_index("key")
    assert list(ours.index) == list(ref.index)
    rel = np.abs(ours["MEAN(area)"] / ref["MEAN(area)"] - 1)
    assert rel.median() < 0.02
    np.testing.assert_allclose(ours["MEAN(angle_AP)"], ref["MEAN(angle_AP)"], atol=0.5)
    np.testing.assert_allclose(ours["MEAN(angle_RL)"], ref["MEAN(angle_RL)"], atol=0.5)
    np.testing.assert_allclose(ours["SUM(length)"], ref["SUM(length)"], rtol=2e-3)
    for col, tol in (
        ("MEAN(diameter_AP)", 0.05),
        ("MEAN(diameter_RL)", 0.05),
        ("MEAN(diameter_AP_ellipse)", 0.05),
        ("MEAN(length_anterior)", 0.05),
        ("MEAN(length_posterior)", 0.05),
    ):
        assert (np.abs(ours[col] / ref[col] - 1)).median() < tol, col
    assert np.abs(ours["MEAN(eccentricity)"] - ref["MEAN(eccentricity)"]).median() < 0.02
    assert np.abs(ours["MEAN(orientation)"] - ref["MEAN(orientation)"]).median() < 1.0
    assert np.abs(ours["MEAN(solidity)"] - ref["MEAN(solidity)"]).median() < 0.03


def test_real_perlevel_cli_agrees_with_sct(shared_data, tmp_path):
    t2 = shared_data / "sct_testing_data" / "t2"
    out = tmp_path / "levels.csv"
    proc = _nnspine(
        "-i",
        t2 / "t2_seg-manual.nii.gz",
        "--vert",
        "2:5",
        "--vertfile",
        t2 / "t2_seg-manual_labeled.nii.gz",
        "--perlevel",
        "-o",
        out,
    )
    assert proc.returncode == 0, proc.stderr
    ours = pd.read_csv(out, dtype={"Slice (I->S)": str}, keep_default_na=False)
    ref_path = shared_data / "reference" / "sct_csa_t2_seg-manual_perlevel.csv"
    ref = pd.read_csv(ref_path, dtype={"Slice (I->S)": str}, keep_default_na=False)
    ref_header = ref_path.read_text().splitlines()[0]
    assert out.read_text().splitlines()[0] == ref_header + ",subject,session"  # SCT's columns, SCT's order, then ours
    assert (ours["DistancePMJ"] == "").all() and (ref["DistancePMJ"] == "").all()
    assert set(ours["SCT Version"]) == {csa_table.tool_version()}
    # quoting as SCT's: text fields in double quotes, numbers bare
    first = next(csv.reader([out.read_text().splitlines()[1]], quoting=csv.QUOTE_NONNUMERIC))
    ref_first = next(csv.reader([ref_path.read_text().splitlines()[1]], quoting=csv.QUOTE_NONNUMERIC))
    assert [type(v) for v in first[: len(ref_first)]] == [type(v) for v in ref_first]
    assert ours["Slice (I->S)"].tolist() == ref["Slice (I->S)"].tolist() == ["1:3", "4:17", "18:35", "36:52"]
    assert ours["VertLevel"].tolist() == ref["VertLevel"].tolist()
    np.testing.assert_allclose(ours["MEAN(area)"], ref["MEAN(area)"], rtol=0.02)


# ============================================================================================ CLI
def test_help_describes_inputs_outputs_units():
    proc = subprocess.run(["nnspine", "csa", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0
    for word in (
        "mm^2",
        "degrees",
        "csa.csv",
        "--perslice",
        "--vertfile",
        "--discfile",
        "--threshold",
        "--overwrite",
        "examples:",
        "nnspine csa -i",
    ):
        assert word in proc.stdout, word


def test_several_files_one_bad_is_skipped(tmp_path):
    good = [_save_mask(tmp_path / f"sub-{n}_seg.nii.gz", _ellipse_mask()) for n in (1, 2)]
    bad = _save_mask(tmp_path / "sub-3_seg.nii.gz", _ellipse_mask(value=np.nan))
    out = tmp_path / "all.csv"
    proc = _nnspine("-i", good[0], bad, good[1], "-o", out)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "sub-3_seg.nii.gz" in lines[0] and "NaN" in lines[0]
    table = pd.read_csv(out)
    assert table["Filename"].tolist() == [str(good[0]), str(good[1])]
    assert table["MEAN(area)"].tolist() == pytest.approx([table["MEAN(area)"][0]] * 2)


def test_folder_input_per_slice_to_stdout(tmp_path):
    folder = tmp_path / "masks"
    folder.mkdir()
    for n in (1, 2):
        _save_mask(folder / f"m{n}.nii.gz", _ellipse_mask(shape=(24, 24, 4)), zooms=(0.5, 0.5, 2.0))
    (folder / "notes.txt").write_text("not an image")
    proc = _nnspine("-i", folder, "--perslice", "-o", "-")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == ",".join([*csa_table.SCT_COLUMNS, "subject", "session"])
    assert len(lines) == 1 + 2 * 4
    row = next(csv.DictReader(lines))
    assert (row["Filename"], row["Slice (I->S)"], row["VertLevel"]) == (str(folder / "m1.nii.gz"), "0", "")


def test_subject_and_session_columns_follow_scts(tmp_path):
    """BIDS names give the subject and session columns (of the image a derivative belongs to); SCT's columns keep
    their names and order before them."""
    folder = tmp_path / "masks"
    folder.mkdir()
    names = ["sub-03_ses-2_T2w_label-SC_seg.nii.gz", "sub-9709Ses1_run-1_T2starw_seg-manual.nii.gz", "cord.nii.gz"]
    for name in names:
        _save_mask(folder / name, _ellipse_mask(shape=(24, 24, 4)), zooms=(0.5, 0.5, 2.0))
    proc = _nnspine("-i", folder, "-o", "-")
    assert proc.returncode == 0, proc.stderr
    header, *_ = proc.stdout.splitlines()
    assert header.split(",")[:6] == ["Timestamp", "SCT Version", "Filename", "Slice (I->S)", "VertLevel", "DistancePMJ"]
    rows = {Path(r["Filename"]).name: (r["subject"], r["session"]) for r in csv.DictReader(proc.stdout.splitlines())}
    assert rows == {names[0]: ("sub-03", "ses-2"), names[1]: ("sub-9709Ses1", ""), names[2]: ("", "")}


def _four_d(p):
    return save_image(np.repeat(_ellipse_mask()[..., None], 2, axis=3), np.diag([-1.0, 1, 1, 1]), p)


@pytest.mark.parametrize(
    "case, make, expect",
    [
        ("4d", _four_d, "3-D"),
        ("empty", lambda p: _save_mask(p, np.zeros((10, 10, 5), np.float32)), "empty"),
        ("nan", lambda p: _save_mask(p, _ellipse_mask(value=np.nan)), "NaN"),
        ("values", lambda p: _save_mask(p, _ellipse_mask(value=2.0)), "[0, 1]"),
        ("labels-grid", None, "grid"),
    ],
)
def test_bad_input_is_one_line_exit_2(tmp_path, case, make, expect):
    seg = tmp_path / f"{case}_seg.nii.gz"
    extra = []
    if make is None:
        _save_mask(seg, _ellipse_mask())
        levels = save_image(np.ones((20, 20, 12), np.uint8), np.diag([-1.0, 1, 1, 1]), tmp_path / "levels.nii.gz")
        extra, named = ["--vertfile", levels, "--vert", "1"], levels
    else:
        make(seg)
        named = seg
    proc = _nnspine("-i", seg, *extra, "-o", tmp_path / "out.csv")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(named) in lines[0] and expect in lines[0], proc.stderr
    assert not (tmp_path / "out.csv").exists()


def test_refuses_to_overwrite_and_threshold_via_cli(tmp_path):
    soft = _ellipse_mask() * 0.7
    soft[10:14, 10:14, :] = 0.3
    seg = _save_mask(tmp_path / "soft.nii.gz", soft)
    out = tmp_path / "csa.csv"
    out.write_text("keep me\n")
    proc = _nnspine("-i", seg, "-o", out)
    assert proc.returncode == 2 and "exists" in proc.stderr and "Traceback" not in proc.stderr
    assert out.read_text() == "keep me\n"
    proc = _nnspine("-i", seg, "-o", out, "--overwrite", "--threshold", "0.5", "--plot", tmp_path / "qc.png")
    assert proc.returncode == 0, proc.stderr
    binary = pd.read_csv(out)["MEAN(area)"][0]
    expected = float(((soft >= 0.5).sum(axis=(0, 1))).mean())  # 1 mm voxels, straight: area = count
    assert binary == pytest.approx(expected)
    assert (tmp_path / "qc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    proc = _nnspine("-i", seg, "-o", tmp_path / "soft.csv")
    assert pd.read_csv(tmp_path / "soft.csv")["MEAN(area)"][0] == pytest.approx(float(soft.sum(axis=(0, 1)).mean()))


def test_cli_says_what_it_wrote(tmp_path):
    seg = _save_mask(tmp_path / "seg.nii.gz", _ellipse_mask(shape=(24, 24, 5)))
    proc = _nnspine("-i", seg, "--perslice", "-o", tmp_path / "out.csv", "--plot", tmp_path / "qc.png")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        f"wrote {tmp_path / 'out.csv'} (5 rows, one per slice, from 1 file) and {tmp_path / 'qc.png'}"
    ]
    assert len(pd.read_csv(tmp_path / "out.csv")) == 5 and proc.stderr == ""
    quiet = _nnspine("-i", seg, "-o", tmp_path / "q.csv", "-q")
    assert quiet.returncode == 0 and quiet.stdout == "" and quiet.stderr == ""


def test_cli_output_folder_is_bad_input_even_with_overwrite(tmp_path):
    seg = _save_mask(tmp_path / "seg.nii.gz", _ellipse_mask())
    folder = tmp_path / "results"
    folder.mkdir()
    proc = _nnspine("-i", seg, "-o", folder, "--overwrite")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(folder) in lines[0] and "folder" in lines[0]
    assert folder.is_dir() and not any(folder.iterdir())


def test_cli_usage_errors(tmp_path):
    seg = _save_mask(tmp_path / "seg.nii.gz", _ellipse_mask())
    proc = _nnspine("-i", seg, "--perlevel", "-o", tmp_path / "x.csv")
    assert proc.returncode == 2 and "--vertfile" in proc.stderr and "Traceback" not in proc.stderr
    proc = _nnspine("-i", seg, "--threshold", "1.5", "-o", tmp_path / "x.csv")
    assert proc.returncode == 2


def test_cli_plot_with_levels(tmp_path):
    _, frac, levels, discs, affine = _cervical()
    seg = save_image(frac, affine, tmp_path / "seg.nii.gz")
    disc_file = save_image(discs, affine, tmp_path / "discs.nii.gz")
    from nnunet_spine.cli import main

    rc = main(
        [
            "csa",
            "-i",
            str(seg),
            "--discfile",
            str(disc_file),
            "--perlevel",
            "-o",
            str(tmp_path / "l.csv"),
            "--plot",
            str(tmp_path / "qc.png"),
        ]
    )
    assert rc == 0
    table = pd.read_csv(tmp_path / "l.csv")
    assert table["VertLevel"].tolist() == [7, 6, 5, 4, 3, 2, 1]  # SCT's rule: below disc 7 is 7, above disc 2 is 1
    assert (tmp_path / "qc.png").stat().st_size > 10_000
