"""SPINEPS' first step for vertebra voxels no instance covers (``assign_missing_cc`` with
``proc_assign_missing_dilate_first=True``): every instance grows two voxels, face neighbours only, into the semantic
vertebra mask, the lower id first where two meet. Truth written by hand."""

from __future__ import annotations

import numpy as np

from nnunet_spine.core.labels import CORPUS
from nnunet_spine.postprocessing.spine.cleaning import clean_instances, grow_instances


def test_a_strip_nobody_covers_goes_to_the_adjacent_instance_as_spineps_grows_it():
    # a column of 1 mm voxels, all vertebral body; vertebra 1 on slices 0-4, vertebra 2 on slices 9-13:
    # slices 5-8 (a 4-voxel strip) are covered by no instance prediction
    sem = np.full((14, 5, 5), CORPUS, np.uint8)
    fused = np.zeros(sem.shape, np.uint16)
    fused[:5] = 1
    fused[9:] = 2
    inst, dropped, stats = clean_instances(fused, sem, np.zeros(sem.shape, np.int32), (1.0, 1.0, 1.0), 0.0)
    truth = np.zeros(sem.shape, np.uint16)
    truth[:7] = 1  # vertebra 1 grows into slices 5 and 6
    truth[7:] = 2  # vertebra 2 into slices 8 and 7
    assert (inst == truth).all() and not dropped.any()
    assert stats.grown == 4 * 25 and stats.reassigned == stats.grown


def test_growth_is_face_connected_two_rounds_and_the_lower_id_wins_ties():
    inst = np.zeros((7, 1, 7), np.uint16)
    inst[3, 0, 0] = 2
    inst[3, 0, 6] = 1
    free = inst == 0
    free[0] = False  # not vertebra: never taken
    n = grow_instances(inst, free)
    truth = np.array(
        [
            [0, 0, 0, 0, 0, 0, 0],
            [2, 0, 0, 0, 0, 0, 1],  # two rounds along a face path, no diagonal step
            [2, 2, 0, 0, 0, 1, 1],
            [2, 2, 2, 0, 1, 1, 1],  # the middle voxel is 3 faces from each: left free
            [2, 2, 0, 0, 0, 1, 1],
            [2, 0, 0, 0, 0, 0, 1],
            [0, 0, 0, 0, 0, 0, 0],
        ],
        np.uint16,
    )
    assert (inst[:, 0] == truth).all()
    assert n == int((truth > 0).sum()) - 2 and not (free & (inst > 0)).any()
    # where both reach a voxel in the same round, the lower id takes it (SPINEPS dilates label 1 before label 2)
    tie = np.zeros((1, 1, 5), np.uint16)
    tie[0, 0, 0], tie[0, 0, 4] = 2, 1
    grow_instances(tie, tie == 0, steps=1)
    grow_instances(tie, tie == 0, steps=1)
    assert tie[0, 0].tolist() == [2, 2, 1, 1, 1]


def test_an_articular_process_split_by_a_seam_goes_wholly_to_the_vertebra_holding_most_of_it():
    # SPINEPS' assign_vertebra_inconsistency rule (dominance 2:1), applied after the gaps are filled
    from nnunet_spine.core.labels import ARCUS, INF_ARTICULAR_LEFT, SUP_ARTICULAR_RIGHT
    from nnunet_spine.postprocessing.spine.cleaning import articular_to_majority

    sem = np.zeros((12, 4, 4), np.uint8)
    inst = np.zeros(sem.shape, np.uint16)
    sem[0:5] = INF_ARTICULAR_LEFT  # process A: 80 voxels, 64 of vertebra 1 and 16 (one slice) of vertebra 2
    inst[0:4], inst[4] = 1, 2
    sem[6:8] = SUP_ARTICULAR_RIGHT  # process B: 32 voxels, 16 + 16: no instance dominates, left as it is
    inst[6], inst[7] = 2, 3
    sem[9:12] = ARCUS  # not an articular process: never moved
    inst[9:11], inst[11] = 3, 4
    before = inst.copy()
    moved = articular_to_majority(inst, sem)
    truth = before.copy()
    truth[4] = 1
    assert (inst == truth).all() and moved == 16
    # 2:1 is not enough (more than twice the next one is): 2 slices of 1 against 1 slice of 2
    sem2 = np.full((3, 2, 2), INF_ARTICULAR_LEFT, np.uint8)
    inst2 = np.array([1, 1, 2], np.uint16)[:, None, None] * np.ones((3, 2, 2), np.uint16)
    assert articular_to_majority(inst2, sem2) == 0 and inst2[2].max() == 2


def test_clean_instances_moves_an_articular_seam_and_counts_it():
    from nnunet_spine.core.labels import INF_ARTICULAR_RIGHT

    # vertebra 1's body (slices 0-3) and inferior articular process (slices 4-8, 5x5 each); a shifted prediction
    # gave slice 8 of the process to vertebra 2, whose body fills slices 9-13
    sem = np.full((14, 5, 5), CORPUS, np.uint8)
    sem[4:9] = INF_ARTICULAR_RIGHT
    fused = np.zeros(sem.shape, np.uint16)
    fused[:8], fused[8:] = 1, 2
    inst, dropped, stats = clean_instances(fused, sem, np.zeros(sem.shape, np.int32), (1.0, 1.0, 1.0), 0.0)
    assert (inst[:9] == 1).all() and (inst[9:] == 2).all() and not dropped.any()
    assert stats.articular == 25
    # SPINEPS' earlier rules variant leaves it
    inst, _, stats = clean_instances(fused, sem, np.zeros(sem.shape, np.int32), (1.0, 1.0, 1.0), 0.0, rules="spineps")
    assert (inst[8] == 2).all() and stats.articular == 0
