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
* :func:`plot_lesions`: sagittal and axial views through the largest lesions, kept / removed outlined.
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


#: Outline colours of :func:`plot_lesions`: kept and removed lesions.
LESION_KEPT_COLOUR, LESION_REMOVED_COLOUR = "tab:green", "tab:red"


def _outline(ax, mask: np.ndarray, extent: list[float], colour: str) -> None:
    """Outline the voxel edges of a 2-D mask (rows = vertical axis) drawn with ``extent`` (mm)."""
    up = np.kron(mask.astype(np.float32), np.ones((4, 4), np.float32))
    up = np.pad(up, 1)
    h, w = mask.shape
    dx, dy = (extent[1] - extent[0]) / w / 4, (extent[3] - extent[2]) / h / 4
    x = extent[0] + (np.arange(up.shape[1]) - 0.5) * dx
    y = extent[2] + (np.arange(up.shape[0]) - 0.5) * dy
    ax.contour(x, y, up, levels=[0.5], colors=[colour], linewidths=1.0)


def plot_lesions(
    components: np.ndarray,
    affine: np.ndarray,
    lesions: list[dict],
    path: str | os.PathLike,
    *,
    background: np.ndarray | None = None,
    n_largest: int = 4,
    half_width_mm: float = 15.0,
    title: str | None = None,
    overwrite: bool = False,
) -> Path:
    """A sagittal (top) and an axial (bottom) view through each of the ``n_largest`` lesions by volume (the
    last one replaced by the largest removed lesion when none of them was removed).

    ``components`` holds every lesion with its table number (:class:`postprocessing.lesions.LesionAnalysis`),
    ``lesions`` the table rows (``lesion``, ``volume_mm3``, ``centroid_*_mm``, ``removed``). Kept lesions are
    outlined in :data:`LESION_KEPT_COLOUR`, removed ones in :data:`LESION_REMOVED_COLOUR`, each numbered as
    in the table. Views in SCT's RPI frame, in mm: sagittal with superior up and anterior right, axial with
    anterior up and the subject's right on the left (radiological). ``background`` (same grid: the image,
    or the cord mask) is drawn in grey. A file without lesions gives one empty panel saying so.
    """
    import matplotlib
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    from nnunet_extensions.geometry import reorient, world_to_voxel
    from nnunet_extensions.io import voxel_sizes

    comp, aff = reorient(np.asarray(components), np.asarray(affine, float))
    bg = reorient(np.asarray(background, np.float32), np.asarray(affine, float))[0] if background is not None else None
    zooms = voxel_sizes(aff)
    by_size = sorted(lesions, key=lambda r: (-r["volume_mm3"], r["lesion"]))
    chosen = by_size[:max(1, n_largest)]
    first_removed = next((r for r in by_size if r["removed"]), None)
    if first_removed is not None and first_removed not in chosen:  # show at least one removed lesion
        chosen[-1] = first_removed
    removed = {int(r["lesion"]) for r in lesions if r["removed"]}
    ncols = max(1, len(chosen))
    with matplotlib.rc_context({**_RC, "axes.grid": False}):
        fig = Figure(figsize=(2.6 * ncols + 0.4, 5.6), dpi=DPI, layout="constrained")
        axes = fig.subplots(2, ncols, squeeze=False)
    if not chosen:
        for ax in axes.ravel():
            ax.set_axis_off()
        axes[0, 0].text(0.5, 0.5, "no lesion", ha="center", va="center", transform=axes[0, 0].transAxes)
    for col, row in enumerate(chosen):
        c = world_to_voxel(aff, np.array([[row["centroid_x_mm"], row["centroid_y_mm"], row["centroid_z_mm"]]]))[0]
        i, j, k = (int(np.clip(np.rint(v), 0, n - 1)) for v, n in zip(c, comp.shape))
        views = (("sagittal", comp[i, :, :], None if bg is None else bg[i, :, :], (1, 2), (j, k)),
                 ("axial", comp[:, :, k], None if bg is None else bg[:, :, k], (0, 1), (i, j)))
        for r_, (name, plane, back, axes_ij, centre) in enumerate(views):
            ax = axes[r_, col]
            ha = [int(np.ceil(half_width_mm / zooms[a])) for a in axes_ij]
            lo = [max(0, centre[n] - ha[n]) for n in range(2)]
            hi = [min(plane.shape[n], centre[n] + ha[n] + 1) for n in range(2)]
            crop = plane[lo[0]:hi[0], lo[1]:hi[1]].T  # rows: vertical axis (S or A), cols: horizontal
            zx, zy = zooms[axes_ij[0]], zooms[axes_ij[1]]  # voxel edges in mm along the grid
            ext = [(lo[0] - 0.5) * zx, (hi[0] - 0.5) * zx, (lo[1] - 0.5) * zy, (hi[1] - 0.5) * zy]
            if back is not None:
                ax.imshow(back[lo[0]:hi[0], lo[1]:hi[1]].T, cmap="gray", origin="lower", extent=ext,
                          interpolation="nearest", vmin=float(back.min()), vmax=float(back.max()) or 1.0)
            else:
                ax.imshow(np.zeros_like(crop, np.float32), cmap="gray", origin="lower", extent=ext, vmin=0, vmax=1)
            for lab in np.unique(crop[crop > 0]).tolist():
                m = crop == lab
                colour = LESION_REMOVED_COLOUR if lab in removed else LESION_KEPT_COLOUR
                _outline(ax, m, ext, colour)
                yy, xx = np.nonzero(m)
                px = ext[0] + (xx.mean() + 0.5) * (ext[1] - ext[0]) / m.shape[1]
                py = ext[2] + (yy.max() + 1.0) * (ext[3] - ext[2]) / m.shape[0]
                ax.annotate(str(lab), (px, py), xytext=(0, 2), textcoords="offset points", ha="center",
                            va="bottom", fontsize=8, color=colour, fontweight="bold")
            ax.set_aspect("equal")
            ax.tick_params(labelsize=7)
            if name == "sagittal":
                ax.set_title(f"lesion {row['lesion']}: {row['volume_mm3']:.1f} mm³"
                             + (f" ({row['removed']})" if row["removed"] else ""), fontsize=9)
                ax.set_xlabel("P ← → A (mm)", fontsize=8)
                ax.set_ylabel("I ← → S (mm)", fontsize=8)
            else:
                ax.set_xlabel("R ← → L (mm)", fontsize=8)
                ax.set_ylabel("P ← → A (mm)", fontsize=8)
    handles = [Line2D([], [], color=LESION_KEPT_COLOUR, label="kept"),
               Line2D([], [], color=LESION_REMOVED_COLOUR, label="removed")]
    fig.legend(handles=handles, loc="outside lower center", ncols=2, fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path, overwrite)


def plot_vertebra_instances(
    instance: np.ndarray,
    affine: np.ndarray,
    path: str | os.PathLike,
    *,
    semantic: np.ndarray | None = None,
    names: dict[int, str] | None = None,
    title: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Sagittal snapshot of a SPINEPS instance mask: one colour per vertebra (discs and endplates in their
    vertebra's colour, lighter), each vertebra named at its centroid (``names``: id → text, default the id).

    The slice is the sagittal one holding the most vertebra voxels; superior up, anterior right, in mm.
    ``semantic`` (same grid) is drawn underneath in grey, so structures without an instance stay visible.
    """
    import matplotlib
    from matplotlib.colors import to_rgba
    from matplotlib.figure import Figure

    from nnunet_extensions.geometry import reorient
    from nnunet_extensions.io import voxel_sizes

    codes = ("A", "S", "L")  # voxel axes: towards A (right on screen), S (up), L (slices)
    inst, aff = reorient(np.asarray(instance), np.asarray(affine, float), codes)
    sem = reorient(np.asarray(semantic), np.asarray(affine, float), codes)[0] if semantic is not None else None
    zooms = voxel_sizes(aff)
    vert = (inst > 0) & (inst < 100)
    k = int(np.argmax(vert.sum(axis=(0, 1)))) if vert.any() else inst.shape[2] // 2
    plane = inst[:, :, k].T  # rows: S, cols: A
    ext = [-0.5 * zooms[0], (inst.shape[0] - 0.5) * zooms[0], -0.5 * zooms[1], (inst.shape[1] - 0.5) * zooms[1]]
    height = 6.0
    width = min(max(height * (ext[1] - ext[0]) / max(ext[3] - ext[2], 1e-6) + 1.2, 3.5), 10.0)
    with matplotlib.rc_context({**_RC, "axes.grid": False}):
        fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
        ax = fig.add_subplot()
    if sem is not None:
        ax.imshow((sem[:, :, k].T > 0).astype(np.float32) * 0.35, cmap="gray", origin="lower", extent=ext,
                  vmin=0, vmax=1, interpolation="nearest")
    else:
        ax.imshow(np.zeros(plane.shape, np.float32), cmap="gray", origin="lower", extent=ext, vmin=0, vmax=1)
    rgba = np.zeros(plane.shape + (4,), np.float32)
    palette = matplotlib.colormaps["tab20"]
    vertebrae = sorted(int(v) for v in np.unique(inst) if 0 < v < 100)
    colours = {v: palette((2 * n) % 20) for n, v in enumerate(vertebrae)}
    for v in np.unique(plane).tolist():
        if v == 0:
            continue
        base = colours.get(v % 100, to_rgba("0.6"))
        alpha = 0.85 if v < 100 else 0.45
        rgba[plane == v] = (*base[:3], alpha)
    ax.imshow(rgba, origin="lower", extent=ext, interpolation="nearest")
    for v in vertebrae:  # name at the vertebral body (49) when the semantic mask shows it, else the vertebra
        m = inst == v
        if sem is not None and (m & (sem == 49)).any():
            m = m & (sem == 49)
        in_slice = m[:, :, k]
        ijk = np.argwhere(in_slice) if in_slice.any() else np.argwhere(m)[:, :2]
        a, s = ijk[:, 0].mean() * zooms[0], ijk[:, 1].mean() * zooms[1]
        label = (names or {}).get(v, str(v))
        ax.annotate(label, (a, s), ha="center", va="center", fontsize=8, fontweight="bold", color="black",
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.7})
    ax.set_aspect("equal")
    ax.set_xlabel("P ← → A (mm)")
    ax.set_ylabel("I ← → S (mm)")
    ax.tick_params(labelsize=7)
    ax.set_title(title or "vertebra instances", fontsize=10)
    return _save(fig, path, overwrite)
