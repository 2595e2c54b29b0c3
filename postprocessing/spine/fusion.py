"""Fusion of instance-phase cutout predictions into one vertebra instance mask (SPINEPS phase 2, on nnU-Net).

Every cutout (:mod:`nnunet_spine.core.cutouts`) has a prediction with labels 1 = vertebra above the centre
one, 2 = centre vertebra, 3 = vertebra below. Each such mask is a *candidate*, brought back onto the
semantic mask's grid (nearest neighbour; all work happens on that grid in PIR voxel order).

Fusion (SPINEPS' rule, with its constants):

1. **Agreement**: each candidate is compared by Dice with every candidate of the cutouts up to two positions
   above and below it; its (at most) two best partners with Dice > :data:`PARTNER_DICE` form a *couple* with it,
   scored by their mean Dice (0 alone). When the two partners do not agree with each other (Dice <
   :data:`PARTNER_DICE`) SPINEPS 2.1.3 keeps only the better one (``couple[:1]`` in ``find_prediction_couple``); we
   keep both on purpose and the fuse report lists them (:class:`Disagreement`; ``benchmarks/bench_fuse_rules.py``
   measures the whole fusion against SPINEPS' code). Candidates of one vertebra seen from three cutouts all name the
   same couple.
2. **Ranking**: couples are ranked by ``(size + 1) × agreement`` (mean over the anchors that named them),
   a stable sort over the order in which couples were first named, anchors visited from the bottom cutout
   up: equal-ranked couples are written bottom first, as SPINEPS does.
3. **Merging**: a couple of three becomes the voxels at least two of its members predict (majority vote)
   unless its agreement is below :func:`union_threshold` (0.45 for three), when it becomes their union, as
   do couples of two; a lone candidate is itself. Instances are written first-come-first-served into
   unclaimed voxels; a couple whose mask is more than :data:`MAX_COVERED` claimed already is skipped (a
   duplicate of an accepted vertebra).

Steps 1–3 follow SPINEPS' ``phase_instance.py`` (``find_prediction_couple``, ``create_prediction_couples``,
``merge_coupled_predictions``). Step 5's first part is SPINEPS' own (``phase_post.assign_missing_cc`` with
``proc_assign_missing_dilate_first=True``, its default). The rest of steps 4–5 departs from it on purpose: SPINEPS
deletes instance fragments below its size threshold (``clean_cc_artifacts(only_delete=True)``); we release them to
step 5, and split a gap left between several vertebrae voxel by voxel instead of giving it to the most frequent
neighbour, so that the instance and the cleaned semantic mask agree voxel for voxel
(:func:`labels.consistency_problems`).

Postprocessing, with the semantic mask:

4. instance voxels outside the vertebra subregions (41–49) are removed; fragments of an instance smaller
   than ``min_fragment_mm3`` (26-connected) are released;
5. a vertebral body mostly without an instance (no prediction covered it) becomes an instance of its own; then,
   as SPINEPS, every instance grows :data:`~cleaning.GROW_VOXELS` voxels (face neighbours, one voxel a round, the
   lowest id first where two meet) into the semantic vertebra voxels without an instance
   (:func:`~cleaning.grow_instances`); what is still without an instance (26-connected fragments) joins its one
   neighbouring instance, or between several, voxel by voxel, the nearest one; fragments with no instance around are
   removed from the cleaned semantic mask; last, every articular process goes wholly to the vertebra holding most of
   it (:func:`~cleaning.articular_to_majority`, SPINEPS' ``phase_post.assign_vertebra_inconsistency`` does it before
   its gaps are filled, we after);
6. vertebrae are numbered from the top (by the S-I position of their body centroid): 1, 2, … or VerSe ids
   from ``top_vertebra`` (:func:`labels.verse_sequence`); the sacrum (26) is copied from the semantic mask;
7. every disc (100) and endplate (62) component gets ``100 + X`` / ``200 + X`` with X the vertebra whose
   body centroid is the nearest one above the component's centroid (world z), as SPINEPS does (so the
   upper endplate of a vertebra carries the id of the vertebra above it). With no body centre above,
   endplates take the top vertebra, discs the id above the top one (when it exists: removed otherwise).

Steps 4–5 are :mod:`nnunet_spine.postprocessing.spine.cleaning`. The results satisfy
:func:`labels.consistency_problems` with the cleaned semantic mask. Reading and writing
files (``nnspine fuse`` / ``nnspine instances``) is :mod:`nnunet_spine.postprocessing.spine.fusion_files`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from nnunet_spine.core.cutouts import (
    BODY_EROSION_MM,
    MIN_BODY_MM3,
    CaseCutouts,
    Cutout,
    find_bodies,
    from_pir,
    paste_back,
    to_pir,
)
from nnunet_spine.core.io import Image, InputError, voxel_sizes
from nnunet_spine.core.labels import (
    CORPUS,
    SACRUM,
    is_vertebra,
    vertebra_name,
)
from nnunet_spine.postprocessing.spine.anchors import find_disc_anchors, find_landmarks
from nnunet_spine.postprocessing.spine.cleaning import MIN_FRAGMENT_MM3, CleanStats, clean_instances
from nnunet_spine.postprocessing.spine.discs import assign_discs_endplates, split_endplates
from nnunet_spine.postprocessing.spine.flaws import Finding, Review, above_dens, review_instances
from nnunet_spine.postprocessing.spine.labelling import DEFAULT_LUMBAR, Labelling, label_column

#: A partner must agree with its anchor by more than this Dice.
PARTNER_DICE = 0.3
#: A couple whose mask is claimed by earlier instances beyond this fraction is skipped.
MAX_COVERED = 0.6
#: Cutouts compared with each candidate: this many positions above and below.
NEIGHBOUR_CUTOUTS = 2
#: Most vertebrae numbered from the top (C1-L5 and one transitional vertebra; 26 would be the sacrum's id).
MAX_VERTEBRAE = 25


# --------------------------------------------------------------------------------------------- candidates
@dataclass
class Candidate:
    """One predicted mask (cutout ``cutout``, label ``label``) on the PIR grid: a boolean block ``mask`` whose
    first voxel is at PIR index ``lo``; ``count`` voxels."""

    cutout: int
    label: int
    lo: np.ndarray
    mask: np.ndarray
    count: int

    @property
    def hi(self) -> np.ndarray:
        return self.lo + np.asarray(self.mask.shape)

    @property
    def key(self) -> tuple[int, int]:
        return self.cutout, self.label


def candidates_from_prediction(
    prediction: np.ndarray, cutout: Cutout, affine_pir: np.ndarray, shape_pir: Sequence[int]
) -> list[Candidate]:
    """The non-empty above/centre/below masks of one cutout prediction, on the PIR grid."""
    pasted = paste_back(prediction, cutout.affine, affine_pir, shape_pir)
    if pasted is None:
        return []
    box, values = pasted
    out = []
    base = np.array([s.start for s in box])
    for label, sl in _label_boxes(values).items():
        block = values[sl] == label
        out.append(Candidate(cutout.index, label, base + [s.start for s in sl], block, int(np.count_nonzero(block))))
    return out


def _label_boxes(values: np.ndarray) -> dict[int, tuple[slice, slice, slice]]:
    """The bounding box (voxel slices) of each of the labels 1, 2, 3 present in a 3-D label array, found in two
    passes for all three: each voxel becomes one bit of its label, OR-ed along the axes."""
    bit = np.zeros(256, np.uint8)
    bit[1:4] = 2, 4, 8
    bits = bit[values if values.dtype == np.uint8 else np.clip(values, 0, 255).astype(np.uint8)]
    plane = np.bitwise_or.reduce(bits, axis=2)
    along = (
        np.bitwise_or.reduce(plane, axis=1),
        np.bitwise_or.reduce(plane, axis=0),
        np.bitwise_or.reduce(bits.reshape(-1, bits.shape[2]), axis=0),
    )
    out = {}
    for label in (1, 2, 3):
        ext = [np.flatnonzero(a & bit[label]) for a in along]
        if ext[0].size:
            out[label] = tuple(slice(int(e[0]), int(e[-1]) + 1) for e in ext)
    return out


def overlap(a: Candidate, b: Candidate) -> int:
    """Voxels two candidates share."""
    lo = np.maximum(a.lo, b.lo)
    hi = np.minimum(a.hi, b.hi)
    if np.any(hi <= lo):
        return 0
    sa = tuple(slice(int(low - o), int(h - o)) for low, h, o in zip(lo, hi, a.lo))
    sb = tuple(slice(int(low - o), int(h - o)) for low, h, o in zip(lo, hi, b.lo))
    return int(np.count_nonzero(a.mask[sa] & b.mask[sb]))


def dice(a: Candidate, b: Candidate) -> float:
    """Dice coefficient of two candidates (0 when both are empty)."""
    total = a.count + b.count
    return 2.0 * overlap(a, b) / total if total else 0.0


# --------------------------------------------------------------------------------------------- fusion
Key = tuple[int, int]


@dataclass
class Disagreement:
    """An anchor candidate whose two best partners disagree with each other (Dice < :data:`PARTNER_DICE`):
    SPINEPS keeps the three together and only logs it; we keep them and report it."""

    anchor: Key
    partners: tuple[Key, Key]
    partner_dice: float


def rank_couples(
    cands: Mapping[Key, Candidate], disagreements: list[Disagreement] | None = None
) -> list[tuple[tuple[Key, ...], float]]:
    """Couples (sorted candidate keys) with their agreement, best first (steps 1–2 of the module doc).

    As SPINEPS (``create_prediction_couples`` / ``find_prediction_couple`` in ``spineps/phase_instance.py``):
    anchors are visited from the bottom cutout up (SPINEPS orders its cutouts bottom to top) and, within a
    cutout, above / centre / below; couples keep the order in which they were first named; the ranking by
    ``(size + 1) × agreement`` is a stable sort, so equal-ranked couples stay bottom first. Unlike SPINEPS 2.1.3
    (which keeps only the better one), partners that do not agree with each other both stay in the couple and
    are appended to ``disagreements`` when given."""
    cache: dict[tuple[Key, Key], float] = {}

    def pair_dice(a: Key, b: Key) -> float:
        pair = (min(a, b), max(a, b))
        if pair not in cache:
            cache[pair] = dice(cands[pair[0]], cands[pair[1]])
        return cache[pair]

    found: dict[tuple[Key, ...], list[float]] = {}
    for key in sorted(cands, key=lambda k: (-k[0], k[1])):  # cutouts are indexed top to bottom
        i = key[0]
        scores = {
            other: pair_dice(key, other) for other in cands if other[0] != i and abs(other[0] - i) <= NEIGHBOUR_CUTOUTS
        }
        best = sorted(scores, key=lambda k: (-scores[k], -k[0], k[1]))[:2]
        partners = [k for k in best if scores[k] > PARTNER_DICE]
        if len(partners) == 2 and disagreements is not None:
            d = pair_dice(partners[0], partners[1])
            if d < PARTNER_DICE:
                disagreements.append(Disagreement(key, (partners[0], partners[1]), d))
        agreement = float(np.mean([scores[k] for k in partners])) if partners else 0.0
        found.setdefault(tuple(sorted(partners + [key])), []).append(agreement)
    ranked = [(couple, float(np.mean(v))) for couple, v in found.items()]
    ranked.sort(key=lambda cv: -(len(cv[0]) + 1) * cv[1])  # stable: ties keep bottom-first order
    return ranked


def union_threshold(size: int) -> float:
    """Agreement below which a couple of ``size`` members is merged by union rather than majority vote:
    ``0.3 + 0.15·(4 − size)`` (SPINEPS ``merge_coupled_predictions``); couples of one or two are always unions."""
    return PARTNER_DICE + 0.15 * (4 - size)


def merge_couples(
    ranked: Sequence[tuple[tuple[Key, ...], float]], cands: Mapping[Key, Candidate], shape: Sequence[int]
) -> np.ndarray:
    """Instance ids 1, 2, … in acceptance order on the PIR grid (step 3 of the module doc), uint16."""
    claimed = np.zeros(tuple(shape), np.uint16)
    next_id = 1
    for couple, agreement in ranked:
        members = [cands[k] for k in couple]
        lo = np.min([m.lo for m in members], axis=0)
        hi = np.max([m.hi for m in members], axis=0)
        counts = np.zeros(tuple(hi - lo), np.uint8)
        for m in members:
            counts[tuple(slice(int(a - b), int(c - b)) for a, b, c in zip(m.lo, lo, m.hi))] += m.mask
        union = len(couple) <= 2 or agreement < union_threshold(len(couple))
        combined = counts >= (1 if union else 2)
        n = int(np.count_nonzero(combined))
        if n == 0:
            continue
        region = claimed[tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))]
        free = combined & (region == 0)
        if 1.0 - np.count_nonzero(free) / n > MAX_COVERED:
            continue
        region[free] = next_id
        next_id += 1
    return claimed


def _centroids_mm(labels_arr: np.ndarray, affine: np.ndarray, ids: Sequence[int]) -> dict[int, np.ndarray]:
    """World (RAS mm) centroid of each of ``ids`` present in the label array ``labels_arr``."""
    import cc3d

    st = cc3d.statistics(np.ascontiguousarray(labels_arr, dtype=np.uint32))
    out = {}
    for i in ids:
        i = int(i)
        if 0 < i < len(st["voxel_counts"]) and st["voxel_counts"][i] > 0:
            out[i] = np.asarray(st["centroids"][i], float) @ affine[:3, :3].T + affine[:3, 3]
    return out


def number_vertebrae(
    inst: np.ndarray,
    sem: np.ndarray,
    affine: np.ndarray,
    top_vertebra: int | None = None,
    *,
    dens: np.ndarray | None = None,
    landmarks: np.ndarray | None = None,
    labelling: str = "auto",
    lumbar: int = DEFAULT_LUMBAR,
    discs: Sequence | None = None,
    review: Review | None = None,
) -> tuple[np.ndarray, dict[int, np.ndarray], Labelling]:
    """Renumber instances (step 6): returns (uint8 instance array, body centroid per new id, the labelling).

    Order: S-I position (world z) of each instance's body centroid, or of the whole instance when it has no
    body voxel. Ids from :func:`nnunet_spine.postprocessing.spine.labelling.label_column`: ``top_vertebra``, else the
    sacrum / dens / landmark / disc anchors (``dens``: bool mask of SPINEPS 2.x's dens label on this grid;
    ``landmarks``: a landmark model's label map on this grid; ``discs``: SCT disc labels, objects with ``value``
    and ``position_mm`` (world RAS mm), :func:`~nnunet_spine.postprocessing.spine.sct_discs.read_disc_labels`), else
    1, 2, … from the top, marked not anatomically labelled. ``review``: the flaw findings of ``inst``
    (:func:`~nnunet_spine.postprocessing.spine.flaws.review_instances`): every one is reported in the anomalies,
    doubtful ones leave the labelling unverified, partial vertebrae and instances holding two vertebrae are
    counted as such."""
    old = [int(v) for v in np.unique(inst) if v]
    body_lab = np.where(sem == CORPUS, inst, 0)
    body_c = _centroids_mm(body_lab, affine, old)
    whole_c = _centroids_mm(inst, affine, [v for v in old if v not in body_c])
    centre = {v: body_c.get(v, whole_c.get(v)) for v in old}
    order = sorted(old, key=lambda v: -centre[v][2])
    dens_index = None
    if dens is not None and dens.any():
        hits = np.bincount(inst[dens].astype(np.int64), minlength=max(old, default=0) + 1)
        hits[0] = 0
        if hits.any():
            dens_index = order.index(int(np.argmax(hits)))
    sacrum = np.argwhere(sem == SACRUM) @ affine[:3, :3].T + affine[:3, 3] if (sem == SACRUM).any() else None
    centres_mm = np.array([centre[v] for v in order]).reshape(-1, 3)
    anchors, skipped = find_landmarks(landmarks, affine, centres_mm) if landmarks is not None else ([], [])
    disc_anchors, disc_skipped = find_disc_anchors(discs, centres_mm) if discs else ([], [])
    review = review or Review(inst, np.zeros(inst.shape, bool))
    lab = label_column(
        centres_mm,
        top_vertebra=top_vertebra,
        sacrum_mm=sacrum,
        dens_index=dens_index,
        landmarks=anchors + disc_anchors,
        lumbar=lumbar,
        mode=labelling,
        partial=[order.index(v) for v in review.partial if v in order],
        double=[order.index(v) for v in review.double if v in order],
        doubts=review.doubts,
    )
    lab.anomalies += skipped + disc_skipped + [f.message for f in review.findings]
    if not lab.anatomical and len(order) > MAX_VERTEBRAE:
        raise InputError(
            f"the fused predictions hold {len(order)} vertebrae, more than a spine has "
            f"({MAX_VERTEBRAE}): are they predictions of a cutout model?"
        )
    lut = np.zeros(max(old, default=0) + 1, np.uint8)
    for o, n in zip(order, lab.ids):
        lut[o] = n
    out = lut[inst]
    centres = {n: body_c[o] for o, n in zip(order, lab.ids) if o in body_c}
    return out, centres, lab


@dataclass
class Fusion:
    """Result of fusing one case: arrays on the semantic mask's grid (its own voxel order)."""

    instance: np.ndarray  #: uint8 SPINEPS instance mask
    semantic: np.ndarray  #: uint8 cleaned semantic mask
    centroids_mm: dict[int, np.ndarray]  #: vertebral-body centroid (world RAS mm) per vertebra id; 26: sacrum
    used: list[str]  #: cutouts whose prediction was fused
    missing: list[str]  #: cutouts without a prediction
    stats: CleanStats = field(default_factory=CleanStats)
    named: bool = False  #: ids are anatomical VerSe ids (an anchor or --top-vertebra), not 1..n from the top
    labelling: Labelling | None = None  #: how the ids were found, gaps and anomalies
    disagreements: list[str] = field(default_factory=list)  #: couples whose two partners disagree
    #: what :func:`~nnunet_spine.postprocessing.spine.flaws.review_instances` found (also in the anomalies)
    findings: list[Finding] = field(default_factory=list)

    @property
    def vertebrae(self) -> list[int]:
        return [int(v) for v in np.unique(self.instance) if is_vertebra(v) and v != SACRUM]

    def vertebra_ids(self) -> list[int]:
        """Vertebra ids top to bottom, then the sacrum (26) when present."""
        ids = sorted(self.vertebrae, key=lambda v: -self.centroids_mm[v][2] if v in self.centroids_mm else 0)
        return ids + ([SACRUM] if SACRUM in self.centroids_mm else [])

    def label_name(self, v: int) -> str:
        """Display name of an id: VerSe name when numbered anatomically, else ``#n`` (and S for the sacrum)."""
        if v == SACRUM:
            return "S"
        return vertebra_name(v) if self.named else f"#{v}"


def fuse_arrays(
    semantic: Image,
    record: CaseCutouts,
    predictions: Mapping[str, np.ndarray | None],
    *,
    top_vertebra: int | None = None,
    labelling: str = "auto",
    lumbar: int = DEFAULT_LUMBAR,
    endplates: str = "merged",
    min_fragment_mm3: float = MIN_FRAGMENT_MM3,
    erosion_mm: float = BODY_EROSION_MM,
    min_body_mm3: float = MIN_BODY_MM3,
    landmarks: np.ndarray | None = None,
    rules: str = "nnspine",
    discs: Sequence | None = None,
) -> Fusion:
    """Fuse the cutout predictions of one case (arrays on each cutout's grid; None or absent = missing).

    ``top_vertebra`` / ``labelling`` / ``lumbar``: how vertebrae get their ids
    (:mod:`nnunet_spine.postprocessing.spine.labelling`); ``landmarks``: a landmark model's label map on the semantic
    mask's grid (landmark discs as anchors); ``discs``: SCT disc labels as anchors (:func:`number_vertebrae`); before
    the numbering, :func:`~nnunet_spine.postprocessing.spine.flaws.review_instances` removes stray blobs (from both
    masks), joins split and splits merged instances and reports what it found; ``rules``: :func:`clean_instances`'
    postprocessing rules;
    ``endplates="split"`` writes SPINEPS 2.x's superior (52) and inferior (53) endplates in the cleaned semantic
    mask (:func:`split_endplates`) instead of 62.

    InputError when no cutout has a prediction or a prediction has the wrong shape."""
    record.check_grid(semantic)
    sem_pir, aff_pir = to_pir(semantic)
    cands: dict[Key, Candidate] = {}
    used, missing = [], []
    for c in record.cutouts:
        pred = predictions.get(c.name)
        if pred is None:
            missing.append(c.name)
            continue
        if tuple(pred.shape) != tuple(c.shape):
            raise InputError(f"prediction {c.name}: shape {tuple(pred.shape)} differs from its cutout {c.shape}")
        used.append(c.name)
        for cand in candidates_from_prediction(pred, c, aff_pir, sem_pir.shape):
            cands[cand.key] = cand
    if not used:
        raise InputError(f"case {record.case}: no prediction for any of its {len(record.cutouts)} cutouts")
    disagreements: list[Disagreement] = []
    fused = merge_couples(rank_couples(cands, disagreements), cands, sem_pir.shape)
    names = {c.index: c.name for c in record.cutouts}
    part = {1: "above", 2: "centre", 3: "below"}

    def said(k: Key) -> str:
        return f"{names.get(k[0], k[0])} ({part.get(k[1], k[1])})"

    disagree = [
        f"{said(d.anchor)}: its partners {said(d.partners[0])} and {said(d.partners[1])} disagree "
        f"(Dice {d.partner_dice:.2f}); kept together, as SPINEPS does"
        for d in disagreements
    ]
    bodies = find_bodies(sem_pir, aff_pir, erosion_mm=erosion_mm, min_volume_mm3=min_body_mm3)
    inst, dropped, stats = clean_instances(
        fused, sem_pir, bodies.components, voxel_sizes(aff_pir), min_fragment_mm3, rules=rules
    )
    dens = (semantic.meta or {}).get("dens")
    dens_pir = None if dens is None else to_pir(Image(dens.astype(np.uint8), semantic.affine, None))[0] > 0
    marks_pir = None if landmarks is None else to_pir(Image(landmarks.astype(np.uint8), semantic.affine, None))[0]
    review = review_instances(inst, sem_pir, aff_pir, exempt=above_dens(inst, aff_pir, dens_pir))
    inst = review.instance
    dropped |= review.removed & (inst == 0)
    inst, centres, lab = number_vertebrae(
        inst,
        sem_pir,
        aff_pir,
        top_vertebra,
        dens=dens_pir,
        landmarks=marks_pir,
        labelling=labelling,
        lumbar=lumbar,
        discs=discs,
        review=review,
    )
    inst[sem_pir == SACRUM] = SACRUM
    stats.unassigned_discs = assign_discs_endplates(inst, sem_pir, dropped, aff_pir, centres, lab.anatomical)
    clean = np.where(dropped, 0, sem_pir).astype(np.uint8)
    if endplates == "split":
        split_endplates(clean, aff_pir, centres)
    elif endplates != "merged":
        raise InputError(f"--endplates {endplates}: choose merged or split")
    sacrum = _centroids_mm((sem_pir == SACRUM).astype(np.uint8), aff_pir, [1])
    if sacrum:
        centres = {**centres, SACRUM: sacrum[1]}
    return Fusion(
        from_pir(inst, aff_pir, semantic),
        from_pir(clean, aff_pir, semantic),
        centres,
        used,
        missing,
        stats,
        named=lab.anatomical,
        labelling=lab,
        disagreements=disagree,
        findings=review.findings,
    )
