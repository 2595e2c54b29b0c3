"""Whole spine on SPINEPS' terms: SPINEPS 2.x labels, TPTBox POI centroid files, SPINEPS' fusion rules
(union below 0.3 + 0.15·(4 − size), ties bottom first, disagreeing partners reported), anatomical ids from the
sacrum and dens anchors, gaps reported, and ``csa`` refusing a mask not anatomically labelled.

Truth: the spine phantom's own ids and body centres, TPTBox's ``POI.load`` / ``calc_poi_from_subreg_vert``,
and hand-built candidate masks whose Dice values are computed here with numpy.
"""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from test_fuse import Case, dice_per_value

from nnunet_spine.cli import main
from nnunet_spine.core.cutouts import load_semantic
from nnunet_spine.core.io import InputError, load_image
from nnunet_spine.core.labels import (
    CORPUS,
    DENS,
    DISC,
    ENDPLATE,
    ENDPLATE_INFERIOR,
    ENDPLATE_SUPERIOR,
    SACRUM,
    semantic_value_problem,
    to_semantic_14,
)
from nnunet_spine.postprocessing.spine.fusion import (
    Candidate,
    Disagreement,
    merge_couples,
    rank_couples,
    union_threshold,
)
from nnunet_spine.postprocessing.spine.labelling import label_column


# --------------------------------------------------------------------------------------------- phantoms
@pytest.fixture(scope="module")
def lumbar7(tmp_path_factory) -> Case:
    """Seven vertebrae ending at L5 on the sacrum: T11 … L5 (18 … 24)."""
    from nnunet_spine.phantoms.spine_dataset import write_spine_dataset

    root = tmp_path_factory.mktemp("lumbar7") / "bids"
    truth = write_spine_dataset(root, n_subjects=1, seed=2, n_vertebrae=7)["subjects"]["sub-01"]
    labels = root / "derivatives" / "labels" / "sub-01" / "anat"
    case = Case(labels / "sub-01_T2w_seg-spine_msk.nii.gz", labels / "sub-01_T2w_seg-vert_msk.nii.gz", "T11")
    case.truth, case.root, case.labels = truth, root, labels
    return case


def _variant(case: Case, tmp_path, name: str, edit) -> Case:
    """The case with its semantic (and reference) mask edited by ``edit(sem, ref)`` in place, rewritten."""
    sem = np.asarray(case.sem.data).copy()
    ref = np.asarray(case.ref.data).copy()
    edit(sem, ref)
    sp, rp = tmp_path / f"{name}_seg-spine_msk.nii.gz", tmp_path / f"{name}_seg-vert_msk.nii.gz"
    nib.save(nib.Nifti1Image(sem.astype(np.uint8), case.sem.affine), sp)
    nib.save(nib.Nifti1Image(ref.astype(np.uint8), case.ref.affine), rp)
    return Case(sp, rp, "T11")


# --------------------------------------------------------------------------------------------- §5 labelling
def test_plain_fuse_labels_a_lumbar_column_from_the_sacrum(lumbar7):
    f = lumbar7.fuse(top=None)
    ref = np.asarray(lumbar7.ref.data)
    assert lumbar7.truth["vertebra_ids"] == list(range(18, 25))
    assert f.named and f.vertebrae == list(range(18, 25)) and "sacrum" in f.labelling.method
    assert min(dice_per_value(ref, f.instance, range(18, 25)).values()) > 0.99
    discs = sorted(int(v) for v in np.unique(f.instance) if 100 < v < 200)
    assert discs == list(range(118, 125))  # disc below T11 … disc below L5
    assert f.labelling.anomalies == []


def test_no_anchor_is_said_and_numbered_from_the_top(lumbar7, tmp_path):
    def drop_sacrum(sem, ref):
        sem[sem == SACRUM] = 0
        ref[ref == SACRUM] = 0

    f = _variant(lumbar7, tmp_path, "sub-02_T2w", drop_sacrum).fuse(top=None)
    assert not f.named and f.vertebrae == list(range(1, 8))
    assert f.labelling.method.startswith("not anatomically labelled")


def test_dens_anchor_and_the_count_check(lumbar7, tmp_path):
    """A dens (51) painted into the top body: alone it makes the top vertebra C2; with the sacrum also present
    the count C2..L5 (7 vertebrae instead of 23) is reported, not silently obeyed."""
    ref0 = np.asarray(lumbar7.ref.data)

    def dens_on_top(sem, ref, keep_sacrum):
        top = (ref == 18) & (sem == CORPUS)
        sem[top] = DENS
        if not keep_sacrum:
            sem[sem == SACRUM] = 0
            ref[ref == SACRUM] = 0

    only = _variant(lumbar7, tmp_path, "sub-03_T2w", lambda s, r: dens_on_top(s, r, False))
    assert only.sem.meta["dens"] is not None and DENS not in only.sem.data  # read as body, dens kept aside
    f = only.fuse(top=None)
    assert f.named and f.vertebrae == list(range(2, 9)) and f.labelling.method == "dens (C2)"
    assert dice_per_value((ref0 == 18).astype(np.uint8), (f.instance == 2).astype(np.uint8), [1])[1] > 0.99
    both = _variant(lumbar7, tmp_path, "sub-04_T2w", lambda s, r: dens_on_top(s, r, True)).fuse(top=None)
    assert both.vertebrae == list(range(18, 25))  # the sacrum anchor keeps the ids
    assert any("dens vertebra would be T11" in a and "fewer" in a for a in both.labelling.anomalies)


def _landmarks(ref: np.ndarray, discs: dict[int, int]) -> np.ndarray:
    """A perfect landmark prediction: landmark class k on the voxels of disc instance ``discs[k]``."""
    out = np.zeros(ref.shape, np.uint8)
    for k, disc in discs.items():
        out[ref == disc] = k
    return out


def test_landmark_discs_label_a_crop_without_the_sacrum(lumbar7, tmp_path):
    """A lumbar crop without the sacrum (T11 … L5) has no anchor in its masks; the landmark discs T12-L1 (disc
    119, class 3) and L5-S1 (124, class 4) of a landmark prediction give the anatomical ids, each alone too.
    A landmark that disagrees is reported, one too small is ignored and said."""

    def drop_sacrum(sem, ref):
        sem[sem == SACRUM] = 0
        ref[ref == SACRUM] = 0

    crop = _variant(lumbar7, tmp_path, "sub-06_T2w", drop_sacrum)
    ref = np.asarray(crop.ref.data)
    assert not crop.fuse(top=None).named
    both = crop.fuse(top=None, landmarks=_landmarks(ref, {3: 119, 4: 124}))
    assert both.named and both.vertebrae == list(range(18, 25)) and both.labelling.anomalies == []
    assert both.labelling.method == "landmark L5-S1 (L5 above it)"
    t12 = crop.fuse(top=None, landmarks=_landmarks(ref, {3: 119}))
    assert t12.vertebrae == list(range(18, 25)) and t12.labelling.method == "landmark T12-L1 (T12 above it)"
    # T12-L1 predicted one disc too low (below L1): ids follow the lowest landmark, the other is reported
    wrong = crop.fuse(top=None, landmarks=_landmarks(ref, {3: 120, 4: 124}))
    assert wrong.vertebrae == list(range(18, 25))
    assert any("landmark T12-L1" in a and "counted as L1" in a and "1 vertebra(e) fewer" in a
               for a in wrong.labelling.anomalies)  # fmt: skip
    # landmarks four vertebrae apart from what they name: a wrong landmark, not anatomy: no ids from them
    far = crop.fuse(top=None, landmarks=_landmarks(ref, {1: 119, 4: 124}))  # "C2-C3" on the T12-L1 disc
    assert not far.named and far.labelling.method.endswith("(landmarks disagree)")
    assert any("landmark C2-C3" in a and "a wrong landmark" in a for a in far.labelling.anomalies)
    speck = np.zeros(ref.shape, np.uint8)
    speck[tuple(np.argwhere(ref == 119)[0])] = 3  # one voxel (3 mm³)
    f = crop.fuse(top=None, landmarks=speck)
    assert not f.named and any("landmark T12-L1" in a and "ignored" in a for a in f.labelling.anomalies)
    # with the sacrum present the landmarks are checked against it: L5-S1 on the disc below L4 is reported
    g = lumbar7.fuse(top=None, landmarks=_landmarks(np.asarray(lumbar7.ref.data), {4: 123}))
    assert g.vertebrae == list(range(18, 25)) and "sacrum" in g.labelling.method
    assert any("landmark L5-S1" in a and "counted as L4" in a for a in g.labelling.anomalies)


def test_a_landmark_no_column_fits_is_ignored_even_when_lowest():
    """Six vertebrae T11 … L4 (35 mm apart). A "C2-C3" landmark under the 3rd would put two vertebrae above C2
    (beyond C1): wrong, ignored and said, even though it is the lowest landmark (a briefly trained model in CI did
    this); the landmarks that fit decide. Alone it leaves the column unlabelled."""
    c = np.stack([np.zeros(6), np.zeros(6), -35.0 * np.arange(6)], axis=1)
    lab = label_column(c, landmarks=[(1, 19, "T12-L1"), (2, 2, "C2-C3")])  # T12 is the 2nd vertebra: T11 … L4
    assert lab.anatomical and lab.ids == [18, 19, 20, 21, 22, 23] and lab.method.startswith("landmark T12-L1 ")
    assert any("landmark C2-C3" in a and "above C1" in a and "ignored" in a for a in lab.anomalies)
    alone = label_column(c, landmarks=[(2, 2, "C2-C3")])
    assert not alone.anatomical and alone.ids == list(range(1, 7)) and "does not fit" in alone.method
    # the fitting ones still disagree (C7-T1 under the 1st vertebra, T12-L1 under the 2nd): refused
    both = label_column(c, landmarks=[(0, 7, "C7-T1"), (1, 19, "T12-L1"), (2, 2, "C2-C3")])
    assert not both.anatomical and both.method.endswith("(landmarks disagree)")
    # past L6: an "L5-S1" under the 1st of six vertebrae
    low = label_column(c, landmarks=[(0, 24, "L5-S1")])
    assert not low.anatomical and any("past L6" in a for a in low.anomalies)


def test_top_vertebra_overrides_the_anchors(lumbar7):
    f = lumbar7.fuse(top=8)  # T1
    assert f.vertebrae == list(range(8, 15)) and f.labelling.method.startswith("top vertebra T1")


def test_label_column_gap_skips_ids_and_transitional_candidates():
    z = np.array([0.0, -35, -70, -140, -175])  # a vertebra missing between #3 and #4
    c = np.stack([np.zeros(5), np.zeros(5), z], axis=1)
    sacrum = np.array([[0.0, 0.0, -200.0]])
    lab = label_column(c, sacrum_mm=sacrum)
    assert lab.ids == [19, 20, 21, 23, 24]  # T12 L1 L2 _ L4 L5: no shift above the gap
    assert len(lab.gaps) == 1 and lab.gaps[0].above == 2 and lab.gaps[0].missing == 1
    assert "gap between vertebrae #3 and #4" in lab.anomalies[0]
    plain = label_column(c)
    assert plain.ids == [1, 2, 3, 4, 5] and not plain.anatomical and len(plain.anomalies) == 1
    assert label_column(c, sacrum_mm=sacrum, lumbar=6).ids[-1] == 25  # L6 above the sacrum
    far = np.array([[0.0, 0.0, -400.0]])
    assert not label_column(c, sacrum_mm=far).anatomical  # a sacrum far below anchors nothing
    # 24 evenly spaced vertebrae from the dens to the sacrum: one more than C2..L5 → a transitional candidate
    col = np.stack([np.zeros(24), np.zeros(24), -25.0 * np.arange(24)], axis=1)
    lab = label_column(col, sacrum_mm=np.array([[0.0, 0.0, -25.0 * 24]]), dens_index=0)
    assert lab.ids[-1] == 24 and any("T13 or L6" in a for a in lab.anomalies)


# --------------------------------------------------------------------------------------------- §1 labels
def test_spineps2_labels_accepted_and_mapped():
    assert semantic_value_problem([41, 49, 50, 51, 52, 53, 60, 100]) is None
    assert "[54]" in semantic_value_problem([49, 54])
    a = np.array([50, 51, 52, 53, 49, 62, 100])
    assert to_semantic_14(a).tolist() == [CORPUS, CORPUS, ENDPLATE, ENDPLATE, CORPUS, ENDPLATE, DISC]


def test_spineps2_semantic_mask_runs_through_cutouts_fuse_qc_and_evaluate(lumbar7, tmp_path):
    """The phantom rewritten with SPINEPS 2.x endplates (52 above / 53 below each body centre) and body core 50:
    every spine command reads it; fuse gives the same instances; --endplates split writes 52/53 back."""

    def spineps2(sem, ref):
        inst_z = {}
        for v in range(18, 25):
            ijk = np.argwhere((ref == v) & (sem == CORPUS)).mean(axis=0)
            inst_z[v] = ijk
        ep = np.argwhere(sem == ENDPLATE)
        # nearest body centre in voxel space (the phantom grid is PIR: axis 1 points inferior)
        centres = np.array(list(inst_z.values()))
        nearest = np.argmin(((ep[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)
        above = ep[:, 1] < centres[nearest, 1]
        sem[tuple(ep[above].T)] = ENDPLATE_SUPERIOR
        sem[tuple(ep[~above].T)] = ENDPLATE_INFERIOR
        core = (sem == CORPUS) & (ref == 21)
        sem[core] = 50

    case = _variant(lumbar7, tmp_path, "sub-05_T2w", spineps2)
    sem_path = case.sem.path
    raw = np.asarray(nib.load(str(sem_path)).dataobj)
    assert {50, 52, 53} <= set(np.unique(raw).tolist())
    assert load_semantic(sem_path).meta["split_endplates"]
    f = case.fuse(top=None, endplates="split")
    ref = np.asarray(lumbar7.ref.data)
    assert f.vertebrae == list(range(18, 25))
    assert min(dice_per_value(ref, f.instance, range(18, 25)).values()) > 0.99
    assert {int(v) for v in np.unique(f.semantic)} >= {ENDPLATE_SUPERIOR, ENDPLATE_INFERIOR}
    assert ENDPLATE not in f.semantic
    split_back = np.isin(raw, [ENDPLATE_SUPERIOR, ENDPLATE_INFERIOR])
    agree = np.mean(f.semantic[split_back] == raw[split_back])
    assert agree > 0.95, agree
    # every reader of semantic masks takes it
    assert main(["qc", "spine", "-i", str(sem_path), "-o", str(tmp_path / "qc.png")]) == 0
    out = tmp_path / "sem_eval.csv"
    args = ["evaluate", "instances", "--semantic", "--pred", str(sem_path), "--ref", str(sem_path), "-o", str(out)]
    assert main([*args, "-q"]) == 0
    rows = [line.split(",") for line in out.read_text().splitlines()]
    assert any("Vertebral_Body_Endplate_Superior" in r for r in rows)


# --------------------------------------------------------------------------------------------- §2 POI
def test_centroid_file_is_read_by_tptbox_and_equals_its_centroids(lumbar7, tmp_path):
    from TPTBox.core import poi as poi_mod  # a test extra: SPINEPS' own POI reader

    sem_path = lumbar7.sem.path
    cut, pred = tmp_path / "cut", tmp_path / "pred"
    assert main(["cutouts", "--semantic", str(sem_path), "-o", str(cut), "-q"]) == 0
    pred.mkdir()
    for c in lumbar7.record.cutouts:
        nib.save(nib.Nifti1Image(lumbar7.preds[c.name], c.affine), pred / f"{c.name}.nii.gz")
    out = tmp_path / "out"
    image = lumbar7.root / "sub-01" / "anat" / "sub-01_T2w.nii.gz"
    assert main(["fuse", "--semantic", str(sem_path), "--cutouts", str(cut), "--predictions", str(pred),
                 "-o", str(out), "-q", "--image", str(image)]) == 0  # fmt: skip
    assert (out / "sub-01_T2w_seg-spine_snp.png").stat().st_size > 10_000  # labels over the image
    ctd = out / "sub-01_T2w_seg-spine_ctd.json"
    poi = poi_mod.POI.load(ctd)
    world = poi.to_global()
    theirs = poi_mod.calc_poi_from_subreg_vert(
        str(out / "sub-01_T2w_seg-vert_msk.nii.gz"), str(out / "sub-01_T2w_seg-spine_msk.nii.gz"), subreg_id=50
    ).to_global()
    side = json.loads((out / "sub-01_T2w_seg-vert_msk.json").read_text())
    ours_world = {r["id"]: np.array([r["x_mm"], r["y_mm"], r["z_mm"]]) for r in side["centroids_mm"]}
    for v in range(18, 25):
        assert np.allclose(world[v, 50], ours_world[v], atol=1e-2)
        assert np.linalg.norm(np.asarray(world[v, 50]) - np.asarray(theirs[v, 50])) < 0.1, v
    truth = {t["id"]: t["body_centre_mm"] for t in lumbar7.truth["vertebrae"]}
    assert all(np.allclose(world[v, 50], truth[v], atol=1.0) for v in truth)
    # the labelling verdict rides in the POI header, and TPTBox's own loader keeps it in POI.info: the sacrum is the
    # only anchor of this column, so its ids are anatomical but not verified, said as in the sidecar
    assert poi.info["nnspine_anatomically_labelled"] is True and poi.info["nnspine_labelling_verified"] is False
    assert poi.info["nnspine_labelling_reason"] == side["labelling"]["reason"]
    assert poi.info["nnspine_labelling_reason"].startswith("one anchor only (sacrum)")
    assert poi.info["nnspine_labelling_method"] == side["labelling"]["method"]
    assert side["labelling"]["verified"] is False and side["labelling_verified"] is False
    # the fuse output folder (instance + semantic masks side by side) is a valid --pred: instance masks by name
    table = tmp_path / "panoptic.csv"
    args = ["evaluate", "instances", "--pred", str(out), "--ref", str(lumbar7.labels), "-o", str(table), "-q"]
    assert main(args) == 0
    import pandas as pd

    t = pd.read_csv(table)
    row = t[(t["case"] == "sub-01_T2w") & (t["structure"] == "vertebra")].iloc[0]
    assert row["tp"] == 7 and row["fp"] == 0 and row["pq"] > 0.98


def test_csa_refuses_an_instance_mask_marked_not_labelled(tmp_path):
    from nnunet_spine.postprocessing.cord.levels import level_file_kind

    data = np.zeros((4, 4, 4), np.uint8)
    data[1, 1, 1], data[2, 2, 2] = 1, 101
    p = tmp_path / "sub-01_T2w_seg-vert_msk.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), p)
    assert level_file_kind(load_image(p, "labels"))[0] == "spineps"  # no sidecar: taken as it is
    p.with_name("sub-01_T2w_seg-vert_msk.json").write_text(json.dumps({"anatomically_labelled": False}))
    with pytest.raises(InputError, match="not anatomically labelled"):
        level_file_kind(load_image(p, "labels"))


# --------------------------------------------------------------------------------------------- §3 fusion
def _cand(cutout: int, label: int, mask: np.ndarray) -> Candidate:
    return Candidate(cutout, label, np.zeros(3, int), mask, int(mask.sum()))


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * float((a & b).sum()) / float(a.sum() + b.sum())


def test_low_agreement_triple_is_merged_by_union():
    shape = (1, 1, 40)
    m = [np.zeros(shape, bool) for _ in range(3)]
    m[0][..., 0:20] = True
    m[1][..., 8:28] = True
    m[2][..., 16:36] = True
    cands = {(i, 2): _cand(i, 2, m[i]) for i in range(3)}
    couple = tuple(sorted(cands))
    union = np.logical_or.reduce(m).sum()
    majority = (np.sum(m, axis=0) >= 2).sum()
    assert union_threshold(3) == pytest.approx(0.45)
    low = merge_couples([(couple, 0.40)], cands, shape)
    high = merge_couples([(couple, 0.60)], cands, shape)
    assert (low > 0).sum() == union == 36 and (high > 0).sum() == majority == 20


def test_ties_are_written_bottom_first_and_disagreeing_partners_reported():
    shape = (1, 1, 30)
    a = np.zeros(shape, bool)
    a[..., 0:10] = True
    b = np.zeros(shape, bool)
    b[..., 20:30] = True
    # two identical lone pairs: cutouts 0/1 (top) and 3/4 (bottom), same Dice → same rank
    cands = {(0, 2): _cand(0, 2, a), (1, 1): _cand(1, 1, a), (3, 2): _cand(3, 2, b), (4, 1): _cand(4, 1, b)}
    ranked = rank_couples(cands)
    assert [c for c, _ in ranked] == [((3, 2), (4, 1)), ((0, 2), (1, 1))]  # bottom cutouts first
    # an anchor overlapping two partners that do not overlap each other
    anchor = np.zeros(shape, bool)
    anchor[..., 5:25] = True
    left, right = np.zeros(shape, bool), np.zeros(shape, bool)
    left[..., 0:15] = True
    right[..., 15:30] = True
    cands = {(1, 2): _cand(1, 2, anchor), (0, 3): _cand(0, 3, left), (2, 1): _cand(2, 1, right)}
    assert _dice(left, right) == 0 and _dice(anchor, left) > 0.3 and _dice(anchor, right) > 0.3
    found: list[Disagreement] = []
    ranked = rank_couples(cands, found)
    assert ((0, 3), (1, 2), (2, 1)) in [c for c, _ in ranked]  # kept together, as SPINEPS does
    assert [d.anchor for d in found] == [(1, 2)] and found[0].partner_dice == 0.0


def test_fuse_errors_name_the_real_problem(lumbar7, tmp_path):
    from nnunet_spine.core.io import Image

    shifted = lumbar7.sem.affine.copy()
    shifted[0, 3] += 5.0
    with pytest.raises(InputError, match="affine differs .* by up to 5 mm"):
        lumbar7.record.check_grid(Image(np.asarray(lumbar7.sem.data), shifted, None))
    from nnunet_spine.core.cutouts import semantic_files

    with pytest.raises(InputError, match="sub-09_T2w_seg-spine_msk.nii.gz: file not found"):
        semantic_files(tmp_path / "sub-09_T2w_seg-spine_msk.nii.gz")  # not "case ... is not in cutouts.json"


def test_qc_spine_colours_and_empty_mask(tmp_path):
    from nnunet_spine.postprocessing.qc.spine import SPINEPS_COLOURS, plot_spine_semantic

    canal, endplate = np.array(SPINEPS_COLOURS[61]), np.array(SPINEPS_COLOURS[62])
    assert np.linalg.norm(canal - endplate) > 100  # told apart at a glance
    empty = tmp_path / "sub-01_T2w_seg-spine_msk.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 4), np.uint8), np.eye(4)), empty)
    out = plot_spine_semantic(empty, tmp_path / "empty.png")
    assert out.stat().st_size > 1000


def test_gaps_need_enough_vertebrae_and_never_push_ids_past_l6():
    three = np.stack([np.zeros(3), np.zeros(3), np.array([0.0, -20.0, -120.0])], axis=1)
    assert label_column(three, top_vertebra=20).ids == [20, 21, 22]  # too few spacings to call a gap
    z = np.array([0.0, -35, -70, -105, -400])  # a huge jump at the bottom: 8 "missing" vertebrae
    c = np.stack([np.zeros(5), np.zeros(5), z], axis=1)
    lab = label_column(c, top_vertebra=20)  # L1: skipping 8 would run past L6
    assert lab.ids == [20, 21, 22, 23, 24] and any("not skipped" in a for a in lab.anomalies)


# --------------------------------------------------------------------------------------------- §5 variants
def _variant_case(tmp_path_factory, variant: str, n: int) -> Case:
    from nnunet_spine.phantoms.spine_dataset import write_spine_dataset

    root = tmp_path_factory.mktemp(variant) / "bids"
    truth = write_spine_dataset(root, n_subjects=1, seed=4, n_vertebrae=n, variant=variant)["subjects"]["sub-01"]
    labels = root / "derivatives" / "labels" / "sub-01" / "anat"
    case = Case(labels / "sub-01_T2w_seg-spine_msk.nii.gz", labels / "sub-01_T2w_seg-vert_msk.nii.gz", "L1")
    case.truth = truth
    return case


@pytest.mark.parametrize(
    "variant, n, plain, options, expected",
    [
        # transitional columns on the sacrum: the sacrum anchor alone assumes 5 lumbar vertebrae ...
        ("L6", 7, list(range(18, 25)), {"lumbar": 6}, [19, 20, 21, 22, 23, 24, 25]),
        ("4-lumbar", 6, list(range(19, 25)), {"lumbar": 4}, [18, 19, 20, 21, 22, 23]),
        # cropped fields of view: no anchor in the masks; a landmark disc names the vertebra above it
        ("lumbar-no-sacrum", 5, None, {"landmarks": {4: 124}}, [20, 21, 22, 23, 24]),
        ("cervical", 6, None, {"landmarks": {1: 102}}, [2, 3, 4, 5, 6, 7]),
        ("thoracic", 6, None, {}, None),  # T3-T8: no anchor and no landmark disc in view: not labelled
    ],
)
def test_phantom_variants_get_their_true_ids(tmp_path_factory, variant, n, plain, options, expected):
    """The phantom's transitional and cropped variants (true ids in their truth JSON): plain fusion numbers them
    from the sacrum (5 lumbar vertebrae) or not at all; the right option or anchor gives exactly the true ids."""
    case = _variant_case(tmp_path_factory, variant, n)
    ref = np.asarray(case.ref.data)
    assert case.truth["variant"] == variant and (case.truth["sacrum_id"] is None) == (plain is None)
    f = case.fuse(top=None)
    if plain is None:
        assert not f.named and f.labelling.method.startswith("not anatomically labelled")
    else:
        assert f.named and f.vertebrae == plain != case.truth["vertebra_ids"]
    kw = dict(options)
    if "landmarks" in kw:
        kw["landmarks"] = _landmarks(ref, kw["landmarks"])
    g = case.fuse(top=None, **kw)
    if expected is None:
        assert not g.named
        return
    assert g.named and g.vertebrae == expected == case.truth["vertebra_ids"]
    assert min(dice_per_value(ref, g.instance, expected).values()) > 0.99


@pytest.mark.parametrize("variant, more", [("L6", True), ("4-lumbar", False)])
def test_transitional_columns_are_reported_by_a_landmark_against_the_sacrum(tmp_path_factory, variant, more):
    """With the sacrum and the T12-L1 landmark disc (119) the count between them is off by one: reported as a
    transitional candidate, never silently renumbered: the lumbar ids follow the T12-L1 junction (L1 below it,
    L6 = 25 after L5), the sacrum's "L5" is reported as disagreeing, and the ids are not verified."""
    case = _variant_case(tmp_path_factory, variant, 7 if variant == "L6" else 6)
    f = case.fuse(top=None, landmarks=_landmarks(np.asarray(case.ref.data), {3: 119}))
    assert "sacrum" in f.labelling.method
    said = [a for a in f.labelling.anomalies if "landmark T12-L1" in a]
    assert len(said) == 1 and ("1 vertebra(e) more" if more else "1 vertebra(e) fewer") in said[0]
    assert "transitional" in said[0]
    assert f.labelling.verified is False


def test_t13_and_11_thoracic_columns_are_reported_with_the_dens_and_the_sacrum(tmp_path_factory):
    """C2 … L5 with T13 (24 vertebrae) or with 11 thoracic ones (22): dens and sacrum disagree by one, reported."""
    for variant, n, word in (("T13", 24, "more"), ("11-thoracic", 22, "fewer")):
        case = _variant_case(tmp_path_factory, variant, n)
        sem = np.asarray(case.sem.data)
        assert case.truth["vertebra_ids"][0] == 2  # C2 on top
        body = (np.asarray(case.ref.data) == 2) & (sem == CORPUS)
        case.sem.meta["dens"] = body  # the dens where C2's body is (SPINEPS 2.x would write 51 there)
        f = case.fuse(top=None)
        assert "sacrum" in f.labelling.method and "dens disagrees" in f.labelling.method
        assert any(f"1 vertebra(e) {word}" in a for a in f.labelling.anomalies), f.labelling.anomalies


def test_spineps_rules_delete_fragments_and_vote_where_ours_give_back_and_split():
    """``clean_instances(rules=...)`` on a hand-made column (3 mm voxels, every voxel vertebral body): ours give a
    small fragment back to its vertebra and split a gap between two vertebrae voxel by voxel to the nearest; SPINEPS'
    rules (clean_cc_artifacts(only_delete=True), assign_missing_cc) delete the fragment from both masks and give
    the whole gap to the neighbour most voxels of its border touch."""
    from nnunet_spine.postprocessing.spine.cleaning import clean_instances

    sem = np.full((12, 6, 6), CORPUS, np.uint8)
    fused = np.zeros(sem.shape, np.uint16)
    fused[:5] = 1  # vertebra 1: slices 0-4
    fused[7:, :3] = 2  # vertebra 2: half of slices 7-11 (its other half is background-less vertebra: orphans too)
    fused[2, 2, 2] = 3  # a one-voxel fragment (27 mm³ < 250 mm³) inside vertebra 1
    bodies = np.zeros(sem.shape, np.int32)
    ours, dropped, _ = clean_instances(fused, sem, bodies, (3.0, 3.0, 3.0))
    assert ours[2, 2, 2] == 1 and not dropped.any()  # released, then taken back by vertebra 1
    assert ours[5, 0, 0] == 1 and ours[6, 0, 0] == 2  # the gap is split: each voxel to its nearest vertebra
    theirs, dropped, stats = clean_instances(fused, sem, bodies, (3.0, 3.0, 3.0), rules="spineps")
    assert theirs[2, 2, 2] == 0 and dropped[2, 2, 2] and stats.deleted_semantic >= 1  # deleted
    from scipy import ndimage

    gap = (fused == 0) & ~dropped  # one orphan fragment: slices 5-6 and the free half of slices 7-11
    shell = ndimage.binary_dilation(gap, np.ones((3, 3, 3), bool)) & ~gap
    votes = np.bincount(np.where(fused == 3, 0, fused)[shell].astype(np.int64))  # the fragment 3 is deleted
    votes[0] = 0
    assert set(np.unique(theirs[gap]).tolist()) == {int(votes.argmax())}  # the majority neighbour takes it all
    assert set(np.unique(ours[gap]).tolist()) == {1, 2}
    with pytest.raises(ValueError, match="rules"):
        clean_instances(fused, sem, bodies, (3.0, 3.0, 3.0), rules="other")


# ------------------------------------------------------------------------------------- §4 SPINEPS 2.x labels kept
def _fuse_files(case: Case, tmp_path, name: str):
    """``nnspine cutouts`` and ``nnspine fuse`` on the case's semantic mask with its perfect predictions; the
    output folder."""
    cut, pred, out = tmp_path / f"{name}_cut", tmp_path / f"{name}_pred", tmp_path / f"{name}_out"
    assert main(["cutouts", "--semantic", str(case.sem.path), "-o", str(cut), "-q"]) == 0
    pred.mkdir()
    for c in case.record.cutouts:
        nib.save(nib.Nifti1Image(case.preds[c.name], c.affine), pred / f"{c.name}.nii.gz")
    args = ["fuse", "--semantic", str(case.sem.path), "--cutouts", str(cut), "--predictions", str(pred)]
    assert main([*args, "-o", str(out), "-q", "--no-qc"]) == 0
    return out


def test_spineps2_labels_survive_fuse_voxel_for_voxel_and_the_dens_is_c2s(lumbar7, tmp_path, capsys):
    """A SPINEPS 2.x mask without the sacrum: body core 50 inside L2's body, the dens 51 on the top body, endplates
    split into 52 (above the nearest body centre) and 53 (below). fuse's cleaned semantic mask holds 50, 51, 52, 53
    on exactly the input's voxels; the dens anchors the top vertebra as C2 and every dens voxel is in C2's
    instance; one anchor only: said on stderr and in the POI header TPTBox reads."""
    from scipy import ndimage
    from TPTBox.core import poi as poi_mod

    def spineps2(sem, ref):
        sem[sem == SACRUM] = 0
        ref[ref == SACRUM] = 0
        centres = np.array([np.argwhere((ref == v) & (sem == CORPUS)).mean(axis=0) for v in range(18, 25)])
        ep = np.argwhere(sem == ENDPLATE)
        nearest = np.argmin(((ep[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)
        above = ep[:, 1] < centres[nearest, 1]  # PIR grid: axis 1 points inferior
        sem[tuple(ep[above].T)] = ENDPLATE_SUPERIOR
        sem[tuple(ep[~above].T)] = ENDPLATE_INFERIOR
        sem[ndimage.binary_erosion((ref == 21) & (sem == CORPUS), iterations=2)] = 50
        top = np.argwhere((ref == 18) & (sem == CORPUS))
        upper = top[top[:, 1] <= np.median(top[:, 1])]  # the upper half of the top body
        sem[tuple(upper.T)] = DENS

    case = _variant(lumbar7, tmp_path, "sub-07_T2w", spineps2)
    raw = np.asarray(nib.load(str(case.sem.path)).dataobj)
    out = _fuse_files(case, tmp_path, "s2")
    err = capsys.readouterr().err
    cleaned = np.asarray(nib.load(str(out / "sub-07_T2w_seg-spine_msk.nii.gz")).dataobj)
    for v in (50, DENS, ENDPLATE_SUPERIOR, ENDPLATE_INFERIOR):
        assert (raw == v).sum() > 0 and np.array_equal(cleaned == v, raw == v), v
    assert not np.isin(cleaned, [CORPUS, ENDPLATE])[np.isin(raw, [50, DENS, 52, 53])].any()
    inst = np.asarray(nib.load(str(out / "sub-07_T2w_seg-vert_msk.nii.gz")).dataobj)
    assert set(np.unique(inst[raw == DENS]).tolist()) == {2}  # the whole dens is C2's
    assert np.array_equal(inst > 0, np.isin(raw, [41, 42, 43, 44, 45, 46, 47, 48, 49, 50, DENS, 52, 53, 100]))
    assert "labelling not verified: one anchor only (dens)" in err
    poi = poi_mod.POI.load(out / "sub-07_T2w_seg-spine_ctd.json")
    assert poi.info["nnspine_anatomically_labelled"] is True and poi.info["nnspine_labelling_verified"] is False
