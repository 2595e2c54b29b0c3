"""Lesion postprocessing (``nnspine lesions``): remove small lesions and lesions away from the cord,
number the kept ones from superior to inferior, and measure every lesion.

Lesions are connected components (:func:`nnunet_spine.core.lesion_matching.label_lesions`, 26-connectivity by
default) of the chosen label of a prediction. For each lesion:

* ``volume_mm3``: voxels × voxel volume (``|det|`` of the affine), never a voxel count.
* ``centroid_x_mm, centroid_y_mm, centroid_z_mm``: centroid of its voxel centres in world RAS mm.
* ``extent_si_mm``: extent along the world S-I axis: the span of its voxel centres' S coordinates plus the
  S-I size of one voxel (``Σ_a |A[2, a]|``), i.e. slices × slice thickness on an axial-aligned grid.
* ``max_axial_diameter_mm``: the largest Feret diameter of its cross-sections on the axial slices (the
  voxel axis closest to S-I, :func:`nnunet_spine.core.geometry.si_axis`): the largest distance between two
  corners of its in-plane voxel squares (in mm, in-plane voxel sizes), so one 0.5 × 0.5 mm voxel measures
  0.71 mm and a 3 × 1 row of 1 mm voxels 3.16 mm. (scikit-image's ``feret_diameter_max`` measures a
  marching-squares contour through pixel-edge midpoints, which is neither the voxels' extent nor easy to
  check by hand, so it is not used.)
* with a cord mask, SCT's measures (:mod:`nnunet_spine.postprocessing.lesion.sct_measures`): ``volume_in_cord_mm3``,
  ``length_along_cord_mm`` and ``max_equivalent_diameter_mm`` of the lesion's voxels inside the cord mask,
  corrected for the cord's angle as ``sct_analyze_lesion -s`` does (0 for a lesion entirely outside the cord);
  empty without a cord mask.
* ``vert_level`` (with a level file, SCT level numbers): the slices the lesion spans get a level by
  :func:`nnunet_spine.postprocessing.cord.levels.assign_slice_levels` (weights = the lesion's voxels: the level its
  voxels mostly carry, else the level of the slice's labelled voxels); the lesion takes the level holding most of
  its voxels. Empty when none is known.

Removal (column ``removed``, nothing disappears silently): ``small`` when the volume is below
``min_volume_mm3``; ``outside_cord`` when no voxel lies within ``cord_dilation_mm`` of the cord mask
(Euclidean distance in mm on the voxel grid, :func:`scipy.ndimage.distance_transform_edt` with the voxel
sizes, so anisotropic voxels are handled; 0 mm means overlapping the cord). ``small`` wins when both apply.

Numbering (:func:`nnunet_spine.core.lesion_matching.si_order`): kept lesions 1..N from superior to inferior
(world S of the centroid); removed lesions continue N+1..M in the same order, in the table and QC picture
only. The output image holds the kept lesions with their numbers (0 elsewhere); beside it a JSON sidecar (same
stem, ``.json``; :mod:`nnunet_spine.postprocessing.lesion.sidecar`) says ``"LesionInstances": true``, so
``nnspine evaluate lesions`` and ``nnspine lesions`` read that image as it is: every non-zero voxel is lesion, no
``--label``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nnunet_spine.core.bids import with_subject_columns
from nnunet_spine.core.io import Image, InputError
from nnunet_spine.core.lesion_matching import DEFAULT_CONNECTIVITY, label_lesions, si_order, voxel_volume_mm3
from nnunet_spine.core.provenance import note_output
from nnunet_spine.postprocessing.lesion.sct_measures import SCT_COLUMNS

#: Columns of the lesion table, in order.
TABLE_COLUMNS = [
    "filename",
    "lesion",
    "volume_mm3",
    "centroid_x_mm",
    "centroid_y_mm",
    "centroid_z_mm",
    "extent_si_mm",
    "max_axial_diameter_mm",
    "vert_level",
    *SCT_COLUMNS,
    "removed",
]
#: ``lesion`` value of the per-file summary row (count and total volume of the kept lesions).
TOTAL = "total"
#: Reasons in the ``removed`` column.
REMOVED_SMALL, REMOVED_OUTSIDE = "small", "outside_cord"
#: Suffixes tried, in order, to find a case's cord mask in a folder: ``<case><suffix>.nii[.gz]``.
CORD_SUFFIXES = ("_label-SC_seg", "", "_seg")
#: Default dilation of the cord mask (mm) when a cord mask is given.
DEFAULT_CORD_DILATION_MM = 2.0


@dataclass
class LesionAnalysis:
    """Result of :func:`analyze_lesions` on one image."""

    labels: np.ndarray  #: kept lesions numbered 1..N (superior first), 0 elsewhere (uint16)
    components: np.ndarray  #: every lesion with its table number (kept 1..N, removed N+1..M)
    affine: np.ndarray  #: voxel → RAS mm
    rows: list[dict]  #: one per lesion in table order (:data:`TABLE_COLUMNS` without ``filename``)
    n_kept: int
    voxel_mm3: float
    extra: dict = field(default_factory=dict)

    def table_rows(self, filename: str) -> list[dict]:
        """The lesion rows followed by the summary row (``lesion = total``), each with ``filename``."""
        kept = [r for r in self.rows if not r["removed"]]
        total = {c: None for c in TABLE_COLUMNS}
        total.update(
            filename=filename,
            lesion=TOTAL,
            volume_mm3=float(sum(r["volume_mm3"] for r in kept)),
            removed=f"{self.n_kept} kept, {len(self.rows) - self.n_kept} removed",
        )
        return [{"filename": filename, **r} for r in self.rows] + [total]


# --------------------------------------------------------------------------------------------- measures
def feret_diameter_mm(points_2d: np.ndarray, spacing_mm: Sequence[float]) -> float:
    """Largest distance (mm) between two corners of the pixel squares at integer positions ``points_2d``
    (N×2) with pixel size ``spacing_mm`` (2 values): the Feret diameter of the pixelated shape.

    For two pixels whose centres differ by (dx, dy) mm, their farthest corners are
    ``sqrt((|dx| + sx)² + (|dy| + sy)²)`` apart; the diameter is the largest such value over pixel pairs
    (computed on the convex hull of the corners for large cross-sections)."""
    sp = np.asarray(spacing_mm, float)
    pts = np.asarray(points_2d, float) * sp
    if len(pts) > 256:
        from scipy.spatial import ConvexHull

        offsets = np.array([[-0.5, -0.5], [-0.5, 0.5], [0.5, -0.5], [0.5, 0.5]]) * sp
        corners = (pts[:, None, :] + offsets[None]).reshape(-1, 2)
        hull = corners[ConvexHull(corners).vertices]
        return float(np.sqrt(((hull[:, None, :] - hull[None, :, :]) ** 2).sum(-1)).max())
    d = np.abs(pts[:, None, :] - pts[None, :, :]) + sp
    return float(np.sqrt((d**2).sum(-1)).max())


def max_axial_diameter_mm(voxels: np.ndarray, affine: np.ndarray) -> float:
    """Largest :func:`feret_diameter_mm` over the axial slices of one lesion (voxel indices N×3); the axial
    slices are those across the voxel axis closest to S-I, pixels sized by the other two voxel sizes."""
    from nnunet_spine.core.geometry import si_axis
    from nnunet_spine.core.io import voxel_sizes

    s = si_axis(affine)
    plane = [a for a in range(3) if a != s]
    spacing = voxel_sizes(affine)[plane]
    order = np.argsort(voxels[:, s], kind="stable")
    v = voxels[order]
    ks, starts = np.unique(v[:, s], return_index=True)
    best = 0.0
    for part in np.split(v[:, plane], starts[1:]):
        best = max(best, feret_diameter_mm(part, spacing))
    return best


def extent_si_mm(voxels: np.ndarray, affine: np.ndarray) -> float:
    """Extent (mm) along world S-I: span of the voxel centres' S coordinates + one voxel's S-I size."""
    row = np.asarray(affine, float)[2, :3]
    z = voxels @ row
    return float(np.ptp(z) + np.abs(row).sum())


def near_cord(voxels: Sequence[np.ndarray], cord: np.ndarray, affine: np.ndarray, dilation_mm: float) -> np.ndarray:
    """For each lesion (voxel indices N×3), whether one of its voxels lies within ``dilation_mm`` (Euclidean,
    mm, the voxel sizes of ``affine``) of the binary ``cord`` mask. Each lesion is checked in its bounding
    box grown by the distance, which holds every cord voxel that close."""
    from scipy import ndimage

    from nnunet_spine.core.io import voxel_sizes

    zooms = voxel_sizes(affine)
    margin = np.ceil(dilation_mm / zooms).astype(int) + 1
    out = np.zeros(len(voxels), bool)
    for n, v in enumerate(voxels):
        lo = np.maximum(v.min(0) - margin, 0)
        hi = np.minimum(v.max(0) + margin + 1, cord.shape)
        box = cord[tuple(slice(a, b) for a, b in zip(lo, hi))]
        if not box.any():
            continue
        if box[tuple((v - lo).T)].any():
            out[n] = True
            continue
        dist = ndimage.distance_transform_edt(~box, sampling=zooms)
        out[n] = bool((dist[tuple((v - lo).T)] <= dilation_mm + 1e-6).any())
    return out


def lesion_level(voxels: np.ndarray, levels: np.ndarray, affine: np.ndarray) -> int:
    """SCT level of one lesion (voxel indices N×3) from a level image on its grid; 0 when unknown."""
    from nnunet_spine.core.geometry import si_axis
    from nnunet_spine.postprocessing.cord.levels import assign_slice_levels

    s = si_axis(affine)
    k0, k1 = int(voxels[:, s].min()), int(voxels[:, s].max()) + 1
    slab = [slice(None)] * 3
    slab[s] = slice(k0, k1)
    weights = np.zeros(levels[tuple(slab)].shape, np.float32)
    local = voxels.copy()
    local[:, s] -= k0
    weights[tuple(local.T)] = 1.0
    per_slice = assign_slice_levels(np.moveaxis(weights, s, -1), level_data=np.moveaxis(levels[tuple(slab)], s, -1))
    votes = np.bincount(per_slice, weights=np.bincount(local[:, s], minlength=k1 - k0))
    votes[0] = 0
    return int(votes.argmax()) if votes.max() > 0 else 0


# --------------------------------------------------------------------------------------------- analysis
def check_options(min_volume_mm3: float, cord_dilation_mm: float) -> None:
    """Raise :class:`InputError` unless the minimum volume (mm³) and cord dilation (mm) are finite and ≥ 0."""
    for name, v in (("--min-volume-mm3", min_volume_mm3), ("--cord-dilation-mm", cord_dilation_mm)):
        if not np.isfinite(v) or v < 0:
            raise InputError(f"{name}: expected a finite value >= 0, got {v}")


def _paint(shape: tuple[int, ...], voxels: Sequence[np.ndarray], values: Sequence[int], like: np.ndarray) -> np.ndarray:
    """A label image (smallest unsigned type) with each voxel set painted with its value."""
    top = max(values, default=0)
    dtype = np.uint8 if top < 256 else np.uint16 if top < 65536 else np.uint32
    out = np.zeros(shape, dtype, order="F" if like.flags.f_contiguous and not like.flags.c_contiguous else "C")
    for v, value in zip(voxels, values):
        if value:
            out[tuple(v.T)] = value
    return out


def analyze_lesions(
    mask: np.ndarray,
    affine: np.ndarray,
    *,
    cord: np.ndarray | None = None,
    cord_dilation_mm: float = DEFAULT_CORD_DILATION_MM,
    min_volume_mm3: float = 0.0,
    levels: np.ndarray | None = None,
    connectivity: int = DEFAULT_CONNECTIVITY,
) -> LesionAnalysis:
    """Label, filter, number and measure the lesions of a binary 3-D ``mask`` (affine: voxel → RAS mm).

    ``cord`` (binary, same grid): lesions with no voxel within ``cord_dilation_mm`` of it are removed
    (``outside_cord``); ``min_volume_mm3``: lesions below it are removed (``small``); ``levels`` (SCT level
    image, same grid) fills ``vert_level``. See the module docstring for every measure.
    """
    from nnunet_spine.core.lesion_matching import lesion_voxels
    from nnunet_spine.postprocessing.lesion.sct_measures import sct_lesion_measures

    check_options(min_volume_mm3, cord_dilation_mm)
    mask = np.asarray(mask)
    comp, n = label_lesions(mask, connectivity)
    voxels = lesion_voxels(comp, n)
    vox = voxel_volume_mm3(affine)
    volumes = np.array([len(v) for v in voxels], float) * vox
    centroids = np.array([v.mean(0) for v in voxels]).reshape(-1, 3)
    near = near_cord(voxels, np.asarray(cord, bool), affine, cord_dilation_mm) if cord is not None else None
    sct = sct_lesion_measures(comp, n, np.asarray(cord, bool), affine) if cord is not None and n else None
    reason = [
        REMOVED_SMALL if volumes[i] < min_volume_mm3 else REMOVED_OUTSIDE if near is not None and not near[i] else ""
        for i in range(n)
    ]
    order = si_order(centroids, affine)
    table_order = [i for i in order if not reason[i]] + [i for i in order if reason[i]]
    n_kept = sum(1 for r in reason if not r)
    number = np.zeros(n, np.int64)
    number[table_order] = np.arange(1, n + 1)
    components = _paint(mask.shape, voxels, number.tolist(), comp)
    labels = _paint(mask.shape, voxels, [k if k <= n_kept else 0 for k in number.tolist()], comp)
    world = centroids @ np.asarray(affine, float)[:3, :3].T + np.asarray(affine, float)[:3, 3]
    rows = []
    for i in table_order:
        level = lesion_level(voxels[i], levels, affine) if levels is not None else 0
        rows.append(
            {
                "lesion": int(number[i]),
                "volume_mm3": float(volumes[i]),
                "centroid_x_mm": float(world[i, 0]),
                "centroid_y_mm": float(world[i, 1]),
                "centroid_z_mm": float(world[i, 2]),
                "extent_si_mm": extent_si_mm(voxels[i], affine),
                "max_axial_diameter_mm": max_axial_diameter_mm(voxels[i], affine),
                "vert_level": level if level > 0 else None,
                **dict(zip(SCT_COLUMNS, sct[i].tolist() if sct is not None else (None,) * len(SCT_COLUMNS))),
                "removed": reason[i],
            }
        )
    return LesionAnalysis(
        labels=labels, components=components, affine=np.asarray(affine, float), rows=rows, n_kept=n_kept, voxel_mm3=vox
    )


# --------------------------------------------------------------------------------------------- files
@dataclass(frozen=True)
class LesionJob:
    """One prediction to process and where its outputs go."""

    case: str
    pred: Path
    output: Path
    cord: Path | None = None
    vertfile: Path | None = None
    image: Path | None = None
    qc: Path | None = None


def _load_binary(path: Path) -> Image:
    from nnunet_spine.core.io import load_image

    img = load_image(path, "binary", allow_empty=False)
    img.data = img.data != 0
    return img


def analyze_file(
    job: LesionJob,
    *,
    label: int | None = None,
    cord_dilation_mm: float = DEFAULT_CORD_DILATION_MM,
    min_volume_mm3: float = 0.0,
    connectivity: int = DEFAULT_CONNECTIVITY,
    all_foreground: bool = False,
) -> tuple[LesionAnalysis, Image]:
    """Read one job's files (prediction; cord mask, level file and background image when given; all on the
    prediction's grid), and analyse it. Returns the analysis and the prediction image (for its header).
    A prediction with several labels needs ``label`` (or ``all_foreground``)."""
    from nnunet_spine.core.io import check_same_grid, load_image
    from nnunet_spine.postprocessing.cord.levels import load_levels
    from nnunet_spine.postprocessing.lesion.metrics import load_lesion_mask

    pred = load_lesion_mask(job.pred, label, single_label=not all_foreground)
    cord = levels = None
    if job.cord is not None:
        cord = _load_binary(job.cord)
        check_same_grid(pred, cord)
    if job.vertfile is not None:
        levels = load_levels(job.vertfile, pred)
    image = None
    if job.image is not None:
        image = load_image(job.image)
        check_same_grid(pred, image)
    result = analyze_lesions(
        pred.data,
        pred.affine,
        cord=None if cord is None else cord.data,
        cord_dilation_mm=cord_dilation_mm,
        min_volume_mm3=min_volume_mm3,
        levels=None if levels is None else np.rint(levels.data).astype(np.int64),
        connectivity=connectivity,
    )
    if cord is not None:
        result.extra["cord"] = cord.data
    if image is not None:
        result.extra["image"] = image.data
    return result, pred


def plan_jobs(
    inputs: str | os.PathLike,
    output: str | os.PathLike,
    *,
    cord: str | os.PathLike | None = None,
    vertfile: str | os.PathLike | None = None,
    image: str | os.PathLike | None = None,
    qc: str | os.PathLike | None = None,
    overwrite: bool = False,
) -> list[LesionJob]:
    """Match every input with its outputs and companion files before any voxel is read.

    A file input: ``output`` and ``qc`` are files and ``cord`` / ``vertfile`` / ``image`` files (or folders
    holding the case's file). A folder input (searched recursively): ``output`` and ``qc`` are folders
    (same file names; ``<case>_lesions.png``), companions are folders searched by case name
    (:func:`nnunet_spine.core.bids.find_case_file`; cord: :data:`CORD_SUFFIXES`; level file:
    ``<case>_label-SC_seg_labeled``, ``<case>_labeled``, ``<case>``). Outputs (each lesion image, its JSON
    sidecar and QC picture) are checked (existing ones need ``overwrite``). Raises :class:`InputError` naming
    the path.
    """
    from nnunet_spine.core.bids import cases_by_name, find_case_file, list_nifti
    from nnunet_spine.core.io import check_output, require_writable_folder
    from nnunet_spine.postprocessing.lesion.metrics import LESION_MASK_SUFFIXES, check_image_file
    from nnunet_spine.postprocessing.lesion.sidecar import sidecar_path

    inputs, output = Path(inputs), Path(output)
    if not inputs.exists():
        raise InputError(f"{inputs}: file not found")
    check_image_file(inputs, "-i")
    folder = inputs.is_dir()
    preds = list_nifti(inputs) if folder else [inputs]
    if folder:
        out_res = output.resolve()
        preds = [p for p in preds if out_res not in p.resolve().parents]
    if folder:
        require_writable_folder(output)
        if qc is not None:
            require_writable_folder(qc, "QC folder")
    companions = {
        "cord": (cord, CORD_SUFFIXES, "cord mask"),
        "vertfile": (vertfile, ("_label-SC_seg_labeled", "_labeled", ""), "level file"),
        "image": (image, ("",), "image"),
    }
    for key, (path, _, what) in companions.items():
        if path is not None:
            if not Path(path).exists():
                raise InputError(f"{path}: file not found")
            if folder and not Path(path).is_dir():
                raise InputError(f"{path}: is a file; a folder of predictions needs a folder of {what}s")
    jobs = []
    for case, p in cases_by_name(preds, LESION_MASK_SUFFIXES).items():
        found = {}
        for key, (path, suffixes, what) in companions.items():
            if path is None:
                found[key] = None
            elif Path(path).is_dir():
                found[key] = find_case_file(path, case, suffixes, what)
            else:
                found[key] = Path(path)
        out = output / p.name if folder else output
        q = (Path(qc) / f"{case}_lesions.png" if folder else Path(qc)) if qc is not None else None
        for o in (out, sidecar_path(out), q):
            if o is not None:
                if o.resolve() == p.resolve():
                    raise InputError(f"{o}: output would replace its input")
                check_output(o, overwrite)
        jobs.append(LesionJob(case=case, pred=p, output=out, qc=q, **found))
    return jobs


def run_lesions(
    jobs: Sequence[LesionJob],
    table: str | os.PathLike,
    *,
    label: int | None = None,
    cord_dilation_mm: float = DEFAULT_CORD_DILATION_MM,
    min_volume_mm3: float = 0.0,
    connectivity: int = DEFAULT_CONNECTIVITY,
    all_foreground: bool = False,
    overwrite: bool = False,
    progress: bool = False,
) -> pandas.DataFrame:  # noqa: F821
    """Process every job and write its labelled lesions with their JSON sidecar
    (:func:`nnunet_spine.postprocessing.lesion.sidecar.instances_sidecar`), QC picture and the table (CSV,
    :data:`TABLE_COLUMNS`).

    All-or-nothing: outputs go to a hidden staging folder beside each output and are moved into place only
    after every job succeeded, so bad input (:class:`InputError`) leaves nothing written, and so does a ``label``
    that no prediction contains. Returns the table.
    """
    import shutil
    import tempfile

    import pandas as pd
    from tqdm.auto import tqdm

    from nnunet_spine.core.io import check_output, save_image, write_text
    from nnunet_spine.postprocessing.lesion.sidecar import instances_sidecar, sidecar_path, sidecar_text

    check_output(table, overwrite)
    staged: list[tuple[Path, Path]] = []
    stage_dirs: dict[Path, Path] = {}

    def stage(final: Path) -> Path:
        parent = final.parent
        if parent not in stage_dirs:
            parent.mkdir(parents=True, exist_ok=True)
            stage_dirs[parent] = Path(tempfile.mkdtemp(prefix=".nnspine-lesions-", dir=parent))
        tmp = stage_dirs[parent] / final.name
        staged.append((tmp, final))
        return tmp

    rows: list[dict] = []
    seen: set[int] = set()
    try:
        for job in tqdm(jobs, desc="lesions", unit="file", disable=not progress):
            result, pred = analyze_file(
                job,
                label=label,
                cord_dilation_mm=cord_dilation_mm,
                min_volume_mm3=min_volume_mm3,
                connectivity=connectivity,
                all_foreground=all_foreground,
            )
            seen.update(pred.meta["labels"])
            save_image(result.labels, pred.affine, stage(job.output), like=pred)
            side = instances_sidecar(
                result.n_kept,
                connectivity=connectivity,
                min_volume_mm3=min_volume_mm3,
                cord_dilation_mm=None if job.cord is None else cord_dilation_mm,
            )
            stage(sidecar_path(job.output)).write_text(sidecar_text(side))
            if job.qc is not None:
                from nnunet_spine.postprocessing.qc import plot_lesions

                background = _background(result)
                plot_lesions(
                    result.components, result.affine, result.rows, stage(job.qc), background=background, title=job.case
                )
            rows.extend(result.table_rows(str(job.pred)))
        if label is not None and seen and label not in seen:
            where = jobs[0].pred if len(jobs) == 1 else jobs[0].pred.parent
            raise InputError(f"{where}: no voxel has label {label} (labels present: {sorted(seen)})")
        df = pd.DataFrame(rows, columns=TABLE_COLUMNS)
        df["vert_level"] = df["vert_level"].astype("Int64")
        for tmp, final in staged:
            check_output(final, overwrite)
        for tmp, final in staged:
            os.replace(tmp, final)
            note_output(final)
        write_text(table, with_subject_columns(df, "filename").to_csv(index=False), overwrite=overwrite)
    finally:
        for d in stage_dirs.values():
            shutil.rmtree(d, ignore_errors=True)
    return df


def _background(result: LesionAnalysis) -> np.ndarray | None:
    """QC background: the image when given, else the cord mask, else None."""
    for key in ("image", "cord"):
        if result.extra.get(key) is not None:
            return np.asarray(result.extra[key], np.float32)
    return None
