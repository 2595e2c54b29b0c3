"""Lesion-wise metrics: the one implementation of lesion components and lesion matching.

Used by ``nnspine evaluate lesions``, ``nnspine lesions``, the lesion trainer's validation metrics and the
lesion phantom's truth, so a "lesion", a "detected lesion" and a "false positive" mean the same everywhere.

Definitions
-----------
Lesion
    A connected component of a binary mask (cc3d), 26-connectivity by default (:data:`DEFAULT_CONNECTIVITY`;
    6 = faces, 18 = faces + edges, 26 = faces + edges + corners). 2-D arrays are treated as one slice
    (a trailing axis of length 1), so 6 → 4-connectivity and 18/26 → 8-connectivity in the plane.
Matching rule ``overlap`` (Spinal Cord Toolbox lesion evaluation, ATLAS challenge; the default)
    A reference lesion is detected (TP) when at least :data:`OVERLAP_MIN_FRACTION` (10 %) of its volume is
    covered by the prediction (any predicted voxel, whatever its component); otherwise it is missed (FN).
    A predicted lesion is a false positive when it touches no reference lesion, "touch" meaning that it
    shares at least one voxel with the reference mask.
Matching rule ``iou`` (panoptica)
    One-to-one matching of components whose intersection over union is > :data:`IOU_THRESHOLD` (0.5).
    Above 0.5 a component can have at most one partner, so the matching is unique (it is still done
    greedily by decreasing IoU). TP = matched pairs, FN = unmatched reference lesions, FP = unmatched
    predicted lesions.
Counts (:func:`lesion_counts`)
    ``ref_lesions``, ``pred_lesions``, ``tp`` (detected reference lesions), ``fn = ref_lesions − tp``,
    ``fp`` (predicted lesions that are false positives). Plain integers: counts of several cases add up
    (:func:`sum_counts`).
Scores (:func:`lesion_scores`)
    sensitivity = tp / ref_lesions, precision = (pred_lesions − fp) / pred_lesions, F1 = harmonic mean of
    the two. Defined values, never NaN: both empty → 1, 1, 1; reference empty, prediction not →
    sensitivity 1, precision 0, F1 0; prediction empty, reference not → 0, 0, 0. Computed from summed
    counts for a group of cases (rates from the sums, not the mean of per-case rates).
Per-lesion detail (:func:`match_lesions`)
    Each reference lesion's partners are the predicted lesions matched to it: under ``iou`` its IoU
    partner; under ``overlap``, when detected, every predicted lesion that overlaps it (a predicted lesion
    overlapping two reference lesions is a partner of both). Its Dice is computed against the union of its
    partners (0 when it has none), its volume error is partners' volume − its volume (mm³).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from nnunet_extensions.core.io import InputError

#: Connectivity of lesion components unless told otherwise (faces, edges and corners).
DEFAULT_CONNECTIVITY = 26
#: Connectivities accepted for 3-D lesion components.
CONNECTIVITIES = (6, 18, 26)
#: Matching rules, by the name written into output tables.
MATCH_RULES = ("overlap", "iou")
#: The default matching rule.
DEFAULT_MATCH = "overlap"
#: ``overlap`` rule: fraction of a reference lesion's volume the prediction must cover to detect it.
OVERLAP_MIN_FRACTION = 0.10
#: ``iou`` rule: a pair of components matches when its IoU is strictly above this.
IOU_THRESHOLD = 0.5
#: Keys of a counts dictionary, in table order.
COUNT_KEYS = ("ref_lesions", "pred_lesions", "tp", "fp", "fn")
#: Keys of a scores dictionary, in table order.
SCORE_KEYS = ("lesion_sensitivity", "lesion_precision", "lesion_f1")


# --------------------------------------------------------------------------------------------- checks
def check_connectivity(connectivity: int) -> int:
    """Return ``connectivity`` as int, or raise :class:`InputError` if it is not 6, 18 or 26."""
    if int(connectivity) not in CONNECTIVITIES:
        raise InputError(f"connectivity {connectivity}: expected one of {', '.join(map(str, CONNECTIVITIES))}")
    return int(connectivity)


def check_match(match: str) -> str:
    """Return ``match``, or raise :class:`InputError` if it is not a known matching rule."""
    if match not in MATCH_RULES:
        raise InputError(f"matching rule {match!r}: expected one of {', '.join(MATCH_RULES)}")
    return match


def as_binary(mask: np.ndarray, name: str = "<array>") -> np.ndarray:
    """A 2-D or 3-D binary mask (bool, or numbers that are all 0 or 1) as a 3-D ``bool`` array.

    2-D masks get a trailing axis of length 1. Raises :class:`InputError` naming ``name`` for another
    dimensionality, NaN / infinite values or values other than 0 and 1.
    """
    a = np.asarray(mask)
    if a.ndim not in (2, 3):
        raise InputError(f"{name}: expected a 2-D or 3-D mask, got {a.ndim}-D with shape {a.shape}")
    if a.dtype != bool:
        if a.dtype.kind not in "biuf":
            raise InputError(f"{name}: unsupported voxel type {a.dtype}")
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            raise InputError(f"{name}: contains {int((~np.isfinite(a)).sum())} NaN or infinite voxel(s)")
        bad = (a != 0) & (a != 1)
        if bad.any():
            raise InputError(
                f"{name}: expected a binary mask (0/1), found values such as {np.unique(a[bad])[:5].tolist()}"
            )
        a = a != 0
    return a[..., None] if a.ndim == 2 else a


def _check_pair(ref: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r, p = as_binary(ref, "reference"), as_binary(pred, "prediction")
    if r.shape != p.shape:
        raise InputError(f"prediction: shape {np.shape(pred)} differs from the reference {np.shape(ref)}")
    return r, p


# --------------------------------------------------------------------------------------------- components
def label_lesions(mask: np.ndarray, connectivity: int = DEFAULT_CONNECTIVITY) -> tuple[np.ndarray, int]:
    """Connected components of a binary mask: ``(labels, n)`` with lesions numbered 1..n (cc3d order, i.e.
    by first voxel in memory order) and 0 for background; ``labels`` has the mask's shape (uint32)."""
    import cc3d

    conn = check_connectivity(connectivity)
    a = np.asarray(mask)
    b = as_binary(a, "mask")
    labels, n = cc3d.connected_components(b.view(np.uint8), connectivity=conn, return_N=True, out_dtype=np.uint32)
    return labels.reshape(a.shape), int(n)


@dataclass
class LesionMatch:
    """Components of a reference and a predicted mask and how they match (see the module docstring).

    Arrays indexed by lesion id − 1. Volumes are in voxels; multiply by the voxel volume for mm³.
    """

    match: str
    connectivity: int
    ref_labels: np.ndarray  #: reference lesion ids (0 = background), the input's shape (3-D)
    pred_labels: np.ndarray  #: predicted lesion ids
    ref_voxels: np.ndarray  #: (n_ref,) voxels per reference lesion
    pred_voxels: np.ndarray  #: (n_pred,) voxels per predicted lesion
    pair_ref: np.ndarray  #: ids of overlapping (reference, predicted) pairs ...
    pair_pred: np.ndarray
    pair_voxels: np.ndarray  #: ... and their intersection in voxels
    ref_covered: np.ndarray  #: (n_ref,) voxels of each reference lesion inside the predicted mask
    detected: np.ndarray  #: (n_ref,) bool, reference lesion is a TP
    pred_fp: np.ndarray  #: (n_pred,) bool, predicted lesion is a false positive
    partners: list  #: per reference lesion, the ids (int array) of its partner predicted lesions

    @property
    def n_ref(self) -> int:
        return int(len(self.ref_voxels))

    @property
    def n_pred(self) -> int:
        return int(len(self.pred_voxels))

    def counts(self) -> dict[str, int]:
        """``ref_lesions, pred_lesions, tp, fp, fn`` (ints)."""
        tp = int(self.detected.sum())
        return {
            "ref_lesions": self.n_ref,
            "pred_lesions": self.n_pred,
            "tp": tp,
            "fp": int(self.pred_fp.sum()),
            "fn": self.n_ref - tp,
        }

    def per_lesion(self, voxel_mm3: float = 1.0) -> list[dict]:
        """One dictionary per reference lesion (id order): ``ref_lesion, detected, matched_pred`` (ids
        joined by ``;``), ``coverage`` (fraction of its volume inside the predicted mask), ``iou`` and
        ``dice`` against the union of its partners, ``ref_volume_mm3``, ``pred_volume_mm3`` (partners),
        ``volume_error_mm3`` (pred − ref)."""
        inter_of = {}
        for r, p, v in zip(self.pair_ref.tolist(), self.pair_pred.tolist(), self.pair_voxels.tolist()):
            inter_of[(r, p)] = v
        rows = []
        for i in range(self.n_ref):
            partners = [int(p) for p in self.partners[i]]
            ref_v = int(self.ref_voxels[i])
            pred_v = int(sum(int(self.pred_voxels[p - 1]) for p in partners))
            inter = int(sum(inter_of.get((i + 1, p), 0) for p in partners))
            union = ref_v + pred_v - inter
            rows.append(
                {
                    "ref_lesion": i + 1,
                    "detected": bool(self.detected[i]),
                    "matched_pred": ";".join(map(str, partners)),
                    "coverage": float(self.ref_covered[i]) / ref_v,
                    "iou": inter / union if union else 0.0,
                    "dice": 2.0 * inter / (ref_v + pred_v) if ref_v + pred_v else 0.0,
                    "ref_volume_mm3": ref_v * voxel_mm3,
                    "pred_volume_mm3": pred_v * voxel_mm3,
                    "volume_error_mm3": (pred_v - ref_v) * voxel_mm3,
                }
            )
        return rows


def _memory_order(a: np.ndarray) -> str:
    """``"F"`` for a Fortran-ordered array (nibabel's), else ``"C"``."""
    return "F" if a.flags.f_contiguous and not a.flags.c_contiguous else "C"


def _flat(a: np.ndarray, order: str) -> np.ndarray:
    """1-D view of ``a`` in memory order ``order`` (a copy only when ``a`` is not laid out that way)."""
    return np.asarray(a, order=order).ravel(order=order)


def lesion_voxels(labels: np.ndarray, n: int) -> list[np.ndarray]:
    """Voxel indices (N×3 ints) of each lesion 1..n of a label map, read from its foreground voxels only
    (fast on large, sparse images)."""
    order = _memory_order(labels)
    flat = _flat(labels, order)
    fg = np.flatnonzero(flat)
    values = flat[fg]
    sort = np.argsort(values, kind="stable")
    coords = np.stack(np.unravel_index(fg[sort], labels.shape, order=order), axis=1)
    counts = np.bincount(values, minlength=n + 1)[1:]
    return np.split(coords, np.cumsum(counts)[:-1]) if n else []


def _sparse_volumes(flat_labels: np.ndarray, fg: np.ndarray, n: int) -> np.ndarray:
    """Voxels per lesion 1..n from the label values at the foreground positions ``fg``."""
    return np.bincount(flat_labels[fg], minlength=n + 1)[1:].astype(np.int64)


def match_lesions(
    ref: np.ndarray,
    pred: np.ndarray,
    *,
    connectivity: int = DEFAULT_CONNECTIVITY,
    match: str = DEFAULT_MATCH,
) -> LesionMatch:
    """Label both binary masks (same shape, 2-D or 3-D) and match their lesions by rule ``match``.

    Raises :class:`InputError` for masks that are not binary, not 2-/3-D or of different shapes.
    """
    check_match(match)
    conn = check_connectivity(connectivity)
    r, p = _check_pair(ref, pred)
    order = _memory_order(r)
    r, p = np.asarray(r, order=order), np.asarray(p, order=order)
    lr, nr = label_lesions(r, conn)
    lp, npr = label_lesions(p, conn)
    fr, fp_, flr, flp = _flat(r, order), _flat(p, order), _flat(lr, order), _flat(lp, order)
    ref_vox = _sparse_volumes(flr, np.flatnonzero(fr), nr)
    pred_vox = _sparse_volumes(flp, np.flatnonzero(fp_), npr)
    both = np.flatnonzero(fr & fp_)
    if both.size:
        keys = flr[both].astype(np.int64) * (npr + 1) + flp[both]
        uniq, inter = np.unique(keys, return_counts=True)
        pair_ref, pair_pred = (uniq // (npr + 1)).astype(np.int64), (uniq % (npr + 1)).astype(np.int64)
    else:
        pair_ref = pair_pred = inter = np.zeros(0, np.int64)
    covered = np.bincount(pair_ref, weights=inter, minlength=nr + 1)[1:].astype(np.int64)
    touched = np.zeros(npr, bool)
    touched[pair_pred - 1] = True
    partners: list[np.ndarray] = [np.zeros(0, np.int64) for _ in range(nr)]
    if match == "overlap":
        detected = covered >= np.ceil(OVERLAP_MIN_FRACTION * ref_vox - 1e-9)  # ≥ 10 % of its voxels
        pred_fp = ~touched
        for a, b in zip(pair_ref.tolist(), pair_pred.tolist()):
            if detected[a - 1]:
                partners[a - 1] = np.append(partners[a - 1], b)
    else:
        iou = inter / (ref_vox[pair_ref - 1] + pred_vox[pair_pred - 1] - inter) if inter.size else np.zeros(0)
        detected, matched_pred = np.zeros(nr, bool), np.zeros(npr, bool)
        for k in np.argsort(-iou, kind="stable"):
            a, b = int(pair_ref[k]), int(pair_pred[k])
            if iou[k] <= IOU_THRESHOLD:
                break
            if not detected[a - 1] and not matched_pred[b - 1]:
                detected[a - 1] = matched_pred[b - 1] = True
                partners[a - 1] = np.array([b], np.int64)
        pred_fp = ~matched_pred
    return LesionMatch(
        match,
        conn,
        lr,
        lp,
        ref_vox,
        pred_vox,
        pair_ref,
        pair_pred,
        inter.astype(np.int64),
        covered,
        np.asarray(detected, bool),
        np.asarray(pred_fp, bool),
        partners,
    )


def lesion_counts(
    ref: np.ndarray,
    pred: np.ndarray,
    *,
    connectivity: int = DEFAULT_CONNECTIVITY,
    match: str = DEFAULT_MATCH,
) -> dict[str, int]:
    """Lesion-wise counts ``ref_lesions, pred_lesions, tp, fp, fn`` of two binary masks of the same shape
    (2-D or 3-D; bool or 0/1), under matching rule ``match`` (``overlap`` or ``iou``, see the module
    docstring). Raises :class:`InputError` for bad masks."""
    return match_lesions(ref, pred, connectivity=connectivity, match=match).counts()


def sum_counts(counts: Iterable[Mapping]) -> dict[str, int]:
    """Counts of several cases added key by key (``ref_lesions, pred_lesions, tp, fp, fn``)."""
    total = dict.fromkeys(COUNT_KEYS, 0)
    for c in counts:
        for k in COUNT_KEYS:
            total[k] += int(c[k])
    return total


def lesion_scores(counts: Mapping) -> dict[str, float]:
    """``lesion_sensitivity, lesion_precision, lesion_f1`` from counts (one case's or summed).

    sensitivity = tp / ref_lesions, precision = (pred_lesions − fp) / pred_lesions, F1 = their harmonic
    mean (0 when both are 0). Empty cases are defined (never NaN): both empty → 1, 1, 1; reference empty,
    prediction not → 1, 0, 0; prediction empty, reference not → 0, 0, 0.
    """
    n_ref, n_pred = int(counts["ref_lesions"]), int(counts["pred_lesions"])
    tp, fp = int(counts["tp"]), int(counts["fp"])
    if n_ref == 0 and n_pred == 0:
        return {"lesion_sensitivity": 1.0, "lesion_precision": 1.0, "lesion_f1": 1.0}
    sens = tp / n_ref if n_ref else 1.0
    prec = (n_pred - fp) / n_pred if n_pred else 0.0
    if n_ref == 0:
        prec = 0.0
    f1 = 2 * sens * prec / (sens + prec) if sens + prec > 0 else 0.0
    return {"lesion_sensitivity": float(sens), "lesion_precision": float(prec), "lesion_f1": float(f1)}


def dice(ref: np.ndarray, pred: np.ndarray) -> float:
    """Voxel Dice 2|R∩P| / (|R| + |P|) of two binary masks; 1.0 when both are empty (defined, never NaN)."""
    r, p = _check_pair(ref, pred)
    s = int(r.sum()) + int(p.sum())
    return 2.0 * int(np.count_nonzero(r & p)) / s if s else 1.0


# --------------------------------------------------------------------------------------------- geometry
def voxel_volume_mm3(affine: np.ndarray) -> float:
    """Volume of one voxel (mm³): ``|det|`` of the affine's 3×3 part (any voxel size, any orientation)."""
    return float(abs(np.linalg.det(np.asarray(affine, float)[:3, :3])))


def si_order(centroids_vox: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Order (indices into ``centroids_vox``, N×3 voxel coordinates) from superior to inferior by the
    world S coordinate (RAS z, mm) of each centroid; ties keep their input order. The one lesion
    numbering rule: lesion 1 is the most superior."""
    c = np.asarray(centroids_vox, float).reshape(-1, 3)
    z = c @ np.asarray(affine, float)[2, :3] + float(np.asarray(affine, float)[2, 3])
    return np.argsort(-z, kind="stable")


# --------------------------------------------------------------------------------------------- case tables
#: Columns of ``nnspine evaluate lesions`` (one row per case, then ``case = ALL``). Volumes in mm³.
CASE_COLUMNS = [
    "case",
    "match",
    "connectivity",
    *COUNT_KEYS,
    *SCORE_KEYS,
    "dice",
    "ref_volume_mm3",
    "pred_volume_mm3",
    "intersection_mm3",
    "volume_error_mm3",
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
#: ``case`` value of the summary row.
SUMMARY_CASE = "ALL"


def select_label(data: np.ndarray, label: int | None = None) -> np.ndarray:
    """The lesion mask (bool) of a label image: ``data == label``, or every non-zero voxel when ``label``
    is None (binary masks, or all foreground of a multi-label / region prediction)."""
    return np.asarray(data) != 0 if label is None else np.asarray(data) == label


def load_lesion_mask(source, label: int | None = None):
    """Read (path) or take (:class:`~nnunet_extensions.core.io.Image`) a lesion mask or label image and return an
    Image whose data is the bool mask of ``label`` (all foreground when None). Checks: 3-D, finite,
    non-negative integer values; raises :class:`InputError` naming the file."""
    from nnunet_extensions.core.io import Image, check_3d, check_values, load_image

    img = check_values(check_3d(source), "labels") if isinstance(source, Image) else load_image(source, "labels")
    return Image(data=select_label(img.data, label), affine=img.affine, path=img.path, meta=img.meta)


def evaluate_lesion_arrays(
    ref: np.ndarray,
    pred: np.ndarray,
    affine: np.ndarray,
    *,
    case: str = "",
    match: str = DEFAULT_MATCH,
    connectivity: int = DEFAULT_CONNECTIVITY,
    per_lesion: bool = False,
) -> tuple[dict, list[dict]]:
    """One case's row (:data:`CASE_COLUMNS`) from two binary masks on one grid (``affine``: voxel → RAS mm),
    and, with ``per_lesion``, its reference lesions' rows (:data:`PER_LESION_COLUMNS`, superior first).

    ``dice`` is the voxel Dice of the two masks (1 when both are empty); volumes in mm³,
    ``volume_error_mm3 = pred − ref``.
    """
    m = match_lesions(ref, pred, connectivity=connectivity, match=match)
    vox = voxel_volume_mm3(affine)
    counts = m.counts()
    ref_v, pred_v, inter = int(m.ref_voxels.sum()), int(m.pred_voxels.sum()), int(m.pair_voxels.sum())
    row = {
        "case": case,
        "match": match,
        "connectivity": m.connectivity,
        **counts,
        **lesion_scores(counts),
        "dice": 2.0 * inter / (ref_v + pred_v) if ref_v + pred_v else 1.0,
        "ref_volume_mm3": ref_v * vox,
        "pred_volume_mm3": pred_v * vox,
        "intersection_mm3": inter * vox,
        "volume_error_mm3": (pred_v - ref_v) * vox,
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
    match: str = DEFAULT_MATCH,
    connectivity: int = DEFAULT_CONNECTIVITY,
) -> tuple[dict, list[dict]]:
    """:func:`evaluate_lesion_case` plus the per-lesion rows of its reference lesions."""
    from nnunet_extensions.core.io import check_same_grid

    check_match(match)
    check_connectivity(connectivity)
    r = load_lesion_mask(ref, ref_label)
    p = load_lesion_mask(pred, label)
    check_same_grid(r, p)
    return evaluate_lesion_arrays(
        r.data,
        p.data,
        r.affine,
        case=case if case is not None else p.name,
        match=match,
        connectivity=connectivity,
        per_lesion=True,
    )


def evaluate_lesion_case(
    pred,
    ref,
    *,
    case: str | None = None,
    label: int | None = None,
    ref_label: int | None = None,
    match: str = DEFAULT_MATCH,
    connectivity: int = DEFAULT_CONNECTIVITY,
) -> dict:
    """Lesion-wise metrics of one predicted mask against its reference (paths or Images): a row with
    :data:`CASE_COLUMNS`.

    ``label`` / ``ref_label`` pick the lesion label of a multi-label or region image (None: every non-zero
    voxel). Both must be on one grid. Raises :class:`InputError` naming the file for 4-D images, NaN,
    non-integer or negative values, or a grid mismatch.
    """
    return evaluate_lesion_case_detail(
        pred, ref, case=case, label=label, ref_label=ref_label, match=match, connectivity=connectivity
    )[0]


def summary_row(rows: Iterable[Mapping]) -> dict:
    """The ``case = ALL`` row: counts and volumes summed over cases, rates (sensitivity, precision, F1) and
    Dice (2 Σ intersection / (Σ ref + Σ pred)) computed from the sums."""
    rows = list(rows)
    counts = sum_counts(rows)
    vol = {k: float(sum(r[k] for r in rows)) for k in ("ref_volume_mm3", "pred_volume_mm3", "intersection_mm3")}
    both = vol["ref_volume_mm3"] + vol["pred_volume_mm3"]
    matches = {r["match"] for r in rows}
    conns = {r["connectivity"] for r in rows}
    return {
        "case": SUMMARY_CASE,
        "match": matches.pop() if len(matches) == 1 else "",
        "connectivity": conns.pop() if len(conns) == 1 else "",
        **counts,
        **lesion_scores(counts),
        "dice": 2.0 * vol["intersection_mm3"] / both if both else 1.0,
        **vol,
        "volume_error_mm3": vol["pred_volume_mm3"] - vol["ref_volume_mm3"],
    }


# --------------------------------------------------------------------------------------------- files and folders
#: Mask suffixes stripped from lesion file names to recover the case (image stem), longest first.
LESION_MASK_SUFFIXES = ("_label-lesion_seg", "_seg")
#: How a case's reference is looked up under a reference folder, in this order: ``<case><suffix>.nii[.gz]``.
REFERENCE_SUFFIXES = ("_label-lesion_seg", "", "_seg")


def pair_cases(pred, ref, suffixes=REFERENCE_SUFFIXES, what: str = "reference") -> list[tuple]:
    """``[(case, pred_path, ref_path)]`` of lesion masks, matched by case name
    (:func:`nnunet_extensions.core.bids.pair_cases` with the lesion mask suffixes)."""
    from nnunet_extensions.core.bids import pair_cases as pair

    return pair(pred, ref, pred_suffixes=LESION_MASK_SUFFIXES, ref_suffixes=suffixes, what=what)


def evaluate_lesions(
    pred,
    ref,
    *,
    label: int | None = None,
    ref_label: int | None = None,
    match: str = DEFAULT_MATCH,
    connectivity: int = DEFAULT_CONNECTIVITY,
    progress: bool = False,
) -> tuple[list[dict], list[dict]]:
    """Evaluate a predicted mask or folder against a reference mask or folder (cases matched by name, see
    :func:`pair_cases`). Returns ``(case rows + the ALL row, per-lesion rows)``. Every pair is found before
    any voxel is read; the first bad input raises :class:`InputError` (nothing is returned)."""
    from tqdm.auto import tqdm

    check_match(match)
    check_connectivity(connectivity)
    pairs = pair_cases(pred, ref)
    rows, lesions = [], []
    for case, p, r in tqdm(pairs, desc="evaluate lesions", unit="case", disable=not progress):
        row, per = evaluate_lesion_case_detail(
            p, r, case=case, label=label, ref_label=ref_label, match=match, connectivity=connectivity
        )
        rows.append(row)
        lesions.extend(per)
    return rows + [summary_row(rows)], lesions
