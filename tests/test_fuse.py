"""Fusion of cutout predictions into a vertebra instance mask (``nnspine fuse``).

"Perfect" predictions are built here from a reference instance mask, independently of the code under
test: each cutout grid is filled by scipy's nearest-neighbour resampling of the reference, the centre
vertebra is the reference instance at the cutout's centre point, and its neighbours come from the S-I
order of the reference vertebrae's body centroids. The fused mask must then reproduce the reference
(panoptica's lumbar case, the spine phantom, the TPTBox sample), and stay close to it when predictions
are perturbed.
"""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from nnunet_spine.cli import main
from nnunet_spine.core.cutouts import CaseCutouts, case_name, cut_case, load_semantic, read_description
from nnunet_spine.core.geometry import resample_to_grid
from nnunet_spine.core.io import InputError, load_image, voxel_sizes
from nnunet_spine.core.labels import (
    CORPUS,
    DISC,
    ENDPLATE,
    ENDPLATE_OFFSET,
    SACRUM,
    consistency_problems,
    disc_instance,
    endplate_instance,
    is_vertebra,
    vertebra_number,
)
from nnunet_spine.postprocessing.spine.fusion import Fusion, assign_discs_endplates, fuse_arrays
from nnunet_spine.postprocessing.spine.fusion_files import output_names


# --------------------------------------------------------------------------------------------- helpers
def vertebra_order(sem: np.ndarray, ref: np.ndarray, affine: np.ndarray) -> list[int]:
    """Reference vertebra ids (sacrum, coccyx excluded) from top to bottom by body-centroid world z."""
    ids = [int(v) for v in np.unique(ref) if 1 <= v <= 28 and v not in (SACRUM, 27)]
    z = {}
    for v in ids:
        m = (ref == v) & (sem == CORPUS)
        ijk = np.argwhere(m if m.any() else ref == v).mean(axis=0)
        z[v] = float(affine[2, :3] @ ijk + affine[2, 3])
    return sorted(ids, key=lambda v: -z[v])


def perfect_predictions(sem_img, ref_img, record: CaseCutouts) -> dict[str, np.ndarray]:
    """Cutout predictions (1 above, 2 centre, 3 below) made from the reference instance mask."""
    ref, aff = np.asarray(ref_img.data), ref_img.affine
    order = vertebra_order(np.asarray(sem_img.data), ref, aff)
    inv = np.linalg.inv(aff)
    out = {}
    for c in record.cutouts:
        ijk = tuple(int(round(x)) for x in inv[:3, :3] @ c.centre_mm + inv[:3, 3])
        centre = int(ref[ijk])
        assert centre in order, f"cutout {c.name} is not centred in a vertebra"
        k = order.index(centre)
        cut = resample_to_grid(ref, aff, c.shape, c.affine, order=0)
        pred = np.zeros(c.shape, np.uint8)
        if k > 0:
            pred[cut == order[k - 1]] = 1
        pred[cut == centre] = 2
        if k + 1 < len(order):
            pred[cut == order[k + 1]] = 3
        out[c.name] = pred
    return out


def dice_per_value(ref: np.ndarray, pred: np.ndarray, values) -> dict[int, float]:
    """Dice of each reference value with the same value in the prediction."""
    out = {}
    for v in values:
        a, b = ref == v, pred == v
        out[int(v)] = 2.0 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))
    return out


def vertebrae_of(ref: np.ndarray) -> list[int]:
    return [int(v) for v in np.unique(ref) if is_vertebra(v) and v != SACRUM]


def shifted(pred: np.ndarray, d) -> np.ndarray:
    """A prediction moved by the integer voxel vector ``d`` (zeros move in)."""
    out = np.zeros_like(pred)
    src = tuple(slice(max(0, -x), n - max(0, x)) for x, n in zip(d, pred.shape))
    dst = tuple(slice(max(0, x), n - max(0, -x)) for x, n in zip(d, pred.shape))
    out[dst] = pred[src]
    return out


class Case:
    """A semantic mask, its reference instance mask, cutouts and perfect predictions."""

    def __init__(self, sem_path, ref_path, top: str):
        self.sem = load_semantic(sem_path)
        self.ref = load_image(ref_path, "labels")
        self.record = cut_case(self.sem, case_name(sem_path))[0]
        self.preds = perfect_predictions(self.sem, self.ref, self.record)
        self.top = vertebra_number(top)
        self.names = [c.name for c in self.record.cutouts]

    def fuse(self, preds=None, **kw) -> Fusion:
        return fuse_arrays(
            self.sem, self.record, self.preds if preds is None else preds, top_vertebra=kw.pop("top", self.top), **kw
        )


@pytest.fixture(scope="module")
def panoptica(shared_data) -> Case:
    d = shared_data / "panoptica_spine_seg"
    if not (d / "semantic" / "ref.nii.gz").exists():
        pytest.skip(f"{d} absent")
    return Case(d / "semantic" / "ref.nii.gz", d / "matched_instance" / "ref.nii.gz", "C2")  # ids 2..8 from the top


@pytest.fixture(scope="module")
def spine5(tmp_path_factory) -> Case:
    from nnunet_spine.phantoms.spine_dataset import write_spine_dataset

    root = tmp_path_factory.mktemp("fuse_spine5") / "bids"
    truth = write_spine_dataset(root, n_subjects=1, seed=5)["subjects"]["sub-01"]
    labels = root / "derivatives" / "labels" / "sub-01" / "anat"
    case = Case(labels / "sub-01_T2w_seg-spine_msk.nii.gz", labels / "sub-01_T2w_seg-vert_msk.nii.gz", "L1")
    case.truth = truth
    case.root = root
    return case


# --------------------------------------------------------------------------------------------- perfect
def test_perfect_predictions_reproduce_panoptica(panoptica):
    f = panoptica.fuse()
    ref = np.asarray(panoptica.ref.data)
    assert f.vertebrae == vertebrae_of(ref) == [2, 3, 4, 5, 6, 7, 8]
    d = dice_per_value(ref, f.instance, [v for v in np.unique(ref) if v])
    assert min(d[v] for v in f.vertebrae) > 0.99
    # panoptica's discs and endplates follow SPINEPS' rule (nearest body centre above): reproduced too
    assert min(d.values()) > 0.99, d
    assert d[SACRUM] == 1.0
    assert consistency_problems(f.semantic, f.instance) == []
    assert f.missing == [] and len(f.used) == 7


def test_perfect_predictions_reproduce_the_phantom(spine5):
    f = spine5.fuse()
    ref = np.asarray(spine5.ref.data)
    assert f.vertebrae == spine5.truth["vertebra_ids"] == [20, 21, 22, 23, 24]
    plates = sorted({e["id"] for e in spine5.truth["endplates"]})
    d = dice_per_value(ref, f.instance, f.vertebrae + [SACRUM] + [d["id"] for d in spine5.truth["discs"]] + plates)
    assert min(d.values()) > 0.99, d  # endplates too: the phantom numbers them as SPINEPS does
    assert consistency_problems(f.semantic, f.instance) == []
    assert np.array_equal(f.semantic, np.asarray(spine5.sem.data))  # nothing had to be removed


def test_endplates_take_the_nearest_body_centre_above(spine5):
    """SPINEPS gives an endplate the vertebra whose body centre is nearest above it (``phase_post.
    add_ivd_ep_vert_label``; the top vertebra's upper endplate keeps the top vertebra): the upper endplate of X
    gets the vertebra above X. The phantom numbers its endplates so, and the fusion reproduces them."""
    import cc3d

    f = spine5.fuse()
    ref = np.asarray(spine5.ref.data)
    aff = spine5.sem.affine
    z_body = {v["id"]: v["body_centre_mm"][2] for v in spine5.truth["vertebrae"]}
    ids = spine5.truth["vertebra_ids"]  # top to bottom
    comps = cc3d.connected_components(np.asarray(spine5.sem.data) == ENDPLATE, connectivity=26)
    checked = 0
    for c in range(1, int(comps.max()) + 1):
        m = comps == c
        z = float(aff[2, :3] @ np.argwhere(m).mean(axis=0) + aff[2, 3])
        above = [v for v in ids if z_body[v] > z]
        expected = ENDPLATE_OFFSET + (above[-1] if above else ids[0])
        assert set(np.unique(ref[m])) == {expected}  # the phantom
        assert set(np.unique(f.instance[m])) == {expected}  # the fusion
        checked += 1
    assert checked == 2 * len(ids)


def test_numbering_from_the_top_and_centroids(spine5):
    f = spine5.fuse(top=None, labelling="none")
    ref = np.asarray(spine5.ref.data)
    assert f.vertebrae == [1, 2, 3, 4, 5] and not f.named
    assert "not anatomically labelled" in f.labelling.method
    for n, v in enumerate(spine5.truth["vertebra_ids"], start=1):
        assert dice_per_value(ref == v, f.instance == n, [True])[1] > 0.99
        assert np.allclose(f.centroids_mm[n], spine5.truth["vertebrae"][n - 1]["body_centre_mm"], atol=1.0)
    assert disc_instance(1) in f.instance and endplate_instance(5) in f.instance
    with pytest.raises(InputError, match="past L6"):
        spine5.fuse(top=vertebra_number("L4"))  # five vertebrae from L4 run past L6


def test_tptbox_sample_smaller_than_a_cutout(shared_data):
    d = shared_data / "tptbox_sample_mri"
    if not (d / "sub-mri_seg-subreg_label-6_msk.nii.gz").exists():
        pytest.skip(f"{d} absent")
    case = Case(d / "sub-mri_seg-subreg_label-6_msk.nii.gz", d / "sub-mri_seg-vert_label-6_msk.nii.gz", "C5")
    f = case.fuse()
    ref = np.asarray(case.ref.data)
    assert f.vertebrae == [5, 6, 7]
    dv = dice_per_value(ref, f.instance, [5, 6, 7])
    assert min(dv.values()) > 0.99, dv
    # discs and endplates of the sample follow the same rule as the fusion
    dd = dice_per_value(ref, f.instance, [105, 106, 205, 206, 207])
    assert min(dd.values()) > 0.99, dd


# --------------------------------------------------------------------------------------------- perturbed
def perturbations(case: Case) -> dict[str, dict]:
    names, preds = case.names, case.preds
    mid = names[len(names) // 2]
    rng = np.random.default_rng(7)
    out = {
        "dropped middle cutout": {**preds, mid: None},
        "dropped top cutout": {**preds, names[0]: None},
        # every cutout moved by its own random 1-2 voxel vector (boundaries off by up to 1.5-3.3 mm)
        "shifted boundaries": {n: shifted(p, rng.choice([-2, -1, 1, 2], size=3)) for n, p in preds.items()},
    }
    wrong = preds[mid].copy()
    wrong[wrong == 3] = 2  # the vertebra below labelled as the centre one: one mask spans two vertebrae
    out["one cutout with a wrong label"] = {**preds, mid: wrong}
    grown = preds[mid].copy()  # the centre label grown by two voxels into its neighbours (and background)
    from scipy import ndimage

    grown[ndimage.binary_dilation(grown == 2, iterations=2)] = 2
    out["centre grown by two voxels"] = {**preds, mid: grown}
    return out


@pytest.mark.parametrize("which", ["panoptica", "spine5"])
def test_perturbed_predictions_still_recover_every_vertebra(which, request):
    case = request.getfixturevalue(which)
    ref = np.asarray(case.ref.data)
    verts = vertebrae_of(ref)
    for name, preds in perturbations(case).items():
        f = case.fuse(preds)
        assert f.vertebrae == verts, name
        d = dice_per_value(ref, f.instance, verts)
        assert min(d.values()) > 0.9, (name, d)
        assert consistency_problems(f.semantic, f.instance) == [], name
    dropped = case.fuse({**case.preds, case.names[1]: None})
    assert dropped.missing == [case.names[1]]


def test_instance_metrics_yardstick(panoptica):
    """``nnspine evaluate instances``' metrics (label matching): every vertebra a true positive."""
    from nnunet_spine.postprocessing.spine import panoptic as metrics

    f = panoptica.fuse(perturbations(panoptica)["shifted boundaries"])
    rows = {
        r["structure"]: r
        for r in metrics.instance_metrics(np.asarray(panoptica.ref.data), f.instance, voxel_sizes(panoptica.sem.affine))
    }
    v = rows["vertebra"]
    assert v["tp"] == v["ref_instances"] == 7 and v["fp"] == 0 and v["sq_dsc"] > 0.95


def test_no_prediction_at_all_is_bad_input(spine5):
    with pytest.raises(InputError, match="no prediction for any"):
        spine5.fuse({n: None for n in spine5.names})


# --------------------------------------------------------------------------------------------- files / CLI
def test_output_names():
    assert output_names("a/sub-01_T2w_seg-spine_msk.nii.gz") == {
        "vert": "sub-01_T2w_seg-vert_msk.nii.gz",
        "spine": "sub-01_T2w_seg-spine_msk.nii.gz",
        "ctd": "sub-01_T2w_seg-spine_ctd.json",
        "snp": "sub-01_T2w_seg-spine_snp.png",
        "info": "sub-01_T2w_seg-vert_msk.json",
        "discs": "sub-01_T2w_label-discs_dlabel.nii.gz",
    }
    assert output_names("sub-01_T2w.nii.gz")["vert"] == "sub-01_T2w_seg-vert_msk.nii.gz"
    assert output_names("sub-mri_seg-subreg_label-6_msk.nii.gz")["vert"] == "sub-mri_seg-vert_label-6_msk.nii.gz"
    assert output_names("ref.nii.gz")["ctd"] == "ref_seg-spine_ctd.json"


@pytest.fixture()
def files(spine5, tmp_path):
    """Cutouts written by the CLI and perfect predictions saved on their grids."""
    sem_path = spine5.sem.path
    assert main(["cutouts", "--semantic", str(sem_path), "-o", str(tmp_path / "cut"), "-q"]) == 0
    _, (record,) = read_description(tmp_path / "cut")
    pred_dir = tmp_path / "pred"
    pred_dir.mkdir()
    for c in record.cutouts:
        nib.save(nib.Nifti1Image(spine5.preds[c.name], c.affine), pred_dir / f"{c.name}.nii.gz")
    return {"sem": sem_path, "cut": tmp_path / "cut", "pred": pred_dir, "out": tmp_path / "out", "record": record}


def fuse_cli(f, *extra, sem=None, pred=None) -> int:
    return main(
        [
            "fuse",
            "--semantic",
            str(sem or f["sem"]),
            "--cutouts",
            str(f["cut"]),
            "--predictions",
            str(pred or f["pred"]),
            "-o",
            str(f["out"]),
            "-q",
            *extra,
        ]
    )


def test_cli_fuse_writes_spineps_outputs(files, spine5, capsys):
    assert fuse_cli(files) == 0  # no option: the sacrum anchors L5
    out = files["out"]
    assert {  # and the provenance sidecars of issue 26 §4 beside them
        "sub-01_T2w_seg-spine_ctd.json",
        "sub-01_T2w_seg-spine_msk.nii.gz",
        "sub-01_T2w_seg-spine_snp.png",
        "sub-01_T2w_seg-vert_msk.json",
        "sub-01_T2w_seg-vert_msk.nii.gz",
    } <= {p.name for p in out.iterdir()}
    vert = nib.load(out / "sub-01_T2w_seg-vert_msk.nii.gz")
    assert np.allclose(vert.affine, spine5.sem.affine) and vert.get_data_dtype() == np.uint8
    ref = np.asarray(spine5.ref.data)
    assert min(dice_per_value(ref, np.asarray(vert.dataobj), [20, 21, 22, 23, 24]).values()) > 0.99
    side = json.loads((out / "sub-01_T2w_seg-vert_msk.json").read_text())
    assert side["anatomically_labelled"] and "sacrum" in side["labelling"]["method"]
    rows = {r["id"]: r for r in side["centroids_mm"]}
    assert sorted(rows) == [20, 21, 22, 23, 24, SACRUM] and rows[20]["name"] == "L1"
    for v in spine5.truth["vertebrae"]:
        r = rows[v["id"]]
        assert np.allclose([r["x_mm"], r["y_mm"], r["z_mm"]], v["body_centre_mm"], atol=1.0)
    assert (out / "sub-01_T2w_seg-spine_snp.png").stat().st_size > 5000
    # SCT disc labels (issue 26 §1): one voxel per disc of the column, value X + 1 for the disc 100 + X below
    # vertebra X (SCT: value N = the disc at the top of level N), lying inside that disc
    discs = nib.load(out / "sub-01_T2w_label-discs_dlabel.nii.gz")
    labels, inst = np.asarray(discs.dataobj), np.asarray(vert.dataobj)
    assert np.allclose(discs.affine, vert.affine)
    disc_ids = sorted(int(v) for v in np.unique(inst) if 100 < v < 200)
    assert disc_ids and sorted(int(v) for v in labels[labels > 0]) == [d - 100 + 1 for d in disc_ids]
    for ijk in np.argwhere(labels):
        assert inst[tuple(ijk)] == 100 + int(labels[tuple(ijk)]) - 1
    assert fuse_cli(files) == 2  # outputs exist
    assert "--overwrite" in capsys.readouterr().err
    assert fuse_cli(files, "--overwrite", "--labelling", "none") == 0  # ids 1..n: no SCT values, no disc labels
    assert not (out / "sub-01_T2w_label-discs_dlabel.nii.gz").exists()  # the earlier run's labels are gone


def test_cli_fuse_missing_predictions_named_and_rest_fused(files, capsys):
    (files["pred"] / "sub-01_T2w_002.nii.gz").unlink()
    assert fuse_cli(files) == 0
    err = capsys.readouterr().err
    assert "sub-01_T2w_002" in err and "fused the other 4" in err
    assert (files["out"] / "sub-01_T2w_seg-vert_msk.nii.gz").exists()


@pytest.mark.parametrize(
    "problem",
    [
        "no predictions",
        "prediction grid",
        "prediction values",
        "semantic grid",
        "instance as semantic",
        "output replaces input",
        "bad top vertebra",
    ],
)
def test_cli_fuse_bad_input_exit_2_nothing_written(files, spine5, tmp_path, capsys, problem):
    kw, extra = {}, []
    name = files["record"].cutouts[1].name
    p = files["pred"] / f"{name}.nii.gz"
    if problem == "no predictions":
        empty = tmp_path / "empty"
        empty.mkdir()
        kw["pred"], needle = empty, "no prediction for any"
    elif problem == "prediction grid":
        img = nib.load(p)
        aff = img.affine.copy()
        aff[:3, 3] += 2.0
        nib.save(nib.Nifti1Image(np.asarray(img.dataobj), aff), p)
        needle = str(p)
    elif problem == "prediction values":
        img = nib.load(p)
        nib.save(nib.Nifti1Image(np.asarray(img.dataobj) * 2, img.affine), p)  # 4, 6: not cutout labels
        needle = str(p)
    elif problem == "semantic grid":
        other = tmp_path / "other" / files["sem"].name
        other.parent.mkdir()
        img = nib.load(files["sem"])
        nib.save(nib.Nifti1Image(np.asarray(img.dataobj)[:, 5:], img.affine), other)
        kw["sem"], needle = other, "not the same grid"
    elif problem == "instance as semantic":
        kw["sem"], needle = spine5.ref.path, "instance mask"
    elif problem == "output replaces input":
        files["out"] = files["sem"].parent
        needle = "replace the input"
    else:
        extra, needle = ["--top-vertebra", "Q7"], "not a vertebra name"
    before = set(files["out"].iterdir()) if files["out"].exists() else set()
    assert fuse_cli(files, *extra, **kw) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1
    after = set(files["out"].iterdir()) if files["out"].exists() else set()
    assert after == before


def test_disc_and_endplate_above_the_top_vertebra():
    """By hand, on a 1 mm RAS column (world z = k): body centres at z = 20 (top) and z = 5."""
    sem = np.zeros((3, 3, 30), np.uint8)
    sem[:, :, 27:29] = DISC  # above the top body centre
    sem[:, :, 25] = ENDPLATE  # above the top body centre too
    sem[:, :, 12:14] = DISC  # between the two: belongs to the top vertebra
    sem[:, :, 8] = ENDPLATE  # above the lower centre, below the top one
    affine = np.eye(4)
    centres = {20: np.array([1.0, 1.0, 20.0]), 21: np.array([1.0, 1.0, 5.0])}
    for named, top_disc in ((True, 119), (False, 0)):
        inst = np.zeros(sem.shape, np.uint16)
        dropped = np.zeros(sem.shape, bool)
        n = assign_discs_endplates(inst, sem, dropped, affine, centres, named)
        assert set(np.unique(inst[:, :, 27:29])) == {top_disc}  # T12-L1 disc when the top vertebra is L1
        assert n == (0 if named else 18) and dropped[:, :, 27:29].all() != named
        assert set(np.unique(inst[:, :, 25])) == {220}  # endplate above the top centre: the top vertebra
        assert set(np.unique(inst[:, :, 12:14])) == {120} and set(np.unique(inst[:, :, 8])) == {220}


def _disc_file(spine5, path, discs: dict[int, int]) -> None:
    """An SCT disc-label file on the semantic grid: one voxel (the disc's most central voxel) of the reference disc
    instance 100 + X for each ``{X: value}``."""
    ref = np.asarray(spine5.ref.data)
    out = np.zeros(ref.shape, np.uint8)
    for upper, value in discs.items():
        vox = np.argwhere(ref == disc_instance(upper))
        out[tuple(vox[np.argmin(np.linalg.norm(vox - vox.mean(axis=0), axis=1))])] = value
    nib.save(nib.Nifti1Image(out, spine5.sem.affine), path)


def test_cli_fuse_discfile_anchors_verify_and_disagree(files, spine5, tmp_path):
    """``nnspine fuse --discfile`` (the real console script): SCT disc 21 (L1-L2) and 23 (L3-L4) on the phantom's
    L1-L2 and L3-L4 discs agree with the sacrum: verified. A disc 22 on the L1-L2 disc (says L2 above it) makes the
    lumbar ids follow it and the sacrum disagree: not verified, said on stderr. A missing disc file: exit 2, one
    line."""
    import subprocess

    def run(*extra):
        cmd = ["nnspine", "fuse", "--semantic", str(files["sem"]), "--cutouts", str(files["cut"]), "--predictions",
               str(files["pred"]), "-o", str(files["out"]), "-q", "--overwrite", *extra]  # fmt: skip
        return subprocess.run(cmd, capture_output=True, text=True)

    good = tmp_path / "sub-01_T2w_label-discs_dlabel.nii.gz"
    _disc_file(spine5, good, {20: 21, 22: 23})
    r = run("--discfile", str(tmp_path))  # a folder: found by the case's name
    assert r.returncode == 0, r.stderr
    side = json.loads((files["out"] / "sub-01_T2w_seg-vert_msk.json").read_text())
    lab = side["labelling"]
    assert side["labelling_verified"] and lab["anchors"] == ["sacrum", "SCT disc 21 (L1-L2)", "SCT disc 23 (L3-L4)"]
    assert lab["ids"] == [20, 21, 22, 23, 24] and lab["verified_ids"] == ["L1", "L2", "L3", "L4", "L5"]
    header = json.loads((files["out"] / "sub-01_T2w_seg-spine_ctd.json").read_text())[0]
    assert header["nnspine_labelling_verified"] is True
    bad = tmp_path / "bad.nii.gz"
    _disc_file(spine5, bad, {20: 22})
    r = run("--discfile", str(bad))
    assert r.returncode == 0, r.stderr
    side = json.loads((files["out"] / "sub-01_T2w_seg-vert_msk.json").read_text())
    assert not side["labelling_verified"] and side["labelling"]["ids"] == [21, 22, 23, 24, 25]
    assert "labelling not verified: anchors disagree: sacrum says L5 where the ids say L6" in r.stderr
    missing = run("--discfile", str(tmp_path / "none.nii.gz"))
    assert missing.returncode == 2 and "none.nii.gz" in missing.stderr and "Traceback" not in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1


def test_instances_checks_the_disc_labels_before_the_network(files, tmp_path):
    """``nnspine instances --discfile``: a missing file, or a folder without the case's labels, is bad input found
    before any checkpoint loads (:func:`check_discfile`, called first by the command and by ``predict_instances``)."""
    from nnunet_spine.apps.instances import check_discfile
    from nnunet_spine.core.io import InputError

    check_discfile(None, files["sem"])  # not given: nothing to check
    with pytest.raises(InputError, match="none.nii.gz: not found"):
        check_discfile(tmp_path / "none.nii.gz", files["sem"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="sub-01_T2w_label-discs_dlabel.nii.gz for case sub-01_T2w"):
        check_discfile(tmp_path / "empty", files["sem"])
