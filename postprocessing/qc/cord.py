"""QC pictures of the cord capability: CSA profile, CSA across contrasts, paired variability."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from nnunet_spine.core.labels import sct_level_name
from nnunet_spine.postprocessing.qc._style import COLOURS, _mark, _new_figure, _save


def plot_csa_profile(
    per_slice,
    path: str | os.PathLike,
    *,
    title: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Cord CSA along S-I (inferior left, superior right) with vertebral level boundaries.

    Parameters
    ----------
    per_slice : pandas.DataFrame
        Per-slice table(s) from :func:`nnunet_spine.postprocessing.cord.csa.compute_csa` (columns ``z_mm``, ``area``,
        ``level``); several files may be stacked with a ``Filename`` column, one curve each.
    path : path
        Output picture (``.png``); refused if it exists unless ``overwrite``.

    Level boundaries are drawn midway between consecutive slices whose level differs, and each level's
    name (:func:`nnunet_spine.core.labels.sct_level_name`) is written at its inferior boundary, along the top edge.
    """
    fig, ax = _new_figure()
    groups = list(per_slice.groupby("Filename", sort=False)) if "Filename" in per_slice else [("", per_slice)]
    for n, (name, df) in enumerate(groups):
        df = df.sort_values("z_mm")
        colour = COLOURS[n % len(COLOURS)]
        ax.plot(df["z_mm"], df["area"], "-", color=colour, linewidth=1.2, label=Path(str(name)).name or None, zorder=3)
        ax.plot(df["z_mm"], df["area"], ".", color=colour, markersize=3, zorder=3)
        z = df["z_mm"].to_numpy(float)
        lev = df["level"].to_numpy(int) if "level" in df else np.zeros(len(df), int)
        starts = np.concatenate([[0], np.flatnonzero(lev[1:] != lev[:-1]) + 1])
        for s in starts:  # one run of slices per level; mark its inferior boundary and name it
            if lev[s] == 0 and (s == 0 or lev[s - 1] == 0):
                continue
            x = z[s] if s == 0 else 0.5 * (z[s - 1] + z[s])
            _mark(ax, x, sct_level_name(int(lev[s])) if lev[s] > 0 else None, line=s > 0)
    ax.set_xlabel("S-I position of the cord centre (scanner z, mm; inferior ← → superior)")
    ax.set_ylabel("CSA (mm²)")
    if title:
        ax.set_title(title, fontsize=10)
    if len(groups) > 1:
        ax.legend(fontsize=8, frameon=False, loc="lower right")
    return _save(fig, path, overwrite)


def plot_csa_variability(
    table,
    path: str | os.PathLike,
    *,
    levels_text: str = "",
    overwrite: bool = False,
) -> Path:
    """CSA of each contrast (one colour per contrast) for each subject, with the subject mean ± SD.

    ``table`` is :func:`nnunet_spine.postprocessing.cord.soft_metrics.variability_table`'s output (rows per contrast
    plus an ``ALL`` row per subject); subjects along x, CSA (mm²) along y.
    """
    fig, ax = _new_figure()
    per = table[table["contrast"] != "ALL"]
    summary = table[table["contrast"] == "ALL"].set_index("subject")
    subjects = sorted(per["subject"].unique())
    contrasts = sorted(per["contrast"].unique())
    width = 0.6 / max(1, len(contrasts) - 1) if len(contrasts) > 1 else 0.0
    for n, contrast in enumerate(contrasts):
        rows = per[per["contrast"] == contrast].set_index("subject")
        x = [i - 0.3 + n * width for i, s in enumerate(subjects) if s in rows.index]
        y = [rows.loc[s, "csa_mm2"] for s in subjects if s in rows.index]
        ax.plot(x, y, "o", color=COLOURS[(n + 1) % len(COLOURS)], markersize=5, label=contrast, zorder=3)
    for i, s in enumerate(subjects):
        mean, sd = summary.loc[s, "csa_mm2"], summary.loc[s, "csa_std_across_contrasts_mm2"]
        ax.hlines(mean, i - 0.38, i + 0.38, color="black", linewidth=1.2, zorder=2)
        if np.isfinite(sd):
            ax.fill_between([i - 0.38, i + 0.38], mean - sd, mean + sd, color="0.85", zorder=1)
            ax.annotate(
                f"SD {sd:.2f} mm²",
                (i, mean + sd),
                xytext=(0, 3),
                textcoords="offset points",
                ha="center",
                va="bottom",
                fontsize=8,
                color="0.3",
            )
    ax.set_xticks(range(len(subjects)), subjects)
    ax.set_ylabel("CSA (mm²)")
    ax.set_title(
        f"CSA across contrasts{f' (levels {levels_text})' if levels_text else ''}; band: mean ± SD", fontsize=10
    )
    ax.legend(fontsize=8, frameon=False, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return _save(fig, path, overwrite)


def plot_paired_variability(
    comparison,
    path: str | os.PathLike,
    *,
    overwrite: bool = False,
) -> Path:
    """Paired plot of two methods' CSA SD across contrasts: one grey line per subject from method A to
    method B, the mean SD of each method in black, and the Wilcoxon p-value in the title.

    ``comparison`` is :func:`nnunet_spine.postprocessing.cord.variability.compare_variability`'s result.
    """
    fig, ax = _new_figure((5.0, 4.0))
    na, nb = comparison.names
    per = comparison.table[~comparison.table["subject"].isin(["ALL", "MEAN"])]
    a, b = per[f"sd_{na}_mm2"].to_numpy(float), per[f"sd_{nb}_mm2"].to_numpy(float)
    for ya, yb in zip(a, b):
        ax.plot([0, 1], [ya, yb], "-o", color="0.6", markersize=4, linewidth=0.9, zorder=2)
    ax.plot(
        [0, 1],
        [np.nanmean(a), np.nanmean(b)],
        "-o",
        color=COLOURS[0],
        linewidth=2,
        markersize=6,
        zorder=3,
        label="mean over subjects",
    )
    ax.set_xticks([0, 1], [na, nb])
    ax.set_xlim(-0.4, 1.4)
    ax.set_ylabel("CSA SD across contrasts (mm²)")
    p = comparison.wilcoxon_p
    ax.set_title(
        f"{comparison.n_subjects} subjects; Wilcoxon signed-rank p = {p:.3g}"
        if np.isfinite(p)
        else f"{comparison.n_subjects} subjects",
        fontsize=10,
    )
    ax.legend(fontsize=8, frameon=False, loc="upper right")
    return _save(fig, path, overwrite)


def plot_radial_profiles(profiles, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Mean predicted value vs signed distance to the true cord edge (mm, negative inside), one panel per
    contrast, one line per row of ``profiles`` (a table with ``row, contrast, distance_mm, value``, as
    :func:`nnunet_spine.apps.ablation.evaluation.radial_profiles` writes); ``truth`` drawn in black, the
    soft GT dashed. A halo shows as values above the truth's outside the edge (x > 0)."""
    contrasts = list(dict.fromkeys(profiles["contrast"]))
    rows = list(dict.fromkeys(profiles["row"]))
    fig, _ = _new_figure((3.0 * max(len(contrasts), 1), 3.4))
    fig.clear()
    axes = fig.subplots(1, max(len(contrasts), 1), sharey=True, squeeze=False)[0]
    others = [r for r in rows if r != "truth"]
    for ax, contrast in zip(axes, contrasts):
        sub = profiles[profiles["contrast"] == contrast]
        for k, row in enumerate(["truth", *others]):
            line = sub[sub["row"] == row]
            if line.empty:
                continue
            style = {"color": "black", "linewidth": 1.6} if row == "truth" else {"color": COLOURS[1 + k % 7]}
            if "soft GT" in row:
                style["linestyle"] = "--"
            ax.plot(line["distance_mm"], line["value"], label=row, linewidth=style.pop("linewidth", 1.1), **style)
        ax.axvline(0.0, color="0.45", linestyle="--", linewidth=0.8)
        ax.set_title(contrast, fontsize=9)
        ax.set_xlabel("distance to true cord edge (mm)")
    axes[0].set_ylabel("mean predicted value")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 4), fontsize=8, frameon=False)
    return _save(fig, path, overwrite)


def plot_learning_curve(curve, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Figures of the ablation per training budget (total iterations per arm, log scale), one line per row:
    SD of CSA across contrasts (mm²), CSA error (%) and halo (% of the true area), from a table with
    ``total_iterations, row, sd_across_contrasts_mm2, csa_error_pct, halo_pct``."""
    panels = [
        ("sd_across_contrasts_mm2", "SD across contrasts (mm²)"),
        ("csa_error_pct", "CSA error (%)"),
        ("halo_pct", "halo (% of true area)"),
    ]
    fig, _ = _new_figure((11.0, 3.6))
    fig.clear()
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    rows = [r for r in dict.fromkeys(curve["row"]) if not str(r).startswith("ref: gt_truth")]
    for ax, (column, label) in zip(axes, panels):
        for k, row in enumerate(rows):
            line = curve[curve["row"] == row].sort_values("total_iterations")
            ref = str(row).startswith("ref:")
            ax.plot(
                line["total_iterations"],
                line[column],
                marker="o" if not ref else None,
                linestyle=":" if ref else "-",
                color=COLOURS[k % len(COLOURS)],
                label=row,
                linewidth=1.1,
            )
        ax.set_xscale("log")
        ax.set_xlabel("training iterations per arm")
        ax.set_ylabel(label)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 4), fontsize=8, frameon=False)
    return _save(fig, path, overwrite)
