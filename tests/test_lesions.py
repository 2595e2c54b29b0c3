"""``nnspine lesions`` (nnunet_spine.postprocessing.lesion.lesions): removal by volume in mm³ and by distance to the
cord in mm, superior→inferior numbering, the lesion table, the QC picture, folder mode and bad input; hand-computed
cases, the lesion phantom's truth and the real SCT fake-lesion image."""

from __future__ import annotations

import json
import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from nnunet_spine.cli import main
from nnunet_spine.postprocessing.lesion.lesions import TABLE_COLUMNS, analyze_lesions, feret_diameter_mm


def save(path: Path, data: np.ndarray, affine=None, dtype=np.uint8) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(data).astype(dtype), np.eye(4) if affine is None else affine), str(path))
    return path


def load(path: Path) -> np.ndarray:
    return np.asarray(nib.load(str(path)).dataobj)


def files_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


# --------------------------------------------------------------------------------------------- measures
def test_feret_diameter_of_pixel_squares():
    assert feret_diameter_mm(np.array([[0, 0]]), (0.5, 0.5)) == pytest.approx(math.sqrt(0.5))
    assert feret_diameter_mm(np.array([[0, 0], [1, 0], [2, 0]]), (1, 1)) == pytest.approx(math.sqrt(10))
    square = np.argwhere(np.ones((2, 2)))
    assert feret_diameter_mm(square, (0.5, 1.0)) == pytest.approx(math.sqrt(1 + 4))
    big = np.argwhere(np.ones((20, 20)))  # > 256 pixels: the convex-hull path
    assert feret_diameter_mm(big, (1, 1)) == pytest.approx(math.sqrt(800))
    assert feret_diameter_mm(big, (1, 2)) == pytest.approx(math.sqrt(20**2 + 40**2))


def test_axial_diameter_extent_and_volume_on_anisotropic_voxels():
    affine = np.diag([0.5, 0.5, 2.0, 1.0])  # 0.5 mm³ voxels, axial slices along k
    mask = np.zeros((10, 10, 10), bool)
    mask[2:5, 2, 3:6] = True  # 3 voxels in a row on each of 3 slices
    mask[2, 3, 4] = True  # a fourth voxel on the middle slice
    a = analyze_lesions(mask, affine)
    (row,) = a.rows
    assert row["volume_mm3"] == pytest.approx(10 * 0.5)
    assert row["extent_si_mm"] == pytest.approx(3 * 2.0)
    # middle slice: pixel centres (2,2)…(4,2) and (2,3): farthest corners (4.5, 1.5)-(1.5, 3.5) in voxels
    assert row["max_axial_diameter_mm"] == pytest.approx(math.hypot(3 * 0.5, 2 * 0.5))
    idx = np.argwhere(mask).mean(0)
    assert [row["centroid_x_mm"], row["centroid_y_mm"], row["centroid_z_mm"]] == pytest.approx(
        (affine[:3, :3] @ idx).tolist()
    )


def test_min_volume_is_in_mm3_not_voxels():
    affine = np.diag([0.5, 0.5, 2.0, 1.0])  # 0.5 mm³ per voxel
    mask = np.zeros((12, 12, 12), bool)
    mask[0:2, 0:2, 0] = True  # 4 voxels = 2.0 mm³
    mask[8:11, 8:11, 8] = True  # 9 voxels = 4.5 mm³
    kept = analyze_lesions(mask, affine, min_volume_mm3=2.0)  # "below" is strict
    assert [r["removed"] for r in kept.rows] == ["", ""]
    a = analyze_lesions(mask, affine, min_volume_mm3=2.5)
    assert [(r["volume_mm3"], r["removed"]) for r in a.rows] == [(4.5, ""), (2.0, "small")]
    assert a.n_kept == 1 and set(np.unique(a.labels)) == {0, 1} and a.labels[9, 9, 8] == 1
    assert a.labels[0, 0, 0] == 0 and a.components[0, 0, 0] == 2  # removed lesions: numbered after the kept


def test_cord_distance_in_mm_on_anisotropic_voxels():
    affine = np.diag([0.5, 1.0, 2.0, 1.0])
    cord = np.zeros((20, 6, 12), bool)
    cord[0:2, :, :] = True  # a slab; the last cord voxel along i is i = 1
    mask = np.zeros_like(cord)
    mask[5, 2, 2] = True  # 4 voxels × 0.5 mm = 2.0 mm from the cord
    mask[6, 2, 8] = True  # 5 × 0.5 = 2.5 mm
    a = analyze_lesions(mask, affine, cord=cord, cord_dilation_mm=2.0)
    by_z = {round(r["centroid_z_mm"]): r["removed"] for r in a.rows}
    assert by_z == {4: "", 16: "outside_cord"}
    assert all(r["removed"] == "" for r in analyze_lesions(mask, affine, cord=cord, cord_dilation_mm=2.5).rows)
    # along the 2 mm axis: a cord voxel two slices away is 4 mm away
    cord2 = np.zeros((6, 6, 12), bool)
    cord2[:, :, 0] = True
    les = np.zeros_like(cord2)
    les[3, 3, 2] = True
    assert analyze_lesions(les, affine, cord=cord2, cord_dilation_mm=3.9).rows[0]["removed"] == "outside_cord"
    assert analyze_lesions(les, affine, cord=cord2, cord_dilation_mm=4.0).rows[0]["removed"] == ""
    # 0 mm: overlapping the cord
    les[3, 3, 0] = True
    les[3, 3, 1] = False
    res = analyze_lesions(les, affine, cord=cord2, cord_dilation_mm=0.0)
    assert sorted(r["removed"] for r in res.rows) == ["", "outside_cord"]


def test_small_wins_over_outside_cord():
    cord = np.zeros((8, 8, 8), bool)
    cord[0] = True
    mask = np.zeros_like(cord)
    mask[7, 7, 7] = True
    (row,) = analyze_lesions(mask, np.eye(4), cord=cord, cord_dilation_mm=1, min_volume_mm3=2).rows
    assert row["removed"] == "small"


def test_numbering_superior_to_inferior_in_world_space():
    # PSR-like grid: voxel axis 1 points to S, axis 0 to P
    affine = np.array([[0, 0, 1.0, 0], [-1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 0, 1]])
    mask = np.zeros((10, 30, 4), bool)
    for j in (3, 25, 12):
        mask[4, j : j + 2, 1] = True
    a = analyze_lesions(mask, affine)
    assert [r["lesion"] for r in a.rows] == [1, 2, 3]
    assert [r["centroid_z_mm"] for r in a.rows] == [25.5, 12.5, 3.5]
    assert a.labels[4, 25, 1] == 1 and a.labels[4, 12, 1] == 2 and a.labels[4, 3, 1] == 3
    flipped = np.array([[1.0, 0, 0, 0], [0, 0, 1.0, 0], [0, -1.0, 0, 0], [0, 0, 0, 1]])  # voxel axis 1 → I
    b = analyze_lesions(mask, flipped)  # larger j is now inferior
    assert b.labels[4, 3, 1] == 1 and b.labels[4, 25, 1] == 3


def test_vert_level_from_a_level_image():
    levels = np.zeros((6, 6, 12), np.int64)
    levels[:, :, 0:6] = 4  # inferior slices (k small = inferior on an identity affine)
    levels[:, :, 6:12] = 3
    mask = np.zeros((6, 6, 12), bool)
    mask[2, 2, 4:9] = True  # slices 4-5 at level 4, 6-8 at level 3: most voxels in C3
    mask[0:3, 0:3, 5] = True  # …unless this 9-voxel patch on slice 5 makes C4 win
    a = analyze_lesions(mask, np.eye(4), levels=levels)
    assert a.rows[0]["vert_level"] == 4  # 2 + 9 - 1 shared = 10 voxels at level 4 vs 3 at level 3
    mask[0:3, 0:3, 5] = False
    mask[2, 2, 5] = True
    assert analyze_lesions(mask, np.eye(4), levels=levels).rows[0]["vert_level"] == 3
    # a level image drawn on the cord only: the lesion's slices take the level of the slice's labels
    cord_levels = np.zeros_like(levels)
    cord_levels[4:6, 4:6, :] = levels[4:6, 4:6, :]
    assert analyze_lesions(mask, np.eye(4), levels=cord_levels).rows[0]["vert_level"] == 3
    assert analyze_lesions(mask, np.eye(4), levels=np.zeros_like(levels)).rows[0]["vert_level"] is None


def test_empty_prediction_gives_only_the_total_row():
    a = analyze_lesions(np.zeros((4, 4, 4), bool), np.eye(4))
    assert a.rows == [] and not a.labels.any()
    (total,) = a.table_rows("x.nii.gz")
    assert total["lesion"] == "total" and total["volume_mm3"] == 0


# --------------------------------------------------------------------------------------------- CLI
@pytest.fixture()
def case(tmp_path):
    """A region prediction (cord 1, lesion 2) with three lesions, its cord mask, a level file and an image."""
    affine = np.diag([0.5, 0.5, 2.0, 1.0])
    pred = np.zeros((30, 30, 12), np.uint8)
    pred[5:25, 5:25, :] = 1  # cord (label 1)
    pred[10:14, 10:14, 8:10] = 2  # 32 voxels × 0.5 mm³ = 16 mm³, superior
    pred[16:18, 16:18, 4] = 2  # 4 voxels = 2 mm³
    pred[0:2, 0:2, 1:3] = 2  # 8 voxels = 4 mm³; nearest cord voxel (5, 5): 4 × 0.5 mm on both axes = 2.83 mm
    cord = (pred == 1) | (pred == 2)
    cord[0:2, 0:2, :] = False
    levels = np.where(np.arange(12) >= 6, 2, 3)[None, None, :] * np.ones((30, 30, 1), np.int64)
    d = tmp_path / "in"
    return {
        "affine": affine,
        "pred": pred,
        "dir": d,
        "pred_file": save(d / "pred" / "sub-01_T2w.nii.gz", pred, affine),
        "cord_file": save(d / "labels" / "sub-01" / "anat" / "sub-01_T2w_label-SC_seg.nii.gz", cord, affine),
        "level_file": save(d / "levels" / "sub-01_T2w_label-SC_seg_labeled.nii.gz", levels, affine),
        "image_file": save(
            d / "img" / "sub-01_T2w.nii.gz", np.random.default_rng(0).random(pred.shape), affine, np.float32
        ),
    }


def test_cli_file_mode_table_image_and_qc(case, tmp_path):
    out, table, qc = tmp_path / "o" / "les.nii.gz", tmp_path / "o" / "t.csv", tmp_path / "o" / "qc.png"
    code = main(
        [
            "lesions",
            "-i",
            str(case["pred_file"]),
            "--label",
            "2",
            "--cord",
            str(case["cord_file"]),
            "--cord-dilation-mm",
            "2.8",
            "--min-volume-mm3",
            "2.5",
            "--vertfile",
            str(case["level_file"]),
            "--image",
            str(case["image_file"]),
            "-o",
            str(out),
            "--table",
            str(table),
            "--qc",
            str(qc),
            "-q",
        ]
    )
    assert code == 0
    df = pd.read_csv(table, keep_default_na=False)
    assert list(df.columns) == [*TABLE_COLUMNS, "subject", "session"]
    assert df["lesion"].tolist() == ["1", "2", "3", "total"]
    assert df["removed"].tolist()[:3] == ["", "small", "outside_cord"]
    assert df["volume_mm3"].astype(float).tolist() == pytest.approx([16.0, 2.0, 4.0, 16.0])
    assert df["vert_level"].tolist()[:3] == ["2", "3", "3"]
    assert float(df["extent_si_mm"].iloc[0]) == pytest.approx(4.0)
    assert float(df["max_axial_diameter_mm"].iloc[0]) == pytest.approx(math.hypot(2, 2))
    assert df["removed"].iloc[-1] == "1 kept, 2 removed"
    out_data = load(out)
    assert set(np.unique(out_data)) == {0, 1} and out_data.sum() == 32
    assert np.allclose(nib.load(str(out)).affine, case["affine"])
    from matplotlib.image import imread

    rgb = imread(str(qc))[..., :3]
    has = lambda colour: bool((np.abs(rgb - np.array(colour) / 255).max(-1) < 0.08).any())  # noqa: E731
    assert has((44, 160, 44)) and has((214, 39, 40))  # kept (tab:green) and removed (tab:red) outlines


def test_cli_folder_mode_matches_cords_by_case(case, tmp_path):
    d = case["dir"]
    save(d / "pred" / "sub-02_T2w.nii.gz", case["pred"], case["affine"])
    save(
        d / "labels" / "sub-02" / "anat" / "sub-02_T2w_label-SC_seg.nii.gz", np.ones_like(case["pred"]), case["affine"]
    )
    out, table, qc = tmp_path / "out", tmp_path / "t.csv", tmp_path / "qc"
    assert (
        main(
            [
                "lesions",
                "-i",
                str(d / "pred"),
                "--label",
                "2",
                "--cord",
                str(d / "labels"),
                "-o",
                str(out),
                "--table",
                str(table),
                "--qc",
                str(qc),
                "-q",
            ]
        )
        == 0
    )
    df = pd.read_csv(table, keep_default_na=False)
    totals = df[df["lesion"] == "total"]
    assert [Path(f).name for f in totals["filename"]] == ["sub-01_T2w.nii.gz", "sub-02_T2w.nii.gz"]
    assert totals["removed"].tolist() == ["2 kept, 1 removed", "3 kept, 0 removed"]  # sub-02: cord everywhere
    # each lesion image with its sidecar (same stem, .json) saying it holds lesion instances
    assert files_under(out) == {"sub-01_T2w.nii.gz", "sub-01_T2w.json", "sub-02_T2w.nii.gz", "sub-02_T2w.json"}
    sidecars = {n: json.loads((out / f"{n}.json").read_text()) for n in ("sub-01_T2w", "sub-02_T2w")}
    assert [(d["LesionInstances"], d["LesionCount"], d["CordDilationMM"]) for d in sidecars.values()] == [
        (True, 2, 2.0),
        (True, 3, 2.0),
    ]
    assert files_under(qc) == {"sub-01_T2w_lesions.png", "sub-02_T2w_lesions.png"}


@pytest.mark.parametrize("problem", ["4d", "nan", "grid", "nonbinary_cord", "missing_cord", "second_bad"])
def test_cli_bad_input_exit_2_nothing_written(case, tmp_path, capsys, problem):
    d = case["dir"]
    args = ["--label", "2", "--cord", str(d / "labels")]
    src = d / "pred"
    if problem == "4d":
        save(src / "sub-01_T2w.nii.gz", np.zeros((30, 30, 12, 2)), case["affine"])
    elif problem == "nan":
        save(src / "sub-01_T2w.nii.gz", np.full((30, 30, 12), np.nan), case["affine"], np.float32)
    elif problem == "grid":
        save(case["cord_file"], load(case["cord_file"]), np.diag([0.5, 0.5, 2.5, 1.0]))
    elif problem == "nonbinary_cord":
        save(case["cord_file"], load(case["cord_file"]) * 2, case["affine"])
    elif problem == "missing_cord":
        save(src / "sub-02_T2w.nii.gz", case["pred"], case["affine"])
    elif problem == "second_bad":  # the first file is fine: it must not be written either
        save(src / "sub-02_T2w.nii.gz", case["pred"] * 0.5, case["affine"], np.float32)
        save(d / "labels" / "sub-02_T2w_label-SC_seg.nii.gz", np.ones((30, 30, 12)), case["affine"])
    before = {p: p.read_bytes() for p in d.rglob("*") if p.is_file()}
    out = tmp_path / "out"
    code = main(
        [
            "lesions",
            "-i",
            str(src),
            *args,
            "-o",
            str(out),
            "--table",
            str(tmp_path / "t.csv"),
            "--qc",
            str(tmp_path / "qc"),
            "-q",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "sub-0" in err
    assert not (tmp_path / "t.csv").exists()
    assert not out.exists() or files_under(out) == set()
    assert not (tmp_path / "qc").exists() or files_under(tmp_path / "qc") == set()
    assert {p: p.read_bytes() for p in d.rglob("*") if p.is_file()} == before  # inputs untouched


def test_cli_refuses_negative_volume_and_existing_output(case, tmp_path, capsys):
    out = tmp_path / "o.nii.gz"
    assert (
        main(
            [
                "lesions",
                "-i",
                str(case["pred_file"]),
                "--min-volume-mm3",
                "-1",
                "-o",
                str(out),
                "--table",
                str(tmp_path / "t.csv"),
            ]
        )
        == 2
    )
    assert "--min-volume-mm3" in capsys.readouterr().err and not out.exists()
    out.write_bytes(b"keep")
    assert main(["lesions", "-i", str(case["pred_file"]), "-o", str(out), "--table", str(tmp_path / "t.csv")]) == 2
    assert out.read_bytes() == b"keep" and not (tmp_path / "t.csv").exists()


# --------------------------------------------------------------------------------------------- phantom and real data
def test_phantom_lesion_volumes_and_centroids(tmp_path):
    from nnunet_spine.phantoms.lesion import write_lesion_dataset

    root = tmp_path / "ds"
    write_lesion_dataset(root, seed=0)
    truth = json.loads((root / "derivatives/truth/sub-01/sub-01_truth.json").read_text())
    table = tmp_path / "t.csv"
    assert (
        main(
            [
                "lesions",
                "-i",
                str(root / truth["files"]["lesion"]),
                "--cord",
                str(root / truth["files"]["cord"]),
                "--cord-dilation-mm",
                "0",
                "--min-volume-mm3",
                "0.6",
                "-o",
                str(tmp_path / "o.nii.gz"),
                "--table",
                str(table),
                "-q",
            ]
        )
        == 0
    )
    df = pd.read_csv(table, keep_default_na=False)
    rows = df[df["lesion"] != "total"]
    assert len(rows) == truth["connected_components"]["26"]  # the face and corner pairs merge
    assert (rows["removed"] != "outside_cord").all()  # every lesion lies in the cord
    by_role = {les["role"]: les for les in truth["lesions"]}
    for role in ("large", "medium", "tiny_1", "tiny_3", "border_a", "border_b"):  # lesions touching no other
        les = by_role[role]
        centre = np.array(les["centroid_mm"])
        dist = np.linalg.norm(
            rows[["centroid_x_mm", "centroid_y_mm", "centroid_z_mm"]].astype(float).to_numpy() - centre, axis=1
        )
        row = rows.iloc[int(dist.argmin())]
        assert dist.min() < 1e-3, role
        assert float(row["volume_mm3"]) == pytest.approx(les["volume_mm3"], rel=1e-6)
        assert row["removed"] == ("small" if les["volume_mm3"] < 0.6 else ""), role
    kept = rows[rows["removed"] == ""]
    assert kept["lesion"].astype(int).tolist() == list(range(1, len(kept) + 1))
    z = kept["centroid_z_mm"].astype(float).tolist()
    assert z == sorted(z, reverse=True)


def test_real_fake_lesion(shared_data, tmp_path):
    d = shared_data / "sct_testing_data" / "t2"
    lesion = d / "t2_fake_lesion_lesion_seg.nii.gz"
    table = tmp_path / "t.csv"
    assert (
        main(
            [
                "lesions",
                "-i",
                str(lesion),
                "--cord",
                str(d / "t2_fake_lesion_sc_seg.nii.gz"),
                "-o",
                str(tmp_path / "o.nii.gz"),
                "--table",
                str(table),
                "--qc",
                str(tmp_path / "qc.png"),
                "-q",
            ]
        )
        == 0
    )
    img = nib.load(str(lesion))
    m = np.asarray(img.dataobj) > 0
    df = pd.read_csv(table, keep_default_na=False)
    row = df.iloc[0]
    assert row["removed"] == "" and int(row["lesion"]) == 1
    assert float(row["volume_mm3"]) == pytest.approx(m.sum() * abs(np.linalg.det(img.affine[:3, :3])), rel=1e-6)
    world = img.affine[:3, :3] @ np.argwhere(m).mean(0) + img.affine[:3, 3]
    assert [float(row[f"centroid_{a}_mm"]) for a in "xyz"] == pytest.approx(world.tolist(), abs=1e-4)
