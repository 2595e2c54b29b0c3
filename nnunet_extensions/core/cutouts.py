"""Instance-phase cutouts (SPINEPS phase 2 input): one fixed-size box of semantic labels per vertebral body.

A cutout is a grid of ``size`` voxels (default 248×304×64) at ``spacing_mm`` (default 0.75×0.75×1.65 mm)
in PIR order (voxel axes towards Posterior, Inferior, Right), about 186×228×106 mm, centred on one
vertebral body. Its axes are the semantic mask's own voxel axes, permuted/flipped to PIR (an oblique
acquisition gives oblique cutouts), so every cutout voxel lies on a line of the input's voxel lattice and
labels are sampled by nearest neighbour one axis at a time (exact, no interpolation of label values).
Outside the semantic mask's field of view the cutout is 0 (zero padding). Each cutout is a NIfTI whose
affine places it in world space (RAS+ mm), so any prediction written on that grid maps back onto the
semantic mask's grid (:func:`paste_back`).

**Input encoding: one-hot, one channel per vertebra subregion** (channel ``c`` = label
``labels.CUTOUT_CHANNEL_LABELS[c]``, i.e. 41–49; uint8 0/1; nnU-Net channel name ``noNorm``). Why not one
label channel holding 41–49 (SPINEPS' own choice)? nnU-Net treats every channel as an intensity image:
it z-scores it and, when spacings differ, resamples it with cubic splines, which would invent
in-between "labels" at every boundary and give the network an arbitrary ordering of unrelated
structures. One-hot channels need no normalisation (``noNorm``), resample to partial-volume fractions,
and make left-right mirroring a channel swap (:func:`nnunet_spine.core.labels.cutout_mirror_channels`),
which the cutout trainer needs. The price is 9 files per cutout (uint8, mostly zeros, small on disk).
Sacrum, cord, canal, endplates and discs are not part of the input (as in SPINEPS).

Centres: vertebral-body (49) voxels are eroded by ``erosion_mm`` (an ellipsoid of that radius in mm, so
touching bodies separate), split into 6-connected components, components below ``min_volume_mm3``
(measured after erosion) dropped; each remaining component's centre of mass (world mm) is a cutout centre.
Centres are ordered from superior to inferior (decreasing world z). ``cutouts.json`` records, per semantic
mask, its grid and every cutout's name, centre and affine.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nnunet_spine.core.bids import SPINEPS_SEMANTIC_SUFFIXES
from nnunet_spine.core.io import (
    GRID_ATOL_MM,
    NIFTI_SUFFIXES,
    Image,
    InputError,
    check_output,
    load_image,
    require_folder,
    same_grid,
    save_image,
    split_suffix,
    voxel_sizes,
    write_text,
)
from nnunet_spine.core.labels import (
    CORPUS,
    CUTOUT_CHANNEL_LABELS,
    CUTOUT_TARGET_LABELS,
    DENS,
    ENDPLATE_INFERIOR,
    ENDPLATE_SUPERIOR,
    instance_value_problem,
    semantic_value_problem,
    to_semantic_14,
)

#: Cutout size in voxels along (P, I, R) and voxel size in mm (SPINEPS' instance model).
DEFAULT_SIZE: tuple[int, int, int] = (248, 304, 64)
DEFAULT_SPACING_MM: tuple[float, float, float] = (0.75, 0.75, 1.65)
#: nibabel orientation codes of the cutout voxel axes.
CUTOUT_ORIENTATION = ("P", "I", "R")
#: Erosion radius (mm) applied to the vertebral bodies before splitting them into components.
BODY_EROSION_MM = 1.5
#: Eroded body components smaller than this (mm³) are fragments, not cutout centres.
MIN_BODY_MM3 = 250.0
#: Name of the description file written beside the cutouts.
CUTOUTS_JSON = "cutouts.json"
#: nnU-Net channel name of every one-hot input channel (no intensity normalisation).
CHANNEL_NAME = "noNorm"
FILE_ENDING = ".nii.gz"
#: Threads writing (gzip-compressing) cutout channels.
WRITE_THREADS = 4
#: Suffixes that end a semantic mask's name (stripped to get the case name); SPINEPS and TPTBox naming.


# --------------------------------------------------------------------------------------------- loading
def load_semantic(path: str | os.PathLike) -> Image:
    """Read a SPINEPS semantic mask (values from :data:`labels.ACCEPTED_SEMANTIC_LABELS`) onto the 14-label
    scheme (:func:`labels.to_semantic_14`: SPINEPS 2.x's body core 50 and dens 51 become body 49, its split
    endplates 52/53 endplate 62). ``meta["dens"]``: the dens voxels (bool array) when the mask had label 51;
    ``meta["split_endplates"]``: whether it had 52/53. InputError naming the file when it is not a semantic
    mask (e.g. an instance mask) or holds no vertebral body."""
    img = load_image(path, "labels")
    values = np.unique(img.data)
    problem = semantic_value_problem(values.tolist())
    if problem:
        raise InputError(f"{img.name}: not a SPINEPS semantic mask: {problem}")
    data = img.data.astype(np.uint8, copy=False)
    img.meta = dict(img.meta or {})
    img.meta["dens"] = data == DENS if DENS in values else None
    img.meta["split_endplates"] = bool(np.isin([ENDPLATE_SUPERIOR, ENDPLATE_INFERIOR], values).any())
    img.data = to_semantic_14(data)
    if CORPUS not in img.data:
        raise InputError(f"{img.name}: no vertebral body (label {CORPUS}, or 50/51) in the semantic mask")
    return img


def load_instance(path: str | os.PathLike, like: Image | None = None) -> Image:
    """Read a SPINEPS instance mask (vertebrae 1–28, discs 101–128, endplates 201–228); InputError naming the
    file when it is not one (e.g. a semantic mask) or is not on ``like``'s grid."""
    img = load_image(path, "labels")
    problem = instance_value_problem(np.unique(img.data).tolist())
    if problem:
        raise InputError(f"{img.name}: not a SPINEPS instance mask: {problem}")
    if like is not None and not same_grid(like, img):
        raise InputError(
            f"{img.name}: grid {img.shape} differs from the semantic mask {like.name} {like.shape} (not the same grid)"
        )
    img.data = img.data.astype(np.uint8, copy=False)
    return img


def case_name(path: str | os.PathLike) -> str:
    """Case name of a semantic mask: the file stem without a SPINEPS mask suffix
    (``sub-01_T2w_seg-spine_msk.nii.gz`` → ``sub-01_T2w``; ``sub-mri_seg-subreg_label-6_msk`` →
    ``sub-mri_label-6``; other names keep their stem)."""
    stem = split_suffix(path)[0]
    for suffix in SPINEPS_SEMANTIC_SUFFIXES:
        if stem.endswith(suffix) and len(stem) > len(suffix):
            return stem[: -len(suffix)]
    tokens = stem.split("_")
    if len(tokens) > 2 and tokens[-1] == "msk" and any(t.startswith("seg-") for t in tokens):
        return "_".join(t for t in tokens[:-1] if not t.startswith("seg-"))
    return stem


def semantic_files(path: str | os.PathLike) -> list[Path]:
    """A semantic mask file, or every NIfTI under a folder whose name marks a semantic mask
    (``*_seg-spine_msk``, ``*_seg-subreg*_msk``); InputError when a folder holds none."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: file not found")
    if not p.is_dir():
        return [p]
    files = sorted(
        f
        for f in p.rglob("*")
        if f.is_file()
        and f.name.endswith(NIFTI_SUFFIXES)
        and ("_seg-spine" in f.name or "_seg-subreg" in f.name)
        and "_msk" in f.name
    )
    if not files:
        raise InputError(f"{p}: no semantic masks (*_seg-spine_msk.nii.gz) in this folder")
    return files


# --------------------------------------------------------------------------------------------- geometry
def pir_affine(affine: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Affine of the same grid with its voxel axes permuted/flipped to PIR (no resampling)."""
    import nibabel.orientations as nio

    transform = nio.ornt_transform(nio.io_orientation(affine), nio.axcodes2ornt(CUTOUT_ORIENTATION))
    return np.asarray(affine, float) @ nio.inv_ornt_aff(transform, tuple(shape))


def to_pir(img: Image) -> tuple[np.ndarray, np.ndarray]:
    """The image's voxels in PIR order (a view when possible) and their affine."""
    from nnunet_spine.core.geometry import reorient

    return reorient(img.data, img.affine, CUTOUT_ORIENTATION)


def from_pir(data_pir: np.ndarray, affine_pir: np.ndarray, like: Image) -> np.ndarray:
    """Bring a PIR array (from :func:`to_pir` of ``like``) back to ``like``'s voxel order."""
    import nibabel as nib

    from nnunet_spine.core.geometry import reorient

    out, _ = reorient(data_pir, affine_pir, tuple(nib.aff2axcodes(like.affine)))
    return np.ascontiguousarray(out)


def cutout_affine(
    grid_affine: np.ndarray,
    centre_mm: Sequence[float],
    size: Sequence[int] = DEFAULT_SIZE,
    spacing_mm: Sequence[float] = DEFAULT_SPACING_MM,
) -> np.ndarray:
    """Affine of a cutout: the PIR axes of ``grid_affine`` (a PIR grid) with ``spacing_mm`` voxels, its
    central point ``(size - 1) / 2`` at ``centre_mm`` (world RAS mm)."""
    rot = np.asarray(grid_affine, float)[:3, :3]
    axes = rot / voxel_sizes(grid_affine)
    out = np.eye(4)
    out[:3, :3] = axes * np.asarray(spacing_mm, float)
    out[:3, 3] = np.asarray(centre_mm, float) - out[:3, :3] @ ((np.asarray(size, float) - 1) / 2)
    return out


def _axis_map(src_affine: np.ndarray, dst_affine: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-axis scale and offset with ``src index = scale * dst index + offset`` when both grids share their
    axis directions (the voxel map is diagonal); None otherwise."""
    m = np.linalg.inv(src_affine) @ dst_affine
    rot = m[:3, :3]
    if np.abs(rot - np.diag(np.diag(rot))).max() > 1e-6 * np.abs(np.diag(rot)).max():
        return None
    return np.diag(rot).copy(), m[:3, 3].copy()


def _nearest(scale: float, offset: float, n_dst: int, n_src: int) -> np.ndarray:
    """Nearest source index of each destination index along one axis (-1 outside the source)."""
    idx = np.floor(scale * np.arange(n_dst) + offset + 0.5).astype(np.int64)
    idx[(idx < 0) | (idx >= n_src)] = -1
    return idx


def sample_labels(data: np.ndarray, affine: np.ndarray, dst_affine: np.ndarray, dst_shape: Sequence[int]) -> np.ndarray:
    """Labels of ``data`` (on ``affine``) at the voxels of another grid, nearest neighbour, 0 outside.

    When both grids share their axis directions (always the case for cutouts of a PIR grid) the lookup is
    separable: one index table per axis, exact and fast; otherwise :func:`geometry.resample_to_grid`.
    """
    dst_shape = tuple(int(n) for n in dst_shape)
    axis_map = _axis_map(affine, dst_affine)
    if axis_map is None:
        from nnunet_spine.core.geometry import resample_to_grid

        return resample_to_grid(data, affine, dst_shape, dst_affine, order=0)
    scale, offset = axis_map
    idx = [_nearest(scale[a], offset[a], dst_shape[a], data.shape[a]) for a in range(3)]
    out = np.zeros(dst_shape, data.dtype, order="F")  # Fortran order: NIfTI's, written without a transpose
    valid = [np.flatnonzero(i >= 0) for i in idx]
    if all(v.size for v in valid):
        out[np.ix_(*valid)] = data[np.ix_(*(i[v] for i, v in zip(idx, valid)))]
    return out


def paste_back(
    labels: np.ndarray, cut_affine: np.ndarray, grid_affine: np.ndarray, grid_shape: Sequence[int]
) -> tuple[tuple[slice, slice, slice], np.ndarray] | None:
    """A cutout's labels on the grid it was cut from: ``(box, values)`` where ``box`` are the grid's voxel
    slices covered by the cutout and ``values`` its labels there (nearest neighbour); None when the cutout
    does not overlap the grid. The grid must share the cutout's axis directions (a PIR grid)."""
    axis_map = _axis_map(cut_affine, grid_affine)
    if axis_map is None:
        raise ValueError("cutout and grid axes differ: paste_back needs the PIR grid the cutout was cut from")
    scale, offset = axis_map
    box, idx = [], []
    for a in range(3):
        i = _nearest(scale[a], offset[a], int(grid_shape[a]), labels.shape[a])
        inside = np.flatnonzero(i >= 0)
        if inside.size == 0:
            return None
        lo, hi = int(inside[0]), int(inside[-1]) + 1
        box.append(slice(lo, hi))
        idx.append(i[lo:hi])
    return tuple(box), labels[np.ix_(*idx)]


def one_hot(cut: np.ndarray) -> list[np.ndarray]:
    """The input channels of a cutout of semantic labels: uint8 0/1 masks of
    :data:`labels.CUTOUT_CHANNEL_LABELS`, in channel order."""
    return [(cut == lab).astype(np.uint8) for lab in CUTOUT_CHANNEL_LABELS]


# --------------------------------------------------------------------------------------------- centres
@dataclass
class Bodies:
    """Vertebral-body components of a semantic mask, ordered superior → inferior.

    ``components``: int32 array on the PIR grid (``affine_pir``), 0 or the 1-based component number (the
    cutout index + 1); ``centres_mm``: (n, 3) world RAS mm; ``volumes_mm3``: eroded volumes.
    """

    components: np.ndarray
    affine_pir: np.ndarray
    centres_mm: np.ndarray
    volumes_mm3: np.ndarray

    def __len__(self) -> int:
        return len(self.volumes_mm3)


def _ellipsoid(radii: Sequence[int]) -> np.ndarray:
    """Boolean ellipsoid structuring element with the given radius (voxels) per axis."""
    r = [max(int(x), 0) for x in radii]
    grids = np.ogrid[tuple(slice(-x, x + 1) for x in r)]
    dist = sum((g / max(x, 1e-9)) ** 2 if x else (g * 0.0) for g, x in zip(grids, r))
    return np.asarray(dist <= 1.0 + 1e-9)


def find_bodies(
    data_pir: np.ndarray,
    affine_pir: np.ndarray,
    *,
    erosion_mm: float = BODY_EROSION_MM,
    min_volume_mm3: float = MIN_BODY_MM3,
) -> Bodies:
    """Cutout centres of a semantic mask (PIR array and affine): eroded body components (see module doc)."""
    import cc3d
    from scipy import ndimage

    zooms = voxel_sizes(affine_pir)
    body = data_pir == CORPUS
    comps = np.zeros(body.shape, np.int32)
    if not body.any():
        return Bodies(comps, affine_pir, np.zeros((0, 3)), np.zeros(0))
    nz = np.nonzero(body)
    radii = [int(np.floor(erosion_mm / z + 0.5)) for z in zooms]
    lo = [max(int(n.min()) - r - 1, 0) for n, r in zip(nz, radii)]
    hi = [min(int(n.max()) + r + 2, s) for n, r, s in zip(nz, radii, body.shape)]
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    sub = body[box]
    if any(radii):
        sub = ndimage.binary_erosion(sub, structure=_ellipsoid(radii), border_value=0)
    cc = cc3d.connected_components(sub, connectivity=6)
    stats = cc3d.statistics(cc)
    voxel_mm3 = float(np.prod(zooms))
    keep = [c for c in range(1, len(stats["voxel_counts"])) if stats["voxel_counts"][c] * voxel_mm3 >= min_volume_mm3]
    centroids_vox = np.array([np.asarray(stats["centroids"][c]) + lo for c in keep]).reshape(-1, 3)
    centres = centroids_vox @ affine_pir[:3, :3].T + affine_pir[:3, 3]
    order = np.argsort(-centres[:, 2], kind="stable") if len(keep) else np.zeros(0, int)
    lut = np.zeros(len(stats["voxel_counts"]), np.int32)
    for rank, k in enumerate(order):
        lut[keep[k]] = rank + 1
    comps[box] = lut[cc]
    volumes = np.array([stats["voxel_counts"][keep[k]] * voxel_mm3 for k in order], float)
    return Bodies(comps, affine_pir, centres[order], volumes)


# --------------------------------------------------------------------------------------------- cutouts
@dataclass
class Cutout:
    """One cutout: its case name ``<case>_<NNN>``, index (S→I order), centre (world RAS mm), affine and shape."""

    name: str
    index: int
    centre_mm: np.ndarray
    affine: np.ndarray
    shape: tuple[int, int, int]
    body_volume_mm3: float = 0.0

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "index": self.index,
            "centre_mm": [round(float(c), 4) for c in self.centre_mm],
            "body_volume_mm3": round(float(self.body_volume_mm3), 1),
            "shape": list(self.shape),
            "affine": [[float(v) for v in row] for row in self.affine],
        }

    @classmethod
    def from_json(cls, d: dict) -> Cutout:
        return cls(
            str(d["name"]),
            int(d["index"]),
            np.asarray(d["centre_mm"], float),
            np.asarray(d["affine"], float),
            tuple(int(n) for n in d["shape"]),
            float(d.get("body_volume_mm3", 0.0)),
        )


def cutout_name(case: str, index: int) -> str:
    """nnU-Net case identifier of cutout ``index`` of ``case``: ``<case>_<NNN>``."""
    return f"{case}_{int(index):03d}"


def make_cutouts(
    case: str, bodies: Bodies, size: Sequence[int] = DEFAULT_SIZE, spacing_mm: Sequence[float] = DEFAULT_SPACING_MM
) -> list[Cutout]:
    """One :class:`Cutout` per body centre, named ``<case>_000``, ``<case>_001``, … from superior to inferior."""
    size = tuple(int(n) for n in size)
    return [
        Cutout(cutout_name(case, i), i, c, cutout_affine(bodies.affine_pir, c, size, spacing_mm), size, float(v))
        for i, (c, v) in enumerate(zip(bodies.centres_mm, bodies.volumes_mm3))
    ]


def channel_paths(folder: str | os.PathLike, name: str, n_channels: int = len(CUTOUT_CHANNEL_LABELS)) -> list[Path]:
    """``folder/<name>_0000.nii.gz`` … one per input channel (nnU-Net's naming)."""
    return [Path(folder) / f"{name}_{c:04d}{FILE_ENDING}" for c in range(n_channels)]


@dataclass
class CaseCutouts:
    """Cutouts of one semantic mask, as recorded in ``cutouts.json``."""

    case: str
    semantic: str
    shape: tuple[int, int, int]
    affine: np.ndarray
    cutouts: list[Cutout] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "case": self.case,
            "semantic": self.semantic,
            "shape": list(self.shape),
            "affine": [[float(v) for v in row] for row in self.affine],
            "cutouts": [c.to_json() for c in self.cutouts],
        }

    @classmethod
    def from_json(cls, d: dict) -> CaseCutouts:
        return cls(
            str(d["case"]),
            str(d["semantic"]),
            tuple(int(n) for n in d["shape"]),
            np.asarray(d["affine"], float),
            [Cutout.from_json(c) for c in d["cutouts"]],
        )

    def check_grid(self, semantic: Image) -> None:
        """InputError naming the semantic file and what differs (shape, or the affine by how many mm) when it is
        not the grid these cutouts were cut from."""
        if tuple(semantic.shape) != self.shape:
            raise InputError(
                f"{semantic.name}: shape {tuple(semantic.shape)} differs from the shape {self.shape} the cutouts of "
                f"case {self.case} were cut from (not the same grid)"
            )
        diff = float(np.max(np.abs(np.asarray(semantic.affine, float) - np.asarray(self.affine, float))))
        if diff > GRID_ATOL_MM:
            raise InputError(
                f"{semantic.name}: same shape, but its affine differs from the one the cutouts of case {self.case} "
                f"were cut from by up to {diff:.3g} mm (moved or resampled; cut it again with nnspine cutouts)"
            )


def description(
    cases: Sequence[CaseCutouts],
    size: Sequence[int],
    spacing_mm: Sequence[float],
    erosion_mm: float,
    min_volume_mm3: float,
) -> dict:
    """Content of ``cutouts.json``."""
    return {
        "format": "nnspine-cutouts",
        "version": 1,
        "encoding": "one-hot",
        "channels": {f"{c:04d}": int(lab) for c, lab in enumerate(CUTOUT_CHANNEL_LABELS)},
        "targets": dict(CUTOUT_TARGET_LABELS),
        "size": [int(n) for n in size],
        "spacing_mm": [float(s) for s in spacing_mm],
        "orientation": "".join(CUTOUT_ORIENTATION),
        "world": "RAS+ mm (nibabel)",
        "body_erosion_mm": float(erosion_mm),
        "min_body_mm3": float(min_volume_mm3),
        "cases": [c.to_json() for c in cases],
    }


def read_description(folder: str | os.PathLike) -> tuple[dict, list[CaseCutouts]]:
    """Read ``folder/cutouts.json``; InputError naming it when missing or not one of ours."""
    p = Path(require_folder(folder, "cutouts folder")) / CUTOUTS_JSON
    if not p.is_file():
        raise InputError(f"{p}: file not found (write it with 'nnspine cutouts')")
    try:
        content = json.loads(p.read_text())
        cases = [CaseCutouts.from_json(c) for c in content["cases"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{p}: not a cutouts description ({type(exc).__name__}: {exc})") from None
    return content, cases


@dataclass
class CutoutReport:
    """What :func:`write_cutouts` wrote."""

    folder: Path
    cases: list[CaseCutouts]
    files: int

    def lines(self) -> list[str]:
        out = []
        for c in self.cases:
            centres = "; ".join(f"{x.name} ({', '.join(f'{v:.1f}' for v in x.centre_mm)})" for x in c.cutouts)
            out.append(f"{c.semantic}: {len(c.cutouts)} cutout(s), centres in world mm (RAS): {centres}")
        out.append(f"{self.files} file(s) in {self.folder} (+ {CUTOUTS_JSON})")
        return out


def cut_case(
    semantic: Image,
    case: str,
    size: Sequence[int] = DEFAULT_SIZE,
    spacing_mm: Sequence[float] = DEFAULT_SPACING_MM,
    erosion_mm: float = BODY_EROSION_MM,
    min_volume_mm3: float = MIN_BODY_MM3,
) -> tuple[CaseCutouts, Bodies, np.ndarray]:
    """Centres and cutout grids of one semantic mask; returns the record, the bodies and the PIR labels.

    InputError naming the file when no body component survives the erosion and size filter."""
    data_pir, aff_pir = to_pir(semantic)
    bodies = find_bodies(data_pir, aff_pir, erosion_mm=erosion_mm, min_volume_mm3=min_volume_mm3)
    if len(bodies) == 0:
        raise InputError(
            f"{semantic.name}: no vertebral body (label {CORPUS}) of at least {min_volume_mm3:g} mm3 "
            f"after a {erosion_mm:g} mm erosion"
        )
    record = CaseCutouts(
        case,
        str(semantic.path.resolve()) if semantic.path else case,
        tuple(semantic.shape),
        np.asarray(semantic.affine, float),
        make_cutouts(case, bodies, size, spacing_mm),
    )
    return record, bodies, data_pir


def iter_inputs(record: CaseCutouts, data_pir: np.ndarray, aff_pir: np.ndarray) -> Iterator[tuple[Cutout, np.ndarray]]:
    """Each cutout of a case with its semantic labels (uint8, cutout grid)."""
    for c in record.cutouts:
        yield c, sample_labels(data_pir, aff_pir, c.affine, c.shape)


def write_cutouts(
    semantic: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    size: Sequence[int] = DEFAULT_SIZE,
    spacing_mm: Sequence[float] = DEFAULT_SPACING_MM,
    erosion_mm: float = BODY_EROSION_MM,
    min_volume_mm3: float = MIN_BODY_MM3,
    overwrite: bool = False,
    progress: bool = False,
) -> CutoutReport:
    """``nnspine cutouts``: the nnU-Net input cases of every vertebral body of a semantic mask (or of every
    semantic mask in a folder) and ``cutouts.json``.

    Writes ``out_dir/<case>_<NNN>_<CCCC>.nii.gz`` (uint8 one-hot channels, see the module doc). Every input is
    read and checked and every output path checked before the first file is written.
    """
    from tqdm.auto import tqdm

    check_size(size, spacing_mm)
    files = semantic_files(semantic)
    out = Path(out_dir)
    records, seen = [], {}
    for f in files:  # pass 1: read, check, find centres (nothing written)
        img = load_semantic(f)
        case = case_name(f)
        if case in seen:
            raise InputError(f"{f}: case name {case} also comes from {seen[case]} (rename one of them)")
        seen[case] = f
        records.append(cut_case(img, case, size, spacing_mm, erosion_mm, min_volume_mm3)[0])
    targets = [p for r in records for c in r.cutouts for p in channel_paths(out, c.name)]
    for p in targets + [out / CUTOUTS_JSON]:
        check_output(p, overwrite)
    n = 0
    bar = tqdm(total=sum(len(r.cutouts) for r in records), desc="cutouts", unit="cutout", disable=not progress)
    with ThreadPoolExecutor(max_workers=WRITE_THREADS) as pool:  # gzip runs outside the GIL
        for f, record in zip(files, records):  # pass 2: write
            img = load_semantic(f)
            data_pir, aff_pir = to_pir(img)
            for c, cut in iter_inputs(record, data_pir, aff_pir):
                jobs = [
                    pool.submit(save_image, channel, c.affine, p, overwrite=overwrite, dtype=np.uint8)
                    for p, channel in zip(channel_paths(out, c.name), one_hot(cut))
                ]
                n += sum(1 for j in jobs if j.result())
                bar.update()
    bar.close()
    write_text(
        out / CUTOUTS_JSON,
        json.dumps(description(records, size, spacing_mm, erosion_mm, min_volume_mm3), indent=1) + "\n",
        overwrite=overwrite,
    )
    return CutoutReport(out, records, n)


def check_size(size: Sequence[int], spacing_mm: Sequence[float]) -> None:
    """InputError for a cutout size or spacing that is not three positive numbers."""
    if len(size) != 3 or any(int(n) < 1 for n in size):
        raise InputError(f"cutout size must be three positive voxel counts, got {tuple(size)}")
    if len(spacing_mm) != 3 or any(not float(s) > 0 for s in spacing_mm):
        raise InputError(f"cutout spacing must be three positive sizes in mm, got {tuple(spacing_mm)}")
