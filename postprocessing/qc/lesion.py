"""QC pictures of the lesion capability: lesions outlined on sagittal and axial views."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from nnunet_spine.postprocessing.qc._style import _RC, DPI, _save

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

    ``components`` holds every lesion with its table number
    (:class:`nnunet_spine.postprocessing.lesion.lesions.LesionAnalysis`), ``lesions`` the table rows (``lesion``,
    ``volume_mm3``, ``centroid_*_mm``, ``removed``). Kept lesions are outlined in :data:`LESION_KEPT_COLOUR`, removed
    ones in :data:`LESION_REMOVED_COLOUR`, each numbered as in the table. Views in SCT's RPI frame, in mm: sagittal with
    superior up and anterior right, axial with anterior up and the subject's right on the left (radiological).
    ``background`` (same grid: the image, or the cord mask) is drawn in grey. A file without lesions gives one empty
    panel saying so.
    """
    import matplotlib
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    from nnunet_spine.core.geometry import reorient, world_to_voxel
    from nnunet_spine.core.io import voxel_sizes

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


def plot_configurations(
    values: dict[str, dict[str, np.ndarray]],
    path: str | os.PathLike,
    *,
    title: str | None = None,
    overwrite: bool = False,
) -> Path:
    """One panel per metric (``values[metric][config]`` = per-case values, cases in the same order in every
    configuration): a box per configuration, each case's values joined across configurations by a thin grey
    line (paired plot). NaN values are left out."""
    import matplotlib
    from matplotlib.figure import Figure

    metrics = list(values)
    ncols = min(4, len(metrics))
    nrows = -(-len(metrics) // ncols)
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(3.2 * ncols, 3.0 * nrows), dpi=DPI, layout="constrained")
        axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
        for ax, metric in zip(axes, metrics):
            configs = list(values[metric])
            data = np.array([values[metric][c] for c in configs], float)  # configs × cases
            x = np.arange(1, len(configs) + 1)
            ax.boxplot([d[~np.isnan(d)] for d in data], positions=x, widths=0.5, showfliers=False)
            for case in data.T:
                ax.plot(x, case, color="0.6", linewidth=0.6, marker="o", markersize=2.5, zorder=1)
            ax.set_xticks(x, configs, rotation=30, ha="right")
            ax.set_title(metric, fontsize=9)
            ax.set_ylim(-0.02, 1.02)
        for ax in axes[len(metrics) :]:
            ax.set_visible(False)
        if title:
            fig.suptitle(title)
    return _save(fig, path, overwrite)
