"""The offline QC report: one static ``index.html`` over the entries that commands add to a folder.

Layout of a report folder ``DIR`` (as SCT's ``-qc DIR``: ``spinalcordtoolbox/reports/qc2.py``,
``create_qc_entry``, writes one JSON file per entry and re-injects them all into one page under a mutex)::

    DIR/index.html                 the page: opens from disk, offline; the entries embedded as JSON
    DIR/report_id                  the report's id (marks in the browser's localStorage are keyed by it,
                                   so they survive a regeneration of the page)
    DIR/entries/<id>.json          one entry: names, command line, model, key values, its two pictures
    DIR/entries/<id>_bg.png        background picture
    DIR/entries/<id>_ov.png        the same picture with the labels drawn over it (same size)

:func:`add_entries` writes the pictures and the JSON files, then rebuilds the page, under an exclusive
``fcntl`` lock on ``DIR/.lock``, so processes writing to one report at once never lose an entry;
:func:`rebuild_report` rebuilds the page from the JSON files alone (after some were deleted).

Pictures (:func:`axial_mosaic`, :func:`sagittal_picture`) are RGB arrays of a fixed size in pixels, so
entries compare side by side; label colours come from :func:`label_colours`, the same colour for a label id
in every entry (SPINEPS' colours for semantic spine labels, as :mod:`nnunet_spine.postprocessing.qc.spine`
draws them; the lesion colours of :mod:`nnunet_spine.postprocessing.qc.lesion`).

The page never puts data into HTML: the entries are JSON in a ``<script type="application/json">`` (``<``,
``>`` and ``&`` escaped), the script builds every cell with ``createElement``/``textContent``, and a
Content-Security-Policy allows only the page's own script (by hash) and local pictures, so a hostile file
name shows as text and nothing is fetched from a network.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import fcntl
import hashlib
import json
import os
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from nnunet_spine.core.io import InputError, atomic_output, require_writable_folder, write_text

#: Version of the entry JSON files.
ENTRY_VERSION = 1
#: Keys of manual-correction's config YAML (``manual_correction.py``, ``-config`` help) an entry can go under.
YML_KEYS = ("FILES_SEG", "FILES_LABEL", "FILES_LESION")
#: Size of one axial tile (pixels) and the field of view it shows (mm).
TILE_PX, TILE_MM = 96, 40.0
#: Axial tiles per mosaic (at most) and per row.
MOSAIC_TILES, MOSAIC_COLUMNS = 15, 5
#: Height of a sagittal picture (pixels).
SAGITTAL_PX = 480
#: Opacity of the labels over the background in the overlay picture.
OVERLAY_ALPHA = 0.6
#: File names inside the report folder.
ENTRIES, INDEX, REPORT_ID, LOCK = "entries", "index.html", "report_id", ".lock"

_ASSETS = "report_assets"


# ------------------------------------------------------------------------------------------------ entries
@dataclass
class Entry:
    """One case shown by the report.

    ``file`` is the input-relative path of the case's image (what ``qc_fail.yml`` lists, under ``yml_key``);
    ``background`` and ``overlay`` are RGB pictures (H×W×3 uint8) of the same size; ``values`` the key values
    of the case (name → text, units in the name).
    """

    command: str
    file: str
    yml_key: str
    background: np.ndarray
    overlay: np.ndarray
    cmdline: str = ""
    model: str = ""
    plane: str = "axial"
    dataset: str = ""
    subject: str = ""
    session: str = ""
    contrast: str = ""
    values: dict[str, str] = field(default_factory=dict)


def _entry_record(entry: Entry, entry_id: str, date: str) -> dict:
    """The JSON record of an entry (pictures named by id, relative to the report folder)."""
    if entry.yml_key not in YML_KEYS:
        raise ValueError(f"yml_key {entry.yml_key!r} is not one of {YML_KEYS}")
    return {
        "version": ENTRY_VERSION,
        "id": entry_id,
        "date": date,
        "dataset": entry.dataset,
        "subject": entry.subject,
        "session": entry.session,
        "contrast": entry.contrast,
        "file": entry.file,
        "yml_key": entry.yml_key,
        "command": entry.command,
        "cmdline": entry.cmdline,
        "model": entry.model,
        "plane": entry.plane,
        "values": {str(k): str(v) for k, v in entry.values.items()},
        "background": f"{ENTRIES}/{entry_id}_bg.png",
        "overlay": f"{ENTRIES}/{entry_id}_ov.png",
    }


@contextlib.contextmanager
def report_lock(report_dir: str | os.PathLike) -> Iterator[Path]:
    """Hold the exclusive lock of a report folder (created if needed) while the block runs."""
    folder = require_writable_folder(report_dir, "QC report folder")
    with open(folder / LOCK, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield folder
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def report_id(report_dir: str | os.PathLike) -> str:
    """The report's id, created on first use (call under :func:`report_lock`)."""
    path = Path(report_dir) / REPORT_ID
    if path.is_file():
        text = path.read_text().strip()
        if text:
            return text
    text = uuid.uuid4().hex
    write_text(path, text + "\n", overwrite=True)
    return text


def _save_png(rgb: np.ndarray, path: Path) -> None:
    """Write an RGB uint8 picture as PNG, atomically."""
    from matplotlib.image import imsave

    with atomic_output(path, overwrite=True) as tmp:
        imsave(tmp, np.ascontiguousarray(rgb, np.uint8), format="png")


def add_entries(report_dir: str | os.PathLike, entries: Sequence[Entry]) -> list[Path]:
    """Add ``entries`` to the report in ``report_dir`` (created if needed) and rebuild its page.

    Each entry gets a new id; its pictures and JSON file are written atomically under ``DIR/entries/``.
    Everything happens under the report's lock, so concurrent writers never lose an entry. Returns the
    entries' JSON files.
    """
    written = []
    with report_lock(report_dir) as folder:
        report_id(folder)
        out = folder / ENTRIES
        out.mkdir(exist_ok=True)
        for entry in entries:
            entry_id = uuid.uuid4().hex[:16]
            date = datetime.datetime.now().isoformat(sep=" ", timespec="seconds")
            record = _entry_record(entry, entry_id, date)
            if entry.background.shape != entry.overlay.shape:
                raise ValueError("background and overlay pictures differ in size")
            _save_png(entry.background, folder / record["background"])
            _save_png(entry.overlay, folder / record["overlay"])
            path = out / f"{entry_id}.json"
            write_text(path, json.dumps(record, indent=1, ensure_ascii=False) + "\n", overwrite=True)
            written.append(path)
        _write_index(folder)
    return written


def add_entry(report_dir: str | os.PathLike, entry: Entry) -> Path:
    """Add one entry (:func:`add_entries`); returns its JSON file."""
    return add_entries(report_dir, [entry])[0]


def rebuild_report(report_dir: str | os.PathLike) -> Path:
    """Rebuild ``DIR/index.html`` from the entry JSON files (after entries were deleted); returns its path.

    A folder that holds no report (no ``entries/`` and no ``report_id``) raises :class:`InputError`.
    """
    folder = Path(report_dir)
    if not (folder / ENTRIES).is_dir() and not (folder / REPORT_ID).is_file():
        raise InputError(f"{folder}: not a QC report folder (no {ENTRIES}/ or {REPORT_ID})")
    with report_lock(folder):
        report_id(folder)
        return _write_index(folder)


def read_entries(report_dir: str | os.PathLike) -> list[dict]:
    """The entry records of a report, oldest first (by date, then id)."""
    records = []
    for path in sorted((Path(report_dir) / ENTRIES).glob("*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"{path}: not a QC report entry ({exc})") from None
        if not isinstance(record, dict) or record.get("version") != ENTRY_VERSION or "id" not in record:
            raise InputError(f"{path}: not a QC report entry (version {ENTRY_VERSION} expected)")
        records.append(record)
    return sorted(records, key=lambda r: (str(r.get("date", "")), str(r["id"])))


# ----------------------------------------------------------------------------------------------- the page
def _asset(name: str) -> str:
    """Text of a file shipped in ``report_assets/``."""
    return resources.files(__package__).joinpath(_ASSETS, name).read_text(encoding="utf-8")


def embed_json(data) -> str:
    """JSON safe inside ``<script type="application/json">``: ``<``, ``>``, ``&`` and the JavaScript line
    separators escaped as ``\\uXXXX``, so no text of the data can end the script element."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    for char in ("<", ">", "&", "\u2028", "\u2029"):
        text = text.replace(char, f"\\u{ord(char):04x}")
    return text


def render_index(records: Sequence[dict], rid: str) -> str:
    """The page's HTML for ``records`` (:func:`read_entries`) of the report ``rid``."""
    script = _asset("report.js")
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")
    policy = (
        "default-src 'none'; img-src file: data: blob:; style-src 'unsafe-inline'; "
        f"script-src 'sha256-{digest}'; connect-src 'none'; form-action 'none'; base-uri 'none'"
    )
    data = embed_json({"report_id": rid, "entries": list(records)})
    return (
        _asset("index.template.html")
        .replace("%%POLICY%%", policy)
        .replace("%%STYLE%%", _asset("report.css"))
        .replace("%%DATA%%", data)
        .replace("%%SCRIPT%%", script)
    )


def _write_index(folder: Path) -> Path:
    """Write ``index.html`` atomically from the entries (call under :func:`report_lock`)."""
    return write_text(folder / INDEX, render_index(read_entries(folder), report_id(folder)), overwrite=True)


# --------------------------------------------------------------------------------------------- pictures
def label_colours(kind: str, max_label: int = 512) -> np.ndarray:
    """Label id → RGB (0-1), ``max_label`` × 3, NaN where a label has no colour (not drawn).

    Kinds: ``"cord"`` (1 red), ``"lesion"`` (every id in
    :data:`~nnunet_spine.postprocessing.qc.lesion.LESION_KEPT_COLOUR`),
    ``"evaluation"`` (1 true positive green, 2 false positive orange, 3 false negative red), ``"spine"``
    (SPINEPS semantic labels in :data:`~nnunet_spine.postprocessing.qc.spine.SPINEPS_COLOURS`), ``"instances"``
    (vertebra id ``v``, its disc ``100+v`` and endplate ``200+v`` in tab20's colour ``2v mod 20``, discs and
    endplates lighter; 26 sacrum in its SPINEPS colour). The same id has the same colour in every entry.
    """
    from matplotlib import colormaps
    from matplotlib.colors import to_rgb

    from nnunet_spine.postprocessing.qc.lesion import LESION_KEPT_COLOUR, LESION_REMOVED_COLOUR
    from nnunet_spine.postprocessing.qc.spine import SPINEPS_COLOURS

    lut = np.full((max_label, 3), np.nan)
    if kind == "cord":
        lut[1] = to_rgb("tab:red")
    elif kind == "lesion":
        lut[1:] = to_rgb(LESION_KEPT_COLOUR)
    elif kind == "evaluation":
        lut[1], lut[2], lut[3] = to_rgb(LESION_KEPT_COLOUR), to_rgb("tab:orange"), to_rgb(LESION_REMOVED_COLOUR)
    elif kind == "spine":
        for value, rgb in SPINEPS_COLOURS.items():
            lut[value] = np.asarray(rgb) / 255.0
    elif kind == "instances":
        palette = colormaps["tab20"]
        for v in range(1, 100):
            base = np.asarray(palette((2 * v) % 20)[:3])
            for offset, mix in ((0, 0.0), (100, 0.5), (200, 0.3)):
                if v + offset < max_label:
                    lut[v + offset] = (1 - mix) * base + mix
        lut[26] = np.asarray(SPINEPS_COLOURS[26]) / 255.0
    else:
        raise ValueError(f"unknown label colour kind {kind!r}")
    return lut


def _grey(values: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """Intensities → grey RGB uint8 over ``window`` (low, high)."""
    lo, hi = window
    scaled = np.clip((values - lo) / (hi - lo if hi > lo else 1.0), 0.0, 1.0)
    return np.repeat((scaled * 255).astype(np.uint8)[..., None], 3, axis=-1)


def _blend(background: np.ndarray, labels: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """The background with each coloured label drawn over it at :data:`OVERLAY_ALPHA`."""
    ids = np.clip(labels.astype(np.int64), 0, len(lut) - 1)
    colour = lut[ids]
    drawn = (labels > 0) & ~np.isnan(colour[..., 0])
    out = background.astype(np.float64)
    out[drawn] = (1 - OVERLAY_ALPHA) * out[drawn] + OVERLAY_ALPHA * 255.0 * colour[drawn]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _window(values: np.ndarray) -> tuple[float, float]:
    """Display window of an image: its 1st and 99th percentiles."""
    if values.size == 0:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(values, [1, 99]))
    return lo, hi if hi > lo else lo + 1.0


def _sample_tile(plane: np.ndarray, centre: np.ndarray, zooms: np.ndarray, size_px: int, fov_mm: float):
    """A ``size_px`` square of ``plane`` (voxel axes x → screen right, y → screen up) centred on ``centre``
    (voxels) covering ``fov_mm``, nearest-neighbour; outside the plane 0. Rows top (high y) to bottom."""
    offsets = (np.arange(size_px) + 0.5) / size_px * fov_mm - fov_mm / 2
    xi = np.rint(centre[0] + offsets / zooms[0]).astype(int)
    yi = np.rint(centre[1] - offsets / zooms[1]).astype(int)  # top row: the highest y (anterior)
    inside = (yi[:, None] >= 0) & (yi[:, None] < plane.shape[1]) & (xi[None, :] >= 0) & (xi[None, :] < plane.shape[0])
    tile = np.zeros((size_px, size_px), plane.dtype)
    yy, xx = np.broadcast_to(yi[:, None], inside.shape), np.broadcast_to(xi[None, :], inside.shape)
    tile[inside] = plane[xx[inside], yy[inside]]
    return tile


def axial_mosaic(
    labels: np.ndarray,
    affine: np.ndarray,
    lut: np.ndarray,
    *,
    image: np.ndarray | None = None,
    centre_mask: np.ndarray | None = None,
    n_tiles: int = MOSAIC_TILES,
    columns: int = MOSAIC_COLUMNS,
) -> tuple[np.ndarray, np.ndarray]:
    """Axial mosaic around the cord: background and overlay RGB pictures (uint8, same fixed size).

    Up to ``n_tiles`` axial slices evenly spread over the S-I extent of ``centre_mask`` (the cord; default:
    the labels), superior first, each a :data:`TILE_MM` square (:data:`TILE_PX` pixels) centred on the
    centre mask's centroid in that slice (the nearest slice's when it has none), radiological view: anterior
    up, the subject's right on the left. ``image`` (same grid) is the grey background (1–99 % window); without
    it the labels' footprint is drawn in grey. Arrays in voxel order with their RAS affine (any orientation).
    """
    from nnunet_spine.core.geometry import reorient
    from nnunet_spine.core.io import voxel_sizes

    codes = ("L", "A", "S")  # x: towards the subject's left (screen right), y: anterior (up), z: superior
    aff = np.asarray(affine, float)
    lab, new_aff = reorient(np.asarray(labels), aff, codes)
    zooms = voxel_sizes(new_aff)
    centre = reorient(np.asarray(centre_mask) > 0, aff, codes)[0] if centre_mask is not None else lab > 0
    back = reorient(np.asarray(image, np.float32), aff, codes)[0] if image is not None else None
    counts = centre.sum(axis=(0, 1))
    filled = np.flatnonzero(counts)
    if filled.size == 0:
        filled = np.arange(lab.shape[2])
        centre = np.ones_like(lab, bool)
    zs = np.unique(np.rint(np.linspace(filled[-1], filled[0], min(n_tiles, filled[-1] - filled[0] + 1))).astype(int))
    zs = zs[::-1]  # superior first
    bg_tiles, lab_tiles = [], []
    for z in zs:
        nearest = filled[np.argmin(np.abs(filled - z))]
        xy = np.argwhere(centre[:, :, nearest]).mean(axis=0)
        lab_tiles.append(_sample_tile(lab[:, :, z], xy, zooms, TILE_PX, TILE_MM))
        source = back[:, :, z] if back is not None else (lab[:, :, z] > 0).astype(np.float32) * 0.35
        bg_tiles.append(_sample_tile(source, xy, zooms, TILE_PX, TILE_MM))
    window = _window(np.concatenate([t.ravel() for t in bg_tiles])) if back is not None else (0.0, 1.0)
    rows = -(-MOSAIC_TILES // columns)
    shape = (rows * (TILE_PX + 2), columns * (TILE_PX + 2))
    bg, ov = np.zeros(shape + (3,), np.uint8), np.zeros(shape + (3,), np.uint8)
    for n, (b, t) in enumerate(zip(bg_tiles, lab_tiles)):
        r, c = divmod(n, columns)
        y, x = r * (TILE_PX + 2) + 1, c * (TILE_PX + 2) + 1
        grey = _grey(b, window)
        bg[y : y + TILE_PX, x : x + TILE_PX] = grey
        ov[y : y + TILE_PX, x : x + TILE_PX] = _blend(grey, t, lut)
    return bg, ov


def sagittal_picture(
    labels: np.ndarray,
    affine: np.ndarray,
    lut: np.ndarray,
    *,
    image: np.ndarray | None = None,
    semantic: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Sagittal picture of a spine mask: background and overlay RGB pictures (uint8), :data:`SAGITTAL_PX` high.

    The slice and the crop are those of :func:`nnunet_spine.postprocessing.qc.plot_spine_semantic` (mid-sagittal
    slice of SPINEPS semantic labels when ``semantic``, else the slice holding the most vertebra voxels as
    :func:`~nnunet_spine.postprocessing.qc.plot_vertebra_instances` picks it; the mask's extent plus 10 mm);
    superior up, anterior right, square pixels in mm. ``image`` (same grid) is the grey background.
    """
    from nnunet_spine.core.geometry import reorient
    from nnunet_spine.core.io import voxel_sizes
    from nnunet_spine.postprocessing.qc.spine import _crop, _sagittal_panels

    codes = ("A", "S", "L")
    aff = np.asarray(affine, float)
    lab, new_aff = reorient(np.asarray(labels), aff, codes)
    zooms = voxel_sizes(new_aff)
    back = reorient(np.asarray(image, np.float32), aff, codes)[0] if image is not None else None
    if semantic:
        k = int(np.clip(np.rint(_sagittal_panels(lab)[1][1]), 0, lab.shape[2] - 1))
    else:
        vert = (lab > 0) & (lab < 100)
        k = int(np.argmax(vert.sum(axis=(0, 1)))) if vert.any() else lab.shape[2] // 2
    (a0, a1, s0, s1), _ = _crop(lab, zooms)
    height_mm = (s1 - s0) * zooms[1]
    px_mm = height_mm / SAGITTAL_PX
    width = max(1, int(round((a1 - a0) * zooms[0] / px_mm)))
    ai = np.clip(a0 + ((np.arange(width) + 0.5) * px_mm / zooms[0]).astype(int), a0, a1 - 1)
    si = np.clip(s1 - 1 - ((np.arange(SAGITTAL_PX) + 0.5) * px_mm / zooms[1]).astype(int), s0, s1 - 1)
    plane = lab[:, :, k][np.ix_(ai, si)].T  # rows: superior at the top; columns: anterior to the right
    if back is not None:
        source = back[:, :, k][np.ix_(ai, si)].T
        grey = _grey(source, _window(back[a0:a1, s0:s1, k]))
    else:
        grey = _grey((plane > 0).astype(np.float32) * 0.35, (0.0, 1.0))
    return grey, _blend(grey, plane, lut)
