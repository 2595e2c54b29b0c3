"""Quality-control pictures (PNG), one function per picture, all with the same small look.

Shared look: white background, light grid, 10-pt text, the measured quantity in black/``tab:`` colours,
reference marks (level boundaries...) as thin grey dashed lines with their labels along the top edge.
Figures are built with matplotlib's object API (no pyplot, no global state, no display needed) and written
atomically through :func:`nnunet_extensions.core.io.atomic_output`, so an existing picture is never replaced
unless ``overwrite=True``. matplotlib is imported only when a picture is drawn.

Pictures:

* :func:`plot_csa_profile`: cord cross-sectional area along the S-I axis with vertebral level boundaries.
* :func:`plot_csa_variability`: CSA per contrast for each subject, with the across-contrast spread.
* :func:`plot_paired_variability`: two methods' CSA SD across contrasts, paired by subject.
* :func:`plot_lesions`: sagittal and axial views through the largest lesions, kept / removed outlined.
* :func:`plot_spine_semantic`: mid-sagittal and both parasagittal slices of a SPINEPS semantic mask, SPINEPS colours.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from nnunet_extensions.core.io import atomic_output, split_suffix
from nnunet_extensions.core.labels import sct_level_name

#: Figure size (inches) and resolution shared by all pictures.
FIGSIZE = (8.0, 4.0)
DPI = 110
#: Colour cycle for several series in one picture.
COLOURS = ["black", "tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink"]
_RC = {
    "font.size": 10,
    "axes.grid": True,
    "grid.color": "0.88",
    "grid.linewidth": 0.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
}


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
        ax.annotate(
            label,
            (x, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(2, -2),
            textcoords="offset points",
            ha="left",
            va="top",
            fontsize=8,
            color="0.3",
        )


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
        Per-slice table(s) from :func:`postprocessing.cord.csa.compute_csa` (columns ``z_mm``, ``area``,
        ``level``); several files may be stacked with a ``Filename`` column, one curve each.
    path : path
        Output picture (``.png``); refused if it exists unless ``overwrite``.

    Level boundaries are drawn midway between consecutive slices whose level differs, and each level's
    name (:func:`nnunet_extensions.core.labels.sct_level_name`) is written at its inferior boundary, along the top edge.
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

    ``table`` is :func:`postprocessing.cord.soft_metrics.variability_table`'s output (rows per contrast plus an
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

    ``comparison`` is :func:`postprocessing.cord.variability.compare_variability`'s result.
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

    ``components`` holds every lesion with its table number (:class:`postprocessing.lesion.lesions.LesionAnalysis`),
    ``lesions`` the table rows (``lesion``, ``volume_mm3``, ``centroid_*_mm``, ``removed``). Kept lesions are
    outlined in :data:`LESION_KEPT_COLOUR`, removed ones in :data:`LESION_REMOVED_COLOUR`, each numbered as
    in the table. Views in SCT's RPI frame, in mm: sagittal with superior up and anterior right, axial with
    anterior up and the subject's right on the left (radiological). ``background`` (same grid: the image,
    or the cord mask) is drawn in grey. A file without lesions gives one empty panel saying so.
    """
    import matplotlib
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    from nnunet_extensions.core.geometry import reorient, world_to_voxel
    from nnunet_extensions.core.io import voxel_sizes

    comp, aff = reorient(np.asarray(components), np.asarray(affine, float))
    bg = reorient(np.asarray(background, np.float32), np.asarray(affine, float))[0] if background is not None else None
    zooms = voxel_sizes(aff)
    by_size = sorted(lesions, key=lambda r: (-r["volume_mm3"], r["lesion"]))
    chosen = by_size[: max(1, n_largest)]
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
        views = (
            ("sagittal", comp[i, :, :], None if bg is None else bg[i, :, :], (1, 2), (j, k)),
            ("axial", comp[:, :, k], None if bg is None else bg[:, :, k], (0, 1), (i, j)),
        )
        for r_, (name, plane, back, axes_ij, centre) in enumerate(views):
            ax = axes[r_, col]
            ha = [int(np.ceil(half_width_mm / zooms[a])) for a in axes_ij]
            lo = [max(0, centre[n] - ha[n]) for n in range(2)]
            hi = [min(plane.shape[n], centre[n] + ha[n] + 1) for n in range(2)]
            crop = plane[lo[0] : hi[0], lo[1] : hi[1]].T  # rows: vertical axis (S or A), cols: horizontal
            zx, zy = zooms[axes_ij[0]], zooms[axes_ij[1]]  # voxel edges in mm along the grid
            ext = [(lo[0] - 0.5) * zx, (hi[0] - 0.5) * zx, (lo[1] - 0.5) * zy, (hi[1] - 0.5) * zy]
            if back is not None:
                ax.imshow(
                    back[lo[0] : hi[0], lo[1] : hi[1]].T,
                    cmap="gray",
                    origin="lower",
                    extent=ext,
                    interpolation="nearest",
                    vmin=float(back.min()),
                    vmax=float(back.max()) or 1.0,
                )
            else:
                ax.imshow(np.zeros_like(crop, np.float32), cmap="gray", origin="lower", extent=ext, vmin=0, vmax=1)
            for lab in np.unique(crop[crop > 0]).tolist():
                m = crop == lab
                colour = LESION_REMOVED_COLOUR if lab in removed else LESION_KEPT_COLOUR
                _outline(ax, m, ext, colour)
                yy, xx = np.nonzero(m)
                px = ext[0] + (xx.mean() + 0.5) * (ext[1] - ext[0]) / m.shape[1]
                py = ext[2] + (yy.max() + 1.0) * (ext[3] - ext[2]) / m.shape[0]
                ax.annotate(
                    str(lab),
                    (px, py),
                    xytext=(0, 2),
                    textcoords="offset points",
                    ha="center",
                    va="bottom",
                    fontsize=8,
                    color=colour,
                    fontweight="bold",
                )
            ax.set_aspect("equal")
            ax.tick_params(labelsize=7)
            if name == "sagittal":
                ax.set_title(
                    f"lesion {row['lesion']}: {row['volume_mm3']:.1f} mm³"
                    + (f" ({row['removed']})" if row["removed"] else ""),
                    fontsize=9,
                )
                ax.set_xlabel("P ← → A (mm)", fontsize=8)
                ax.set_ylabel("I ← → S (mm)", fontsize=8)
            else:
                ax.set_xlabel("R ← → L (mm)", fontsize=8)
                ax.set_ylabel("P ← → A (mm)", fontsize=8)
    handles = [
        Line2D([], [], color=LESION_KEPT_COLOUR, label="kept"),
        Line2D([], [], color=LESION_REMOVED_COLOUR, label="removed"),
    ]
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

    from nnunet_extensions.core.geometry import reorient
    from nnunet_extensions.core.io import voxel_sizes

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
        ax.imshow(
            (sem[:, :, k].T > 0).astype(np.float32) * 0.35,
            cmap="gray",
            origin="lower",
            extent=ext,
            vmin=0,
            vmax=1,
            interpolation="nearest",
        )
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
    sem_k = sem[:, :, k] if sem is not None else None
    for v in vertebrae:  # name at the vertebral body (49) when the slice shows it, else at the vertebra
        in_slice = inst[:, :, k] == v
        if sem_k is not None and (in_slice & (sem_k == 49)).any():
            in_slice &= sem_k == 49
        ijk = np.argwhere(in_slice) if in_slice.any() else np.argwhere(inst == v)[:, :2]
        a, s = ijk[:, 0].mean() * zooms[0], ijk[:, 1].mean() * zooms[1]
        label = (names or {}).get(v, str(v))
        ax.annotate(
            label,
            (a, s),
            ha="center",
            va="center",
            fontsize=8,
            fontweight="bold",
            color="black",
            bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.7},
        )
    ax.set_aspect("equal")
    ax.set_xlabel("P ← → A (mm)")
    ax.set_ylabel("I ← → S (mm)")
    ax.tick_params(labelsize=7)
    ax.set_title(title or "vertebra instances", fontsize=10)
    return _save(fig, path, overwrite)


#: SPINEPS semantic label → RGB (0-255): the ITK-SNAP label table of TPTBox's snapshots (label k → entry k-1,
#: wrapping after 64 entries, so the disc 100 is yellow), the colours SPINEPS users see in its snapshots.
SPINEPS_COLOURS: dict[int, tuple[int, int, int]] = {
    26: (203, 160, 95),
    41: (205, 133, 63),
    42: (210, 180, 140),
    43: (102, 205, 170),
    44: (0, 0, 128),
    45: (0, 139, 139),
    46: (46, 139, 87),
    47: (255, 228, 225),
    48: (106, 90, 205),
    49: (221, 160, 221),
    60: (188, 143, 143),
    61: (255, 235, 205),
    62: (255, 228, 196),
    100: (255, 255, 0),
}


def plot_spine_semantic(
    semantic,
    path: str | os.PathLike,
    *,
    image=None,
    title: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Sagittal snapshot of a SPINEPS semantic mask: the mid-sagittal slice and one parasagittal slice through
    each side's articular processes (the subject's right, mid, left from left to right), labels in
    :data:`SPINEPS_COLOURS` with a legend; superior up, anterior right, in mm, each panel titled with its
    world x (RAS mm).

    ``semantic`` and ``image`` are :class:`~nnunet_extensions.core.io.Image` objects or file paths. The mask must hold
    SPINEPS semantic labels (:func:`nnunet_extensions.core.labels.semantic_value_problem`; an instance mask is named
    as such) and ``image`` (drawn in grey under labels at 60 % opacity; without it the labels are opaque on
    black) must share its grid: :class:`~nnunet_extensions.core.io.InputError` otherwise. The mid-sagittal slice is
    the one through the centroid of the midline structures (spinous process, body, cord, canal, disc); each
    parasagittal slice the one through the centroid of that side's labels (43/45/47, 44/46/48), else 40 % of
    the way to the mask's lateral edge.
    """
    import matplotlib
    from matplotlib.colors import to_hex
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    from nnunet_extensions.core.geometry import reorient
    from nnunet_extensions.core.io import Image, InputError, check_same_grid, load_image, voxel_sizes
    from nnunet_extensions.core.labels import (
        CANAL,
        CORD,
        CORPUS,
        DISC,
        SEMANTIC_LABELS,
        SPINOSUS,
        semantic_value_problem,
    )

    seg = semantic if isinstance(semantic, Image) else load_image(semantic, "labels")
    problem = semantic_value_problem(np.unique(seg.data).tolist())
    if problem:
        raise InputError(f"{seg.name}: {problem}")
    img = image if isinstance(image, Image) or image is None else load_image(image, "image")
    if img is not None:
        check_same_grid(seg, img)
    codes = ("A", "S", "L")  # voxel axes: towards A (right on screen), S (up), L (slices)
    lab, aff = reorient(np.asarray(seg.data), np.asarray(seg.affine, float), codes)
    back = (
        reorient(np.asarray(img.data, np.float32), np.asarray(img.affine, float), codes)[0] if img is not None else None
    )
    zooms = voxel_sizes(aff)
    n_slices = lab.shape[2]

    def centre(values) -> float | None:
        counts = np.isin(lab, list(values)).sum(axis=(0, 1))
        return float((counts * np.arange(n_slices)).sum() / counts.sum()) if counts.sum() else None

    fg = (lab > 0).sum(axis=(0, 1))
    lo, hi = np.flatnonzero(fg)[[0, -1]] if fg.any() else (0, n_slices - 1)
    mid = centre((SPINOSUS, CORPUS, CORD, CANAL, DISC))
    mid = mid if mid is not None else 0.5 * (lo + hi)
    sides = []  # (name, slice) for the subject's right (low L index) and left
    for name, values, edge in (("right", (44, 46, 48), lo), ("left", (43, 45, 47), hi)):
        c = centre(values)
        sides.append((name, c if c is not None else mid + 0.4 * (edge - mid)))
    panels = [
        (f"{sides[0][0]} parasagittal", sides[0][1]),
        ("mid-sagittal", mid),
        (f"{sides[1][0]} parasagittal", sides[1][1]),
    ]
    box = np.argwhere((lab > 0).any(axis=2)) if fg.any() else np.array([[0, 0], [lab.shape[0] - 1, lab.shape[1] - 1]])
    pad = [int(np.ceil(10.0 / z)) for z in zooms[:2]]  # 10 mm around the mask's sagittal extent
    a0, s0 = np.maximum(box.min(0) - pad, 0)
    a1, s1 = np.minimum(box.max(0) + pad + 1, lab.shape[:2])
    ext = [(a0 - 0.5) * zooms[0], (a1 - 0.5) * zooms[0], (s0 - 0.5) * zooms[1], (s1 - 0.5) * zooms[1]]
    height = 5.6
    width = min(max(3 * height * (ext[1] - ext[0]) / max(ext[3] - ext[2], 1e-6) + 1.0, 6.0), 14.0)
    with matplotlib.rc_context({**_RC, "axes.grid": False}):
        fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
        axes = fig.subplots(1, 3, squeeze=True)
    lut = np.zeros((256, 4), np.float32)
    for value, rgb in SPINEPS_COLOURS.items():
        lut[value] = (*(c / 255.0 for c in rgb), 0.6 if back is not None else 1.0)
    if back is not None:
        vmin, vmax = (float(v) for v in np.percentile(back[a0:a1, s0:s1], [1, 99]))
    shown: set[int] = set()
    for ax, (name, position) in zip(axes, panels):
        k = int(np.clip(np.rint(position), 0, n_slices - 1))
        plane = lab[a0:a1, s0:s1, k].T  # rows: S, cols: A
        if back is not None:
            ax.imshow(
                back[a0:a1, s0:s1, k].T,
                cmap="gray",
                origin="lower",
                extent=ext,
                vmin=vmin,
                vmax=vmax or 1.0,
                interpolation="nearest",
            )
        else:
            ax.imshow(np.zeros(plane.shape, np.float32), cmap="gray", origin="lower", extent=ext, vmin=0, vmax=1)
        ax.imshow(lut[plane.astype(np.int64)], origin="lower", extent=ext, interpolation="nearest")
        shown |= set(np.unique(plane).tolist()) - {0}
        x_mm = float((aff @ np.array([0.0, 0.0, k, 1.0]))[0])
        ax.set_title(f"{name}\nx = {x_mm:+.1f} mm (RAS)", fontsize=9)
        ax.set_aspect("equal")
        ax.set_xlabel("P ← → A (mm)", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0].set_ylabel("I ← → S (mm)", fontsize=8)
    handles = [
        Patch(
            facecolor=to_hex(np.array(SPINEPS_COLOURS[v]) / 255.0),
            edgecolor="0.4",
            label=f"{v} {SEMANTIC_LABELS[v].replace('_', ' ')}",
        )
        for v in sorted(shown)
    ]
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncols=min(4, len(handles)), fontsize=7, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path, overwrite)
