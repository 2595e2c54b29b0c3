"""The shared look of every QC picture: figure size, colours, grid, atomic writing."""

from __future__ import annotations

import os
from pathlib import Path

from nnunet_spine.core.io import atomic_output, split_suffix

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
