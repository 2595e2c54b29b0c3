"""``nnspine relabel --from totalspineseg`` / ``--from spineps --to totalspineseg``: TotalSpineSeg's label ids
(``totalspineseg/resources/labels_maps/tss_map.json``) to SPINEPS' and back, through the real console script.
Expected values are written out by hand from TotalSpineSeg's map and the VerSe numbering."""

from __future__ import annotations

import subprocess

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from nnunet_spine.core.labels import TOTALSPINESEG_LABELS, crosswalk_rows
from nnunet_spine.phantoms.spine import build_spine_model, render_spine
from nnunet_spine.postprocessing.spine.relabel import to_totalspineseg

AFFINE = np.diag([0.8, 0.8, 1.5, 1.0])

#: TotalSpineSeg id → (our instance id, our semantic id), by hand: VerSe C7 = 7, T1 = 8, T12 = 19, L1 = 20 …
#: L5 = 24, L6 = 25, sacrum 26; disc below vertebra X = 100 + X.
HAND = {
    1: (0, 60),  # cord
    2: (0, 61),  # canal
    12: (2, 0),  # C2
    17: (7, 0),  # C7
    21: (8, 0),  # T1
    32: (19, 0),  # T12
    41: (20, 0),  # L1
    45: (24, 0),  # L5
    46: (25, 0),  # L6
    50: (26, 0),  # sacrum
    63: (102, 0),  # C2-C3
    67: (106, 0),  # C6-C7
    71: (107, 0),  # C7-T1
    82: (118, 0),  # T11-T12
    91: (119, 0),  # T12-L1
    95: (123, 0),  # L4-L5
    100: (124, 0),  # L5-S
}


def _nnspine(*args) -> subprocess.CompletedProcess:
    return subprocess.run(["nnspine", "relabel", *map(str, args)], capture_output=True, text=True)


def _hand_mask() -> np.ndarray:
    data = np.zeros((6, 6, 2 * len(HAND)), np.uint8)
    for n, tss in enumerate(HAND):
        data[1:4, 2:5, 2 * n] = tss
        data[4, 4, 2 * n + 1] = tss
    return data


def _save(data, path, affine=AFFINE):
    nib.save(nib.Nifti1Image(data, affine), path)
    return path


def test_totalspineseg_round_trip_is_exact(tmp_path):
    tss = _hand_mask()
    src = _save(tss, tmp_path / "sub-01_T2w.nii.gz")
    out = tmp_path / "ours"
    proc = _nnspine("-i", src, "-o", out, "--from", "totalspineseg")
    assert proc.returncode == 0, proc.stderr
    vert = out / "sub-01_T2w_seg-vert_msk.nii.gz"
    spine = out / "sub-01_T2w_seg-spine_msk.nii.gz"
    inst = np.asarray(nib.load(vert).dataobj)
    sem = np.asarray(nib.load(spine).dataobj)
    want_inst = np.zeros_like(inst)
    want_sem = np.zeros_like(sem)
    for t, (i, s) in HAND.items():
        want_inst[tss == t] = i
        want_sem[tss == t] = s
    np.testing.assert_array_equal(inst, want_inst)
    np.testing.assert_array_equal(sem, want_sem)
    np.testing.assert_allclose(nib.load(vert).affine, AFFINE)
    # back: the folder's instance mask, with the seg-spine mask beside it for cord and canal
    back = tmp_path / "back"
    proc = _nnspine("-i", out, "-o", back, "--from", "spineps", "--to", "totalspineseg")
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_array_equal(np.asarray(nib.load(back / vert.name).dataobj), tss)
    # one file, with --semantic
    one = tmp_path / "one_tss.nii.gz"
    proc = _nnspine("-i", vert, "-o", one, "--from", "spineps", "--to", "totalspineseg", "--semantic", spine)
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_array_equal(np.asarray(nib.load(one).dataobj), tss)


def test_every_totalspineseg_id_with_a_counterpart_round_trips():
    """All of TotalSpineSeg's ids but L7 (47, no VerSe id) survive ours → theirs."""
    from nnunet_spine.postprocessing.spine.relabel import from_totalspineseg

    ids = np.array([v for v in TOTALSPINESEG_LABELS if v != 47], np.uint8).reshape(1, 1, -1)
    inst, sem = from_totalspineseg(ids)
    np.testing.assert_array_equal(to_totalspineseg(inst, sem), ids)


def test_endplates_join_the_nearest_vertebra():
    inst = np.zeros((1, 1, 9), np.int64)
    inst[0, 0, :3] = 21  # L2 below
    inst[0, 0, 3] = 220  # L2's upper endplate: SPINEPS names it after L1 above
    inst[0, 0, 4] = 120  # disc L1-L2
    inst[0, 0, 5] = 220  # L1's lower endplate
    inst[0, 0, 6:] = 20  # L1
    got = to_totalspineseg(inst)[0, 0]
    np.testing.assert_array_equal(got, [42, 42, 42, 42, 92, 41, 41, 41, 41])


def test_refusals_are_one_line_and_write_nothing(tmp_path):
    l7 = _hand_mask()
    l7[0, 0, 0] = 47
    src = _save(l7, tmp_path / "l7.nii.gz")
    proc = _nnspine("-i", src, "-o", tmp_path / "out", "--from", "totalspineseg")
    assert proc.returncode == 2 and "47 (L7)" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()
    t13 = np.zeros((4, 4, 4), np.uint8)
    t13[1, 1, 1] = 28
    src = _save(t13, tmp_path / "sub-02_T2w_seg-vert_msk.nii.gz")
    proc = _nnspine("-i", src, "-o", tmp_path / "t.nii.gz", "--from", "spineps", "--to", "totalspineseg")
    assert proc.returncode == 2 and "T13" in proc.stderr and not (tmp_path / "t.nii.gz").exists()
    ok = _save(_hand_mask(), tmp_path / "ok.nii.gz")
    first = _nnspine("-i", ok, "-o", tmp_path / "x_seg-vert_msk.nii.gz", "--from", "totalspineseg")
    assert first.returncode == 0 and (tmp_path / "x_seg-spine_msk.nii.gz").exists()
    again = _nnspine("-i", ok, "-o", tmp_path / "x_seg-vert_msk.nii.gz", "--from", "totalspineseg")
    assert again.returncode == 2 and "--overwrite" in again.stderr
    assert _nnspine("-i", ok, "-o", tmp_path / "y", "--from", "totalspineseg", "--dataset", "1").returncode == 2


def test_csa_vertfile_takes_a_converted_totalspineseg_mask(tmp_path):
    """A TotalSpineSeg-id rendering of a phantom column (hand map from its SPINEPS masks; TotalSpineSeg has no
    endplates, so they are left out), converted, gives ``csa --vertfile`` the levels of the phantom's own
    instance mask without endplates."""
    r = render_spine(build_spine_model(5, seed=1))
    inst, sem = r["instance"].astype(np.int64), r["semantic"]
    tss = np.zeros(inst.shape, np.uint8)
    hand = {20: 41, 21: 42, 22: 43, 23: 44, 24: 45, 26: 50, 120: 92, 121: 93, 122: 94, 123: 95, 124: 100}
    for ours, theirs in hand.items():
        tss[inst == ours] = theirs
    tss[sem == 60], tss[sem == 61] = 1, 2
    src = _save(tss, tmp_path / "sub-01_T2w.nii.gz", r["affine"])
    assert _nnspine("-i", src, "-o", tmp_path / "conv", "--from", "totalspineseg").returncode == 0
    no_endplates = np.where(inst >= 200, 0, inst).astype(np.int16)
    ref = _save(no_endplates, tmp_path / "ref_seg-vert_msk.nii.gz", r["affine"])
    cord = _save(sem, tmp_path / "ref_seg-spine_msk.nii.gz", r["affine"])
    tables = []
    for mask, vert in (
        (tmp_path / "conv" / "sub-01_T2w_seg-spine_msk.nii.gz", tmp_path / "conv" / "sub-01_T2w_seg-vert_msk.nii.gz"),
        (cord, ref),
    ):
        out = tmp_path / f"csa{len(tables)}.csv"
        proc = subprocess.run(
            ["nnspine", "csa", "-i", mask, "--label", "60", "--vertfile", vert, "--perslice", "-o", out],
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, proc.stderr
        tables.append(pd.read_csv(out))
    assert tables[0]["VertLevel"].notna().sum() > 100
    pd.testing.assert_series_equal(tables[0]["VertLevel"], tables[1]["VertLevel"])


@pytest.mark.parametrize(
    "name, sct_level, sct_disc, verse, tss",
    [
        ("C2-C3 disc", "—", "3", "102", "63"),
        ("T12-L1 disc", "—", "20", "119", "91"),
        ("L5-S1 disc", "—", "25", "124", "100"),
        ("L1", "20", "—", "20", "41"),
        ("T13", "—", "—", "28", "—"),
        ("L6", "—", "—", "25", "46"),
        ("L7", "—", "—", "—", "47"),
        ("sacrum", "25", "—", "26", "50"),
    ],
)
def test_crosswalk_rows_by_hand(name, sct_level, sct_disc, verse, tss):
    rows = {r[0]: r[1:] for r in crosswalk_rows()}
    assert rows[name] == (sct_level, sct_disc, verse, tss)
