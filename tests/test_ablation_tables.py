"""The ablation's own bookkeeping (nnunet_spine.apps.ablation), checked by hand: which contrast a phantom file
belongs to, copying a phantom's subset of contrasts, filling missed masks with CSA 0 and the summary figures.
The end-to-end run through nnU-Net is tests/e2e/test_ablation.py (slow)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nnunet_spine.apps.ablation import (
    ARMS,
    AblationConfig,
    contrast_of,
    copy_contrasts,
    fill_missing,
    summarize_row,
)
from nnunet_spine.core.io import InputError


@pytest.mark.parametrize(
    "name, contrast",
    [
        ("sub-01_T2w.nii.gz", "T2w"),
        ("sub-01_T2starw.nii.gz", "T2starw"),
        ("sub-12_flip-1_mt-on_MTS_label-SC_seg.nii.gz", "flip-1_mt-on_MTS"),
        ("sub-03_T2w_label-discs_dlabel.nii.gz", "T2w"),
        ("sub-01_T1w_label-SC_softseg.json", "T1w"),
        ("dataset_description.json", None),
        ("sub-01_truth.json", "truth"),
    ],
)
def test_contrast_of(name, contrast):
    assert contrast_of(Path(name)) == contrast


def test_copy_contrasts_keeps_only_the_chosen_contrasts(tmp_path):
    src = tmp_path / "bids"
    files = [
        "dataset_description.json",
        "sub-01/anat/sub-01_T2w.nii.gz",
        "sub-01/anat/sub-01_T2starw.nii.gz",
        "sub-01/anat/sub-01_flip-2_mt-off_MTS.nii.gz",
        "derivatives/labels/sub-01/anat/sub-01_T2w_label-SC_seg.nii.gz",
        "derivatives/labels/sub-01/anat/sub-01_flip-2_mt-off_MTS_label-SC_seg.nii.gz",
    ]
    for f in files:
        (src / f).parent.mkdir(parents=True, exist_ok=True)
        (src / f).write_text(f)
    copy_contrasts(src, tmp_path / "out", ("T2w", "T2starw"))
    kept = sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert kept == sorted(f for f in files if "MTS" not in f)


def _table(path: Path, rows: list[tuple[str, str, float]]) -> Path:
    pd.DataFrame(
        [
            {"subject": s, "contrast": c, "filename": f"{s}_{c}.nii.gz", "levels": "3", "n_slices": 4, "csa_mm2": v}
            for s, c, v in rows
        ]
    ).to_csv(path, index=False)
    return path


def test_missed_masks_count_as_zero_and_figures_match_a_hand_computation(tmp_path):
    # sub-02's T1w was skipped (empty prediction) and its T2w has no cord at the level (NaN)
    # (a subject all of whose masks were missed has mean CSA 0: its CV is undefined, not an error)
    raw = _table(
        tmp_path / "raw.csv", [("sub-01", "T2w", 70.0), ("sub-01", "T1w", 74.0), ("sub-02", "T2w", float("nan"))]
    )
    filled, missing = fill_missing(raw, ["sub-01", "sub-02"], ("T2w", "T1w"), tmp_path / "filled.csv")
    assert missing == 2
    df = pd.read_csv(filled)
    per = df[df["contrast"] != "ALL"].set_index(["subject", "contrast"])["csa_mm2"]
    assert per.to_dict() == {
        ("sub-01", "T2w"): 70.0,
        ("sub-01", "T1w"): 74.0,
        ("sub-02", "T2w"): 0.0,
        ("sub-02", "T1w"): 0.0,
    }
    # recomputed per-subject SD rows (population SD): sub-01 |70 - 74| / 2 = 2, sub-02 0
    sd = df[df["contrast"] == "ALL"].set_index("subject")["csa_std_across_contrasts_mm2"]
    assert sd["sub-01"] == pytest.approx(2.0) and sd["sub-02"] == pytest.approx(0.0)
    cv = df[df["contrast"] == "ALL"].set_index("subject")["csa_cv_across_contrasts_pct"]
    assert cv["sub-01"] == pytest.approx(100 * 2 / 72) and np.isnan(cv["sub-02"])
    summary = summarize_row(filled, {"sub-01": 72.0, "sub-02": 80.0}, p=0.25)
    # errors by hand: -2/72, +2/72, -100 %, -100 %
    errors = [-200 / 72, 200 / 72, -100.0, -100.0]
    assert summary["csa_error_pct"] == pytest.approx(np.mean(errors))
    assert summary["abs_csa_error_pct"] == pytest.approx(np.mean(np.abs(errors)))
    assert summary["sd_across_contrasts_mm2"] == pytest.approx(1.0)  # mean of 2 and 0
    assert (summary["n_subjects"], summary["n_contrasts"], summary["wilcoxon_p_vs_a"]) == (2, 2, 0.25)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"n_test": 0}, "subjects"),
        ({"iterations": 0}, "iterations"),
        ({"seen_contrasts": ("T1w", "T2starw")}, "seen contrasts"),
        ({"seen_contrasts": ("T2w", "T1w", "T2starw", "flip-1_mt-on_MTS")}, "seen contrasts"),
        ({"seen_contrasts": ("T2w", "PD")}, "seen contrasts"),
        ({"arms": ("b", "c")}, "arms"),
    ],
)
def test_config_refuses_what_cannot_run(change, message):
    with pytest.raises(InputError, match=message):
        AblationConfig(**change).check()
    AblationConfig().check()
    assert AblationConfig().unseen_contrasts == ("flip-1_mt-on_MTS", "flip-2_mt-off_MTS")


# ------------------------------------------------------------------------------------- halo split (issue 17)
def _image(data: np.ndarray, voxel=(0.5, 0.5, 2.0)):
    from nnunet_spine.core.io import Image

    return Image(data=np.asarray(data, np.float32), affine=np.diag([*voxel, 1.0]))


def test_halo_split_on_a_hand_case():
    """Two slices; truth: a 2x2 block (fractions 1) plus a voxel of fraction 0.5; prediction: the block at 0.9, the
    half voxel at 0.6 and a halo of 0.2 on four outside voxels. Voxel area 0.25 mm²."""
    from nnunet_spine.postprocessing.cord.halo import halo_split

    truth = np.zeros((6, 6, 2))
    truth[2:4, 2:4, :] = 1.0
    truth[4, 2, :] = 0.5
    pred = np.zeros_like(truth)
    pred[2:4, 2:4, :] = 0.9
    pred[4, 2, :] = 0.6
    pred[1, 1:5, :] = 0.2
    split = halo_split(_image(pred), _image(truth))
    # inside: 4 x 0.9 x 1 + 0.6 x 0.5 = 3.9 voxel units; halo: 0.6 x 0.5 + 4 x 0.2 = 1.1; true: 4.5 → x 0.25 mm²
    assert split["inside_mm2"] == pytest.approx(3.9 * 0.25)
    assert split["halo_mm2"] == pytest.approx(1.1 * 0.25)
    assert split["true_mm2"] == pytest.approx(4.5 * 0.25)
    assert split["n_slices"] == 2
    # the two parts add up to the predicted area; one chosen slice gives the same per-slice means here
    assert split["inside_mm2"] + split["halo_mm2"] == pytest.approx(pred[:, :, 0].sum() * 0.25)
    assert halo_split(_image(pred), _image(truth), slices=[1])["halo_mm2"] == pytest.approx(1.1 * 0.25)


def test_radial_profile_reads_a_halo_outside_the_edge():
    """A 1-D-like cord (a slab x < 10 in a 20-voxel row, 1 mm voxels): the truth edge lies between x = 9 and 10.
    A prediction of 1 inside and 0.3 on the first two outside voxels gives 1 in the inside bins, 0.3 at
    0.5-1.5 mm outside and 0 beyond."""
    from nnunet_spine.postprocessing.cord.halo import radial_profile, signed_edge_distance_mm

    truth = np.zeros((20, 3, 3))
    truth[:10] = 1.0
    pred = truth.copy()
    pred[10:12] = 0.3
    d = signed_edge_distance_mm(_image(truth, (1.0, 1.0, 1.0)))
    assert d[9, 1, 1] == pytest.approx(-0.5) and d[10, 1, 1] == pytest.approx(0.5) and d[12, 1, 1] == pytest.approx(2.5)
    edges = [-2.0, -1.0, 0.0, 1.0, 2.0, 3.0]
    profile = radial_profile(_image(pred, (1.0, 1.0, 1.0)), _image(truth, (1.0, 1.0, 1.0)), edges)
    assert profile == pytest.approx([1.0, 1.0, 0.3, 0.3, 0.0])


# ---------------------------------------------------------------------------- budgets and resume (issue 17)
def test_budgets_parse_and_run_smallest_first():
    from nnunet_spine.apps.ablation import budget_name, parse_budgets

    assert parse_budgets("4x100, 4x20,16X100") == ((4, 100), (4, 20), (16, 100))
    for bad in ("4x", "4*20", "0x10", ""):
        with pytest.raises(InputError, match="--budgets"):
            parse_budgets(bad)
    config = AblationConfig(budgets=((16, 100), (4, 20), (4, 100), (4, 20)))
    assert config.budget_list == [(4, 20), (4, 100), (16, 100)]
    assert AblationConfig(epochs=3, iterations=7).budget_list == [(3, 7)]
    assert budget_name((16, 100)) == "16x100"


def test_a_folder_resumes_only_with_the_same_data_settings(tmp_path):
    from nnunet_spine.apps.ablation.run import SETTINGS_FILE, _open_folder
    from nnunet_spine.core.io import OutputExistsError

    folder = tmp_path / "abl"
    _open_folder(folder, AblationConfig(), overwrite=False)
    (folder / ".prepared").write_text("x")
    (folder / "phantom_train").mkdir()
    _open_folder(folder, AblationConfig(budgets=((4, 100),)), overwrite=False)  # other budget: resumed, kept
    assert (folder / "phantom_train").is_dir()
    with pytest.raises(OutputExistsError, match="other data settings"):
        _open_folder(folder, AblationConfig(n_test=3), overwrite=False)
    _open_folder(folder, AblationConfig(n_test=3), overwrite=True)  # overwrite: a fresh folder
    assert not (folder / "phantom_train").exists() and (folder / SETTINGS_FILE).is_file()
    (folder / "phantom_train").mkdir()  # an interrupted preparation (no .prepared) is started again
    _open_folder(folder, AblationConfig(n_test=3), overwrite=False)
    assert not (folder / "phantom_train").exists()
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("user data")
    with pytest.raises(OutputExistsError, match="not an ablation folder"):
        _open_folder(other, AblationConfig(), overwrite=True)
    assert (other / "keep.txt").read_text() == "user data"


def test_finished_arms_are_reused_and_a_half_finished_one_is_redone(tmp_path):
    """An arm with its final checkpoint and complete predictions runs nothing; an arm whose predictions were
    interrupted is predicted again from scratch (here nnU-Net fails: no dataset, which the log shows)."""
    from nnunet_spine.apps.ablation.commands import environment
    from nnunet_spine.apps.ablation.run import DONE, _checkpoint, train_and_predict

    folder = tmp_path / "abl"
    for sub in ("phantom_test/sub-01/anat",):
        (folder / sub).mkdir(parents=True)
    (folder / "phantom_test/sub-01/anat/sub-01_T2w.nii.gz").write_bytes(b"")
    config = AblationConfig(arms=("a", "b"))
    budget = (1, 2)
    env = environment(folder, config, budget)
    arms = {a.key: a for a in ARMS}
    out = folder / "budget_1x2"
    for key, kind in (("a", "pred"), ("b", "soft")):
        ckpt = _checkpoint(env, arms[key])
        ckpt.parent.mkdir(parents=True)
        ckpt.write_bytes(b"weights")
        (out / kind / arms[key].name).mkdir(parents=True)
    (out / "pred" / "binary" / DONE).write_text("done")  # arm a complete; arm b's soft masks half written
    (out / "soft" / "soft" / "sub-01_T2w.nii.gz").write_bytes(b"partial")
    log = folder / "nnunet.log"
    said = []
    with pytest.raises(RuntimeError, match="nnUNetv2_predict"):
        train_and_predict(folder, config, budget, log, said.append, {})
    text = log.read_text()
    assert "nnUNetv2_train" not in text  # both checkpoints reused
    assert text.count("$ nnUNetv2_predict") == 1 and " -d 781 " in text  # arm b only, on the soft dataset
    assert any("arm a" in s and "resumed" in s for s in said)
    assert not (out / "soft" / "soft" / "sub-01_T2w.nii.gz").exists()  # the partial masks were cleared first


def test_learning_curve_stacks_the_budgets():
    from nnunet_spine.apps.ablation import learning_curve

    t = pd.DataFrame({"row": ["(a) binary", "(b) soft"], "csa_error_pct": [1.0, 2.0]})
    curve = learning_curve({"4x20": t, "4x100": t.assign(csa_error_pct=[0.5, 0.7])})
    assert curve["total_iterations"].tolist() == [80, 80, 400, 400]
    assert curve.loc[(curve.budget == "4x100") & (curve.row == "(b) soft"), "csa_error_pct"].item() == 0.7
    assert list(curve.columns[:5]) == ["budget", "epochs", "iterations", "total_iterations", "row"]
