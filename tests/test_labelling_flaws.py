"""Flaws of the instance network are found and never give silently wrong vertebra ids (issue 24 §2, issue 26 §2).

Truth by construction: a hand-built column on a 1 mm grid (world z = voxel index along axis 2, superior up). Each
vertebra is a 10 × 10 × 8-voxel body (49) and, 14 voxels behind it, a 6 × 6 × 8-voxel arch (41); 4 disc rows (100)
lie between the bodies (period 12 mm); a sacrum (26) of 12 × 12 × 20 voxels lies below the last disc. Vertebra k
(0 = top) is instance k + 1 in the network's mask, and its true VerSe id is known from how the column was built.
A flaw is then made by hand (two instances given one id, one body given two ids, a blob, a cut field of view, a
small "sacrum"), and the ids :func:`number_vertebrae` gives are checked voxel for voxel against the truth.
"""

from __future__ import annotations

import numpy as np
import pytest

from nnunet_spine.core.labels import ARCUS, CORPUS, DISC, SACRUM, VERSE_IDS
from nnunet_spine.postprocessing.spine.flaws import review_instances
from nnunet_spine.postprocessing.spine.fusion import number_vertebrae
from nnunet_spine.postprocessing.spine.labelling import label_column
from nnunet_spine.postprocessing.spine.sct_discs import DiscLabel

PERIOD, BODY, TOP_MARGIN = 12, 8, 6
L1_TO_L5 = [20, 21, 22, 23, 24]


def column(n: int, sacrum: bool = True, margin_below: int = 4) -> tuple[np.ndarray, np.ndarray, np.ndarray, list]:
    """(semantic, instances 1..n top to bottom, affine, per vertebra its body's z rows) of an ``n``-vertebra column."""
    z_size = TOP_MARGIN + n * PERIOD + (22 if sacrum else 0) + margin_below
    sem = np.zeros((20, 40, z_size), np.uint8)
    inst = np.zeros(sem.shape, np.uint8)
    rows = []
    for k in range(n):
        top = z_size - TOP_MARGIN - k * PERIOD  # exclusive upper row of this body
        r = slice(top - BODY, top)
        rows.append(r)
        sem[5:15, 4:14, r] = CORPUS
        sem[7:13, 28:34, r] = ARCUS
        inst[5:15, 4:14, r] = k + 1
        inst[7:13, 28:34, r] = k + 1
        sem[5:15, 4:14, top - PERIOD : top - BODY] = DISC  # the disc below it
    if sacrum:
        low = rows[-1].start - (PERIOD - BODY)
        sem[4:16, 3:15, low - 20 : low] = SACRUM
    return sem, inst, np.eye(4), rows


def ids_of(out: np.ndarray, inst: np.ndarray, n: int) -> list[int]:
    """The id the numbered mask gives most of each true vertebra's voxels (1..n in ``inst``), top to bottom."""
    return [int(np.bincount(out[inst == k + 1]).argmax()) for k in range(n)]


def test_the_plain_column_is_right_and_unflawed():
    sem, inst, aff, _ = column(5)
    review = review_instances(inst, sem, aff)
    assert review.findings == [] and not review.removed.any()
    out, _, lab = number_vertebrae(review.instance, sem, aff, review=review)
    assert ids_of(out, inst, 5) == L1_TO_L5 and lab.anatomical


def test_merged_instance_with_a_disc_between_is_split_at_it():
    sem, inst, aff, _ = column(5)
    net = inst.copy()
    net[net == 3] = 2  # L2 and L3 predicted as one instance; the disc between them stays in the semantic mask
    review = review_instances(net, sem, aff)
    assert [f.kind for f in review.findings] == ["merged"] and not review.doubts
    out, _, lab = number_vertebrae(review.instance, sem, aff, review=review)
    assert ids_of(out, inst, 5) == L1_TO_L5  # every vertebra its own id, none shifted
    assert any("merged instance, split at the disc" in a for a in lab.anomalies)


def test_merged_instance_without_a_disc_is_kept_counted_as_two_and_unverified():
    sem, inst, aff, rows = column(5)
    net = inst.copy()
    net[net == 3] = 2
    gap = slice(rows[2].stop, rows[1].start)  # the disc between L2 and L3 is body too: no plane to split along
    sem[5:15, 4:14, gap] = CORPUS
    net[5:15, 4:14, gap] = 2
    discs = [DiscLabel(21, np.array([10.0, 8.0, rows[0].start - 2.0]))]  # L1-L2 below the top one: a 2nd anchor
    review = review_instances(net, sem, aff)
    assert review.double == {2} and review.doubts
    out, _, lab = number_vertebrae(review.instance, sem, aff, review=review, discs=discs)
    got = ids_of(out, inst, 5)
    assert got[:2] == [20, 21] and got[3:] == [23, 24]  # L1, L2(+L3), L4, L5: nothing below shifted
    assert got[2] == 21  # L3's voxels are in the merged instance, named for its upper vertebra
    assert not lab.verified and "holds two vertebrae" in lab.reason


def test_split_instance_is_joined():
    sem, inst, aff, rows = column(5)
    net = inst.copy()
    upper = net == 3
    upper[:, :, : rows[2].start + BODY // 2] = False  # L3's upper half (body and arch) is another instance
    net[upper] = 9
    review = review_instances(net, sem, aff)
    assert [f.kind for f in review.findings] == ["split"]
    out, _, _ = number_vertebrae(review.instance, sem, aff, review=review)
    assert ids_of(out, inst, 5) == L1_TO_L5


def test_partial_top_vertebra_makes_no_false_gap():
    """The field of view cuts the top vertebra: its arch only. Its centre lies 14 mm behind the bodies' line, so
    its distance to the next body centre looks like a gap (1.7 × the spacing) unless it is known as partial."""
    sem, inst, aff, rows = column(6)
    top = rows[0]
    sem = sem[:, :, : top.start + BODY // 2]  # the image ends in the middle of the top vertebra ...
    inst = inst[:, :, : top.start + BODY // 2]
    sem[(inst == 1) & (sem == CORPUS)] = 0  # ... and its body is out of view: arch only
    inst[(inst == 1) & (sem == 0)] = 0
    review = review_instances(inst, sem, aff)
    assert review.partial == {1} and not review.doubts
    out, _, lab = number_vertebrae(review.instance, sem, aff, review=review)
    assert ids_of(out, inst, 6) == [19, 20, 21, 22, 23, 24]  # T12 (partial), L1 … L5 from the sacrum
    assert lab.gaps == [] and any("top of the field of view" in a for a in lab.anomalies)


def test_partial_bottom_vertebra_is_kept_and_next_to_its_neighbour():
    sem, inst, aff, rows = column(6, sacrum=False, margin_below=0)
    cut = rows[-1].stop - 2  # the image ends two rows below the top of the last body: a quarter body
    sem, inst = sem[:, :, cut:], inst[:, :, cut:]
    review = review_instances(inst, sem, aff)
    assert review.partial == {6}
    discs = [DiscLabel(v, np.array([10.0, 8.0, rows[k].start - cut - 2.0])) for k, v in ((0, 21), (1, 22))]
    out, _, lab = number_vertebrae(review.instance, sem, aff, review=review, discs=discs)
    assert ids_of(out, inst, 6) == [20, 21, 22, 23, 24, 25] and lab.gaps == []  # L1 … L6 counted from L1-L2


@pytest.mark.parametrize("where", ["front", "below"])
def test_stray_body_blob_is_removed_and_reported(where):
    sem, inst, aff, rows = column(5)
    net = inst.copy()
    if where == "front":  # in front of the lowest body, at its level
        box = (slice(5, 15), slice(0, 3), rows[-1])
    else:  # below the sacrum
        box = (slice(6, 14), slice(6, 12), slice(1, 4))
    sem[box] = CORPUS
    net[box] = 7
    review = review_instances(net, sem, aff)
    assert [f.kind for f in review.findings] == ["stray"]
    assert review.removed.sum() == np.prod([s.stop - s.start for s in box])
    out, _, lab = number_vertebrae(review.instance, sem, aff, review=review)
    assert ids_of(out, inst, 5) == L1_TO_L5 and not (out[box]).any()
    assert "sacrum below the lowest vertebra" in lab.method  # the sacrum anchor is not lost to the blob


def test_implausible_sacrum_leaves_the_ids_unverified():
    """A half-visible vertebra called sacrum: smaller than a lumbar body. Two discs that agree with the sacrum
    would verify the ids; the doubtful sacrum does not let them."""
    sem, inst, aff, rows = column(5)
    sem[sem == SACRUM] = 0
    low = rows[-1].start - (PERIOD - BODY)
    sem[5:15, 4:14, low - 4 : low] = SACRUM  # 400 mm³, the bodies are 800 mm³
    discs = [DiscLabel(v, np.array([10.0, 8.0, rows[k].start - 2.0])) for k, v in ((0, 21), (1, 22))]
    review = review_instances(inst, sem, aff)
    assert [f.kind for f in review.findings] == ["sacrum"] and review.doubts
    out, _, lab = number_vertebrae(review.instance, sem, aff, review=review, discs=discs)
    assert ids_of(out, inst, 5) == L1_TO_L5 and not lab.verified
    assert lab.reason.startswith("doubtful: the sacrum") and "smaller than" in lab.reason
    real_sem, real_inst, _, _ = column(5)  # the same column with its real sacrum: verified
    clean = review_instances(real_inst, real_sem, aff)
    _, _, ok = number_vertebrae(clean.instance, real_sem, aff, review=clean, discs=discs)
    assert ok.verified and ok.anchors == ["sacrum", "SCT disc 21 (L1-L2)", "SCT disc 22 (L2-L3)"]


# --------------------------------------------------------------------------------------------- transitional
def centres(n: int) -> np.ndarray:
    return np.stack([np.zeros(n), np.zeros(n), -30.0 * np.arange(n)], axis=1)


SACRUM_BELOW = {n: np.array([[0.0, 0.0, -30.0 * (n - 1) - 20.0]]) for n in range(1, 30)}


@pytest.mark.parametrize(
    "truth, below, right",
    [
        ([19, 28, 20, 21, 22, 23, 24], 1, False),  # T13 column: the junction disc is below T13
        ([17, 18, 20, 21, 22, 23, 24], 1, False),  # 11 thoracic: below T11
        ([19, 20, 21, 22, 23, 24, 25], 0, True),  # L6 column
        ([17, 18, 19, 20, 21, 22, 23], 2, True),  # 4 lumbar: T10 … T12, L1 … L4
    ],
)
def test_transitional_columns_are_never_verified(truth, below, right):
    """The sacrum and the T12-L1 disc (landmark or SCT disc 20) below vertebra ``below``. T13 / 11 thoracic: they
    agree on the lumbar count, but the thoracic ids above the junction rest on the usual 12 thoracic vertebrae (one
    off, not verified). L6 / 4 lumbar: the lumbar vertebrae are counted from the junction (right ids), and the
    sacrum's usual 5 disagrees (not verified)."""
    n = len(truth)
    for name in ("T12-L1", "SCT disc 20 (T12-L1)"):
        lab = label_column(centres(n), sacrum_mm=SACRUM_BELOW[n], landmarks=[(below, 19, name)])
        assert (lab.ids == truth) is right and not lab.verified
    one = label_column(centres(n), sacrum_mm=SACRUM_BELOW[n])  # one anchor
    assert not one.verified


def test_dens_and_sacrum_with_a_t13_are_not_verified():
    lab = label_column(centres(24), sacrum_mm=SACRUM_BELOW[24], dens_index=0)  # C2 … L5 with one more vertebra
    assert not lab.verified


# --------------------------------------------------------------------------------------------- disc files
@pytest.mark.parametrize(
    "n, values, first, names",
    [
        (5, (21, 23), VERSE_IDS["L1"], ["SCT disc 21 (L1-L2)", "SCT disc 23 (L3-L4)"]),  # L1 … L5
        (6, (11, 13), VERSE_IDS["T3"], ["SCT disc 11 (T3-T4)", "SCT disc 13 (T5-T6)"]),  # T3 … T8
    ],
)
def test_disc_labels_anchor_a_cropped_column(n, values, first, names):
    """SCT disc N below SCT level N − 1: 21 = L1-L2 below the top one (L1), 23 = L3-L4 below the 3rd; 11 = T3-T4
    below the top one (T3), 13 = T5-T6 below the 3rd. Two agreeing discs verify, one does not."""
    sem, inst, aff, rows = column(n, sacrum=False)
    discs = [DiscLabel(v, np.array([10.0, 8.0, rows[2 * k].start - 2.0])) for k, v in enumerate(values)]
    truth = list(range(first, first + n))  # no junction inside either column
    out, _, two = number_vertebrae(inst, sem, aff, discs=discs)
    assert ids_of(out, inst, n) == truth and two.anatomical and two.verified and two.anchors == names
    _, _, one = number_vertebrae(inst, sem, aff, discs=discs[:1])
    assert one.ids == two.ids and not one.verified and one.reason.startswith("one anchor only (SCT disc")


def test_a_disc_disagreeing_with_the_sacrum_is_reported():
    sem, inst, aff, rows = column(5)
    disc = [DiscLabel(22, np.array([10.0, 8.0, rows[0].start - 2.0]))]  # says L2 above it; the sacrum says L1
    _, _, lab = number_vertebrae(inst, sem, aff, discs=disc)
    # the lumbar ids follow the disc counted from the thoracolumbar junction (L2 … L6: six lumbar vertebrae), and
    # the sacrum, which says the lowest is L5, disagrees: reported, not verified
    assert lab.ids == [21, 22, 23, 24, 25] and not lab.verified
    assert lab.reason.startswith("anchors disagree: sacrum says L5 where the ids say L6")
    assert any("SCT disc 22 (L2-L3) and the sacrum: 1 vertebra(e) more than usual" in a for a in lab.anomalies)


def test_a_sacrum_cut_short_by_the_field_of_view_is_doubtful():
    """Larger than a body (1440 mm³ > 800 mm³) but cut by the bottom of the image after 10 mm, less than 1.5 × the
    8 mm body height: as a half-visible vertebra called sacrum would look. A sacrum showing 18 mm is plausible."""
    sem, inst, aff, rows = column(5, margin_below=0)
    low = rows[-1].start - (PERIOD - BODY)  # the sacrum spans rows low - 20 … low - 1
    for keep, doubtful in ((10, True), (18, False)):
        cut = low - keep
        review = review_instances(inst[:, :, cut:], sem[:, :, cut:], aff)
        assert bool(review.doubts) is doubtful
        if doubtful:
            assert [f.kind for f in review.findings] == ["sacrum"] and "cut by the bottom" in review.doubts[0]
