"""Instance (panoptic) metrics of SPINEPS-format vertebra instance masks, and per-label Dice of semantic masks.

Instance masks hold the values of :mod:`nnunet_spine.core.labels`: vertebrae by VerSe id (1–25, T13 = 28,
coccyx 27), the sacrum 26, the disc below vertebra X as ``100 + X`` and its endplates as ``200 + X``.

Structure groups (:data:`GROUPS`), each evaluated on its own instances only:

* ``vertebra``: 1–25 and 28 (coccyx 27 only in ``all``);
* ``ivd``: 101–125 and 128 (the disc below T13); ``endplate``: 201–225 and 228; ``sacrum``: 26;
* ``all``: every instance.

Matching (:data:`MATCH_RULES`):

* ``label``: a reference and a predicted instance with the same value form a pair; the pair is a true
  positive when its IoU (``tp_metric="iou"``, the default, as panoptica's ``NaiveThresholdMatching`` whose
  published matched-instance example reproduces only with IoU) or Dice (``tp_metric="dsc"``) is ≥
  :data:`TP_THRESHOLD` (0.5);
* ``iou``: one-to-one matching of instances with IoU ≥ 0.5 (panoptica's default ``strict_threshold=False``),
  whatever their values, greedy by decreasing IoU (at exactly 0.5 an instance could have two partners).

Per group (Kirillov et al., panoptica): ``tp``; ``fp = pred_instances − tp``; ``fn = ref_instances − tp``;
``precision = tp / pred_instances``; ``recall = tp / ref_instances``; ``rq = tp / (tp + ½ fp + ½ fn)`` (F1 of
the matching); ``sq`` = mean IoU and ``sq_dsc`` = mean Dice over true positives; ``pq = sq · rq``;
``pq_dsc = sq_dsc · rq``; ``assd_mm`` = mean over true positives of the average symmetric surface distance
(surface = voxels of the mask that a face-connected erosion removes; Euclidean distances in mm from the
voxel size, the two directions averaged, as panoptica / medpy); ``global_dice`` = Dice of the union of the
group's reference instances with the union of its predicted ones. Undefined values are NaN (empty in the
CSV): precision without predicted, recall without reference instances, rq without either, sq / sq_dsc /
assd without true positives, global Dice when both unions are empty; pq and pq_dsc are 0 when rq is 0.

Semantic mode (:func:`semantic_dice`): per SPINEPS semantic label, reference and predicted volume (mm³) and
Dice (NaN when the label is in neither mask).

Summary rows (``case = ALL``): counts and volumes summed over cases, every other value the mean over cases
(NaN left out).

Labelling warning (``label`` matching, column :data:`LABELLING_WARNING`): a prediction written by ``nnspine
fuse`` has a sidecar (``<mask stem>.json``) saying whether its ids are anatomical VerSe ids and whether two
anchors verified them. Ids 1..n from the top compared by value with VerSe ids, or ids from one anchor (a
transitional column is one off), make the metrics of ``label`` matching meaningless or doubtful:
:func:`labelling_warning` says so per case (empty when the sidecar is absent or raises no doubt).

Bad input raises :class:`~nnunet_spine.core.io.InputError` naming the file: values outside the SPINEPS set
(with a hint when an instance mask was given where a semantic one is expected, or the reverse), masks on
different grids, missing files. Library functions never print.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from nnunet_spine.core.bids import SPINEPS_INSTANCE_SUFFIXES, SPINEPS_SEMANTIC_SUFFIXES
from nnunet_spine.core.io import Image, InputError, check_same_grid, load_image, voxel_sizes
from nnunet_spine.core.labels import (
    ACCEPTED_SEMANTIC_LABELS,
    SACRUM,
    SEMANTIC_LABELS,
    disc_instance,
    endplate_instance,
    instance_kind,
)

#: Matching rules, by the name written into the CSV.
MATCH_RULES = ("label", "iou")
#: Metrics that decide whether a same-label pair is a true positive (``label`` matching).
TP_METRICS = ("dsc", "iou")
#: A same-label pair is a true positive when its IoU (or Dice) is at least this; ``iou`` matching pairs
#: instances whose IoU is at least this.
TP_THRESHOLD = 0.5
#: Largest SPINEPS instance value (endplate of T13) + 1: the size of the per-value tables.
_N_VALUES = 256


def _is_instance(value: int) -> bool:
    """True for SPINEPS instance values (vertebrae 1–28, discs 101–128, endplates 201–228)."""
    try:
        instance_kind(value)
    except ValueError:
        return False
    return True


_VERTEBRAE = tuple(range(1, 26)) + (28,)
#: Structure group → instance values, in output order.
GROUPS: dict[str, tuple[int, ...]] = {
    "vertebra": _VERTEBRAE,
    "ivd": tuple(disc_instance(v) for v in _VERTEBRAE),
    "endplate": tuple(endplate_instance(v) for v in _VERTEBRAE),
    "sacrum": (SACRUM,),
    "all": tuple(v for v in range(1, _N_VALUES) if _is_instance(v)),
}
GROUP_NAMES = tuple(GROUPS)
#: Count columns (summed in the summary row).
COUNT_KEYS = ("ref_instances", "pred_instances", "tp", "fp", "fn")
#: Columns of ``nnspine evaluate instances``.
INSTANCE_COLUMNS = [
    "case",
    "structure",
    "match",
    *COUNT_KEYS,
    "precision",
    "recall",
    "rq",
    "sq",
    "sq_dsc",
    "pq",
    "pq_dsc",
    "assd_mm",
    "global_dice",
    "pred_labelling_warning",
]
#: Column of :data:`INSTANCE_COLUMNS` with :func:`labelling_warning` (``label`` matching; empty otherwise).
LABELLING_WARNING = "pred_labelling_warning"
#: Columns of ``nnspine evaluate instances --semantic``.
SEMANTIC_COLUMNS = ["case", "label", "structure", "ref_volume_mm3", "pred_volume_mm3", "dice"]
#: Value of ``case`` in the summary rows.
SUMMARY_CASE = "ALL"
#: Mask suffixes stripped from file names to recover the case (the image stem), and tried, in this order,
#: when looking a case's reference up in a folder.


# --------------------------------------------------------------------------------------------- checks
def _values(data: np.ndarray) -> list[int]:
    return [int(v) for v in np.unique(data) if v]


def looks_like(values: Iterable[int]) -> str | None:
    """``"instance"`` or ``"semantic"`` when every non-zero value fits only that SPINEPS mask kind,
    ``"both"`` when both (only the sacrum, 26), ``None`` when neither."""
    vals = [int(v) for v in values if v]
    inst = all(_is_instance(v) for v in vals)
    sem = all(v in ACCEPTED_SEMANTIC_LABELS for v in vals)
    return "both" if inst and sem else "instance" if inst else "semantic" if sem else None


def check_mask(img: Image, kind: str) -> np.ndarray:
    """Validate a SPINEPS mask of ``kind`` (``"instance"`` or ``"semantic"``); returns its labels as int32.

    Raises :class:`InputError` naming the file when values fall outside the SPINEPS set of that kind,
    saying when the mask looks like the other kind."""
    data = np.asarray(img.data)
    values = _values(data)
    seen = looks_like(values)
    if seen in (kind, "both"):
        return data.astype(np.int32, copy=False)
    allowed = (lambda v: _is_instance(v)) if kind == "instance" else (lambda v: v in ACCEPTED_SEMANTIC_LABELS)
    bad = [v for v in values if not allowed(v)]
    if seen is not None:  # a valid mask of the other kind
        other = "semantic" if kind == "instance" else "instance"
        what = "labels 41-49, 60-62, 100" if other == "semantic" else "vertebrae 1-28, discs 101-128, endplates 201-228"
        raise InputError(
            f"{img.name}: looks like a SPINEPS {other} mask ({what}), expected a{'n' if kind == 'instance' else ''} "
            f"{kind} mask (values such as {bad[:5]})"
        )
    expected = (
        "vertebrae 1-28, discs 101-128, endplates 201-228" if kind == "instance" else "41-49, 26, 60, 61, 62, 100"
    )
    raise InputError(f"{img.name}: values {bad[:5]} are not SPINEPS {kind} labels ({expected})")


def load_mask(path: str | os.PathLike, kind: str) -> tuple[np.ndarray, Image]:
    """Read a SPINEPS mask (integer labels) and validate it with :func:`check_mask`."""
    img = load_image(path, "labels")
    return check_mask(img, kind), img


# --------------------------------------------------------------------------------------------- geometry
def surface_distance_mm(
    ref: np.ndarray, pred: np.ndarray, spacing_mm: Sequence[float], box: tuple[slice, ...] | None = None
) -> float:
    """Average symmetric surface distance (mm) of two non-empty binary masks (2-D or 3-D).

    Surface: the voxels a face-connected erosion removes (the array edge counts as outside). The mean
    distance from the prediction's surface voxels to the nearest reference surface voxel and the reverse
    are averaged (panoptica / medpy's ``assd``). Computed on the masks' joint bounding box (``box`` when
    the caller knows it), padded by one background voxel."""
    from scipy import ndimage

    if box is None:
        box = ndimage.find_objects((ref | pred).astype(np.uint8))[0]
    r = np.pad(ref[box], 1)
    p = np.pad(pred[box], 1)
    structure = ndimage.generate_binary_structure(r.ndim, 1)
    r_surf = r ^ ndimage.binary_erosion(r, structure)
    p_surf = p ^ ndimage.binary_erosion(p, structure)
    spacing = [float(s) for s in spacing_mm]
    to_ref = ndimage.distance_transform_edt(~r_surf, sampling=spacing)[p_surf]
    to_pred = ndimage.distance_transform_edt(~p_surf, sampling=spacing)[r_surf]
    return float(0.5 * (to_ref.mean() + to_pred.mean()))


def _overlaps(ref: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[tuple[int, int], int]]:
    """Voxel counts of every reference and predicted value (tables of :data:`_N_VALUES`) and the
    intersection of every overlapping (reference, predicted) pair."""
    order = "F" if ref.flags.f_contiguous and pred.flags.f_contiguous else "C"  # no copy for NIfTI arrays
    r = ref.ravel(order)
    p = pred.ravel(order)
    ref_vol = np.bincount(r, minlength=_N_VALUES)
    pred_vol = np.bincount(p, minlength=_N_VALUES)
    both = (r > 0) & (p > 0)
    codes, counts = np.unique(r[both] * _N_VALUES + p[both], return_counts=True)
    inter = {(int(c) // _N_VALUES, int(c) % _N_VALUES): int(n) for c, n in zip(codes, counts)}
    return ref_vol, pred_vol, inter


def _nan_mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if len(values) else math.nan


# --------------------------------------------------------------------------------------------- metrics
def instance_metrics(
    ref: np.ndarray,
    pred: np.ndarray,
    spacing_mm: Sequence[float],
    *,
    match: str = "label",
    tp_metric: str = "iou",
    groups: Sequence[str] = GROUP_NAMES,
) -> list[dict]:
    """Panoptic metrics of a predicted instance mask against a reference (same shape, SPINEPS values),
    one dict per structure group (keys of :data:`INSTANCE_COLUMNS` but ``case``). ``spacing_mm``: voxel
    size per array axis (mm). See the module docstring for the definitions."""
    if match not in MATCH_RULES:
        raise ValueError(f"match must be one of {MATCH_RULES}, not {match!r}")
    if tp_metric not in TP_METRICS:
        raise ValueError(f"tp_metric must be one of {TP_METRICS}, not {tp_metric!r}")
    ref = np.asarray(ref).astype(np.int64, copy=False)
    pred = np.asarray(pred).astype(np.int64, copy=False)
    if ref.shape != pred.shape:
        raise ValueError(f"shapes differ: reference {ref.shape}, prediction {pred.shape}")
    from scipy import ndimage

    ref_vol, pred_vol, inter = _overlaps(ref, pred)
    ref_boxes = ndimage.find_objects(ref)  # bounding box of each value (index value - 1)
    pred_boxes = ndimage.find_objects(pred)
    surface_cache: dict[tuple[int, int], float] = {}

    def assd(a: int, b: int) -> float:
        if (a, b) not in surface_cache:
            ra, pb = ref_boxes[a - 1], pred_boxes[b - 1]
            box = tuple(slice(min(x.start, y.start), max(x.stop, y.stop)) for x, y in zip(ra, pb))
            surface_cache[(a, b)] = surface_distance_mm(ref[box] == a, pred[box] == b, spacing_mm)
        return surface_cache[(a, b)]

    rows = []
    for name in groups:
        members = set(GROUPS[name])
        refs = [v for v in members if ref_vol[v]]
        preds = [v for v in members if pred_vol[v]]
        candidates = []  # (ref value, pred value, intersection) of the group's overlapping pairs
        for (a, b), n in inter.items():
            if a in members and b in members:
                candidates.append((a, b, n))
        pairs = []  # true positives: (ref value, pred value, iou, dice)
        used_ref: set[int] = set()
        used_pred: set[int] = set()
        scored = [
            (a, b, n / (ref_vol[a] + pred_vol[b] - n), 2.0 * n / (ref_vol[a] + pred_vol[b])) for a, b, n in candidates
        ]
        for a, b, iou, dsc in sorted(scored, key=lambda c: -c[2]):  # greedy by decreasing IoU, one-to-one
            if match == "label":
                ok = a == b and (dsc if tp_metric == "dsc" else iou) >= TP_THRESHOLD
            else:
                ok = iou >= TP_THRESHOLD and a not in used_ref and b not in used_pred
            if ok:
                used_ref.add(a)
                used_pred.add(b)
                pairs.append((a, b, iou, dsc))
        tp = len(pairs)
        n_ref, n_pred = len(refs), len(preds)
        fp, fn = n_pred - tp, n_ref - tp
        rq = tp / (tp + 0.5 * fp + 0.5 * fn) if (n_ref or n_pred) else math.nan
        sq = _nan_mean([p[2] for p in pairs])
        sq_dsc = _nan_mean([p[3] for p in pairs])
        ref_total = int(sum(ref_vol[v] for v in refs))
        pred_total = int(sum(pred_vol[v] for v in preds))
        union_inter = sum(n for _, _, n in candidates)
        rows.append(
            {
                "structure": name,
                "match": match,
                "ref_instances": n_ref,
                "pred_instances": n_pred,
                "tp": tp,
                "fp": fp,
                "fn": fn,
                "precision": tp / n_pred if n_pred else math.nan,
                "recall": tp / n_ref if n_ref else math.nan,
                "rq": rq,
                "sq": sq,
                "sq_dsc": sq_dsc,
                "pq": 0.0 if rq == 0 else sq * rq,
                "pq_dsc": 0.0 if rq == 0 else sq_dsc * rq,
                "assd_mm": _nan_mean([assd(a, b) for a, b, _, _ in pairs]),
                "global_dice": 2.0 * union_inter / (ref_total + pred_total) if ref_total + pred_total else math.nan,
            }
        )
    return rows


def semantic_dice(ref: np.ndarray, pred: np.ndarray, voxel_mm3: float) -> list[dict]:
    """Per SPINEPS semantic label: reference and predicted volume (mm³) and Dice (NaN when the label is in
    neither mask); one dict per label of :data:`nnunet_spine.core.labels.SEMANTIC_LABELS`, in label order,
    and one per SPINEPS 2.x label (50-53) present in either mask."""
    ref = np.asarray(ref).astype(np.int64, copy=False)
    pred = np.asarray(pred).astype(np.int64, copy=False)
    if ref.shape != pred.shape:
        raise ValueError(f"shapes differ: reference {ref.shape}, prediction {pred.shape}")
    r, p = ref.ravel(), pred.ravel()
    ref_vol = np.bincount(r, minlength=_N_VALUES)
    pred_vol = np.bincount(p, minlength=_N_VALUES)
    same = np.bincount(r[r == p], minlength=_N_VALUES)
    rows = []
    extended = [v for v in ACCEPTED_SEMANTIC_LABELS if v not in SEMANTIC_LABELS and ref_vol[v] + pred_vol[v]]
    for label in sorted([*SEMANTIC_LABELS, *extended]):
        total = int(ref_vol[label] + pred_vol[label])
        rows.append(
            {
                "label": label,
                "structure": ACCEPTED_SEMANTIC_LABELS[label],
                "ref_volume_mm3": float(ref_vol[label]) * voxel_mm3,
                "pred_volume_mm3": float(pred_vol[label]) * voxel_mm3,
                "dice": 2.0 * int(same[label]) / total if total else math.nan,
            }
        )
    return rows


def summary_rows(rows: Sequence[Mapping], key: str) -> list[dict]:
    """``case = ALL`` rows, one per value of ``key`` (``structure`` or ``label``) in first-seen order:
    counts and volumes summed over cases, other numbers the mean over cases (NaN left out), text kept."""
    out = []
    for group in dict.fromkeys(r[key] for r in rows):
        members = [r for r in rows if r[key] == group]
        row: dict = {}
        for col, value in members[0].items():
            if col == "case":
                row[col] = SUMMARY_CASE
            elif col == LABELLING_WARNING:
                warned = sum(1 for m in members if m[col])
                row[col] = f"{warned} of {len(members)} case(s) warned" if warned else ""
            elif col == key or isinstance(value, str):
                row[col] = value
            elif col in COUNT_KEYS or col.endswith("_mm3"):
                row[col] = sum(m[col] for m in members)
            else:
                vals = [float(m[col]) for m in members if not math.isnan(float(m[col]))]
                row[col] = float(np.mean(vals)) if vals else math.nan
        out.append(row)
    return out


# --------------------------------------------------------------------------------------------- files
def _load_pair(pred_path, ref_path, kind: str) -> tuple[np.ndarray, np.ndarray, Image]:
    ref, ref_img = load_mask(ref_path, kind)
    pred, pred_img = load_mask(pred_path, kind)
    check_same_grid(ref_img, pred_img)
    return ref, pred, ref_img


def sidecar_path(mask_path: str | os.PathLike) -> Path:
    """The sidecar ``nnspine fuse`` writes beside an instance mask: ``X_seg-vert_msk.nii.gz`` →
    ``X_seg-vert_msk.json``."""
    from nnunet_spine.core.io import split_suffix

    return Path(mask_path).with_name(split_suffix(mask_path)[0] + ".json")


def labelling_warning(pred_path: str | os.PathLike) -> str:
    """Why the ids of a predicted instance mask should not be compared by value, from its sidecar
    (:func:`sidecar_path`): ids not anatomical (1..n from the top), or anatomical but not verified by two anchors
    (the sidecar's ``labelling.reason``), or a sidecar too old to say. Empty when there is no sidecar (SPINEPS'
    own outputs, hand-made masks) or it raises no doubt; a sidecar that cannot be read is said, not raised."""
    import json

    side = sidecar_path(pred_path)
    if not side.is_file():
        return ""
    try:
        content = json.loads(side.read_text())
    except (OSError, ValueError) as exc:
        return f"sidecar {side.name} unreadable ({exc}): labelling unknown"
    if not isinstance(content, dict) or "anatomically_labelled" not in content:
        return ""
    lab = content.get("labelling") if isinstance(content.get("labelling"), dict) else {}
    if not content["anatomically_labelled"]:
        how = lab.get("method", "not anatomically labelled")
        return f"ids are not anatomical ({how}): 1..n from the top compared by value with the reference's VerSe ids"
    if "verified" not in lab:
        return f"sidecar {side.name} does not say whether the ids were verified (written before nnspine checked it)"
    if not lab["verified"]:
        return f"ids not verified: {lab.get('reason', 'one anchor only')}"
    return ""


def evaluate_instance_case(
    pred_path, ref_path, *, case: str | None = None, match: str = "label", tp_metric: str = "iou"
) -> list[dict]:
    """:func:`instance_metrics` of two instance mask files (rows with ``case``; ASSD in mm) and, with ``label``
    matching, the prediction's :func:`labelling_warning` in :data:`LABELLING_WARNING`."""
    ref, pred, img = _load_pair(pred_path, ref_path, "instance")
    case = case if case is not None else _case(Path(pred_path), SPINEPS_INSTANCE_SUFFIXES)
    rows = instance_metrics(ref, pred, voxel_sizes(img.affine), match=match, tp_metric=tp_metric)
    warning = labelling_warning(pred_path) if match == "label" else ""
    return [{"case": case, **r, LABELLING_WARNING: warning} for r in rows]


def evaluate_semantic_case(pred_path, ref_path, *, case: str | None = None) -> list[dict]:
    """:func:`semantic_dice` of two semantic mask files (rows with ``case``)."""
    from nnunet_spine.core.lesion_matching import voxel_volume_mm3

    ref, pred, img = _load_pair(pred_path, ref_path, "semantic")
    case = case if case is not None else _case(Path(pred_path), SPINEPS_SEMANTIC_SUFFIXES)
    return [{"case": case, **r} for r in semantic_dice(ref, pred, voxel_volume_mm3(img.affine))]


def _case(path: Path, suffixes: Sequence[str]) -> str:
    from nnunet_spine.core.bids import case_name

    return case_name(path, suffixes)


def spineps_output_files(folder: Path, kind: str) -> list[Path] | None:
    """The masks of one kind in a SPINEPS output folder (one that holds both ``_seg-vert_msk`` instance and
    ``_seg-spine_msk`` semantic masks, as ``nnspine fuse`` and SPINEPS write); None for any other folder."""
    from nnunet_spine.core.bids import SPINEPS_INSTANCE_SEGS, SPINEPS_SEMANTIC_SEGS, list_nifti, spineps_seg

    files = list_nifti(folder)
    inst = [f for f in files if spineps_seg(f) in SPINEPS_INSTANCE_SEGS]
    sem = [f for f in files if spineps_seg(f) in SPINEPS_SEMANTIC_SEGS]
    if not inst or not sem:
        return None
    return inst if kind == "instance" else sem


def pair_files(pred, ref, suffixes: Sequence[str], kind: str = "instance") -> list[tuple[str, Path, Path]]:
    """``[(case, pred_path, ref_path)]``: :func:`nnunet_spine.core.bids.pair_cases` with references named
    ``<case>.nii[.gz]`` or ``<case><suffix>.nii[.gz]`` (case = the image's BIDS stem). A SPINEPS output folder
    as ``pred`` (instance and semantic masks side by side) gives its masks of ``kind`` only."""
    from nnunet_spine.core.bids import pair_cases

    return pair_cases(
        pred, ref, pred_suffixes=suffixes, ref_suffixes=("", *suffixes), select=lambda f: spineps_output_files(f, kind)
    )


def evaluate_instances(
    pred, ref, *, match: str = "label", tp_metric: str = "iou", progress: bool = False
) -> list[dict]:
    """Instance metrics of a prediction file or folder against a reference file or folder: rows per case
    and structure group, then the :func:`summary_rows`. Every file is read and checked before anything is
    returned; the first bad one raises :class:`InputError`."""
    from tqdm.auto import tqdm

    rows: list[dict] = []
    for case, p, r in tqdm(
        pair_files(pred, ref, SPINEPS_INSTANCE_SUFFIXES), desc="evaluate instances", unit="case", disable=not progress
    ):
        rows.extend(evaluate_instance_case(p, r, case=case, match=match, tp_metric=tp_metric))
    return rows + summary_rows(rows, "structure")


def evaluate_semantic(pred, ref, *, progress: bool = False) -> list[dict]:
    """Per-label Dice of semantic mask files or folders: rows per case and label, then the summary rows."""
    from tqdm.auto import tqdm

    rows: list[dict] = []
    for case, p, r in tqdm(
        pair_files(pred, ref, SPINEPS_SEMANTIC_SUFFIXES, "semantic"),
        desc="evaluate semantic",
        unit="case",
        disable=not progress,
    ):
        rows.extend(evaluate_semantic_case(p, r, case=case))
    return rows + summary_rows(rows, "label")


def qc_outputs(pred, ref, folder, *, semantic: bool = False, overwrite: bool = False) -> list[tuple[str, Path, Path]]:
    """``[(case, predicted mask, folder/<case>_qc.png)]`` for :func:`write_qc`, cases paired as by the metrics;
    every output path is checked (existing ones need ``overwrite``) before anything is computed or drawn."""
    from nnunet_spine.core.io import check_output, require_writable_folder

    suffixes = SPINEPS_SEMANTIC_SUFFIXES if semantic else SPINEPS_INSTANCE_SUFFIXES
    pairs = pair_files(pred, ref, suffixes, "semantic" if semantic else "instance")
    out_dir = require_writable_folder(folder, "QC folder")
    return [(case, p, check_output(out_dir / f"{case}_qc.png", overwrite)) for case, p, _ in pairs]


def write_qc(jobs: Sequence[tuple[str, Path, Path]], *, semantic: bool = False, overwrite: bool = False) -> list[Path]:
    """One sagittal QC snapshot per predicted mask (:func:`qc_outputs`' jobs): the semantic labels in SPINEPS'
    colours (:func:`nnunet_spine.postprocessing.qc.plot_spine_semantic`) or the vertebra instances with their VerSe
    names (:func:`nnunet_spine.postprocessing.qc.plot_vertebra_instances`)."""
    from nnunet_spine.core.io import load_image
    from nnunet_spine.core.labels import VERSE_NAMES
    from nnunet_spine.postprocessing.qc import plot_spine_semantic, plot_vertebra_instances

    for case, p, out in jobs:
        if semantic:
            plot_spine_semantic(p, out, title=f"{case} (prediction)", overwrite=overwrite)
        else:
            img = load_image(p, "labels")
            plot_vertebra_instances(
                img.data, img.affine, out, names=VERSE_NAMES, title=f"{case} (prediction)", overwrite=overwrite
            )
    return [out for _, _, out in jobs]
