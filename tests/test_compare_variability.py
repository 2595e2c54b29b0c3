"""nnspine evaluate compare-variability: paired SD across contrasts and the Wilcoxon test, on hand-made tables."""

from __future__ import annotations

import subprocess

import numpy as np
import pandas as pd
import pytest
from scipy.stats import wilcoxon

from nnunet_spine.core.io import InputError
from nnunet_spine.postprocessing.cord.variability import compare_variability


def _table(csa: dict[str, list[float]], contrasts=("T1w", "T2w"), levels="3") -> pd.DataFrame:
    """A csa-variability table as the evaluate command writes it (per-contrast rows + ALL rows)."""
    rows = []
    for subject, values in csa.items():
        for c, v in zip(contrasts, values):
            rows.append(
                {
                    "subject": subject,
                    "contrast": c,
                    "filename": f"{subject}_{c}.nii.gz",
                    "levels": levels,
                    "n_slices": 4,
                    "csa_mm2": v,
                }
            )
        rows.append(
            {
                "subject": subject,
                "contrast": "ALL",
                "filename": "",
                "levels": levels,
                "n_slices": 8,
                "csa_mm2": float(np.mean(values)),
            }
        )
    return pd.DataFrame(rows)


# SDs (population) by hand: A: 0.5, 1.0, 0.1; B: 0, 0, 0.3 -> differences 0.5, 1.0, -0.2
A = {"sub-01": [80.0, 81.0], "sub-02": [70.0, 72.0], "sub-03": [60.0, 60.2]}
B = {"sub-01": [80.0, 80.0], "sub-02": [70.0, 70.0], "sub-03": [60.0, 60.6]}


def test_small_case_by_hand():
    r = compare_variability(_table(A), _table(B), names=("soft", "binary"))
    per = r.table[r.table["contrast"] == "ALL"].set_index("subject")
    np.testing.assert_allclose(per.loc[["sub-01", "sub-02", "sub-03"], "sd_soft_mm2"], [0.5, 1.0, 0.1], atol=1e-9)
    np.testing.assert_allclose(per.loc[["sub-01", "sub-02", "sub-03"], "sd_binary_mm2"], [0.0, 0.0, 0.3], atol=1e-9)
    np.testing.assert_allclose(per.loc[["sub-01", "sub-02", "sub-03"], "sd_diff_mm2"], [0.5, 1.0, -0.2], atol=1e-9)
    assert per.loc["sub-01", "cv_soft_pct"] == pytest.approx(100 * 0.5 / 80.5)
    # |d| ranks: 0.2 -> 1, 0.5 -> 2, 1.0 -> 3; W+ = 5, W- = 1; statistic = min = 1.
    # exact null of W+ for n = 3 (8 sign patterns): 0,1,2,3,3,4,5,6 -> P(W <= 1) = 2/8, two-sided p = 0.5
    assert r.n_subjects == 3
    assert r.wilcoxon_statistic == pytest.approx(1.0)
    assert r.wilcoxon_p == pytest.approx(0.5)
    summary = r.table[r.table["subject"] == "ALL"].iloc[0]
    assert summary["wilcoxon_p"] == pytest.approx(0.5) and summary["n_subjects"] == 3
    # mean CSA per contrast over subjects, each method
    t1 = r.table[(r.table["subject"] == "MEAN") & (r.table["contrast"] == "T1w")].iloc[0]
    assert t1["csa_soft_mm2"] == pytest.approx(70.0) and t1["csa_binary_mm2"] == pytest.approx(70.0)
    t2 = r.table[(r.table["subject"] == "MEAN") & (r.table["contrast"] == "T2w")].iloc[0]
    assert t2["csa_soft_mm2"] == pytest.approx((81 + 72 + 60.2) / 3)


def test_wilcoxon_matches_scipy_on_raw_numbers():
    rng = np.random.default_rng(4)
    contrasts = ("T1w", "T2w", "T2starw", "MTon", "MToff")
    a = {f"sub-{i:02d}": list(70 + rng.normal(0, 2.0, 5)) for i in range(1, 13)}
    b = {s: list(np.mean(v) + rng.normal(0, 0.8, 5)) for s, v in a.items()}
    r = compare_variability(_table(a, contrasts), _table(b, contrasts))
    sd_a = [np.std(v) for v in a.values()]
    sd_b = [np.std(v) for v in b.values()]
    expected = wilcoxon(sd_a, sd_b)
    assert r.wilcoxon_statistic == pytest.approx(expected.statistic)
    assert r.wilcoxon_p == pytest.approx(expected.pvalue)
    assert r.wilcoxon_p < 0.05  # SD 2.0 vs 0.8 over 12 subjects: a real difference


def test_identical_methods_do_not_differ():
    r = compare_variability(_table(A), _table(A), names=("x", "y"))
    assert r.wilcoxon_statistic == 0.0 and r.wilcoxon_p == 1.0


@pytest.mark.parametrize(
    "other, message",
    [
        (_table({"sub-01": [1, 2], "sub-02": [1, 2], "sub-04": [1, 2]}), "subjects differ"),
        (_table(B, levels="2:3"), "levels"),
        (_table(B, contrasts=("T1w", "T2starw")), "contrasts of sub-01"),
    ],
)
def test_tables_that_do_not_pair_up(other, message):
    with pytest.raises(InputError, match=message):
        compare_variability(_table(A), other, sources=("a.csv", "b.csv"))


def test_command(tmp_path):
    a, b = tmp_path / "soft.csv", tmp_path / "binary.csv"
    _table(A).to_csv(a, index=False)
    _table(B).to_csv(b, index=False)
    out, png = tmp_path / "cmp.csv", tmp_path / "cmp.png"
    proc = subprocess.run(
        [
            "nnspine",
            "evaluate",
            "compare-variability",
            str(a),
            str(b),
            "--names",
            "soft,binary",
            "-o",
            str(out),
            "--plot",
            str(png),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert "p = 0.5" in proc.stdout
    table = pd.read_csv(out)
    assert {"n_subjects", "wilcoxon_statistic", "wilcoxon_p", "sd_soft_mm2", "sd_binary_mm2"} <= set(table.columns)
    assert png.stat().st_size > 5_000
    bad = tmp_path / "bad.csv"
    _table({"sub-09": [1, 2]}).to_csv(bad, index=False)
    proc = subprocess.run(
        ["nnspine", "evaluate", "compare-variability", str(a), str(bad), "-o", str(tmp_path / "x.csv")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "bad.csv: subjects differ" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "x.csv").exists()


def test_spread_of_all_zero_csa_has_no_cv():
    """A subject whose every contrast measured 0 mm² (no cord found): SD 0, CV undefined (NaN), no crash."""
    from nnunet_spine.postprocessing.cord.soft_metrics import variability_table
    from nnunet_spine.postprocessing.cord.variability import spread

    sd, cv = spread(np.zeros(3))
    assert sd == 0.0 and np.isnan(cv)
    rows = [
        {"subject": "sub-01", "contrast": c, "filename": "", "levels": "3", "n_slices": 0, "csa_mm2": 0.0}
        for c in ("T1w", "T2w")
    ]
    table = variability_table(rows)
    assert table["csa_std_across_contrasts_mm2"].iloc[-1] == 0.0
    assert np.isnan(table["csa_cv_across_contrasts_pct"].iloc[-1])
