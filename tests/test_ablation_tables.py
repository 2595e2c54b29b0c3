"""The ablation's own bookkeeping (nnunet_extensions.apps.ablation), checked by hand: which contrast a phantom file
belongs to, copying a phantom's subset of contrasts, filling missed masks with CSA 0 and the summary figures.
The end-to-end run through nnU-Net is tests/e2e/test_ablation.py (slow)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nnunet_extensions.apps.ablation import AblationConfig, contrast_of, copy_contrasts, fill_missing, summarize_row
from nnunet_extensions.core.io import InputError


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
