"""Verified or not: anatomical ids are ``verified`` only when two independent anchors (sacrum, dens, a landmark disc,
``--top-vertebra``) agree on them; one anchor, disagreeing anchors and ids 1..n from the top are never verified, and
the reason is said (sidecar, POI header, stderr, summary fields).

Truth: hand-built columns of body centroids 30 mm apart whose true VerSe ids are known by construction (C2 … L5 =
2 … 24, with L6 = 25 or T13 = 28 where a transitional column is built), a sacrum voxel 20 mm below the lowest body.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from nnunet_spine.core.labels import SACRUM, verse_sequence
from nnunet_spine.postprocessing.spine.fusion import Fusion
from nnunet_spine.postprocessing.spine.fusion_files import (
    LABELLING_COLUMNS,
    FuseReport,
    centroids_json,
    dens_to_its_vertebra,
    keep_input_labels,
    labelling_fields,
    sidecar_json,
)
from nnunet_spine.postprocessing.spine.labelling import label_column

SPACING_MM = 30.0


def column(n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` body centroids (world mm, top to bottom, 30 mm apart along z) and one sacrum voxel 20 mm below the
    lowest one."""
    z = -SPACING_MM * np.arange(n, dtype=float)
    c = np.stack([np.zeros(n), np.zeros(n), z], axis=1)
    return c, np.array([[0.0, 0.0, z[-1] - 20.0]])


C2_TO_L5 = list(range(2, 25))  # 23 vertebrae


def test_sacrum_and_dens_agreeing_are_verified():
    c, sacrum = column(23)
    lab = label_column(c, sacrum_mm=sacrum, dens_index=0)
    assert lab.ids == C2_TO_L5 and lab.anatomical
    assert lab.verified and lab.anchors == ["sacrum", "dens"]
    assert lab.reason == "sacrum and dens agree on the count (C2-L5)"


def test_sacrum_only_is_not_verified_with_the_reason():
    c, sacrum = column(7)
    lab = label_column(c, sacrum_mm=sacrum)
    assert lab.ids == list(range(18, 25)) and lab.anatomical  # T11 … L5, as before
    assert not lab.verified and lab.anchors == ["sacrum"]
    assert lab.reason.startswith("one anchor only (sacrum)") and "transitional" in lab.reason


@pytest.mark.parametrize(
    "truth, lumbar_words",
    [
        (verse_sequence(19, 7), "L6"),  # T12, L1 … L6 on the sacrum: the sacrum alone calls them T11 … L5
        ([17, 18, 19, 20, 21, 22], "4 lumbar"),  # T10 … L4 on the sacrum (4 lumbar): called T12 … L5
    ],
)
def test_transitional_column_on_the_sacrum_alone_is_not_verified(truth, lumbar_words):
    """The ids come out one off the truth (the sacrum alone cannot know) and say so: verified false."""
    c, sacrum = column(len(truth))
    lab = label_column(c, sacrum_mm=sacrum)
    assert lab.ids != truth and lab.ids[-1] == 24  # numbered as if L5 were the last lumbar vertebra
    assert not lab.verified and lumbar_words in lab.reason


def test_transitional_column_with_sacrum_and_dens_is_not_verified():
    """C2 … L5 with T13: 24 vertebrae between dens and sacrum; the anchors disagree, so not verified."""
    c, sacrum = column(24)
    lab = label_column(c, sacrum_mm=sacrum, dens_index=0)
    assert lab.anatomical and not lab.verified
    assert lab.reason.startswith("anchors disagree: dens says C2 where the ids say C1")
    assert lab.anchors == ["sacrum"]


def test_dens_only_is_not_verified():
    c, _ = column(6)
    lab = label_column(c, dens_index=0)
    assert lab.ids == [2, 3, 4, 5, 6, 7] and lab.anatomical
    assert not lab.verified and lab.reason.startswith("one anchor only (dens)")


def test_top_vertebra_and_sacrum_agreeing_are_verified_and_disagreeing_are_not():
    c, sacrum = column(7)
    agree = label_column(c, top_vertebra=18, sacrum_mm=sacrum)  # T11 given; T11 … L5 ends on the sacrum
    assert agree.ids == list(range(18, 25)) and agree.verified
    assert agree.anchors == ["--top-vertebra T11", "sacrum"]
    off = label_column(c, top_vertebra=19, sacrum_mm=sacrum)  # T12 given: the lowest becomes L6
    assert off.ids == [19, 20, 21, 22, 23, 24, 25] and not off.verified  # the user's ids are kept ...
    assert "sacrum says L5 where the ids say L6" in off.reason  # ... and the disagreement said
    alone = label_column(c, top_vertebra=18)  # no second anchor
    assert not alone.verified and alone.reason.startswith("one anchor only (--top-vertebra T11)")


def test_landmark_discs_verify_only_what_they_count_and_a_transitional_landmark_does_not():
    """T12-L1 and the sacrum count the lumbar vertebrae (L1-L5 pinned) but not the thoracic ones above the junction:
    a T13 or 11-thoracic column would name them one off, so the column is not verified (issue 24 §2); a disc
    counted from the skull above them (T11-T12, SCT value 19) pins T11 and T12 too."""
    c, sacrum = column(7)  # T11 … L5
    both = label_column(c, sacrum_mm=sacrum, landmarks=[(1, 19, "T12-L1")])  # disc below the 2nd: T12
    assert both.ids == list(range(18, 25)) and both.anchors == ["sacrum", "landmark T12-L1"]
    assert not both.verified and both.verified_ids == [20, 21, 22, 23, 24]  # L1 … L5
    assert "T11, T12 are named assuming the usual number of thoracic vertebrae" in both.reason
    two_discs = label_column(c, landmarks=[(1, 19, "T12-L1"), (6, 24, "L5-S1")])
    assert two_discs.ids == list(range(18, 25)) and not two_discs.verified
    assert two_discs.verified_ids == [20, 21, 22, 23, 24]
    from_top = label_column(c, sacrum_mm=sacrum, landmarks=[(0, 18, "SCT disc 19 (T11-T12)"), (1, 19, "T12-L1")])
    assert from_top.ids == list(range(18, 25)) and from_top.verified and from_top.verified_ids == from_top.ids
    # four vertebrae between the T12-L1 disc and the sacrum: a 4-lumbar column (or a wrong anchor); the lumbar ids
    # follow the thoracolumbar junction (L1 below it, L4 on the sacrum) and the sacrum's "L5" disagrees
    one_off = label_column(c, sacrum_mm=sacrum, landmarks=[(2, 19, "T12-L1")])
    assert one_off.ids == list(range(17, 24)) and not one_off.verified
    assert "sacrum says L5 where the ids say L4" in one_off.reason
    assert any("1 vertebra(e) fewer than usual" in a and "4 lumbar" in a for a in one_off.anomalies)


def test_anchors_on_one_vertebra_are_one_anchor():
    """The sacrum and the L5-S1 disc both name the lowest vertebra: together they check no count (a T13 column
    numbered from them would be one off), so they do not verify; a second vertebra's anchor does."""
    c, sacrum = column(7)  # T11 … L5
    same = label_column(c, sacrum_mm=sacrum, landmarks=[(6, 24, "L5-S1")])
    assert same.ids == list(range(18, 25)) and not same.verified
    assert same.anchors == ["sacrum = landmark L5-S1"] and "one anchor only" in same.reason
    apart = label_column(c, sacrum_mm=sacrum, landmarks=[(6, 24, "L5-S1"), (1, 19, "T12-L1")])
    assert apart.anchors == ["sacrum = landmark L5-S1", "landmark T12-L1"]
    assert apart.verified_ids == [20, 21, 22, 23, 24] and not apart.verified  # T11, T12: thoracic count unchecked


@pytest.mark.parametrize("kw", [{}, {"mode": "none"}])
def test_not_labelled_is_neither_anatomical_nor_verified(kw):
    c, sacrum = column(5)
    lab = label_column(c, sacrum_mm=sacrum if kw else None, **kw)
    assert lab.ids == [1, 2, 3, 4, 5] and not lab.anatomical and not lab.verified and lab.anchors == []
    assert "not anatomically labelled" in lab.reason and "not VerSe ids" in lab.reason


# --------------------------------------------------------------------------------------------- files
def _fusion(labelling) -> Fusion:
    inst = np.zeros((4, 4, 4), np.uint8)
    inst[1, 1, 1] = labelling.ids[0]
    centres = {labelling.ids[0]: np.array([1.0, 1.0, 1.0]), SACRUM: np.array([1.0, 1.0, -20.0])}
    return Fusion(inst, inst, centres, ["a"], [], named=labelling.anatomical, labelling=labelling)


def test_sidecar_poi_header_and_summary_fields_carry_the_verdict():
    c, sacrum = column(7)
    one = _fusion(label_column(c, sacrum_mm=sacrum))
    side = json.loads(sidecar_json(one, "sem.nii.gz"))
    assert side["anatomically_labelled"] and side["labelling_verified"] is False
    assert side["labelling"]["verified"] is False and side["labelling"]["anchors"] == ["sacrum"]
    assert side["labelling"]["reason"].startswith("one anchor only (sacrum)")
    header = json.loads(centroids_json(one, np.eye(4), (4, 4, 4)))[0]
    assert header["nnspine_anatomically_labelled"] is True and header["nnspine_labelling_verified"] is False
    assert header["nnspine_labelling_reason"] == side["labelling"]["reason"]
    assert labelling_fields(one) == {"labelling": "anatomical", "verified": "false", "reason": one.labelling.reason}
    none = _fusion(label_column(c))
    assert labelling_fields(none)["labelling"] == "not anatomical" and labelling_fields(none)["verified"] == "false"
    assert json.loads(centroids_json(none, np.eye(4), (4, 4, 4)))[0]["nnspine_anatomically_labelled"] is False
    both = _fusion(label_column(c, top_vertebra=18, sacrum_mm=sacrum))
    rows = FuseReport([("a", one, {}), ("b", both, {})]).summary_rows()
    assert [r["verified"] for r in rows] == ["false", "true"] and set(rows[0]) == {"case", *LABELLING_COLUMNS}


# --------------------------------------------------------------------------------------------- SPINEPS 2.x labels
def test_input_labels_50_to_53_are_put_back_where_the_cleaning_kept_the_voxel():
    from nnunet_spine.core.labels import to_semantic_14

    raw = np.array([50, 51, 52, 53, 49, 62, 100, 50, 62, 0], np.uint8)
    cleaned = to_semantic_14(raw).copy()
    cleaned[7] = 0  # a body-core voxel the cleaning removed stays removed
    cleaned[8] = 52  # --endplates split of an input 62 stays split
    assert keep_input_labels(cleaned, raw).tolist() == [50, 51, 52, 53, 49, 62, 100, 0, 52, 0]
    assert keep_input_labels(cleaned, None) is cleaned


def test_every_dens_voxel_joins_the_vertebra_holding_most_of_it():
    inst = np.zeros((6, 4, 4), np.uint8)
    inst[0:2] = 1  # C1 holds a corner of the dens
    inst[2:5] = 2  # C2 holds most of it
    inst[5] = 102  # a disc voxel under the dens mask is no vertebra: untouched
    dens = np.zeros(inst.shape, bool)
    dens[1:4, 1:3, 1:3] = True  # 4 voxels in C1, 8 in C2
    dens[5, 0, 0] = True
    before = inst.copy()
    assert dens_to_its_vertebra(inst, dens) == 4
    assert set(np.unique(inst[dens & (before != 102)]).tolist()) == {2}
    assert inst[5, 0, 0] == 102 and np.array_equal(inst[~dens], before[~dens])
    assert dens_to_its_vertebra(inst, None) == 0


def test_tptbox_keeps_the_not_labelled_header_of_ids_1_to_n(tmp_path):
    """Ids 1..n from the top look like C1..Cn to TPTBox; the header it reads back says they are not."""
    from TPTBox.core import poi as poi_mod

    c, _ = column(5)
    f = _fusion(label_column(c))
    path = tmp_path / "x_seg-spine_ctd.json"
    path.write_text(centroids_json(f, np.eye(4), (4, 4, 4)))
    poi = poi_mod.POI.load(path)
    assert poi.info["nnspine_anatomically_labelled"] is False and poi.info["nnspine_labelling_verified"] is False
    assert "not anatomically labelled" in poi.info["nnspine_labelling_reason"]
    assert np.allclose(poi[1, 50], (1.0, 1.0, 1.0))  # the centroid itself still reads as before
