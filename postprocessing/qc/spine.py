"""QC pictures of the whole-spine capability: vertebra instances and SPINEPS semantic masks."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from nnunet_spine.postprocessing.qc._style import _RC, DPI, _save

if TYPE_CHECKING:  # annotations only: matplotlib and the image I/O are imported when a picture is drawn
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from nnunet_spine.core.io import Image


def plot_vertebra_instances(
    instance: np.ndarray,
    affine: np.ndarray,
    path: str | os.PathLike,
    *,
    semantic: np.ndarray | None = None,
    image: np.ndarray | None = None,
    names: dict[int, str] | None = None,
    title: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Sagittal snapshot of a SPINEPS instance mask: one colour per vertebra (discs and endplates in their
    vertebra's colour, lighter), each vertebra named at its centroid (``names``: id → text, default the id;
    anatomical names such as L5, or ``#k`` when not anatomically labelled).

    The slice is the sagittal one holding the most vertebra voxels; superior up, anterior right, in mm.
    Underneath: the ``image`` (same grid; grey, 1–99 % window) with the labels half transparent over it, as
    SPINEPS' snapshot shows them, else the ``semantic`` mask in grey, so structures without an instance stay
    visible.
    """
    import matplotlib
    from matplotlib.colors import to_rgba
    from matplotlib.figure import Figure

    from nnunet_spine.core.geometry import reorient
    from nnunet_spine.core.io import voxel_sizes

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
    back = reorient(np.asarray(image, np.float32), np.asarray(affine, float), codes)[0] if image is not None else None
    if back is not None:
        lo, hi = (float(v) for v in np.percentile(back[:, :, k], [1, 99]))
        ax.imshow(back[:, :, k].T, cmap="gray", origin="lower", extent=ext, vmin=lo, vmax=hi or 1.0)
    elif sem is not None:
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
        base = np.asarray(colours.get(v % 100, to_rgba("0.6"))[:3])
        # discs and endplates: their vertebra's colour mixed halfway to white (lighter, not more transparent)
        rgb = base if v < 100 else 0.5 * base + 0.5
        rgba[plane == v] = (*rgb, 0.55 if back is not None else 0.85)
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
#: wrapping after 64 entries, so the disc 100 is yellow), the colours SPINEPS users see in its snapshots — except
#: the endplate (62), whose table colour (255, 228, 196) cannot be told from the canal's (61): drawn in red-brown.
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
    62: (178, 34, 34),
    100: (255, 255, 0),
}


def _load_semantic(semantic, image) -> tuple[Image, Image | None]:
    """The semantic mask and the optional image (:class:`~nnunet_spine.core.io.Image` objects or file paths),
    checked: SPINEPS semantic labels, the image on the mask's grid; :class:`InputError` otherwise."""
    from nnunet_spine.core.io import Image, InputError, check_same_grid, load_image
    from nnunet_spine.core.labels import semantic_value_problem

    seg = semantic if isinstance(semantic, Image) else load_image(semantic, "labels")
    problem = semantic_value_problem(np.unique(seg.data).tolist())
    if problem:
        raise InputError(f"{seg.name}: {problem}")
    img = image if isinstance(image, Image) or image is None else load_image(image, "image")
    if img is not None:
        check_same_grid(seg, img)
    return seg, img


def _sagittal_panels(lab: np.ndarray) -> list[tuple[str, float]]:
    """(title, slice position in voxels along the L axis) of the three panels: the subject's right parasagittal
    slice, the mid-sagittal one, the left parasagittal one (``lab``: semantic labels in A, S, L voxel order).

    Mid-sagittal: the centroid of the midline structures (spinous process, body, cord, canal, disc), else the
    middle of the mask; parasagittal: the centroid of that side's labels (43/45/47, 44/46/48), else 40 % of the
    way from the middle to the mask's lateral edge.
    """
    from nnunet_spine.core.labels import CANAL, CORD, CORPUS, DISC, SPINOSUS

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
    return [
        (f"{sides[0][0]} parasagittal", sides[0][1]),
        ("mid-sagittal", mid),
        (f"{sides[1][0]} parasagittal", sides[1][1]),
    ]


def _crop(lab: np.ndarray, zooms: np.ndarray) -> tuple[tuple[int, int, int, int], list[float]]:
    """The sagittal box shown: the mask's A-S extent plus 10 mm (voxel index bounds ``a0, a1, s0, s1``, ends
    excluded; the whole plane for an empty mask), and its imshow extent in mm."""
    if (lab > 0).any():
        box = np.argwhere((lab > 0).any(axis=2))
    else:
        box = np.array([[0, 0], [lab.shape[0] - 1, lab.shape[1] - 1]])
    pad = [int(np.ceil(10.0 / z)) for z in zooms[:2]]  # 10 mm around the mask's sagittal extent
    a0, s0 = np.maximum(box.min(0) - pad, 0)
    a1, s1 = np.minimum(box.max(0) + pad + 1, lab.shape[:2])
    ext = [(a0 - 0.5) * zooms[0], (a1 - 0.5) * zooms[0], (s0 - 0.5) * zooms[1], (s1 - 0.5) * zooms[1]]
    return (a0, a1, s0, s1), ext


def _colour_lut(alpha: float) -> np.ndarray:
    """Label value → RGBA (256×4): :data:`SPINEPS_COLOURS` at opacity ``alpha``, transparent elsewhere."""
    lut = np.zeros((256, 4), np.float32)
    for value, rgb in SPINEPS_COLOURS.items():
        lut[value] = (*(c / 255.0 for c in rgb), alpha)
    return lut


def _draw_panel(
    ax: Axes,
    title: str,
    k: int,
    lab: np.ndarray,
    back: np.ndarray | None,
    window: tuple[float, float],
    crop: tuple[int, int, int, int],
    ext: list[float],
    lut: np.ndarray,
    aff: np.ndarray,
    empty: bool,
) -> set[int]:
    """One sagittal panel: slice ``k`` (voxels along L) of the cropped labels over the grey image (``window``:
    its display range) or black, titled with the slice's world x (RAS mm) and marked when the mask is ``empty``;
    returns the labels it shows."""
    a0, a1, s0, s1 = crop
    plane = lab[a0:a1, s0:s1, k].T  # rows: S, cols: A
    if back is not None:
        ax.imshow(
            back[a0:a1, s0:s1, k].T,
            cmap="gray",
            origin="lower",
            extent=ext,
            vmin=window[0],
            vmax=window[1] or 1.0,
            interpolation="nearest",
        )
    else:
        ax.imshow(np.zeros(plane.shape, np.float32), cmap="gray", origin="lower", extent=ext, vmin=0, vmax=1)
    ax.imshow(lut[plane.astype(np.int64)], origin="lower", extent=ext, interpolation="nearest")
    if empty:
        ax.text(0.5, 0.5, "empty mask", transform=ax.transAxes, ha="center", va="center", color="red")
    x_mm = float((aff @ np.array([0.0, 0.0, k, 1.0]))[0])
    ax.set_title(f"{title}\nx = {x_mm:+.1f} mm (RAS)", fontsize=9)
    ax.set_aspect("equal")
    ax.set_xlabel("P ← → A (mm)", fontsize=8)
    ax.tick_params(labelsize=7)
    return set(np.unique(plane).tolist()) - {0}


def legend_entries(shown: set[int]) -> list[tuple[str, tuple[int, int, int]]]:
    """``(text, RGB 0-255)`` per label of ``shown`` in value order, as the mask holds them: value and name
    (:data:`~nnunet_spine.core.labels.ACCEPTED_SEMANTIC_LABELS`), colour from :data:`SPINEPS_COLOURS`. SPINEPS 2.x /
    TPTBox's 50 (Vertebra_Corpus), 51 (Dens_axis), 52 / 53 (Vertebral_Body_Endplate_Superior / _Inferior; TPTBox's
    ``Location`` names in ``TPTBox.core.vert_constants``) are named as such, in the colour of the label they are
    drawn as (:data:`~nnunet_spine.core.labels.TO_SEMANTIC_14`: body 49, endplate 62)."""
    from nnunet_spine.core.labels import ACCEPTED_SEMANTIC_LABELS, TO_SEMANTIC_14

    return [
        (f"{v} {ACCEPTED_SEMANTIC_LABELS[v].replace('_', ' ')}", SPINEPS_COLOURS[TO_SEMANTIC_14.get(v, v)])
        for v in sorted(shown)
    ]


def _add_legend(fig: Figure, shown: set[int]) -> None:
    """A legend under the panels of the ``shown`` labels (:func:`legend_entries`)."""
    from matplotlib.colors import to_hex
    from matplotlib.patches import Patch

    handles = [
        Patch(facecolor=to_hex(np.array(rgb) / 255.0), edgecolor="0.4", label=text)
        for text, rgb in legend_entries(shown)
    ]
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncols=min(4, len(handles)), fontsize=7, frameon=False)


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

    ``semantic`` and ``image`` are :class:`~nnunet_spine.core.io.Image` objects or file paths. The mask must hold
    SPINEPS semantic labels (:func:`nnunet_spine.core.labels.semantic_value_problem`; an instance mask is named
    as such) and ``image`` (drawn in grey under labels at 60 % opacity; without it the labels are opaque on
    black) must share its grid: :class:`~nnunet_spine.core.io.InputError` otherwise. The mid-sagittal slice is
    the one through the centroid of the midline structures (spinous process, body, cord, canal, disc); each
    parasagittal slice the one through the centroid of that side's labels (43/45/47, 44/46/48), else 40 % of
    the way to the mask's lateral edge.
    """
    import matplotlib
    from matplotlib.figure import Figure

    from nnunet_spine.core.geometry import reorient
    from nnunet_spine.core.io import voxel_sizes
    from nnunet_spine.core.labels import to_semantic_14

    seg, img = _load_semantic(semantic, image)
    codes = ("A", "S", "L")  # voxel axes: towards A (right on screen), S (up), L (slices)
    # SPINEPS 2.x's 50-53 drawn in the colours of the 14-label scheme (body, endplate), named in the legend
    raw, aff = reorient(np.asarray(seg.data), np.asarray(seg.affine, float), codes)
    lab = to_semantic_14(raw)
    back = (
        reorient(np.asarray(img.data, np.float32), np.asarray(img.affine, float), codes)[0] if img is not None else None
    )
    zooms = voxel_sizes(aff)
    n_slices = lab.shape[2]
    panels = _sagittal_panels(lab)
    crop, ext = _crop(lab, zooms)
    height = 5.6
    width = min(max(3 * height * (ext[1] - ext[0]) / max(ext[3] - ext[2], 1e-6) + 1.0, 6.0), 14.0)
    with matplotlib.rc_context({**_RC, "axes.grid": False}):
        fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
        axes = fig.subplots(1, 3, squeeze=True)
    empty = not (lab > 0).any()
    lut = _colour_lut(0.6 if back is not None else 1.0)
    window = (0.0, 0.0)
    if back is not None:
        a0, a1, s0, s1 = crop
        window = tuple(float(v) for v in np.percentile(back[a0:a1, s0:s1], [1, 99]))
    shown: set[int] = set()
    for ax, (name, position) in zip(axes, panels):
        k = int(np.clip(np.rint(position), 0, n_slices - 1))
        _draw_panel(ax, name, k, lab, back, window, crop, ext, lut, aff, empty)
        shown |= set(np.unique(raw[crop[0] : crop[1], crop[2] : crop[3], k]).tolist()) - {0}
    axes[0].set_ylabel("I ← → S (mm)", fontsize=8)
    _add_legend(fig, shown)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path, overwrite)
