"""Lesion components and lesion matching: the one implementation, used by ``nnspine evaluate lesions``, ``nnspine
lesions``, the lesion trainers' validation metrics and the lesion phantom's checks, so a "lesion", a "detected
lesion" and a "false positive" mean the same everywhere.

Lesion
    A connected component of a binary mask (cc3d), 26-connectivity by default (:data:`DEFAULT_CONNECTIVITY`;
    6 = faces, 18 = faces + edges — SCT's ``sct_analyze_lesion``, which labels with scikit-image's
    ``connectivity=2`` —, 26 = faces + edges + corners). 2-D arrays are one slice (a trailing axis of length 1).
    With ``min_lesion_mm3``, components smaller than that volume are dropped from both masks before counting
    (ANIMA's ``MinLesionVolume``).

Matching rules (:class:`MatchRule`; the name written into tables is :meth:`MatchRule.name`)
    ``overlap`` (ANIMA's detection, ``animaSegPerfAnalyzer``'s α = ``MinOverlapRatio``; the default)
        A reference lesion is detected (TP) when at least ``overlap_fraction`` (α, default
        :data:`OVERLAP_MIN_FRACTION` = 10 %) of its volume is covered by the prediction; otherwise it is missed
        (FN). A predicted lesion is a false positive when it touches no reference lesion. With ``fp_limits =
        (β, γ)`` (ANIMA's ``MaxFalsePositiveRatio`` 0.7 and ``MaxFalsePositiveRatioModerator`` 0.65) a
        detection also needs the predicted lesions that overlap it not to spread too far: a predicted lesion
        with more than β of its volume outside this reference lesion is "too big", and at least γ of the
        predicted lesions overlapping it must not be too big. (Our reading of those parameters' definitions;
        ANIMA itself is not called.)
    ``any`` (ATLAS, ISLES)
        A reference lesion is detected when any of its voxels is predicted; false positives as ``overlap``.
    ``iou`` (panoptica's ``NaiveThresholdMatching``, ``panoptica/instance_matcher.py``)
        One-to-one matching of components whose intersection over union is ≥ ``iou_threshold`` (default
        :data:`IOU_THRESHOLD` = 0.5, as panoptica's default ``strict_threshold=False``), or > it with ``strict``
        (Kirillov et al.'s panoptic quality). Greedy by decreasing IoU. TP = matched pairs, FN = unmatched
        reference lesions, FP = unmatched predicted lesions.

Counts and scores
    ``ref_lesions, pred_lesions, tp`` (detected reference lesions), ``fn = ref_lesions − tp``, ``fp``.
    sensitivity = tp / ref_lesions, precision = (pred_lesions − fp) / pred_lesions, F1 = their harmonic mean
    (:data:`F1_DEFINITION`; for ``iou`` that equals TP / (TP + (FP + FN)/2), for the overlap rules a predicted
    lesion overlapping two reference lesions counts once in precision). Defined values, never NaN: both empty →
    1, 1, 1; reference empty, prediction not → 1, 0, 0; prediction empty, reference not → 0, 0, 0. For a group of
    cases the counts are summed first.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from nnunet_spine.core.io import InputError

#: Connectivity of lesion components unless told otherwise (faces, edges and corners).
DEFAULT_CONNECTIVITY = 26
#: Connectivities accepted for 3-D lesion components.
CONNECTIVITIES = (6, 18, 26)
#: Kinds of matching rule (:class:`MatchRule`).
MATCH_RULES = ("overlap", "any", "iou")
#: The default matching rule.
DEFAULT_MATCH = "overlap"
#: ``overlap`` rule: fraction α of a reference lesion's volume the prediction must cover to detect it (ANIMA).
OVERLAP_MIN_FRACTION = 0.10
#: ``iou`` rule: a pair of components matches when its IoU is at least this (panoptica's default threshold).
IOU_THRESHOLD = 0.5
#: ANIMA's false-positive ratio limits (β, γ) for ``--anima-fp-limits`` without values.
ANIMA_FP_LIMITS = (0.7, 0.65)
#: Which F1 every table reports.
F1_DEFINITION = "harmonic mean of lesion sensitivity and lesion precision"
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


@dataclass(frozen=True)
class MatchRule:
    """How reference and predicted lesions are matched (module docstring); ``name`` is written into tables."""

    kind: str = DEFAULT_MATCH
    overlap_fraction: float = OVERLAP_MIN_FRACTION
    iou_threshold: float = IOU_THRESHOLD
    strict: bool = False
    fp_limits: tuple[float, float] | None = None
    min_lesion_mm3: float = 0.0

    def __post_init__(self) -> None:
        check_match(self.kind)
        if not 0.0 < self.overlap_fraction <= 1.0:
            raise InputError(f"--overlap-fraction must be in (0, 1], got {self.overlap_fraction}")
        if not 0.0 < self.iou_threshold <= 1.0:
            raise InputError(f"--iou-threshold must be in (0, 1], got {self.iou_threshold}")
        if self.fp_limits is not None and not all(0.0 <= v <= 1.0 for v in self.fp_limits):
            raise InputError(f"ANIMA false-positive limits (beta, gamma) must be in [0, 1], got {self.fp_limits}")
        if not self.min_lesion_mm3 >= 0:
            raise InputError(f"--min-lesion-mm3 must be 0 or more, got {self.min_lesion_mm3}")

    @classmethod
    def of(cls, match: str | MatchRule) -> MatchRule:
        """A rule from a rule or a kind name (``"overlap"``, ``"any"``, ``"iou"``) with default parameters."""
        return match if isinstance(match, MatchRule) else cls(check_match(match))

    @property
    def name(self) -> str:
        """``overlap>=10%``, ``overlap>=10%,fp<=0.7/0.65``, ``any``, ``iou>=0.5`` or ``iou>0.5`` (+ ``,min=5mm3``)."""
        if self.kind == "iou":
            text = f"iou{'>' if self.strict else '>='}{self.iou_threshold:g}"
        elif self.kind == "any":
            text = "any"
        else:
            text = f"overlap>={100 * self.overlap_fraction:g}%"
            if self.fp_limits is not None:
                text += f",fp<={self.fp_limits[0]:g}/{self.fp_limits[1]:g}"
        return text + (f",min={self.min_lesion_mm3:g}mm3" if self.min_lesion_mm3 else "")


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

    match: str  #: the rule's name (:meth:`MatchRule.name`)
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
    match: str | MatchRule = DEFAULT_MATCH,
    voxel_mm3: float = 1.0,
) -> LesionMatch:
    """Label both binary masks (same shape, 2-D or 3-D) and match their lesions by rule ``match`` (a
    :class:`MatchRule` or a kind name). ``voxel_mm3`` (mm³ per voxel) is needed by ``min_lesion_mm3``.

    Raises :class:`InputError` for masks that are not binary, not 2-/3-D or of different shapes.
    """
    rule = MatchRule.of(match)
    conn = check_connectivity(connectivity)
    r, p = _check_pair(ref, pred)
    order = _memory_order(r)
    r, p = np.asarray(r, order=order), np.asarray(p, order=order)
    if rule.min_lesion_mm3:
        r, p = (_drop_small(m, conn, rule.min_lesion_mm3 / voxel_mm3) for m in (r, p))
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
    if rule.kind in ("overlap", "any"):
        if rule.kind == "any":
            detected = covered > 0
        else:
            detected = covered >= np.ceil(rule.overlap_fraction * ref_vox - 1e-9)  # ≥ α of its voxels
            if rule.fp_limits is not None:
                detected &= _within_fp_limits(nr, pair_ref, pair_pred, inter, pred_vox, rule.fp_limits)
        pred_fp = ~touched
        for a, b in zip(pair_ref.tolist(), pair_pred.tolist()):
            if detected[a - 1]:
                partners[a - 1] = np.append(partners[a - 1], b)
    else:
        iou = inter / (ref_vox[pair_ref - 1] + pred_vox[pair_pred - 1] - inter) if inter.size else np.zeros(0)
        detected, matched_pred = np.zeros(nr, bool), np.zeros(npr, bool)
        for k in np.argsort(-iou, kind="stable"):
            a, b = int(pair_ref[k]), int(pair_pred[k])
            if iou[k] < rule.iou_threshold or (rule.strict and iou[k] <= rule.iou_threshold):
                break
            if not detected[a - 1] and not matched_pred[b - 1]:
                detected[a - 1] = matched_pred[b - 1] = True
                partners[a - 1] = np.array([b], np.int64)
        pred_fp = ~matched_pred
    return LesionMatch(
        rule.name,
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


def _drop_small(mask: np.ndarray, connectivity: int, min_voxels: float) -> np.ndarray:
    """``mask`` without its components of fewer than ``min_voxels`` voxels."""
    labels, n = label_lesions(mask, connectivity)
    if n == 0:
        return mask
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    keep = sizes >= min_voxels - 1e-9
    keep[0] = False
    return keep[labels]


def _within_fp_limits(
    n_ref: int,
    pair_ref: np.ndarray,
    pair_pred: np.ndarray,
    inter: np.ndarray,
    pred_vox: np.ndarray,
    limits: tuple[float, float],
) -> np.ndarray:
    """Per reference lesion, whether at least γ of the predicted lesions overlapping it have at most β of their
    volume outside it (ANIMA's β, γ; see the module docstring). True for a lesion no prediction overlaps (its
    detection is decided by the overlap fraction alone)."""
    beta, gamma = limits
    outside = 1.0 - inter / pred_vox[pair_pred - 1] if inter.size else np.zeros(0)
    ok = np.ones(n_ref, bool)
    for a in range(1, n_ref + 1):
        sel = pair_ref == a
        if sel.any():
            ok[a - 1] = float(np.mean(outside[sel] <= beta)) >= gamma
    return ok


def lesion_counts(
    ref: np.ndarray,
    pred: np.ndarray,
    *,
    connectivity: int = DEFAULT_CONNECTIVITY,
    match: str | MatchRule = DEFAULT_MATCH,
    voxel_mm3: float = 1.0,
) -> dict[str, int]:
    """Lesion-wise counts ``ref_lesions, pred_lesions, tp, fp, fn`` of two binary masks of the same shape
    (2-D or 3-D; bool or 0/1), under matching rule ``match`` (see the module docstring). Raises
    :class:`InputError` for bad masks."""
    return match_lesions(ref, pred, connectivity=connectivity, match=match, voxel_mm3=voxel_mm3).counts()


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
