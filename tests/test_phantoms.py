"""Phantoms (cord, spine, lesion), their truth, the ``nnspine phantom`` command and the SPINEPS label tables."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import cc3d
import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial.transform import Rotation

from nnunet_spine.core.labels import (
    LEFT_RIGHT_PAIRS,
    SEMANTIC_LABELS,
    VERSE_NAMES,
    VERTEBRA_SUBREGIONS,
    consistency_problems,
    disc_instance,
    endplate_instance,
    instance_kind,
    instance_name,
    mirror_semantic,
    next_vertebra,
    vertebra_name,
    vertebra_number,
)
from nnunet_spine.phantoms.lesion import LESION_ROLES, LesionGrid, render_lesion_subject, write_lesion_dataset
from nnunet_spine.phantoms.spine import build_spine_model, render_spine
from nnunet_spine.phantoms.spine_dataset import write_spine_dataset

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SPINE_SEMANTIC = {0, 26, 41, 42, 43, 44, 45, 46, 47, 48, 49, 60, 61, 62, 100}
CONTRASTS = ("T2w", "T1w", "T2starw", "flip-1_mt-on_MTS", "flip-2_mt-off_MTS")


def nnspine(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["nnspine", *args], capture_output=True, text=True, timeout=300)


def load(path: Path) -> tuple[np.ndarray, np.ndarray]:
    img = nib.load(str(path))
    return np.asarray(img.dataobj), img.affine


def voxel_volume(affine: np.ndarray) -> float:
    return float(np.prod(np.sqrt((affine[:3, :3] ** 2).sum(0))))


def world(affine: np.ndarray, idx: np.ndarray) -> np.ndarray:
    return idx @ affine[:3, :3].T + affine[:3, 3]


# --------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def cord_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cord") / "ds"
    proc = nnspine("phantom", "--kind", "cord", "-o", str(out), "-q")
    return out, proc


@pytest.fixture(scope="module")
def spine_ds(tmp_path_factory):
    root = tmp_path_factory.mktemp("spine") / "ds"
    result = write_spine_dataset(root, n_subjects=2, seed=0)
    return root, result


@pytest.fixture(scope="module")
def lesion_ds(tmp_path_factory):
    root = tmp_path_factory.mktemp("lesion") / "ds"
    result = write_lesion_dataset(root, seed=0)
    return root, result


def spine_files(root: Path, sub: str = "sub-01"):
    truth = json.loads((root / "derivatives" / "truth" / sub / f"{sub}_truth.json").read_text())
    sem, aff = load(root / "derivatives" / "labels" / sub / "anat" / f"{sub}_T2w_seg-spine_msk.nii.gz")
    ins, aff2 = load(root / "derivatives" / "labels" / sub / "anat" / f"{sub}_T2w_seg-vert_msk.nii.gz")
    assert np.allclose(aff, aff2)
    return truth, sem, ins, aff


def lesion_files(root: Path, sub: str = "sub-01"):
    t = json.loads((root / "derivatives" / "truth" / sub / f"{sub}_truth.json").read_text())
    return t, {k: load(root / rel) for k, rel in t["files"].items()}


# --------------------------------------------------------------------------------------------- labels
def test_label_tables_match_spineps():
    assert set(SEMANTIC_LABELS) == SPINE_SEMANTIC - {0}
    assert VERTEBRA_SUBREGIONS == tuple(range(41, 50))
    assert SEMANTIC_LABELS[49] == "Vertebra_Corpus_border" and SEMANTIC_LABELS[100] == "Vertebra_Disc"
    assert (vertebra_number("C1"), vertebra_number("C7"), vertebra_number("T1"), vertebra_number("T12")) == (
        1,
        7,
        8,
        19,
    )
    assert (vertebra_number("L1"), vertebra_number("l5"), vertebra_number("L6"), vertebra_number("sacrum")) == (
        20,
        24,
        25,
        26,
    )
    assert all(vertebra_number(vertebra_name(n)) == n for n in VERSE_NAMES)
    assert disc_instance(20) == 120 and endplate_instance(24) == 224
    assert (
        instance_kind(124) == ("disc", 24)
        and instance_kind(207) == ("endplate", 7)
        and instance_kind(26) == ("vertebra", 26)
    )
    assert (
        instance_name(124) == "L5-S1 disc"
        and instance_name(119) == "T12-L1 disc"
        and instance_name(220) == "L1 endplate"
    )
    with pytest.raises(ValueError):
        instance_kind(0)
    assert next_vertebra(7) == 8 and next_vertebra(24) == 26
    sem = np.array([43, 44, 45, 46, 47, 48, 49, 60])
    assert mirror_semantic(sem).tolist() == [44, 43, 46, 45, 48, 47, 49, 60]


def test_consistency_checker_flags_problems():
    sem = np.array([[41, 49, 62, 100, 60, 61, 26, 0]])
    ins = np.array([[20, 20, 220, 120, 0, 0, 26, 0]])
    assert consistency_problems(sem, ins, vertebrae=[20, 26]) == []
    bad = ins.copy()
    bad[0, 4] = 20  # cord voxel given to a vertebra
    assert any("no instance" in p for p in consistency_problems(sem, bad))
    assert consistency_problems(sem, ins, vertebrae=[21, 26])  # instances of a vertebra not listed
    assert consistency_problems(sem, np.array([[20, 20, 220, 120, 0, 0, 26, 300]]))


@pytest.mark.skipif(not SHARED.exists(), reason=f"shared test data not found at {SHARED}")
@pytest.mark.parametrize(
    "sem_path, ins_path",
    [
        (
            "tptbox_sample_mri/sub-mri_seg-subreg_label-6_msk.nii.gz",
            "tptbox_sample_mri/sub-mri_seg-vert_label-6_msk.nii.gz",
        ),
        ("panoptica_spine_seg/semantic/ref.nii.gz", "panoptica_spine_seg/matched_instance/ref.nii.gz"),
    ],
)
def test_consistency_rules_hold_on_real_spineps_masks(sem_path, ins_path):
    sem, _ = load(SHARED / sem_path)
    ins, _ = load(SHARED / ins_path)
    assert consistency_problems(sem, ins) == []


# --------------------------------------------------------------------------------------------- spine
def test_spine_files_and_geometry(spine_ds):
    root, result = spine_ds
    assert set(result["subjects"]) == {"sub-01", "sub-02"}
    for sub in result["subjects"]:
        img = nib.load(str(root / sub / "anat" / f"{sub}_T2w.nii.gz"))
        assert nib.aff2axcodes(img.affine) == ("P", "I", "R")
        assert np.allclose(img.header.get_zooms(), (1.0, 1.0, 3.0))
        assert img.get_data_dtype() == np.float32
    assert (root / "dataset_description.json").exists() and (
        root / "derivatives" / "labels" / "dataset_description.json"
    ).exists()


def test_spine_label_sets_exact(spine_ds):
    root, _ = spine_ds
    truth, sem, ins, _ = spine_files(root)
    verts = [20, 21, 22, 23, 24]
    assert truth["vertebra_ids"] == verts
    assert set(np.unique(sem).tolist()) == SPINE_SEMANTIC
    expected = {0, 26} | set(verts) | {100 + v for v in verts} | {200 + v for v in verts}
    assert set(np.unique(ins).tolist()) == expected
    assert truth["instance_ids"] == sorted(expected - {0})
    assert [d["id"] for d in truth["discs"]] == [120, 121, 122, 123, 124]
    assert truth["discs"][-1]["lower"] == 26


def test_spine_semantic_instance_consistency(spine_ds):
    root, _ = spine_ds
    truth, sem, ins, aff = spine_files(root)
    verts = truth["vertebra_ids"]
    subregion = np.isin(sem, VERTEBRA_SUBREGIONS)
    assert np.array_equal(subregion, np.isin(ins, verts))  # vertebra X covers exactly 41-49 voxels
    assert np.array_equal(sem == 26, ins == 26)
    assert np.array_equal(sem == 100, (ins > 100) & (ins < 200))
    assert np.array_equal(sem == 62, ins > 200)
    assert np.array_equal(np.isin(sem, (0, 60, 61)), ins == 0)  # cord/canal carry no instance (SPINEPS)
    assert consistency_problems(sem, ins, vertebrae=verts + [26]) == []
    z = lambda m: world(aff, np.argwhere(m))[:, 2].mean()  # noqa: E731
    order = verts + [26]
    body_z = {v: z((ins == v) & (sem == 49)) if v != 26 else z(ins == 26) for v in order}
    assert all(body_z[a] > body_z[b] for a, b in zip(order[:-1], order[1:]))  # top to bottom
    cross = ndimage.generate_binary_structure(3, 1)
    for upper, lower in zip(order[:-1], order[1:]):
        disc = ins == 100 + upper
        assert body_z[upper] > z(disc) > body_z[lower]
        ring = ndimage.binary_dilation(disc, cross)
        assert (ring & (ins == 200 + upper)).any()  # touches X's lower endplate ...
        # ... and the next body's upper endplate, which SPINEPS also numbers 200 + X (an endplate takes the
        # vertebra above it, phase_post.add_ivd_ep_vert_label), or the sacrum
        comps, n = ndimage.label(ins == 200 + upper, np.ones((3, 3, 3)))
        below = [c for c in range(1, n + 1) if z(comps == c) < z(disc)]
        if lower != 26:
            assert len(below) == 1 and (ring & (comps == below[0])).any()
        else:
            assert below == [] and (ring & (ins == 26)).any()
    for v in verts:
        ep = ins == 200 + v
        # X's lower endplate and the upper one of the vertebra below it; the top vertebra's upper one too
        expected = (2 if v != verts[-1] else 1) + (1 if v == verts[0] else 0)
        assert cc3d.connected_components(ep.astype(np.uint8), connectivity=26, return_N=True)[1] == expected
        assert (ndimage.binary_dilation(ep, cross) & (ins == v) & (sem == 49)).any()
        present = set(np.unique(sem[ins == v]).tolist())
        assert present == set(VERTEBRA_SUBREGIONS), f"vertebra {v} lacks {set(VERTEBRA_SUBREGIONS) - present}"


def test_spine_left_right_and_cord_in_canal(spine_ds):
    root, _ = spine_ds
    _, sem, _, aff = spine_files(root)
    for left, right in LEFT_RIGHT_PAIRS:
        assert (world(aff, np.argwhere(sem == left))[:, 0] < 0).all()
        assert (world(aff, np.argwhere(sem == right))[:, 0] > 0).all()
        assert (sem == left).sum() == (sem == right).sum()  # symmetric phantom
    cord = sem == 60
    neighbours = ndimage.binary_dilation(cord, ndimage.generate_binary_structure(3, 1)) & ~cord
    assert set(np.unique(sem[neighbours]).tolist()) == {61}


def _local(world_mm: np.ndarray, origin_mm, tilt_deg: float) -> np.ndarray:
    """World points → a frame tilted by ``tilt_deg`` about the R-L axis (the documented vertebra frame:
    u = R-L, v = A-P, w = up, leaning anteriorly for positive tilt), by SciPy's rotation."""
    axes = Rotation.from_euler("x", -tilt_deg, degrees=True).as_matrix()  # columns: u, v, w
    return (world_mm - np.asarray(origin_mm, float)) @ axes


def _inside_ellipse(p: np.ndarray, a: float, b: float) -> np.ndarray:
    return (p[:, 0] / a) ** 2 + (p[:, 1] / b) ** 2 <= 1.0


def test_spine_truth_matches_independent_rendering(spine_ds):
    """The truth's voxel counts against the documented shapes drawn again here, on every voxel centre,
    from the model parameters (bodies, endplates: exact; sacrum and discs: at most a few voxels fewer,
    those taken by structures painted later, as the phantom documents)."""
    root, result = spine_ds
    for index, sub in enumerate(sorted(result["subjects"])):
        truth, sem, _, aff = spine_files(root, sub)
        model = build_spine_model(5, seed=0, index=index)
        assert truth["voxel_volume_mm3"] == pytest.approx(1.0 * 1.0 * 3.0)  # the documented default voxel
        world_mm = world(aff, np.indices(sem.shape).reshape(3, -1).T.astype(float))
        bodies = endplates = 0
        plate_ids: dict[int, int] = {}  # endplate instance -> voxels: each plate takes the vertebra above it (SPINEPS)
        for i, (vert, published) in enumerate(zip(model.vertebrae, truth["vertebrae"])):
            d = vert.dims
            assert published["body_centre_mm"] == pytest.approx(list(vert.centre_mm), abs=1e-4)
            assert published["body_semi_axes_mm"] == pytest.approx([d.half_width, d.half_depth], abs=1e-4)
            p = _local(world_mm, vert.centre_mm, vert.tilt_deg)
            body = _inside_ellipse(p, d.half_width, d.half_depth) & (np.abs(p[:, 2]) <= d.body_height / 2)
            plates = body & (np.abs(p[:, 2]) > d.body_height / 2 - model.endplate_mm)
            upper, lower = int((plates & (p[:, 2] > 0)).sum()), int((plates & (p[:, 2] <= 0)).sum())
            above = model.vertebrae[i - 1].number if i else vert.number
            plate_ids[200 + above] = plate_ids.get(200 + above, 0) + upper
            plate_ids[200 + vert.number] = plate_ids.get(200 + vert.number, 0) + lower
            assert truth["vertebra_subregion_voxels"][str(vert.number)]["49"] + plates.sum() == body.sum()
            bodies, endplates = bodies + body.sum() - plates.sum(), endplates + plates.sum()
        assert {k: truth["instance"][str(k)]["voxels"] for k in plate_ids} == plate_ids
        assert truth["semantic"]["49"]["voxels"] == bodies and truth["semantic"]["62"]["voxels"] == endplates
        s = model.sacrum
        p = _local(world_mm, s.top_centre_mm, s.tilt_deg)
        k = 1.0 - (1.0 - s.taper) * np.clip(-p[:, 2] / s.length, 0.0, 1.0)  # linear taper to the tip
        sacrum = (p[:, 2] <= 0) & (p[:, 2] >= -s.length) & _inside_ellipse(p, s.half_width * k, s.half_depth * k)
        assert 0 <= sacrum.sum() - truth["instance"]["26"]["voxels"] <= 10
        lowers = list(model.vertebrae[1:]) + [s]
        for up, low in zip(model.vertebrae, lowers):
            below = _local(world_mm, up.centre_mm, up.tilt_deg)[:, 2] <= -up.dims.body_height / 2
            if low is s:
                top, above = np.asarray(s.top_centre_mm), p[:, 2] >= 0
            else:
                top = low.top_centre()
                above = _local(world_mm, low.centre_mm, low.tilt_deg)[:, 2] >= low.dims.body_height / 2
            mid = _local(world_mm, 0.5 * (up.bottom_centre() + top), 0.5 * (up.tilt_deg + low.tilt_deg))
            disc = below & above & _inside_ellipse(mid, 1.03 * up.dims.half_width, 1.03 * up.dims.half_depth)
            assert 0 <= disc.sum() - truth["instance"][str(100 + up.number)]["voxels"] <= 0.005 * disc.sum()


def test_spine_truth_volumes_match_analytic_shapes(spine_ds):
    """Volumes (mm³) in the truth against the shapes' closed forms: elliptic cylinders (π a b h), endplate
    slabs (2 π a b e) and the tapered sacrum (π a b L (1 + t + t²) / 3). Point-sampling 1×1×3 mm voxels
    is off by about 1 % for these sizes."""
    root, result = spine_ds
    for index, sub in enumerate(sorted(result["subjects"])):
        truth = json.loads((root / "derivatives" / "truth" / sub / f"{sub}_truth.json").read_text())
        model = build_spine_model(5, seed=0, index=index)
        slabs = 0.0
        for vert in model.vertebrae:
            d, n = vert.dims, vert.number
            core = truth["vertebra_subregion_voxels"][str(n)]["49"] * truth["voxel_volume_mm3"]  # body less plates
            h = d.body_height - 2 * model.endplate_mm
            assert core == pytest.approx(math.pi * d.half_width * d.half_depth * h, rel=0.02)
            slabs += 2 * math.pi * d.half_width * d.half_depth * model.endplate_mm
        assert truth["semantic"]["62"]["volume_mm3"] == pytest.approx(slabs, rel=0.03)
        s = model.sacrum
        cone = math.pi * s.half_width * s.half_depth * s.length * (1 + s.taper + s.taper**2) / 3
        assert truth["instance"]["26"]["volume_mm3"] == pytest.approx(cone, rel=0.01)


def test_spine_deterministic(spine_ds, tmp_path):
    root, _ = spine_ds
    again = write_spine_dataset(tmp_path / "again", n_subjects=1, seed=0)
    assert (
        again["subjects"]["sub-01"]["semantic"]
        == json.loads((root / "derivatives/truth/sub-01/sub-01_truth.json").read_text())["semantic"]
    )
    for rel in (
        "sub-01/anat/sub-01_T2w.nii.gz",
        "derivatives/labels/sub-01/anat/sub-01_T2w_seg-spine_msk.nii.gz",
        "derivatives/labels/sub-01/anat/sub-01_T2w_seg-vert_msk.nii.gz",
    ):
        a, aa = load(root / rel)
        b, bb = load(tmp_path / "again" / rel)
        assert np.array_equal(a, b) and np.array_equal(aa, bb)
    other = render_spine(build_spine_model(5, seed=1), rng=np.random.default_rng(1))
    base = render_spine(build_spine_model(5, seed=0), rng=np.random.default_rng(1))
    assert other["semantic"].shape != base["semantic"].shape or not np.array_equal(other["semantic"], base["semantic"])
    s1, _ = load(root / "derivatives/labels/sub-02/anat/sub-02_T2w_seg-spine_msk.nii.gz")
    s0, _ = load(root / "derivatives/labels/sub-01/anat/sub-01_T2w_seg-spine_msk.nii.gz")
    assert s0.shape != s1.shape or not np.array_equal(s0, s1)  # subjects differ too


def test_spine_other_stretch_is_consistent():
    model = build_spine_model(9, seed=2)  # T8-L5
    r = render_spine(model)
    verts = [v.number for v in model.vertebrae]
    assert verts == list(range(16, 25))
    assert consistency_problems(r["semantic"], r["instance"], vertebrae=verts + [26]) == []
    assert set(np.unique(r["instance"]).tolist()) == {0, 26} | set(verts) | {100 + v for v in verts} | {
        200 + v for v in verts
    }


# --------------------------------------------------------------------------------------------- lesion
def test_lesion_files_and_truth_volumes(lesion_ds):
    root, _ = lesion_ds
    t, f = lesion_files(root)
    assert set(t["files"]) == {"image", "cord", "lesion", "instances", "prediction"}
    assert t["files"]["cord"].endswith("sub-01_T2w_label-SC_seg.nii.gz")
    assert t["files"]["lesion"].startswith("derivatives/labels/") and t["files"]["lesion"].endswith(
        "_T2w_label-lesion_seg.nii.gz"
    )
    inst, aff = f["instances"]
    lesion, _ = f["lesion"]
    cord, _ = f["cord"]
    vox = voxel_volume(aff)
    assert set(np.unique(lesion).tolist()) == {0, 1} and set(np.unique(cord).tolist()) == {0, 1}
    assert np.array_equal(lesion > 0, inst > 0)
    assert set(np.unique(inst).tolist()) == set(range(len(LESION_ROLES) + 1))
    assert t["n_lesions"] == len(t["lesions"]) == 10
    assert not (lesion.astype(bool) & ~cord.astype(bool)).any()  # lesions lie in the cord
    for les in t["lesions"]:
        m = inst == les["id"]
        assert les["role"] == LESION_ROLES[les["id"] - 1]
        assert les["voxels"] == int(m.sum())
        assert les["volume_mm3"] == pytest.approx(m.sum() * vox, rel=1e-6)
        assert np.allclose(les["centroid_mm"], world(aff, np.argwhere(m)).mean(0), atol=1e-3)
    by_role = {les["role"]: les for les in t["lesions"]}
    assert by_role["tiny_1"]["voxels"] == 1 and by_role["tiny_3"]["voxels"] == 3
    assert t["total_lesion_volume_mm3"] == pytest.approx(lesion.sum() * vox, rel=1e-6)
    image, _ = f["image"]
    assert image[inst > 0].mean() > image[(cord > 0) & (inst == 0)].mean() + 0.2  # lesions are bright on T2w


def test_lesion_border_and_touching(lesion_ds):
    root, _ = lesion_ds
    t, f = lesion_files(root)
    inst, _ = f["instances"]
    cord = f["cord"][0].astype(bool)
    outside = ndimage.binary_dilation(~cord, ndimage.generate_binary_structure(3, 1))
    for les in t["lesions"]:
        assert les["at_cord_border"] == bool(((inst == les["id"]) & outside).any())
    border = [les["role"] for les in t["lesions"] if les["at_cord_border"]]
    assert {"border_a", "border_b"} <= set(border)
    face, any26 = set(), set()
    for a in range(1, 11):
        d6 = ndimage.binary_dilation(inst == a, ndimage.generate_binary_structure(3, 1))
        d26 = ndimage.binary_dilation(inst == a, ndimage.generate_binary_structure(3, 3))
        for b in range(a + 1, 11):
            if (d6 & (inst == b)).any():
                face.add((a, b))
            if (d26 & (inst == b)).any():
                any26.add((a, b))
    ids = {r: LESION_ROLES.index(r) + 1 for r in LESION_ROLES}
    assert face == {(ids["face_a"], ids["face_b"])}
    assert any26 == {(ids["face_a"], ids["face_b"]), (ids["corner_a"], ids["corner_b"])}
    pairs = {tuple(p["ids"]): p for p in t["touching_pairs"]}
    assert pairs[(5, 6)]["contact"] == "face" and not pairs[(5, 6)]["separate_under_6"]
    assert pairs[(7, 8)]["separate_under_6"] and not pairs[(7, 8)]["separate_under_26"]


def test_lesion_counts_under_connectivity(lesion_ds):
    root, _ = lesion_ds
    t, f = lesion_files(root)
    lesion = f["lesion"][0].astype(np.uint8)
    n6 = cc3d.connected_components(lesion, connectivity=6, return_N=True)[1]
    n26 = cc3d.connected_components(lesion, connectivity=26, return_N=True)[1]
    assert (n6, n26) == (t["n_lesions"] - 1, t["n_lesions"] - 2) == (9, 8)
    assert t["connected_components"]["6"] == n6 and t["connected_components"]["26"] == n26


def _detect(ref: np.ndarray, pred: np.ndarray, connectivity: int) -> dict:
    lr, nr = cc3d.connected_components(ref.astype(np.uint8), connectivity=connectivity, return_N=True)
    lp, np_ = cc3d.connected_components(pred.astype(np.uint8), connectivity=connectivity, return_N=True)
    tp_ref = sum(1 for i in range(1, nr + 1) if pred[lr == i].any())
    tp_pred = sum(1 for j in range(1, np_ + 1) if ref[lp == j].any())
    return {
        "ref_components": nr,
        "pred_components": np_,
        "tp_ref": tp_ref,
        "fn": nr - tp_ref,
        "tp_pred": tp_pred,
        "fp": np_ - tp_pred,
    }


def test_lesion_prediction_known_errors(lesion_ds):
    root, _ = lesion_ds
    t, f = lesion_files(root)
    inst, _ = f["instances"]
    ref = f["lesion"][0] > 0
    pred = f["prediction"][0] > 0
    p = t["prediction"]
    for c in (6, 26):
        got = _detect(ref, pred, c)
        assert got == p["expected"][str(c)]
        assert got["fn"] == 1 and got["fp"] == 1 and got["pred_components"] == got["ref_components"] + 1
    assert not pred[inst == p["missed"][0]].any()
    split = (inst == p["split"]["lesion"]) & pred
    assert cc3d.connected_components(split.astype(np.uint8), connectivity=26, return_N=True)[1] == 2
    be = p["boundary_error"]
    truth_b = inst == be["lesion"]
    near = ndimage.binary_dilation(truth_b, ndimage.generate_binary_structure(3, 3), iterations=2) & pred
    assert truth_b[pred].sum() == truth_b.sum() and near.sum() == be["pred_voxels"] > be["truth_voxels"]
    assert be["dice"] == pytest.approx(2 * truth_b.sum() / (truth_b.sum() + near.sum()), abs=1e-6)
    fp_voxels = pred & ~ndimage.binary_dilation(ref, ndimage.generate_binary_structure(3, 3), iterations=2)
    assert fp_voxels.sum() == p["false_positive"]["voxels"]


def test_lesion_deterministic(lesion_ds, tmp_path):
    root, _ = lesion_ds
    write_lesion_dataset(tmp_path / "again", seed=0)
    t, f = lesion_files(root)
    for key, rel in t["files"].items():
        a, aa = load(root / rel)
        b, bb = load(tmp_path / "again" / rel)
        assert np.array_equal(a, b) and np.array_equal(aa, bb), key
    from nnunet_spine.phantoms.cord_dataset import subject_model

    other = render_lesion_subject(subject_model(0, 1), LesionGrid(), np.random.default_rng([1, 0, 17]))
    assert not np.array_equal(other["instances"], f["instances"][0])
    assert not np.array_equal(other["image"], f["image"][0])


# --------------------------------------------------------------------------------------------- cord (CLI)
def test_cord_cli_files_and_truth(cord_run):
    out, proc = cord_run
    assert proc.returncode == 0, proc.stderr
    assert "derivatives/truth" in proc.stdout
    truth = json.loads((out / "derivatives/truth/sub-01/sub-01_truth.json").read_text())
    csa = truth["csa_per_level_mm2"]
    assert len(csa) >= 4 and all(60.0 <= v <= 100.0 for v in csa.values())
    shifts = {name: a["shift_mm"] for name, a in truth["acquisitions"].items()}
    assert set(shifts) == set(CONTRASTS)
    assert all(len(s) == 3 for s in shifts.values()) and any(np.any(np.asarray(s) != 0) for s in shifts.values())
    for c in CONTRASTS:
        img, aff = load(out / "sub-01" / "anat" / f"sub-01_{c}.nii.gz")
        binary, baff = load(out / "derivatives/labels/sub-01/anat" / f"sub-01_{c}_label-SC_seg.nii.gz")
        soft, _ = load(out / "derivatives/truth/sub-01/anat" / f"sub-01_{c}_label-SC_softseg.nii.gz")
        for suffix in ("_label-SC_seg_labeled", "_label-discs_dlabel"):
            assert (out / "derivatives/labels/sub-01/anat" / f"sub-01_{c}{suffix}.nii.gz").exists()
        assert img.shape == binary.shape == soft.shape and np.allclose(aff, baff)
        assert binary.any() and np.array_equal(binary > 0, soft >= 0.5)


# --------------------------------------------------------------------------------------------- CLI
@pytest.mark.parametrize("kind", ["cord", "spine", "lesion"])
def test_cli_refuses_non_empty_output(kind, tmp_path):
    out = tmp_path / "ds"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    proc = nnspine("phantom", "--kind", kind, "-o", str(out))
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert "--overwrite" in proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


def test_cli_overwrite_and_spine_options(tmp_path):
    out = tmp_path / "ds"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    proc = nnspine("phantom", "--kind", "spine", "-o", str(out), "--overwrite", "--vertebrae", "2", "--seed", "4", "-q")
    assert proc.returncode == 0, proc.stderr
    assert "derivatives/truth/sub-XX/sub-XX_truth.json" in proc.stdout
    truth = json.loads((out / "derivatives/truth/sub-01/sub-01_truth.json").read_text())
    assert truth["vertebra_ids"] == [23, 24] and truth["seed"] == 4
    assert (out / "derivatives/labels/sub-01/anat/sub-01_T2w_seg-vert_msk.nii.gz").exists()
    bad = nnspine("phantom", "--kind", "lesion", "-o", str(tmp_path / "x"), "--vertebrae", "3")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "Traceback" not in bad.stderr
    assert not (tmp_path / "x").exists()


def test_cli_help_documents_kinds():
    proc = nnspine("phantom", "--help")
    assert proc.returncode == 0
    for word in (
        "cord",
        "spine",
        "lesion",
        "mm",
        "seg-spine_msk",
        "seg-vert_msk",
        "label-lesion_seg",
        "truth.json",
        "nnspine phantom --kind",
    ):
        assert word in proc.stdout


@pytest.mark.parametrize("seed, index", [(2, 2), (0, 0)])
def test_every_lesion_is_one_piece_under_6_connectivity(seed, index):
    """Seed 2's third subject had a 'medium' lesion whose rounded slice centres stepped diagonally: two pieces under
    6-connectivity, and the phantom refused itself (the lesion demo's seed 2). Each lesion is one component now,
    counted here with scipy."""
    from scipy import ndimage

    from nnunet_spine.phantoms.cord_dataset import subject_model
    from nnunet_spine.phantoms.lesion import LESION_ROLES, LesionGrid, render_lesion_subject

    r = render_lesion_subject(subject_model(index, seed), LesionGrid(), np.random.default_rng([seed, index, 17]))
    inst = np.asarray(r["instances"])
    for k, role in enumerate(LESION_ROLES, start=1):
        assert ndimage.label(inst == k)[1] == 1, role
