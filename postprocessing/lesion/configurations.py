"""The configuration table of a lesion study (Hille et al.: T1w / T2w / both × 2D / 3D): per configuration the
mean and SD over cases of each metric of ``nnspine evaluate lesions``, and a paired Wilcoxon signed-rank test of
every configuration against a baseline, case by case.

Inputs are the CSVs of ``nnspine evaluate lesions`` (per-case rows; the ``ALL``, ``MEAN``, ``SD`` and ``N`` rows
are ignored). Every configuration must hold the same cases, paired by case name or, with ``pair="subject"``, by the
BIDS subject (and session) the case name starts with: the T1w, T2w and T1w+T2w datasets of one cohort name their
cases after their first channel (``sub-01_T1w``, ``sub-01_T2w``), so only the subject pairs them.
"""

from __future__ import annotations

from collections.abc import Mapping

from nnunet_spine.core.io import InputError
from nnunet_spine.core.stats import wilcoxon_signed_rank

#: Metrics summarised per configuration, in column order.
SUMMARY_METRICS = (
    "dice",
    "voxel_sensitivity",
    "voxel_specificity",
    "voxel_precision",
    "lesion_sensitivity",
    "lesion_precision",
    "lesion_f1",
)


def summary_columns(metrics=SUMMARY_METRICS) -> list[str]:
    """``config, n_cases, baseline``, then ``<m>_mean, <m>_sd`` and ``wilcoxon_p_<m>`` per metric."""
    cols = ["config", "n_cases", "baseline"]
    for m in metrics:
        cols += [f"{m}_mean", f"{m}_sd", f"wilcoxon_p_{m}"]
    return cols


#: How cases of different configurations are paired.
PAIRINGS = ("case", "subject")


def pairing_key(case: str, pair: str = "case") -> str:
    """The key pairing ``case`` across configurations: the case name itself, or (``pair="subject"``) its BIDS
    subject and session (``sub-01_ses-2_T1w`` → ``sub-01_ses-2``). Raises :class:`InputError` for a case name
    without a subject."""
    from nnunet_spine.core.bids import parse_name

    if pair == "case":
        return case
    parsed = parse_name(case)
    if parsed is None:
        raise InputError(f"case {case}: not a BIDS name (sub-<label>_..._<suffix>), cannot pair it by subject")
    ses = parsed.get("ses")
    return f"{parsed.subject}_ses-{ses}" if ses else parsed.subject


def per_case(table, name: str = "<table>", pair: str = "case"):
    """The per-case rows of an ``evaluate lesions`` table (a DataFrame), indexed by :func:`pairing_key`; raises
    :class:`InputError` naming ``name`` when a metric column is missing or a key repeats."""
    from nnunet_spine.postprocessing.lesion.metrics import SUMMARY_CASES

    missing = [c for c in ("case", *SUMMARY_METRICS) if c not in table.columns]
    if missing:
        raise InputError(f"{name}: not an 'nnspine evaluate lesions' table (missing columns {', '.join(missing)})")
    rows = table[~table["case"].astype(str).isin(SUMMARY_CASES)]
    if rows.empty:
        raise InputError(f"{name}: no case rows")
    keys = rows["case"].astype(str).map(lambda c: pairing_key(c, pair))
    repeated = keys[keys.duplicated()].tolist()
    if repeated:
        raise InputError(f"{name}: {'case' if pair == 'case' else 'subject'} {repeated[0]} appears more than once")
    return rows.set_index(keys)


def configuration_table(
    tables: Mapping[str, object], baseline: str | None = None, metrics=SUMMARY_METRICS, pair: str = "case"
):
    """One row per configuration (a DataFrame with :func:`summary_columns`) from ``{name: evaluate-lesions
    DataFrame}``, in the given order. ``baseline`` (default: the first) gets no p-values; every other row gets
    ``wilcoxon_p_<m>`` paired against it by :func:`pairing_key` (``pair``: ``"case"`` or ``"subject"``).
    SDs are sample SDs (n − 1), NaN skipped.

    Raises :class:`InputError` when the configurations do not hold the same cases (naming the missing ones) or
    ``baseline`` is not one of them.
    """
    import pandas as pd

    if not tables:
        raise InputError("no configuration given")
    names = list(tables)
    baseline = names[0] if baseline is None else baseline
    if baseline not in tables:
        raise InputError(f"--baseline {baseline}: not one of the configurations ({', '.join(names)})")
    cases = {name: per_case(t, name, pair) for name, t in tables.items()}
    reference = cases[baseline]
    for name, rows in cases.items():
        missing = sorted(set(reference.index) - set(rows.index))
        extra = sorted(set(rows.index) - set(reference.index))
        if missing or extra:
            what = f"lacks {', '.join(missing)}" if missing else f"has cases {', '.join(extra)} that {baseline} lacks"
            raise InputError(f"configuration {name} {what}: every configuration must hold the same cases")
    order = reference.index
    out = []
    for name in names:
        rows = cases[name].loc[order]
        row = {"config": name, "n_cases": len(rows), "baseline": baseline}
        for m in metrics:
            values = rows[m].astype(float)
            row[f"{m}_mean"] = float(values.mean(skipna=True))
            row[f"{m}_sd"] = float(values.std(ddof=1, skipna=True))
            row[f"wilcoxon_p_{m}"] = (
                float("nan")
                if name == baseline
                else wilcoxon_signed_rank(values.to_numpy(), reference.loc[order, m].astype(float).to_numpy())[1]
            )
        out.append(row)
    return pd.DataFrame(out, columns=summary_columns(metrics))


def case_values(tables: Mapping[str, object], metric: str, pair: str = "case"):
    """``{config: per-case values of metric}`` in the case order of the first table (for the picture)."""
    cases = {name: per_case(t, name, pair) for name, t in tables.items()}
    order = next(iter(cases.values())).index
    return {name: rows.loc[order, metric].astype(float).to_numpy() for name, rows in cases.items()}
