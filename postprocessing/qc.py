"""Quality-control pictures (PNG), one function per picture, all with the same small look.

Shared look: white background, light grid, 10-pt text, the measured quantity in black/``tab:`` colours,
reference marks (level boundaries...) as thin grey dashed lines with their labels along the top edge.
Figures are built with matplotlib's object API (no pyplot, no global state, no display needed) and written
atomically through :func:`nnunet_extensions.io.atomic_output`, so an existing picture is never replaced
unless ``overwrite=True``. matplotlib is imported only when a picture is drawn.

Pictures:

* :func:`plot_csa_profile`: cord cross-sectional area along the S-I axis with vertebral level boundaries.
* :func:`plot_csa_variability`: CSA per contrast for each subject, with the across-contrast spread.
* :func:`plot_paired_variability`: two methods' CSA SD across contrasts, paired by subject.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from nnunet_extensions.io import atomic_output, split_suffix
from nnunet_extensions.labels import sct_level_name

#: Figure size (inches) and resolution shared by all pictures.
FIGSIZE = (8.0, 4.0)
DPI = 110
#: Colour cycle for several series in one picture.
COLOURS = ["black", "tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink"]
_RC = {"font.size": 10, "axes.grid": True, "grid.color": "0.88", "grid.linewidth": 0.6,
       "axes.spines.top": False, "axes.spines.right": False}


def _new_figure(figsize: tuple[float, float] = FIGSIZE):
    """A figure with one axes, in the module's look. Returns ``(fig, ax)``."""
    import matplotlib
    from matplotlib.figure import Figure

    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=figsize, dpi=DPI, layout="constrained")
        ax = fig.add_subplot()
    return fig, ax


def _save(fig, path: str | os.PathLike, overwrite: bool) -> Path:
    """Write a figure atomically; the format follows the file ending (png by default)."""
    ext = split_suffix(path)[1].lstrip(".").lower() or "png"
    with atomic_output(path, overwrite) as tmp:
        fig.savefig(tmp, format=ext)
    return Path(path)


def _mark(ax, x: float, label: str | None = None, line: bool = True) -> None:
    """A reference mark: thin grey dashed vertical line (unless ``line`` is False), optional label at the top."""
    if line:
        ax.axvline(x, color="0.45", linestyle="--", linewidth=0.8, zorder=1)
    if label:
        ax.annotate(label, (x, 1.0), xycoords=("data", "axes fraction"), xytext=(2, -2),
                    textcoords="offset points", ha="left", va="top", fontsize=8, color="0.3")


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
        Per-slice table(s) from :func:`postprocessing.csa.compute_csa` (columns ``z_mm``, ``area``,
        ``level``); several files may be stacked with a ``Filename`` column, one curve each.
    path : path
        Output picture (``.png``); refused if it exists unless ``overwrite``.

    Level boundaries are drawn midway between consecutive slices whose level differs, and each level's
    name (:func:`nnunet_extensions.labels.sct_level_name`) is written at its inferior boundary, along the top edge.
    """
    fig, ax = _new_figure()
    groups = list(per_slice.groupby("Filename", sort=False)) if "Filename" in per_slice else [("", per_slice)]
    for n, (name, df) in enumerate(groups):
        df = df.sort_values("z_mm")
        colour = COLOURS[n % len(COLOURS)]
        ax.plot(df["z_mm"], df["area"], "-", color=colour, linewidth=1.2, label=Path(str(name)).name or None,
                zorder=3)
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

    ``table`` is :func:`postprocessing.metrics.variability_table`'s output (rows per contrast plus an
    ``ALL`` row per subject); subjects along x, CSA (mm²) along y.
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
            ax.annotate(f"SD {sd:.2f} mm²", (i, mean + sd), xytext=(0, 3), textcoords="offset points",
                        ha="center", va="bottom", fontsize=8, color="0.3")
    ax.set_xticks(range(len(subjects)), subjects)
    ax.set_ylabel("CSA (mm²)")
    ax.set_title(f"CSA across contrasts{f' (levels {levels_text})' if levels_text else ''}; band: mean ± SD",
                 fontsize=10)
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

    ``comparison`` is :func:`postprocessing.variability.compare_variability`'s result.
    """
    fig, ax = _new_figure((5.0, 4.0))
    na, nb = comparison.names
    per = comparison.table[~comparison.table["subject"].isin(["ALL", "MEAN"])]
    a, b = per[f"sd_{na}_mm2"].to_numpy(float), per[f"sd_{nb}_mm2"].to_numpy(float)
    for ya, yb in zip(a, b):
        ax.plot([0, 1], [ya, yb], "-o", color="0.6", markersize=4, linewidth=0.9, zorder=2)
    ax.plot([0, 1], [np.nanmean(a), np.nanmean(b)], "-o", color=COLOURS[0], linewidth=2, markersize=6,
            zorder=3, label="mean over subjects")
    ax.set_xticks([0, 1], [na, nb])
    ax.set_xlim(-0.4, 1.4)
    ax.set_ylabel("CSA SD across contrasts (mm²)")
    p = comparison.wilcoxon_p
    ax.set_title(f"{comparison.n_subjects} subjects; Wilcoxon signed-rank p = "
                 f"{p:.3g}" if np.isfinite(p) else f"{comparison.n_subjects} subjects", fontsize=10)
    ax.legend(fontsize=8, frameon=False, loc="upper right")
    return _save(fig, path, overwrite)
