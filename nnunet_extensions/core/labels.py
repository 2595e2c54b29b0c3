"""Label tables and level numberings: the one place in this project that knows what label values mean.

Two vertebra numberings exist and are never mixed silently:

* **VerSe / SPINEPS instance ids** (:data:`VERSE_IDS`): C1=1 … C7=7, T1=8 … T12=19, L1=20 … L5=24,
  **L6=25**, **sacrum=26**, coccyx=27, **T13=28** — the values of SPINEPS instance masks;
* **SCT vertebral levels** (:data:`SCT_LEVELS`): C1=1 … L5=24, **S1=25** … S5=29, coccyx=30 — the values of
  SCT's ``*_labeled`` level files and disc labels (disc ``n`` = top of vertebra ``n``).

They agree on C1 … L5 (1–24). :func:`verse_to_sct_level` / :func:`sct_level_to_verse` convert between them;
``--vert`` level lists are parsed by :func:`parse_levels`.

SPINEPS writes two masks per sagittal T2w image (values checked against its README and against the
SPINEPS-format files in ``../shared/data/tptbox_sample_mri`` and ``panoptica_spine_seg``):

* the **semantic** mask (``..._seg-spine_msk``) holds 14 structure labels, :data:`SEMANTIC_LABELS`:
  nine vertebra subregions 41–49, sacrum 26, spinal cord 60, spinal canal 61, endplate 62 and
  intervertebral disc 100;
* the **instance** mask (``..._seg-vert_msk``) numbers the vertebrae (VerSe numbering, :data:`VERSE_IDS`:
  C1=1 … C7=7, T1=8 … T12=19, L1=20 … L5=24, L6=25, sacrum 26, coccyx 27, T13=28), the disc *below*
  vertebra X as ``100 + X`` and the endplates of vertebra X as ``200 + X``.

Consistency between the two (what SPINEPS produces, and what :func:`consistency_problems` checks):

* the voxels of vertebra instance X are exactly voxels with a subregion label 41–49;
* the sacrum is 26 in both masks;
* disc instances ``100 + X`` cover exactly the semantic 100 voxels, endplates ``200 + X`` exactly the
  semantic 62 voxels;
* cord (60) and canal (61) belong to no vertebra: they are 0 in the instance mask. So the instance
  foreground is the semantic foreground *minus* cord and canal (as in both reference datasets).

"Left" and "right" are the subject's: in RAS+ world coordinates (nibabel), the left costal process (43)
lies at smaller x than the right one (44). Mirroring an image R↔L must swap the pairs in
:data:`LEFT_RIGHT_PAIRS` (:func:`mirror_semantic`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import numpy as np

# --------------------------------------------------------------------------------------------- semantic
ARCUS = 41  #: vertebral arch (laminae and pedicles)
SPINOSUS = 42  #: spinous process
COSTAL_LEFT = 43  #: costal (transverse) process, subject's left
COSTAL_RIGHT = 44
SUP_ARTICULAR_LEFT = 45  #: superior articular process, left
SUP_ARTICULAR_RIGHT = 46
INF_ARTICULAR_LEFT = 47  #: inferior articular process, left
INF_ARTICULAR_RIGHT = 48
CORPUS = 49  #: vertebral body (SPINEPS: "Vertebra_Corpus_border"), endplates excluded
SACRUM = 26
CORD = 60
CANAL = 61  #: spinal canal without the cord (CSF space)
ENDPLATE = 62
DISC = 100
#: Labels of TPTBox's ``Location`` that SPINEPS 2.x and TPTBox samples write beside the 14 above.
CORPUS_CORE = 50  #: "Vertebra_Corpus" (TPTBox CT samples: body core, 49 then being its border)
DENS = 51  #: "Dens_axis", the dens of C2
ENDPLATE_SUPERIOR = 52  #: "Vertebral_Body_Endplate_Superior" (SPINEPS 2.x final semantic mask)
ENDPLATE_INFERIOR = 53  #: "Vertebral_Body_Endplate_Inferior"

#: Semantic label → SPINEPS structure name.
SEMANTIC_LABELS: dict[int, str] = {
    ARCUS: "Arcus_Vertebrae",
    SPINOSUS: "Spinosus_Process",
    COSTAL_LEFT: "Costal_Process_Left",
    COSTAL_RIGHT: "Costal_Process_Right",
    SUP_ARTICULAR_LEFT: "Superior_Articular_Left",
    SUP_ARTICULAR_RIGHT: "Superior_Articular_Right",
    INF_ARTICULAR_LEFT: "Inferior_Articular_Left",
    INF_ARTICULAR_RIGHT: "Inferior_Articular_Right",
    CORPUS: "Vertebra_Corpus_border",
    CORD: "Spinal_Cord",
    CANAL: "Spinal_Canal",
    ENDPLATE: "Endplate",
    DISC: "Vertebra_Disc",
    SACRUM: "Sacrum",
}
#: SPINEPS 2.x / TPTBox labels accepted wherever a semantic mask is read → their name in TPTBox's ``Location``.
EXTENDED_SEMANTIC_LABELS: dict[int, str] = {
    CORPUS_CORE: "Vertebra_Corpus",
    DENS: "Dens_axis",
    ENDPLATE_SUPERIOR: "Vertebral_Body_Endplate_Superior",
    ENDPLATE_INFERIOR: "Vertebral_Body_Endplate_Inferior",
}
#: Every semantic label accepted on input: the 14-label scheme and the extended labels.
ACCEPTED_SEMANTIC_LABELS: dict[int, str] = {**SEMANTIC_LABELS, **EXTENDED_SEMANTIC_LABELS}
#: The one mapping of the extended labels onto the 14-label scheme, for the steps that work on it (cutouts,
#: fusion, QC colours, per-structure metrics): body core → body, dens → C2's body, split endplates → endplate.
TO_SEMANTIC_14: dict[int, int] = {
    CORPUS_CORE: CORPUS,
    DENS: CORPUS,
    ENDPLATE_SUPERIOR: ENDPLATE,
    ENDPLATE_INFERIOR: ENDPLATE,
}


def to_semantic_14(labels: np.ndarray) -> np.ndarray:
    """A semantic mask with the extended labels (50–53) mapped by :data:`TO_SEMANTIC_14` (a new array; the
    input is returned unchanged when it holds none of them)."""
    a = np.asarray(labels)
    extended = np.isin(a, list(TO_SEMANTIC_14))
    if not extended.any():
        return a
    out = a.copy()
    for src, dst in TO_SEMANTIC_14.items():
        out[a == src] = dst
    return out


#: The nine subregions that make up a vertebra instance, in label order.
VERTEBRA_SUBREGIONS: tuple[int, ...] = tuple(range(41, 50))
#: Posterior elements (every subregion except the body).
POSTERIOR_ELEMENTS: tuple[int, ...] = tuple(range(41, 49))
#: Semantic labels that never belong to an instance (0 in the instance mask).
NON_INSTANCE_LABELS: tuple[int, ...] = (CORD, CANAL)
#: (left, right) label pairs.
LEFT_RIGHT_PAIRS: tuple[tuple[int, int], ...] = (
    (COSTAL_LEFT, COSTAL_RIGHT),
    (SUP_ARTICULAR_LEFT, SUP_ARTICULAR_RIGHT),
    (INF_ARTICULAR_LEFT, INF_ARTICULAR_RIGHT),
)

# --------------------------------------------------------------------------------------------- instances
DISC_OFFSET = 100  #: disc below vertebra X has instance 100 + X
ENDPLATE_OFFSET = 200  #: endplates of vertebra X have instance 200 + X

#: Vertebra name → instance id (VerSe / SPINEPS numbering: L6 = 25, sacrum = 26, T13 = 28).
VERSE_IDS: dict[str, int] = {
    **{f"C{n}": n for n in range(1, 8)},
    **{f"T{n}": 7 + n for n in range(1, 13)},
    **{f"L{n}": 19 + n for n in range(1, 7)},
    "S1": SACRUM,  # the sacrum as one instance
    "COCC": 27,
    "T13": 28,
}
#: Instance id → vertebra name (VerSe numbering).
VERSE_NAMES: dict[int, str] = {v: k for k, v in VERSE_IDS.items()}
#: The usual craniocaudal order (C1 … L5, sacrum); transitional T13 and L6 are placed where they occur.
CANONICAL_ORDER: tuple[int, ...] = tuple(range(1, 25)) + (SACRUM,)


#: Landmark discs (TotalSpineSeg's step 1 predicts these discs as landmark classes): landmark class of the
#: ``nnspine convert landmarks`` dataset → name. Each disc lies below the vertebra :data:`LANDMARK_UPPER` names.
LANDMARK_NAMES: dict[int, str] = {1: "C2-C3", 2: "C7-T1", 3: "T12-L1", 4: "L5-S1"}
#: Landmark class → VerSe id of the vertebra directly above the landmark disc (its disc instance is 100 + that id).
LANDMARK_UPPER: dict[int, int] = {1: 2, 2: 7, 3: 19, 4: 24}


def vertebra_name(number: int) -> str:
    """VerSe instance id → name: ``20`` → ``"L1"``; ``26`` → ``"S1"`` (the sacrum). ``KeyError`` if unknown."""
    return VERSE_NAMES[int(number)]


def vertebra_number(name: str) -> int:
    """Name → VerSe instance id: ``"L1"`` → ``20`` (case-insensitive; ``"sacrum"`` → 26)."""
    key = name.strip().upper()
    if key == "SACRUM":
        return SACRUM
    return VERSE_IDS[key]


# ------------------------------------------------------------------------------------ SCT level numbering
#: Vertebra name → SCT vertebral level (``sct_label_vertebrae``: C1=1 … L5=24, S1=25 … S5=29, Co=30).
SCT_LEVELS: dict[str, int] = {
    **{f"C{n}": n for n in range(1, 8)},
    **{f"T{n}": 7 + n for n in range(1, 13)},
    **{f"L{n}": 19 + n for n in range(1, 6)},
    **{f"S{n}": 24 + n for n in range(1, 6)},
    "COCC": 30,
}
#: SCT level → vertebra name.
SCT_LEVEL_NAMES: dict[int, str] = {v: k for k, v in SCT_LEVELS.items()}


def sct_level_name(level: int) -> str:
    """SCT level → name: ``3`` → ``"C3"``, ``25`` → ``"S1"``; unknown levels as their number (``"31"``)."""
    return SCT_LEVEL_NAMES.get(int(level), str(int(level)))


def verse_to_sct_level(verse_id: int) -> int:
    """VerSe instance id → SCT level: 1–24 unchanged, sacrum 26 → S1 = 25, coccyx 27 → 30.

    L6 (25) and T13 (28) have no SCT level: ``ValueError`` names them (never silently renumbered).
    """
    v = int(verse_id)
    if 1 <= v <= 24:
        return v
    if v == SACRUM:
        return SCT_LEVELS["S1"]
    if v == VERSE_IDS["COCC"]:
        return SCT_LEVELS["COCC"]
    if v in VERSE_NAMES:
        raise ValueError(f"VerSe vertebra {v} ({VERSE_NAMES[v]}) has no SCT level number")
    raise ValueError(f"{v} is not a VerSe vertebra id (1–28)")


def sct_level_to_verse(level: int) -> int:
    """SCT level → VerSe instance id: 1–24 unchanged, S1 (25) → sacrum 26, coccyx (30) → 27.

    S2–S5 (26–29) are part of the one sacrum instance in VerSe: they map to 26 as well.
    """
    n = int(level)
    if 1 <= n <= 24:
        return n
    if 25 <= n <= 29:
        return SACRUM
    if n == SCT_LEVELS["COCC"]:
        return VERSE_IDS["COCC"]
    raise ValueError(f"{n} is not an SCT vertebral level (1–30)")


def parse_levels(text: str) -> list[int]:
    """Parse a ``--vert`` level list (SCT numbering): ``"2:5"`` → [2, 3, 4, 5], ``"2,4:5"`` → [2, 4, 5].

    Comma-separated single levels and inclusive ranges ``a:b`` (either order: ``"5:2"`` is 2–5);
    duplicates are dropped, the order of first appearance kept. ``ValueError`` on anything else.
    """
    out: list[int] = []
    parts = [p.strip() for p in str(text).split(",")]
    if not any(parts):
        raise ValueError(f"no level given in {text!r}")
    for part in parts:
        m = re.fullmatch(r"(\d+)(?:\s*:\s*(\d+))?", part)
        if not m:
            raise ValueError(f"expected levels such as 2:5 or 2,4, got {text!r}")
        a, b = int(m.group(1)), int(m.group(2) or m.group(1))
        out.extend(v for v in range(min(a, b), max(a, b) + 1) if v not in out)
    if 0 in out:
        raise ValueError(f"levels start at 1 (C1), got {text!r}")
    return out


def disc_instance(upper: int) -> int:
    """Instance value of the disc below vertebra ``upper`` (``100 + upper``)."""
    return DISC_OFFSET + int(upper)


def endplate_instance(vertebra: int) -> int:
    """Instance value of the endplates of ``vertebra`` (``200 + vertebra``)."""
    return ENDPLATE_OFFSET + int(vertebra)


def is_vertebra(value: int) -> bool:
    """True for instance values that number a vertebra or the sacrum/coccyx (1–28)."""
    return int(value) in VERSE_NAMES


def instance_kind(value: int) -> tuple[str, int]:
    """Split an instance value into ``(kind, vertebra)``.

    ``kind`` is ``"vertebra"`` (1–28), ``"disc"`` (101–128: disc below the vertebra) or ``"endplate"``
    (201–228). Raises ``ValueError`` for 0 and for values outside these ranges.
    """
    v = int(value)
    if v in VERSE_NAMES:
        return "vertebra", v
    if v - DISC_OFFSET in VERSE_NAMES:
        return "disc", v - DISC_OFFSET
    if v - ENDPLATE_OFFSET in VERSE_NAMES:
        return "endplate", v - ENDPLATE_OFFSET
    raise ValueError(f"{v} is not a SPINEPS instance value (1–28, 101–128, 201–228)")


def next_vertebra(number: int) -> int | None:
    """The vertebra below ``number`` in the usual anatomy (L5 → sacrum, T12 → L1); None below the coccyx.

    With transitional anatomy (T13, L6) the real neighbour depends on the subject; this follows the
    common case, e.g. ``next_vertebra(24)`` is the sacrum even when an L6 exists.
    """
    n = int(number)
    special = {19: 20, 28: 20, 24: SACRUM, 25: SACRUM, SACRUM: 27}
    if n in special:
        return special[n]
    if 1 <= n < 24:
        return n + 1
    return None


def instance_name(value: int) -> str:
    """Readable name of an instance value: ``20`` → ``"L1"``, ``124`` → ``"L5-S1 disc"``,
    ``220`` → ``"L1 endplate"``."""
    kind, vert = instance_kind(value)
    if kind == "vertebra":
        return vertebra_name(vert)
    if kind == "disc":
        below = next_vertebra(vert)
        lower = vertebra_name(below) if below is not None else "?"
        return f"{vertebra_name(vert)}-{lower} disc"
    return f"{vertebra_name(vert)} endplate"


def mirror_semantic(labels: np.ndarray) -> np.ndarray:
    """Swap left/right labels (43↔44, 45↔46, 47↔48) — to apply after flipping an image R↔L."""
    out = np.array(labels, copy=True)
    for left, right in LEFT_RIGHT_PAIRS:
        out[labels == left] = right
        out[labels == right] = left
    return out


def consistency_problems(
    semantic: np.ndarray, instance: np.ndarray, vertebrae: Iterable[int] | None = None
) -> list[str]:
    """Check a semantic and an instance mask against the SPINEPS rules; returns one line per problem.

    Rules: semantic 41–49 ⇔ instance is a vertebra (1–25, 27, 28); semantic 26 ⇔ instance 26;
    semantic 100 ⇔ instance 101–128; semantic 62 ⇔ instance 201–228; semantic 60/61/0 ⇒ instance 0 and
    instance 0 ⇒ semantic 0/60/61. With ``vertebrae`` given, every instance value must refer to one of
    them (discs 100+X and endplates 200+X included). An empty list means consistent.
    """
    sem = np.asarray(semantic)
    ins = np.asarray(instance)
    if sem.shape != ins.shape:
        return [f"shapes differ: semantic {sem.shape}, instance {ins.shape}"]
    problems: list[str] = []
    unknown = sorted(set(np.unique(sem).tolist()) - set(SEMANTIC_LABELS) - {0})
    if unknown:
        problems.append(f"semantic mask has non-SPINEPS labels {unknown}")
    values = [v for v in np.unique(ins).tolist() if v != 0]
    bad = []
    for v in values:
        try:
            instance_kind(v)
        except ValueError:
            bad.append(v)
    if bad:
        problems.append(f"instance mask has values that are not SPINEPS instances {bad}")
    ins_vert = np.isin(ins, [v for v in VERSE_NAMES if v != SACRUM])
    rules = [
        ("vertebra subregions 41-49", np.isin(sem, VERTEBRA_SUBREGIONS), ins_vert),
        ("sacrum 26", sem == SACRUM, ins == SACRUM),
        ("disc 100", sem == DISC, (ins > DISC_OFFSET) & (ins < ENDPLATE_OFFSET)),
        ("endplate 62", sem == ENDPLATE, ins > ENDPLATE_OFFSET),
        ("no instance (background, cord, canal)", np.isin(sem, (0,) + NON_INSTANCE_LABELS), ins == 0),
    ]
    for what, in_sem, in_ins in rules:
        n_sem_only = int((in_sem & ~in_ins).sum())
        n_ins_only = int((in_ins & ~in_sem).sum())
        if n_sem_only or n_ins_only:
            problems.append(
                f"{what}: {n_sem_only} voxel(s) only in the semantic mask, {n_ins_only} only in the instance mask"
            )
    if vertebrae is not None:
        allowed = set(int(v) for v in vertebrae)
        stray = sorted(v for v in values if v not in bad and instance_kind(v)[1] not in allowed)
        if stray:
            problems.append(f"instances {stray} refer to vertebrae outside {sorted(allowed)}")
    return problems


def verse_sequence(top: int, n: int) -> list[int]:
    """VerSe ids of ``n`` consecutive mobile vertebrae from ``top`` downwards: ``verse_sequence(22, 4)`` →
    [22, 23, 24, 25] (L3, L4, L5, L6). T12 is followed by L1 and L5 by L6 (the sacrum is never a mobile
    vertebra); ``ValueError`` when ``top`` is not a mobile vertebra (C1–L6, T13) or the run goes past L6."""
    cur = int(top)
    if cur not in VERSE_NAMES or cur in (SACRUM, VERSE_IDS["COCC"]):
        raise ValueError(f"{top} is not a mobile vertebra (C1–L6, T13)")
    out: list[int] = []
    for _ in range(int(n)):
        if cur is None:
            raise ValueError(f"{n} vertebrae from {vertebra_name(top)} run past L6")
        out.append(cur)
        cur = VERSE_IDS["L6"] if cur == VERSE_IDS["L5"] else None if cur == VERSE_IDS["L6"] else next_vertebra(cur)
    return out


def semantic_value_problem(values: Iterable[int]) -> str | None:
    """Why a set of voxel values is not a SPINEPS semantic mask (``None`` when it is one).

    Values outside :data:`ACCEPTED_SEMANTIC_LABELS` (the 14 labels and SPINEPS 2.x's 50–53) and 0 are named,
    with a hint when they look like instance ids (vertebrae 1–28, discs 101–128, endplates 201–228: an
    instance mask given where a semantic one belongs).
    """
    vals = sorted(int(v) for v in values if int(v) != 0)
    bad = [v for v in vals if v not in ACCEPTED_SEMANTIC_LABELS]
    if not bad:
        return None
    hint = ""
    if all(_is_instance_value(v) for v in vals):
        hint = " (looks like an instance mask _seg-vert_msk: vertebrae, discs 100+X, endplates 200+X)"
    return f"values {bad[:8]} are not SPINEPS semantic labels {sorted(ACCEPTED_SEMANTIC_LABELS)}{hint}"


def instance_value_problem(values: Iterable[int]) -> str | None:
    """Why a set of voxel values is not a SPINEPS instance mask (``None`` when it is one); names the
    offending values, with a hint when they look like semantic labels (41–49, 60–62, 100)."""
    vals = sorted(int(v) for v in values if int(v) != 0)
    bad = [v for v in vals if not _is_instance_value(v)]
    if not bad:
        return None
    hint = ""
    if all(v in SEMANTIC_LABELS for v in vals):
        hint = " (looks like a semantic mask _seg-spine_msk: subregions 41-49, 60-62, 100)"
    return f"values {bad[:8]} are not SPINEPS instance ids (1-28, 101-128, 201-228){hint}"


def _is_instance_value(v: int) -> bool:
    try:
        instance_kind(v)
    except ValueError:
        return False
    return True


# ------------------------------------------------------------------------------ instance-phase cutouts
#: Input channels of the instance-phase (cutout) network: channel c is the one-hot mask of semantic label
#: ``CUTOUT_CHANNEL_LABELS[c]`` (the nine vertebra subregions 41–49, in label order).
CUTOUT_CHANNEL_LABELS: tuple[int, ...] = VERTEBRA_SUBREGIONS
#: Target labels of a cutout: the vertebra above the centre one, the centre vertebra, the one below.
CUTOUT_TARGET_LABELS: dict[str, int] = {"background": 0, "above": 1, "centre": 2, "below": 3}


def cutout_mirror_channels() -> list[int]:
    """Channel order after mirroring a cutout R↔L: the left/right subregion channels (43↔44, 45↔46,
    47↔48) trade places; ``x[cutout_mirror_channels()]`` relabels a flipped one-hot input."""
    order = list(range(len(CUTOUT_CHANNEL_LABELS)))
    for left, right in LEFT_RIGHT_PAIRS:
        a, b = CUTOUT_CHANNEL_LABELS.index(left), CUTOUT_CHANNEL_LABELS.index(right)
        order[a], order[b] = b, a
    return order


# ------------------------------------------------------------------------------ SCT disc labels
#: SPINEPS disc instance (``100 + X``, the disc below vertebra X) → SCT disc value ``X + 1`` (disc ``n`` = top of
#: SCT level ``n``): 101 → 2 (C1-C2), 102 → 3 (C2-C3) … 119 → 20 (T12-L1) … 124 → 25 (L5-S1). SPINEPS'
#: ``spineps/utils/generate_disc_labels.py`` (``DISCS_MAP``) maps 102–124 the same way; it has no 101 (it places
#: 2 midway between label 1, the top of C2, and disc 3). The discs below T13 (128) and L6 (125) have no SCT value.
SCT_DISC_VALUES: dict[int, int] = {DISC_OFFSET + x: x + 1 for x in range(1, 25)}


def sct_disc_value(instance: int) -> int | None:
    """SCT disc value of a SPINEPS disc instance (:data:`SCT_DISC_VALUES`), None when it has none."""
    return SCT_DISC_VALUES.get(int(instance))


# ------------------------------------------------------------------------------ TotalSpineSeg ids
#: TotalSpineSeg's label ids (``totalspineseg/resources/labels_maps/tss_map.json``; step-2 output): 1 cord,
#: 2 canal (CSF), 11–17 C1–C7, 21–32 T1–T12, 41–47 L1–L7, 50 sacrum, discs 63–67 C2-C3…C6-C7,
#: 71–82 C7-T1…T11-T12, 91–95 T12-L1…L4-L5, 100 L5-S.
TOTALSPINESEG_LABELS: dict[int, str] = {
    1: "SC",
    2: "CSF",
    **{10 + n: f"C{n}" for n in range(1, 8)},
    **{20 + n: f"T{n}" for n in range(1, 13)},
    **{40 + n: f"L{n}" for n in range(1, 8)},
    50: "sacrum",
    **{61 + n: f"C{n}-C{n + 1}" for n in range(2, 7)},
    71: "C7-T1",
    **{71 + n: f"T{n}-T{n + 1}" for n in range(1, 12)},
    91: "T12-L1",
    **{91 + n: f"L{n}-L{n + 1}" for n in range(1, 5)},
    100: "L5-S",
}


def _spineps_to_totalspineseg() -> dict[int, int]:
    out = {CORD: 1, CANAL: 2, SACRUM: 50}
    for tss, name in TOTALSPINESEG_LABELS.items():
        if name in VERSE_IDS and tss < 60:
            out[VERSE_IDS[name]] = tss
    for x in range(2, 25):  # discs below C2 … L5 (SPINEPS 102–124)
        out[disc_instance(x)] = 61 + x if x <= 6 else 64 + x if x <= 18 else 72 + x if x <= 23 else 100
    return out


#: SPINEPS value → TotalSpineSeg id: vertebra instances (VerSe ids 1–25, sacrum 26), discs 102–124, and the
#: semantic cord 60 / canal 61. No counterpart: T13 (28), coccyx (27), discs 101, 125, 128, endplates 200+X.
SPINEPS_TO_TOTALSPINESEG: dict[int, int] = _spineps_to_totalspineseg()
#: TotalSpineSeg id → SPINEPS value (1 → cord 60, 2 → canal 61; L7 = 47 has no VerSe id).
TOTALSPINESEG_TO_SPINEPS: dict[int, int] = {v: k for k, v in SPINEPS_TO_TOTALSPINESEG.items()}


# ------------------------------------------------------------------------------ cross-walk
def crosswalk_rows() -> list[tuple[str, str, str, str, str]]:
    """The label cross-walk, one row per structure, top to bottom: ``(name, SCT level, SCT disc value,
    SPINEPS/VerSe id, TotalSpineSeg id)`` as strings, ``—`` where a convention has no counterpart. The
    transitional T13, L6 and L7 follow the vertebra they come after; in such a column the disc below T12 (119) is
    T12-T13 and the disc below L5 (124) is L5-L6, with the same ids."""

    def cell(v) -> str:
        return "—" if v is None else str(v)

    rows = [
        ("spinal cord", None, None, f"{CORD} (semantic)", 1),
        ("spinal canal", None, None, f"{CANAL} (semantic)", 2),
    ]
    tss = {v: k for k, v in TOTALSPINESEG_LABELS.items()}

    def vert(name: str, verse: int | None):
        key = {"sacrum": "S1", "coccyx": "COCC"}.get(name, name)
        sct = SCT_LEVELS.get(key) if name not in ("L6", "T13", "L7") else None
        rows.append((name, sct, None, verse, tss.get(name)))

    def disc(name: str, instance: int | None, tss_name: str | None = None):
        rows.append(
            (f"{name} disc", None, sct_disc_value(instance) if instance else None, instance, tss.get(tss_name or name))
        )

    order = [VERSE_NAMES[v] for v in range(1, 20)] + ["T13"] + [VERSE_NAMES[v] for v in range(20, 26)] + ["L7"]
    for name in order:
        vert(name, VERSE_IDS.get(name) if name != "L7" else None)
        if name == "T12":
            disc("T12-L1", disc_instance(19))
        elif name == "T13":
            disc("T13-L1", disc_instance(VERSE_IDS["T13"]))
        elif name == "L5":
            disc("L5-S1", disc_instance(24), "L5-S")
        elif name == "L6":
            disc("L6-S1", disc_instance(VERSE_IDS["L6"]))
        elif name == "L7":
            pass
        else:
            below = VERSE_NAMES[VERSE_IDS[name] + 1]
            disc(f"{name}-{below}", disc_instance(VERSE_IDS[name]))
    vert("sacrum", SACRUM)
    vert("coccyx", VERSE_IDS["COCC"])
    return [tuple(cell(v) for v in row) for row in rows]


def crosswalk_markdown() -> str:
    """:func:`crosswalk_rows` as a Markdown table (generated into ``docs/spine.md``)."""
    head = "| structure | SCT level | SCT disc value | SPINEPS / VerSe id | TotalSpineSeg id |"
    lines = [head, "|---|---|---|---|---|"]
    lines += ["| " + " | ".join(row) + " |" for row in crosswalk_rows()]
    return "\n".join(lines) + "\n"
