"""CSA per vertebral level with a SPINEPS vertebra instance mask as the level source (issue 9 §4):
``nnspine csa --vertfile <..._seg-vert_msk> --perlevel`` and ``nnspine evaluate csa-variability``.

Truth is computed here, independently of :mod:`nnunet_spine.postprocessing.cord.levels`: in every axial slice holding
cord, the vertebral body (semantic 49 + endplates 62, one connected component per body) whose voxels lie
nearest to the cord's centre in that same slice is the body "at the cord's height"; where a disc (100)
lies nearer than any body the slice is in a disc gap and may belong to either neighbour.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from nnunet_spine.core.io import Image, InputError, save_image
from nnunet_spine.postprocessing.cord.levels import check_level_file_on_cord, is_spineps_instance_name, level_file_kind

TPTBOX = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "tptbox_sample_mri"
VERSE_TO_SCT = {**{v: v for v in range(1, 25)}, 26: 25}  # written out here, not taken from labels.py


def _nnspine(*args) -> subprocess.CompletedProcess:
    env = {**os.environ, "MPLBACKEND": "Agg"}
    return subprocess.run(["nnspine", *map(str, args)], capture_output=True, text=True, env=env)


# ------------------------------------------------------------------------------------------ independent truth
def _ras(path: Path) -> np.ndarray:
    """Voxel data in RAS order (axis 2 = I→S, the same slice index as SCT's RPI)."""
    return np.asarray(nib.as_closest_canonical(nib.load(str(path))).dataobj)


def nearest_structure_per_slice(semantic_ras: np.ndarray, bodies_ras: np.ndarray, zooms: np.ndarray) -> dict[int, int]:
    """For each axial slice with cord (60): the id in ``bodies_ras`` (0 = none) of the body nearest to the
    cord centre within that slice, or -1 when a disc (100) is nearer than any body."""
    out = {}
    disc = semantic_ras == 100
    for k in np.flatnonzero((semantic_ras == 60).any((0, 1))):
        centre = np.argwhere(semantic_ras[:, :, k] == 60).mean(0) * zooms[:2]
        best, best_d = 0, np.inf
        for ident in np.unique(bodies_ras[:, :, k]):
            if ident == 0:
                continue
            d = np.min(np.linalg.norm(np.argwhere(bodies_ras[:, :, k] == ident) * zooms[:2] - centre, axis=1))
            if d < best_d:
                best, best_d = int(ident), d
        if disc[:, :, k].any():
            d_disc = np.min(np.linalg.norm(np.argwhere(disc[:, :, k]) * zooms[:2] - centre, axis=1))
            if d_disc < best_d:
                best = -1
        out[int(k)] = best
    return out


def phantom_bodies(semantic_ras: np.ndarray, truth: dict) -> np.ndarray:
    """Vertebral bodies as connected components of semantic 49 ∪ 62, labelled by SCT level: components
    ordered from superior to inferior are the truth's vertebrae ordered by body-centre height."""
    comp, n = ndimage.label(np.isin(semantic_ras, (49, 62)))
    assert n == len(truth["vertebrae"])
    top_down = np.argsort([-c[2] for c in ndimage.center_of_mass(comp > 0, comp, range(1, n + 1))]) + 1
    verts = sorted(truth["vertebrae"], key=lambda v: -v["body_centre_mm"][2])
    out = np.zeros(comp.shape, np.int16)
    for c, v in zip(top_down, verts):
        out[comp == c] = VERSE_TO_SCT[v["id"]]
    return out


def assert_levels_match_bodies(per_slice: pd.DataFrame, nearest: dict[int, int]) -> None:
    """Every slice whose nearest structure is body X has level X (one slice of slack at each change of
    body); slices in a disc gap have the level of one of the two bodies around the gap; slices with no
    body in the slice (beyond the column) are not checked."""
    got = dict(zip(per_slice["slice"].astype(int), per_slice["level"].astype(int)))
    ks = sorted(nearest)
    body_ks = [k for k in ks if nearest[k] > 0]
    wrong = [k for k in body_ks if got[k] != nearest[k]]
    changes = [k for a, k in zip(body_ks, body_ks[1:]) if nearest[a] != nearest[k]]
    assert len(wrong) <= len(changes), (wrong, changes)
    for k in wrong:  # only right at a change of body
        assert min(abs(k - c) for c in changes) <= 1, (k, nearest[k], got[k])
    for k in (k for k in ks if nearest[k] == -1):
        below = [nearest[j] for j in body_ks if j < k]
        above = [nearest[j] for j in body_ks if j > k]
        assert got[k] in {below[-1] if below else None, above[0] if above else None}, (k, got[k])


@pytest.fixture(scope="module")
def spine(tmp_path_factory) -> dict:
    """Spine phantom (L1-L5 + sacrum; its cord ends mid-L5) written by ``nnspine phantom --kind spine``,
    plus its cord (semantic 60) as a separate binary mask."""
    root = tmp_path_factory.mktemp("spine") / "phantom"
    proc = _nnspine("phantom", "--kind", "spine", "-o", root, "--seed", "3", "-q")
    assert proc.returncode == 0, proc.stderr
    labels = root / "derivatives/labels/sub-01/anat"
    sem_path = labels / "sub-01_T2w_seg-spine_msk.nii.gz"
    img = nib.load(str(sem_path))
    cord = save_image(
        (np.asarray(img.dataobj) == 60).astype(np.float32), img.affine, root.parent / "sub-01_T2w_label-SC_seg.nii.gz"
    )
    truth = json.loads((root / "derivatives/truth/sub-01/sub-01_truth.json").read_text())
    sem_ras = _ras(sem_path)
    zooms = np.array(nib.as_closest_canonical(img).header.get_zooms()[:3], float)
    return {
        "root": root,
        "semantic": sem_path,
        "instance": labels / "sub-01_T2w_seg-vert_msk.nii.gz",
        "cord": Path(cord),
        "truth": truth,
        "nearest": nearest_structure_per_slice(sem_ras, phantom_bodies(sem_ras, truth), zooms),
    }


# ------------------------------------------------------------------------------------------ nnspine csa
def test_perlevel_slices_match_vertebral_bodies_on_phantom(spine, tmp_path):
    out_slices, out_levels = tmp_path / "perslice.csv", tmp_path / "perlevel.csv"
    proc = _nnspine("csa", "-i", spine["cord"], "--vertfile", spine["instance"], "--perslice", "-o", out_slices)
    assert proc.returncode == 0, proc.stderr
    assert "SPINEPS vertebra instance mask" in proc.stdout and "_seg-vert_msk" in proc.stdout
    rows = pd.read_csv(out_slices, dtype={"VertLevel": str})
    per_slice = pd.DataFrame(
        {"slice": rows["Slice (I->S)"].astype(int), "level": rows["VertLevel"].fillna("0").astype(int)}
    )
    assert_levels_match_bodies(per_slice, spine["nearest"])
    # every vertebra of the phantom has a level, in anatomical order from inferior (L5 = 24) to superior
    proc = _nnspine("csa", "-i", spine["cord"], "--vertfile", spine["instance"], "--perlevel", "-o", out_levels)
    assert proc.returncode == 0, proc.stderr
    levels = pd.read_csv(out_levels, dtype={"VertLevel": str, "Slice (I->S)": str})
    assert levels["VertLevel"].tolist() == ["24", "23", "22", "21", "20"]
    # a level's slice range spans its body at the cord and ends in the disc gaps around it
    nearest = spine["nearest"]
    for _, row in levels.iterrows():
        lo, hi = map(int, row["Slice (I->S)"].split(":"))
        body = [k for k, v in nearest.items() if v == int(row["VertLevel"])]
        others = [k for k, v in nearest.items() if v > 0 and v != int(row["VertLevel"])]
        assert lo <= min(body) + 1 and hi >= max(body) - 1
        assert not [k for k in others if lo + 1 < k < hi - 1]
        # the per-level mean is the mean of that level's per-slice areas
        sel = rows[rows["VertLevel"] == row["VertLevel"]]
        assert row["MEAN(area)"] == pytest.approx(sel["MEAN(area)"].mean(), rel=1e-12)


def test_cord_label_of_the_semantic_mask_and_the_vert_selection(spine, tmp_path):
    """``-i SEMANTIC --label 60`` measures the same cord as the extracted binary mask; ``--vert`` selects
    SCT level numbers (L2-L3 = 21-22)."""
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    assert (
        _nnspine(
            "csa",
            "-i",
            spine["semantic"],
            "--label",
            "60",
            "--vertfile",
            spine["instance"],
            "--perlevel",
            "--vert",
            "21:22",
            "-o",
            a,
        ).returncode
        == 0
    )
    assert (
        _nnspine(
            "csa", "-i", spine["cord"], "--vertfile", spine["instance"], "--perlevel", "--vert", "21:22", "-o", b
        ).returncode
        == 0
    )
    ta, tb = pd.read_csv(a, dtype={"VertLevel": str}), pd.read_csv(b, dtype={"VertLevel": str})
    assert ta["VertLevel"].tolist() == ["22", "21"]
    pd.testing.assert_frame_equal(
        ta.drop(columns=["Timestamp", "Filename"]), tb.drop(columns=["Timestamp", "Filename"])
    )
    proc = _nnspine("csa", "-i", spine["semantic"], "--label", "7", "-o", tmp_path / "c.csv")
    assert proc.returncode == 2 and "no voxel has label 7" in proc.stderr and not (tmp_path / "c.csv").exists()


def _copy_as(src: Path, dst: Path, edit=None) -> Path:
    img = nib.load(str(src))
    data = np.asarray(img.dataobj).copy()
    if edit is not None:
        data = edit(data)
    return Path(save_image(data.astype(np.int16), img.affine, dst))


def test_auto_detection_by_values_and_explicit_kinds(spine, tmp_path):
    # not named _seg-vert_msk, but discs (100+X) and endplates (200+X): a SPINEPS instance mask
    renamed = _copy_as(spine["instance"], tmp_path / "levels.nii.gz")
    proc = _nnspine("csa", "-i", spine["cord"], "--vertfile", renamed, "--perlevel", "-o", tmp_path / "r.csv")
    assert proc.returncode == 0 and "SPINEPS" in proc.stdout and ">= 100" in proc.stdout, proc.stdout + proc.stderr
    assert pd.read_csv(tmp_path / "r.csv")["VertLevel"].tolist() == [24, 23, 22, 21, 20]
    # read as SCT levels on request: refused, and the message says what the file looks like
    proc = _nnspine(
        "csa",
        "-i",
        spine["cord"],
        "--vertfile",
        renamed,
        "--vertfile-kind",
        "sct",
        "--perlevel",
        "-o",
        tmp_path / "s.csv",
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and str(renamed) in lines[0]
    assert "not SCT vertebral levels" in lines[0] and "--vertfile-kind spineps" in lines[0]
    assert not (tmp_path / "s.csv").exists()


def test_ambiguous_instance_mask_without_discs_is_refused_unless_named(spine, tmp_path):
    """Vertebrae only (values 20-24, 26: valid SCT levels too) in a file without the SPINEPS name: no cord
    voxel carries a label, so auto refuses to guess; --vertfile-kind spineps reads it (boundaries midway
    between the vertebrae) and still matches the bodies."""
    only_vertebrae = _copy_as(spine["instance"], tmp_path / "vertebrae.nii.gz", lambda d: np.where(d < 100, d, 0))
    proc = _nnspine("csa", "-i", spine["cord"], "--vertfile", only_vertebrae, "--perlevel", "-o", tmp_path / "a.csv")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and str(only_vertebrae) in lines[0]
    assert "--vertfile-kind" in lines[0] and not (tmp_path / "a.csv").exists()
    proc = _nnspine(
        "csa",
        "-i",
        spine["cord"],
        "--vertfile",
        only_vertebrae,
        "--vertfile-kind",
        "spineps",
        "--perslice",
        "-o",
        tmp_path / "b.csv",
    )
    assert proc.returncode == 0, proc.stderr
    rows = pd.read_csv(tmp_path / "b.csv", dtype={"VertLevel": str})
    per_slice = pd.DataFrame(
        {"slice": rows["Slice (I->S)"].astype(int), "level": rows["VertLevel"].fillna("0").astype(int)}
    )
    got = dict(zip(per_slice["slice"], per_slice["level"]))
    body = {k: v for k, v in spine["nearest"].items() if v > 0}
    # without discs the boundaries move to midway between body centres: a few slices off at most per boundary
    assert sum(got[k] != v for k, v in body.items()) <= 3 * 4
    named = _copy_as(only_vertebrae, tmp_path / "sub-01_T2w_seg-vert_msk.nii.gz")  # the SPINEPS name decides
    proc = _nnspine("csa", "-i", spine["cord"], "--vertfile", named, "--perslice", "-o", tmp_path / "c.csv")
    assert proc.returncode == 0 and "named _seg-vert_msk" in proc.stdout
    pd.testing.assert_series_equal(
        pd.read_csv(tmp_path / "c.csv")["VertLevel"], pd.read_csv(tmp_path / "b.csv")["VertLevel"]
    )


@pytest.mark.parametrize("verse_id, name", [(25, "L6"), (28, "T13")])
def test_transitional_vertebrae_are_refused(spine, tmp_path, verse_id, name):
    """L6 / T13 have no SCT level: one line naming the file and the vertebra, nothing written."""

    def add_transitional(d):
        d = d.astype(np.int16)
        d[d == 24] = verse_id  # relabel L5 (and its endplates / disc) as the transitional vertebra
        d[d == 224] = 200 + verse_id
        d[d == 124] = 100 + verse_id
        return d

    odd = _copy_as(spine["instance"], tmp_path / "sub-01_T2w_seg-vert_msk.nii.gz", add_transitional)
    proc = _nnspine("csa", "-i", spine["cord"], "--vertfile", odd, "--perlevel", "-o", tmp_path / "x.csv")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr
    assert str(odd) in lines[0] and name in lines[0] and "SCT" in lines[0]
    assert not (tmp_path / "x.csv").exists()


def test_semantic_mask_or_labelled_cord_given_as_the_wrong_kind(spine, tmp_path):
    # the SPINEPS *semantic* mask as --vertfile: neither kind, with the semantic hint
    proc = _nnspine("csa", "-i", spine["cord"], "--vertfile", spine["semantic"], "-o", tmp_path / "x.csv")
    assert proc.returncode == 2 and "semantic" in proc.stderr and str(spine["semantic"]) in proc.stderr
    # an SCT labelled cord (labels on the cord voxels) read as an instance mask: refused
    sem = nib.load(str(spine["semantic"]))
    labelled = np.where(np.asarray(sem.dataobj) == 60, 3, 0).astype(np.int16)
    path = save_image(labelled, sem.affine, tmp_path / "sub-01_T2w_label-SC_seg_labeled.nii.gz")
    proc = _nnspine(
        "csa", "-i", spine["cord"], "--vertfile", path, "--vertfile-kind", "spineps", "-o", tmp_path / "y.csv"
    )
    assert proc.returncode == 2 and "cover 100 % of the cord" in proc.stderr and "--vertfile-kind sct" in proc.stderr
    # ... and as auto, it is an SCT level file: every cord slice gets level 3
    proc = _nnspine("csa", "-i", spine["cord"], "--vertfile", path, "--perlevel", "-o", tmp_path / "z.csv")
    assert proc.returncode == 0 and "SCT labelled levels" in proc.stdout
    assert pd.read_csv(tmp_path / "z.csv")["VertLevel"].tolist() == [3]
    proc = _nnspine("csa", "-i", spine["cord"], "--vertfile-kind", "spineps", "-o", tmp_path / "w.csv")
    assert proc.returncode == 2 and "--vertfile" in proc.stderr


def test_level_file_kind_rules():
    aff = np.eye(4)

    def img(values, name=None):
        data = np.zeros((4, 4, len(values)), np.int16)
        data[1, 1, :] = values
        return Image(data, aff, Path(name) if name else None)

    assert level_file_kind(img([2, 3, 4], "sub-01_T2w_label-SC_seg_labeled.nii.gz"))[0] == "sct"
    assert level_file_kind(img([20, 120, 220], "x.nii.gz"))[0] == "spineps"
    assert level_file_kind(img([5, 6], "sub-mri_seg-vert_label-6_msk.nii.gz"))[0] == "spineps"  # SPINEPS' own name
    assert level_file_kind(img([5, 6]), "spineps")[0] == "spineps"
    with pytest.raises(InputError, match="holds no label"):
        level_file_kind(img([0, 0]))
    with pytest.raises(InputError, match="not a SPINEPS vertebra instance mask"):
        level_file_kind(img([5, 60]), "spineps")
    with pytest.raises(ValueError):
        level_file_kind(img([5]), "verse")
    assert is_spineps_instance_name("a/sub-01_T2w_seg-vert_msk.nii") and not is_spineps_instance_name(
        "sub-01_T2w_seg-spine_msk.nii.gz"
    )
    cord = np.zeros((4, 4, 3))
    cord[1, 1, :] = 1.0
    off_cord = np.zeros((4, 4, 3), int)
    off_cord[3, 3, :] = 4
    with pytest.raises(InputError, match="--vertfile-kind"):
        check_level_file_on_cord(cord, off_cord, "sct", auto=True, name="v.nii.gz")
    check_level_file_on_cord(cord, off_cord, "sct", auto=False)  # explicit sct: the labelled voxels decide
    check_level_file_on_cord(cord, off_cord, "spineps", auto=True)
    with pytest.raises(InputError, match="cover 100 %"):
        check_level_file_on_cord(cord, cord.astype(int) * 4, "spineps", auto=False)


# ------------------------------------------------------------------------------------------ evaluate csa-variability
def test_csa_variability_with_instance_masks(spine, tmp_path):
    """Two 'contrasts' of the phantom's subject (the cord, and the cord with its two outer R-L slabs
    removed), each with its instance mask <image>_seg-vert_msk: CSA at L3 per contrast equals the mean
    per-slice area of the body-L3 slices (independent truth: voxel count × in-plane area × cos θ, θ from
    the cord centres), and the SD across contrasts is the population SD of the two."""
    sem = nib.load(str(spine["semantic"]))
    cord = (np.asarray(sem.dataobj) == 60).astype(np.float32)
    thin = cord.copy()
    cols = np.flatnonzero(cord.any((0, 1)))  # PIR: voxel axis 2 is R-L
    thin[:, :, [cols.min(), cols.max()]] = 0
    masks, levels = tmp_path / "masks", tmp_path / "levels"
    masks.mkdir(), levels.mkdir()
    for stem, data in (("sub-01_T2w", cord), ("sub-01_acq-thin_T2w", thin)):
        save_image(data, sem.affine, masks / f"{stem}_label-SC_seg.nii.gz")
        shutil.copy(spine["instance"], levels / f"{stem}_seg-vert_msk.nii.gz")
    out = tmp_path / "var.csv"
    proc = _nnspine("evaluate", "csa-variability", "-i", masks, "--vertfiles", levels, "--vert", "22", "-o", out, "-q")
    assert proc.returncode == 0, proc.stderr
    table = pd.read_csv(out)
    got = table.set_index("contrast")["csa_mm2"]

    zooms = np.array(nib.as_closest_canonical(sem).header.get_zooms()[:3], float)
    expected = {}
    for name, data in (("T2w", cord), ("acq-thin_T2w", thin)):
        ras = np.asarray(nib.as_closest_canonical(nib.Nifti1Image(data, sem.affine)).dataobj)
        ks = np.flatnonzero(ras.any((0, 1)))
        centres = np.array([np.argwhere(ras[:, :, k] > 0).mean(0) * zooms[:2] for k in ks])
        slope = np.gradient(centres, ks * zooms[2], axis=0)
        cos = 1 / np.sqrt(1 + (slope**2).sum(1))
        area = dict(zip(ks, ras.sum((0, 1))[ks] * zooms[0] * zooms[1] * cos))
        l3 = [k for k, v in spine["nearest"].items() if v == 22]
        expected[name] = np.mean([area[k] for k in l3])
        assert got[name] == pytest.approx(expected[name], rel=0.03)
    assert got["acq-thin_T2w"] < got["T2w"]
    sd = table.loc[table["contrast"] == "ALL", "csa_std_across_contrasts_mm2"].iloc[0]
    assert sd == pytest.approx(np.std([got["T2w"], got["acq-thin_T2w"]]), rel=1e-9)
    assert (table["n_slices"][table["contrast"] != "ALL"] > 0).all()
    # the same through the library, explicit kind; --vertfile-kind sct refuses the instance masks
    from nnunet_spine.postprocessing.cord.soft_metrics import csa_variability

    lib = csa_variability([masks], [22], vertfiles=levels, suffix="_seg-vert_msk", vertfile_kind="spineps")
    assert lib.table.set_index("contrast")["csa_mm2"]["T2w"] == pytest.approx(got["T2w"], rel=1e-12)
    proc = _nnspine(
        "evaluate",
        "csa-variability",
        "-i",
        masks,
        "--vertfiles",
        levels,
        "--vertfile-kind",
        "sct",
        "--vert-suffix",
        "_seg-vert_msk",
        "--vert",
        "22",
        "-o",
        tmp_path / "bad.csv",
        "-q",
    )
    assert proc.returncode == 2 and "not SCT vertebral levels" in proc.stderr and not (tmp_path / "bad.csv").exists()


# ------------------------------------------------------------------------------------------ real data
@pytest.mark.skipif(not TPTBOX.is_dir(), reason=f"real data not found: {TPTBOX}")
def test_tptbox_sample_cord_levels_from_its_instance_mask(tmp_path):
    """Real SPINEPS-format masks (C5-C7, SPINEPS' own naming sub-mri_seg-vert_label-6_msk): the cord
    label 60 of the semantic mask, levels from the instance mask by name."""
    sem_path = TPTBOX / "sub-mri_seg-subreg_label-6_msk.nii.gz"
    ins_path = TPTBOX / "sub-mri_seg-vert_label-6_msk.nii.gz"
    out = tmp_path / "perslice.csv"
    proc = _nnspine("csa", "-i", sem_path, "--label", "60", "--vertfile", ins_path, "--perslice", "-o", out)
    assert proc.returncode == 0 and "named _seg-vert_msk" in proc.stdout, proc.stderr
    rows = pd.read_csv(out, dtype={"VertLevel": str})
    per_slice = pd.DataFrame(
        {"slice": rows["Slice (I->S)"].astype(int), "level": rows["VertLevel"].fillna("0").astype(int)}
    )
    sem, ins = _ras(sem_path), _ras(ins_path)
    bodies = np.where(np.isin(sem, (49, 62)), ins % 100, 0)  # endplates 200+X belong to vertebra X
    zooms = np.array(nib.as_closest_canonical(nib.load(str(sem_path))).header.get_zooms()[:3], float)
    nearest = nearest_structure_per_slice(sem, bodies, zooms)
    assert {v for v in nearest.values() if v > 0} <= {5, 6, 7}
    assert_levels_match_bodies(per_slice, nearest)
    seen = [int(v) for v in per_slice["level"] if v]
    assert seen == sorted(seen, reverse=True) and {6, 7} <= set(seen)  # C7 lowest, levels rise going up
    assert 2 <= len(set(seen)) <= 3
    # the kind is checked against the data: the semantic mask as --vertfile is refused
    proc = _nnspine("csa", "-i", sem_path, "--label", "60", "--vertfile", sem_path, "-o", tmp_path / "x.csv")
    assert proc.returncode == 2 and "semantic" in proc.stderr
