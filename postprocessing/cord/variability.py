"""Comparing two methods' CSA variability across contrasts (the claim of contrast-agnostic segmentation).

Input: two tables written by ``nnspine evaluate csa-variability`` (one row per subject and contrast, with
``csa_mm2``; plus an ``ALL`` row per subject) for the same subjects, levels and contrasts — e.g. the
predictions of a soft-trained model and of a binary-trained one. Per subject, the SD (population, mm²)
and CV (%) of CSA across contrasts are recomputed from the per-contrast rows for each method; the paired
differences ``A − B`` are tested with the Wilcoxon signed-rank test (two-sided, scipy), as Bédard et al.
compare methods.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from nnunet_spine.core.io import InputError
from nnunet_spine.core.stats import wilcoxon_signed_rank

if TYPE_CHECKING:
    import pandas

#: Columns a ``csa-variability`` table must have.
REQUIRED_COLUMNS = ("subject", "contrast", "levels", "csa_mm2")
#: Columns of the comparison table (``{a}``/``{b}`` are the method names); rows: one per subject, one per
#: contrast (``subject = MEAN``: mean CSA of that contrast over subjects), and a summary row (``subject = ALL``).
COMPARE_COLUMNS = (
    "subject",
    "contrast",
    "levels",
    "n_contrasts",
    "csa_{a}_mm2",
    "csa_{b}_mm2",
    "sd_{a}_mm2",
    "sd_{b}_mm2",
    "sd_diff_mm2",
    "cv_{a}_pct",
    "cv_{b}_pct",
    "cv_diff_pct",
    "n_subjects",
    "wilcoxon_statistic",
    "wilcoxon_p",
)


@dataclass
class Comparison:
    """Result of :func:`compare_variability`: the table and the test on per-subject SDs (mm²)."""

    table: pandas.DataFrame  # noqa: F821
    names: tuple[str, str]
    n_subjects: int
    wilcoxon_statistic: float
    wilcoxon_p: float


def _per_contrast(df: pandas.DataFrame, name: str) -> pandas.DataFrame:  # noqa: F821
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise InputError(f"{name}: not a csa-variability table (missing columns {missing})")
    rows = df[df["contrast"].astype(str) != "ALL"].copy()
    rows["subject"] = rows["subject"].astype(str)
    rows["contrast"] = rows["contrast"].astype(str)
    rows["levels"] = rows["levels"].astype(str)
    dup = rows.duplicated(["subject", "contrast"])
    if dup.any():
        r = rows[dup].iloc[0]
        raise InputError(f"{name}: subject {r['subject']} has contrast {r['contrast']} twice")
    if rows.empty:
        raise InputError(f"{name}: no per-contrast rows")
    return rows


def check_pairing(a: pandas.DataFrame, b: pandas.DataFrame, name_a: str, name_b: str) -> None:  # noqa: F821
    """Raise :class:`InputError` unless both tables hold the same subjects, levels and contrasts."""
    sa, sb = set(a["subject"]), set(b["subject"])
    if sa != sb:
        only_a, only_b = sorted(sa - sb), sorted(sb - sa)
        raise InputError(
            f"{name_b}: subjects differ from {name_a} (only in the first: {only_a[:5]}, only in the "
            f"second: {only_b[:5]})"
        )
    la, lb = set(a["levels"]), set(b["levels"])
    if la != lb:
        raise InputError(f"{name_b}: levels {sorted(lb)} differ from {name_a}'s {sorted(la)}")
    for subject in sorted(sa):
        ca = set(a.loc[a["subject"] == subject, "contrast"])
        cb = set(b.loc[b["subject"] == subject, "contrast"])
        if ca != cb:
            raise InputError(f"{name_b}: contrasts of {subject} {sorted(cb)} differ from {name_a}'s {sorted(ca)}")


def spread(values: np.ndarray) -> tuple[float, float]:
    """Population SD (mm²) and CV (%) of the finite values; NaN when fewer than two (CV also when the mean is 0)."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if v.size < 2:
        return float("nan"), float("nan")
    sd, mean = float(np.std(v)), float(np.mean(v))
    return sd, (100.0 * sd / mean if mean != 0 else float("nan"))


def compare_variability(
    a: pandas.DataFrame,
    b: pandas.DataFrame,
    names: tuple[str, str] = ("A", "B"),  # noqa: F821
    sources: tuple[str, str] = ("A", "B"),
) -> Comparison:
    """Pair two ``csa-variability`` tables by subject; per subject SD/CV across contrasts of each method and
    their differences (``names[0] − names[1]``); mean CSA per contrast; Wilcoxon test on the SDs.

    ``sources`` name the tables in error messages (file paths). Raises :class:`InputError` when the tables
    do not pair up (different subjects, levels or contrasts).
    """
    import pandas as pd

    na, nb = names
    if na == nb:
        raise InputError(f"--names: the two methods need different names, got {na!r} twice")
    ra, rb = _per_contrast(a, sources[0]), _per_contrast(b, sources[1])
    check_pairing(ra, rb, *sources)
    col = {k: k.format(a=na, b=nb) for k in COMPARE_COLUMNS}
    levels = ",".join(sorted(set(ra["levels"])))
    rows, sd_a, sd_b = [], [], []
    for subject in sorted(set(ra["subject"])):
        va = ra[ra["subject"] == subject].set_index("contrast")["csa_mm2"]
        vb = rb[rb["subject"] == subject].set_index("contrast")["csa_mm2"].reindex(va.index)
        (s_a, c_a), (s_b, c_b) = spread(va.to_numpy()), spread(vb.to_numpy())
        sd_a.append(s_a)
        sd_b.append(s_b)
        rows.append(
            {
                col["subject"]: subject,
                col["contrast"]: "ALL",
                col["levels"]: levels,
                col["n_contrasts"]: int(len(va)),
                col["csa_{a}_mm2"]: float(np.nanmean(va)),
                col["csa_{b}_mm2"]: float(np.nanmean(vb)),
                col["sd_{a}_mm2"]: s_a,
                col["sd_{b}_mm2"]: s_b,
                col["sd_diff_mm2"]: s_a - s_b,
                col["cv_{a}_pct"]: c_a,
                col["cv_{b}_pct"]: c_b,
                col["cv_diff_pct"]: c_a - c_b,
            }
        )
    for contrast in sorted(set(ra["contrast"])):
        ca = ra.loc[ra["contrast"] == contrast, "csa_mm2"].to_numpy(float)
        cb = rb.loc[rb["contrast"] == contrast, "csa_mm2"].to_numpy(float)
        rows.append(
            {
                col["subject"]: "MEAN",
                col["contrast"]: contrast,
                col["levels"]: levels,
                col["csa_{a}_mm2"]: float(np.nanmean(ca)),
                col["csa_{b}_mm2"]: float(np.nanmean(cb)),
                col["n_subjects"]: int(len(ca)),
            }
        )
    stat, p = wilcoxon_signed_rank(sd_a, sd_b)
    n = int(np.sum(np.isfinite(sd_a) & np.isfinite(sd_b)))
    rows.append(
        {
            col["subject"]: "ALL",
            col["contrast"]: "ALL",
            col["levels"]: levels,
            col["sd_{a}_mm2"]: float(np.nanmean(sd_a)),
            col["sd_{b}_mm2"]: float(np.nanmean(sd_b)),
            col["sd_diff_mm2"]: float(np.nanmean(np.subtract(sd_a, sd_b))),
            col["n_subjects"]: n,
            col["wilcoxon_statistic"]: stat,
            col["wilcoxon_p"]: p,
        }
    )
    table = pd.DataFrame(rows, columns=[col[k] for k in COMPARE_COLUMNS])
    return Comparison(table, (na, nb), n, stat, p)


def read_variability_table(path) -> pandas.DataFrame:  # noqa: F821
    """Read a ``csa-variability`` CSV; :class:`InputError` naming the file when it is missing or not a table."""
    from nnunet_spine.core.io import read_csv_table

    df = read_csv_table(path)
    _per_contrast(df, str(path))  # validates columns and rows
    return df
