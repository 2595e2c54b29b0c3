"""Lesion-wise and voxel-wise metrics of predicted lesion masks against references: the tables of ``nnspine evaluate
lesions`` and of the lesion trainers' final validation.

Lesion components and the matching rules live in :mod:`nnunet_spine.core.lesion_matching` (one definition of a lesion,
a detected lesion and a false positive); surface distances in :mod:`nnunet_spine.postprocessing.lesion.surface`.

Per case (:data:`CASE_COLUMNS`)
    Lesion counts and scores of the chosen rule (``match`` names it, ``f1`` is always
    :data:`~nnunet_spine.core.lesion_matching.F1_DEFINITION`); voxel-wise ``dice``, ``voxel_sensitivity = |R∩P| / |R|``
    (NaN when the reference is empty), ``voxel_specificity = |¬R∩¬P| / |¬R|`` over the whole image,
    ``voxel_precision = |R∩P| / |P|`` (NaN when the prediction is empty); HD95, ASSD and NSD (mm); volumes (mm³).
Summary rows
    ``ALL``: counts and volumes summed over cases, rates and Dice from the sums (pooled); ``MEAN`` and ``SD``: the
    mean and sample SD (n − 1) over cases of every per-case number, NaN skipped, with the number of cases used per
    column in the ``N`` row (Hille et al. report means over cases).
Predictions (:func:`load_lesion_mask`)
    A binary mask, or the chosen ``label`` of a label image. A prediction with several labels and no ``label`` is
    refused (a region prediction, cord 1 + lesion 2), unless its JSON sidecar says ``"LesionInstances": true``
    (``nnspine lesions`` output, lesions numbered 1..N; :mod:`nnunet_spine.postprocessing.lesion.sidecar`): every
    non-zero voxel is then lesion.
By size (:func:`detection_by_size`)
    Reference lesions binned by volume (mm³): ``<a``, ``a-b``, ``>=b``; per bin the number of reference lesions, how
    many were detected and their ratio, pooled over cases.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from nnunet_spine.core.io import InputError
from nnunet_spine.core.lesion_matching import (
    COUNT_KEYS,
    DEFAULT_CONNECTIVITY,
    DEFAULT_MATCH,
    SCORE_KEYS,
    LesionMatch,
    MatchRule,
    check_connectivity,
    lesion_scores,
    lesion_voxels,
    match_lesions,
    si_order,
    sum_counts,
    voxel_volume_mm3,
)
from nnunet_spine.postprocessing.lesion.surface import DEFAULT_NSD_TOLERANCE_MM, SURFACE_KEYS, surface_metrics

#: Voxel-wise rates written beside ``dice``.
VOXEL_KEYS = ("voxel_sensitivity", "voxel_specificity", "voxel_precision")
#: Volumes (mm³) written per case.
VOLUME_KEYS = ("ref_volume_mm3", "pred_volume_mm3", "intersection_mm3", "volume_error_mm3", "image_volume_mm3")

# --------------------------------------------------------------------------------------------- case tables
#: Columns of ``nnspine evaluate lesions`` (one row per case, then ``ALL``, ``MEAN``, ``SD`` and ``N``).
CASE_COLUMNS = [
    "case",
    "match",
    "connectivity",
    *COUNT_KEYS,
    *SCORE_KEYS,
    "dice",
    *VOXEL_KEYS,
    *SURFACE_KEYS,
    "nsd_tolerance_mm",
    *VOLUME_KEYS,
]
#: Columns of ``--per-lesion``: one row per reference lesion, numbered 1..N from superior to inferior
#: within its case; centroid in world RAS mm.
PER_LESION_COLUMNS = [
    "case",
    "match",
    "connectivity",
    "lesion",
    "centroid_x_mm",
    "centroid_y_mm",
    "centroid_z_mm",
    "detected",
    "n_pred_lesions",
    "coverage",
    "iou",
    "dice",
    "ref_volume_mm3",
    "pred_volume_mm3",
    "volume_error_mm3",
]
#: Bin edges (mm³) of the trainers' detection-by-size table (``--by-size-mm3`` has no default).
DEFAULT_SIZE_EDGES_MM3 = (20.0, 100.0)
#: Columns of ``--by-size-output``.
BY_SIZE_COLUMNS = ["size_bin", "ref_lesions", "detected", "lesion_sensitivity"]
#: ``case`` values of the summary rows: pooled, mean over cases, sample SD over cases, cases used per column.
SUMMARY_CASE = "ALL"
MEAN_CASE, SD_CASE, N_CASE = "MEAN", "SD", "N"
SUMMARY_CASES = (SUMMARY_CASE, MEAN_CASE, SD_CASE, N_CASE)
#: Per-case numbers that get a MEAN and an SD (everything numeric but the connectivity).
AVERAGED_KEYS = [c for c in CASE_COLUMNS if c not in ("case", "match", "connectivity", "nsd_tolerance_mm")]


def voxel_rates(ref_voxels: int, pred_voxels: int, intersection: int, image_voxels: int) -> dict[str, float]:
    """``dice`` and :data:`VOXEL_KEYS` from voxel counts (module docstring for the empty-mask values)."""
    both = ref_voxels + pred_voxels
    negatives = image_voxels - ref_voxels
    true_negatives = image_voxels - ref_voxels - pred_voxels + intersection
    return {
        "dice": 2.0 * intersection / both if both else 1.0,
        "voxel_sensitivity": intersection / ref_voxels if ref_voxels else float("nan"),
        "voxel_specificity": true_negatives / negatives if negatives else float("nan"),
        "voxel_precision": intersection / pred_voxels if pred_voxels else float("nan"),
    }


def select_label(data: np.ndarray, label: int | None = None) -> np.ndarray:
    """The lesion mask (bool) of a label image: ``data == label``, or every non-zero voxel when ``label``
    is None (binary masks, or all foreground of a multi-label / region prediction)."""
    return np.asarray(data) != 0 if label is None else np.asarray(data) == label


def present_labels(data: np.ndarray) -> list[int]:
    """Non-zero values of a label image, ascending (a binary mask is told by its maximum, without sorting)."""
    a = np.asarray(data)
    top = a.max() if a.size else 0
    if top <= 1 and (a.size == 0 or a.min() >= 0):
        return [1] if top == 1 else []
    return [int(v) for v in np.unique(a) if v != 0]


def load_lesion_mask(source, label: int | None = None, *, single_label: bool = False):
    """Read (path) or take (:class:`~nnunet_spine.core.io.Image`) a lesion mask or label image and return an
    Image whose data is the bool mask of ``label`` (all foreground when None) and whose ``meta["labels"]`` lists
    the labels present. Checks: 3-D, finite, non-negative integer values; with ``single_label`` and no ``label``,
    an image with more than one non-zero value is refused (a cord + lesion prediction is not a lesion mask)
    unless its JSON sidecar says it holds lesion instances (``nnspine lesions`` output,
    :mod:`nnunet_spine.postprocessing.lesion.sidecar`): then every non-zero voxel is lesion
    (``meta["lesion_instances"]``). A ``label`` on such a mask is refused (it would pick one lesion). Raises
    :class:`InputError` naming the file."""
    from nnunet_spine.core.io import Image, check_3d, check_values, load_image
    from nnunet_spine.postprocessing.lesion.sidecar import INSTANCES_KEY, holds_lesion_instances, sidecar_path

    img = check_values(check_3d(source), "labels") if isinstance(source, Image) else load_image(source, "labels")
    labels = present_labels(img.data)
    name = img.path or img.name
    # the sidecar is read only where it changes the outcome: a label asked for, or several labels without one
    asks = label is not None or (single_label and len(labels) > 1)
    instances = asks and holds_lesion_instances(img.path)
    if instances and label is not None:
        raise InputError(
            f"{name}: holds lesion instances ({INSTANCES_KEY} in {sidecar_path(img.path).name}), every non-zero "
            f"voxel is lesion; a label would pick one lesion, leave it out"
        )
    if single_label and label is None and len(labels) > 1 and not instances:
        raise InputError(f"{name}: several labels {labels}; choose the lesion with --label")
    meta = {**(img.meta or {}), "labels": labels, "lesion_instances": bool(instances)}
    return Image(data=select_label(img.data, label), affine=img.affine, path=img.path, meta=meta)


def evaluate_lesion_arrays(
    ref: np.ndarray,
    pred: np.ndarray,
    affine: np.ndarray,
    *,
    case: str = "",
    match: str | MatchRule = DEFAULT_MATCH,
    connectivity: int = DEFAULT_CONNECTIVITY,
    per_lesion: bool = False,
    surface: bool = True,
    nsd_tolerance_mm: float = DEFAULT_NSD_TOLERANCE_MM,
) -> tuple[dict, list[dict]]:
    """One case's row (:data:`CASE_COLUMNS`) from two binary masks on one grid (``affine``: voxel → RAS mm),
    and, with ``per_lesion``, its reference lesions' rows (:data:`PER_LESION_COLUMNS`, superior first).
    Without ``surface`` the surface distances are NaN (the trainers' per-epoch use)."""
    rule = MatchRule.of(match)
    vox = voxel_volume_mm3(affine)
    m = match_lesions(ref, pred, connectivity=connectivity, match=rule, voxel_mm3=vox)
    counts = m.counts()
    r, p = np.asarray(ref, bool), np.asarray(pred, bool)
    ref_v, pred_v, inter = int(r.sum()), int(p.sum()), int(np.count_nonzero(r & p))
    zooms = np.sqrt((np.asarray(affine, float)[:3, :3] ** 2).sum(0))
    dist = (
        surface_metrics(r.reshape(r.shape[:3]), p.reshape(p.shape[:3]), zooms, nsd_tolerance_mm)
        if surface
        else dict.fromkeys(SURFACE_KEYS, float("nan"))
    )
    row = {
        "case": case,
        "match": rule.name,
        "connectivity": m.connectivity,
        **counts,
        **lesion_scores(counts),
        **voxel_rates(ref_v, pred_v, inter, r.size),
        **dist,
        "nsd_tolerance_mm": float(nsd_tolerance_mm),
        "ref_volume_mm3": ref_v * vox,
        "pred_volume_mm3": pred_v * vox,
        "intersection_mm3": inter * vox,
        "volume_error_mm3": (pred_v - ref_v) * vox,
        "image_volume_mm3": r.size * vox,
    }
    return row, (_per_lesion_rows(m, affine, case) if per_lesion else [])


def _per_lesion_rows(m: LesionMatch, affine: np.ndarray, case: str) -> list[dict]:
    if m.n_ref == 0:
        return []
    cent = np.array([v.mean(0) for v in lesion_voxels(m.ref_labels, m.n_ref)])
    world = cent @ np.asarray(affine, float)[:3, :3].T + np.asarray(affine, float)[:3, 3]
    detail = m.per_lesion(voxel_volume_mm3(affine))
    rows = []
    for rank, i in enumerate(si_order(cent, affine), start=1):
        d = detail[i]
        rows.append(
            {
                "case": case,
                "match": m.match,
                "connectivity": m.connectivity,
                "lesion": rank,
                "centroid_x_mm": float(world[i, 0]),
                "centroid_y_mm": float(world[i, 1]),
                "centroid_z_mm": float(world[i, 2]),
                "detected": d["detected"],
                "n_pred_lesions": len(d["matched_pred"].split(";")) if d["matched_pred"] else 0,
                **{
                    k: d[k]
                    for k in ("coverage", "iou", "dice", "ref_volume_mm3", "pred_volume_mm3", "volume_error_mm3")
                },
            }
        )
    return rows


def evaluate_lesion_case_detail(
    pred,
    ref,
    *,
    case: str | None = None,
    label: int | None = None,
    ref_label: int | None = None,
    match: str | MatchRule = DEFAULT_MATCH,
    connectivity: int = DEFAULT_CONNECTIVITY,
    nsd_tolerance_mm: float = DEFAULT_NSD_TOLERANCE_MM,
) -> tuple[dict, list[dict]]:
    """:func:`evaluate_lesion_case` plus the per-lesion rows of its reference lesions."""
    return _evaluate_loaded(
        *_load_pair(pred, ref, label, ref_label),
        case=case,
        match=match,
        connectivity=connectivity,
        nsd_tolerance_mm=nsd_tolerance_mm,
    )


def _load_pair(pred, ref, label: int | None, ref_label: int | None, *, single_label: bool = True):
    from nnunet_spine.core.io import check_same_grid

    r = load_lesion_mask(ref, ref_label)
    p = load_lesion_mask(pred, label, single_label=single_label)
    check_same_grid(r, p)
    return p, r


def _evaluate_loaded(p, r, *, case, match, connectivity, nsd_tolerance_mm) -> tuple[dict, list[dict]]:
    return evaluate_lesion_arrays(
        r.data,
        p.data,
        r.affine,
        case=case if case is not None else p.name,
        match=match,
        connectivity=check_connectivity(connectivity),
        per_lesion=True,
        nsd_tolerance_mm=nsd_tolerance_mm,
    )


def evaluate_lesion_case(
    pred,
    ref,
    *,
    case: str | None = None,
    label: int | None = None,
    ref_label: int | None = None,
    match: str | MatchRule = DEFAULT_MATCH,
    connectivity: int = DEFAULT_CONNECTIVITY,
) -> dict:
    """Lesion-wise metrics of one predicted mask against its reference (paths or Images): a row with
    :data:`CASE_COLUMNS`.

    ``label`` / ``ref_label`` pick the lesion label of a multi-label or region image (None: every non-zero
    voxel of the reference; a prediction with several labels needs ``label``). Both must be on one grid. Raises
    :class:`InputError` naming the file for 4-D images, NaN, non-integer or negative values, or a grid mismatch.
    """
    return evaluate_lesion_case_detail(
        pred, ref, case=case, label=label, ref_label=ref_label, match=match, connectivity=connectivity
    )[0]


def summary_row(rows: Iterable[Mapping]) -> dict:
    """The ``case = ALL`` row: counts and volumes summed over cases, rates (lesion and voxel) and Dice from the
    sums; surface distances are not poolable (NaN)."""
    rows = list(rows)
    counts = sum_counts(rows)
    vol = {k: float(sum(r[k] for r in rows)) for k in VOLUME_KEYS}
    vox = {k: vol[k] for k in ("ref_volume_mm3", "pred_volume_mm3", "intersection_mm3", "image_volume_mm3")}
    matches = {r["match"] for r in rows}
    conns = {r["connectivity"] for r in rows}
    tolerances = {r.get("nsd_tolerance_mm") for r in rows}
    return {
        "case": SUMMARY_CASE,
        "match": matches.pop() if len(matches) == 1 else "",
        "connectivity": conns.pop() if len(conns) == 1 else "",
        **counts,
        **lesion_scores(counts),
        **voxel_rates(*vox.values()),  # mm³ ratios equal voxel ratios on any one grid; pooled across grids by volume
        **dict.fromkeys(SURFACE_KEYS, float("nan")),
        "nsd_tolerance_mm": tolerances.pop() if len(tolerances) == 1 else float("nan"),
        **vol,
    }


def mean_sd_rows(rows: Sequence[Mapping]) -> list[dict]:
    """The ``MEAN``, ``SD`` (sample, n − 1) and ``N`` (cases used) rows of every :data:`AVERAGED_KEYS` column over
    the per-case ``rows``, NaN values skipped (a column with one usable case has SD NaN)."""
    import pandas as pd

    frame = pd.DataFrame(list(rows), columns=CASE_COLUMNS)[AVERAGED_KEYS].astype(float)
    first = rows[0] if rows else {}
    fixed = {k: first.get(k, "") for k in ("match", "connectivity", "nsd_tolerance_mm")}
    mean = {"case": MEAN_CASE, **fixed, **frame.mean(skipna=True).to_dict()}
    sd = {"case": SD_CASE, **fixed, **frame.std(ddof=1, skipna=True).to_dict()}
    n = {"case": N_CASE, **fixed, **frame.count().astype(int).to_dict()}
    return [mean, sd, n]


def summary_rows(rows: Sequence[Mapping]) -> list[dict]:
    """``ALL`` (pooled), ``MEAN``, ``SD`` and ``N`` rows of the per-case ``rows``."""
    return [summary_row(rows), *mean_sd_rows(rows)]


def cases_csv(rows: Sequence[Mapping]) -> str:
    """The CSV text of case and summary rows (:data:`CASE_COLUMNS`, then ``subject`` and ``session``): counts stay
    integers in the case and ``ALL`` rows (``8``, not ``8.0``) while the ``MEAN`` and ``SD`` rows hold their fractions
    in the same columns."""
    import pandas as pd

    from nnunet_spine.core.bids import with_subject_columns

    table = pd.DataFrame(list(rows), columns=CASE_COLUMNS, dtype=object)
    return with_subject_columns(table, "case").to_csv(index=False)


# --------------------------------------------------------------------------------------------- detection by size
def parse_size_edges(text: str) -> tuple[float, ...]:
    """``"20,100"`` → ``(20.0, 100.0)``: increasing, positive bin edges (mm³); raises :class:`InputError`."""
    try:
        edges = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise InputError(f"--by-size-mm3 {text!r}: expected increasing volumes in mm³, e.g. 20,100") from None
    if not edges or any(e <= 0 for e in edges) or any(b <= a for a, b in zip(edges, edges[1:])):
        raise InputError(f"--by-size-mm3 {text!r}: expected increasing positive volumes in mm³, e.g. 20,100")
    return edges


def size_bin_names(edges: Sequence[float]) -> list[str]:
    """Bin names of ``edges`` (mm³): ``<20``, ``20-100``, ``>=100`` for ``(20, 100)``."""
    e = [f"{v:g}" for v in edges]
    return [f"<{e[0]}", *(f"{a}-{b}" for a, b in zip(e, e[1:])), f">={e[-1]}"]


def detection_by_size(lesion_rows: Iterable[Mapping], edges: Sequence[float]) -> list[dict]:
    """Lesion-wise detection by reference-lesion volume: one row per bin (:data:`BY_SIZE_COLUMNS`) from the
    per-lesion rows (:data:`PER_LESION_COLUMNS`) of any number of cases. A lesion of volume v is in bin i when
    ``edges[i-1] <= v < edges[i]``; ``lesion_sensitivity`` is NaN for an empty bin."""
    names = size_bin_names(edges)
    total = np.zeros(len(names), int)
    found = np.zeros(len(names), int)
    for row in lesion_rows:
        i = int(np.searchsorted(np.asarray(edges, float), float(row["ref_volume_mm3"]), side="right"))
        total[i] += 1
        found[i] += bool(row["detected"])
    return [
        {
            "size_bin": name,
            "ref_lesions": int(n),
            "detected": int(d),
            "lesion_sensitivity": d / n if n else float("nan"),
        }
        for name, n, d in zip(names, total, found)
    ]


# --------------------------------------------------------------------------------------------- files and folders
#: Mask suffixes stripped from lesion file names to recover the case (image stem), longest first.
LESION_MASK_SUFFIXES = ("_label-lesion_seg", "_seg")
#: How a case's reference is looked up under a reference folder, in this order: ``<case><suffix>.nii[.gz]``.
REFERENCE_SUFFIXES = ("_label-lesion_seg", "", "_seg")


def pair_cases(pred, ref, suffixes=REFERENCE_SUFFIXES, what: str = "reference") -> list[tuple]:
    """``[(case, pred_path, ref_path)]`` of lesion masks, matched by case name
    (:func:`nnunet_spine.core.bids.pair_cases` with the lesion mask suffixes)."""
    from nnunet_spine.core.bids import pair_cases as pair

    check_image_file(pred, "--pred")
    return pair(pred, ref, pred_suffixes=LESION_MASK_SUFFIXES, ref_suffixes=suffixes, what=what)


def check_image_file(path, option: str) -> None:
    """Refuse a prediction that is an existing file with no image ending (``notes.txt``), naming that file and
    ``option``, before its case name is looked up among the references or cord masks (which would blame them)."""
    from pathlib import Path

    from nnunet_spine.core.io import IMAGE_SUFFIXES, split_suffix

    p = Path(path)
    if p.is_file() and not p.name.lower().endswith(IMAGE_SUFFIXES):
        ending = split_suffix(p)[1] or "without ending"
        raise InputError(f"{p}: not an image (unsupported file type {ending!r}; {option} expects a mask or a folder)")


def evaluate_lesions(
    pred,
    ref,
    *,
    label: int | None = None,
    ref_label: int | None = None,
    match: str | MatchRule = DEFAULT_MATCH,
    connectivity: int = DEFAULT_CONNECTIVITY,
    nsd_tolerance_mm: float = DEFAULT_NSD_TOLERANCE_MM,
    all_foreground: bool = False,
    progress: bool = False,
) -> tuple[list[dict], list[dict]]:
    """Evaluate a predicted mask or folder against a reference mask or folder (cases matched by name, see
    :func:`pair_cases`). Returns ``(case rows + the ALL, MEAN, SD and N rows, per-lesion rows)``.

    A prediction with several labels needs ``label``, or ``all_foreground`` to score every non-zero voxel.

    Every pair is found before any voxel is read; the first bad input raises :class:`InputError` (nothing is
    returned), and so does a ``label`` / ``ref_label`` that no mask of the run contains (an empty mask is valid).
    """
    from tqdm.auto import tqdm

    rule = MatchRule.of(match)
    check_connectivity(connectivity)
    pairs = pair_cases(pred, ref)
    rows, lesions = [], []
    seen_pred: set[int] = set()
    seen_ref: set[int] = set()
    for case, p_path, r_path in tqdm(pairs, desc="evaluate lesions", unit="case", disable=not progress):
        p, r = _load_pair(p_path, r_path, label, ref_label, single_label=not all_foreground)
        seen_pred.update(p.meta["labels"])
        seen_ref.update(r.meta["labels"])
        row, per = _evaluate_loaded(
            p, r, case=case, match=rule, connectivity=connectivity, nsd_tolerance_mm=nsd_tolerance_mm
        )
        rows.append(row)
        lesions.extend(per)
    _check_label_present(label, seen_pred, "--label", pred)
    _check_label_present(ref_label, seen_ref, "--ref-label", ref)
    return rows + summary_rows(rows), lesions


def _check_label_present(label: int | None, seen: set[int], option: str, where) -> None:
    if label is not None and seen and label not in seen:
        raise InputError(f"{where}: no voxel has label {label} ({option}; labels present: {sorted(seen)})")
