"""Whether anatomical vertebra ids are verified: every anchor present (``--top-vertebra``, the sacrum, the dens,
landmark discs, SCT disc labels) checked against the ids, which junction each fixes, which ids they pin without
assuming a region's usual count, and the reason given (the rules: :mod:`nnunet_spine.postprocessing.spine.labelling`,
"Verified or not"). :func:`~nnunet_spine.postprocessing.spine.labelling.label_column` numbers the column and calls
:func:`verify_labelling` on the result.
"""

from __future__ import annotations

from collections.abc import Sequence

from nnunet_spine.core.labels import VERSE_IDS, vertebra_name
from nnunet_spine.postprocessing.spine.labelling import (
    DEFAULT_LUMBAR,
    Labelling,
    anchor_kind,
    anchor_label,
    canonical_column,
)


def pinned(vid: int, kinds: set[str] | frozenset[str]) -> bool:
    """Whether the anchors of ``kinds`` name vertebra ``vid`` without assuming a region's usual count: C1 … T11
    counted from the skull (``top``); T12 / T13 from the skull to a junction below them (``tl``, or ``ls`` with the
    whole count from the skull to the sacrum the usual one); the lumbar vertebrae from the thoracolumbar junction
    (``tl``) or from the skull to the sacrum (``top`` and ``ls``)."""
    top, tl, ls = "top" in kinds, "tl" in kinds, "ls" in kinds
    v = int(vid)
    if v <= VERSE_IDS["T11"]:
        return top
    if v in (VERSE_IDS["T12"], VERSE_IDS["T13"]):
        return top and (tl or ls)
    return tl or (top and ls)


def anchor_list(
    ids: Sequence[int],
    *,
    top_vertebra: int | None = None,
    sacrum: bool = False,
    dens_index: int | None = None,
    landmarks: Sequence[tuple[int, int, str]] = (),
    lumbar: int = DEFAULT_LUMBAR,
) -> list[tuple[str, int, int, str]]:
    """Every anchor present as ``(label, vertebra index, the id it names there, kind)`` (:func:`anchor_kind`;
    ``--top-vertebra`` counts from the skull unless it names a lumbar vertebra). ``sacrum``: the sacrum lies
    directly below the lowest vertebra (:func:`~nnunet_spine.postprocessing.spine.labelling.sacrum_adjacent`),
    which then is the last lumbar one (``lumbar`` 4, 5, 6); the dens vertebra is C2; a landmark ``(index, id,
    name)`` names its vertebra; ``top_vertebra`` the top one."""
    out: list[tuple[str, int, int, str]] = []
    if not ids:
        return out
    if top_vertebra is not None:
        kind = "top" if anchor_kind(top_vertebra) == "top" or top_vertebra == VERSE_IDS["T12"] else "tl"
        out.append((f"--top-vertebra {vertebra_name(top_vertebra)}", 0, top_vertebra, kind))
    if sacrum:
        out.append(("sacrum", len(ids) - 1, canonical_column(lumbar)[-1], "ls"))
    if dens_index is not None:
        out.append(("dens", dens_index, VERSE_IDS["C2"], "top"))
    for index, vid, name in landmarks:
        if 0 <= index < len(ids):
            out.append((anchor_label(name), index, vid, anchor_kind(vid)))
    return out


def anchor_checks(ids: Sequence[int], anchors: Sequence[tuple[str, int, int, str]]) -> tuple[list[str], list[str]]:
    """Each anchor of :func:`anchor_list` checked against anatomical ``ids`` (top to bottom): returns (the anchors
    that put the same id on their vertebra, one line per anchor that puts another). An agreeing anchor on a
    vertebra that an earlier one already named is listed with it (``sacrum = landmark L5-S1``): two anchors on one
    vertebra say nothing about the count between vertebrae."""
    agree: list[str] = []
    disagree: list[str] = []
    named: dict[int, int] = {}  # vertebra index -> its entry in ``agree``
    for label, index, expected, _ in anchors:
        got = ids[index]
        if got == expected and index in named:
            agree[named[index]] += f" = {label}"
        elif got == expected:
            named[index] = len(agree)
            agree.append(label)
        else:
            disagree.append(f"{label} says {vertebra_name(expected)} where the ids say {vertebra_name(got)}")
    return agree, disagree


def verify_labelling(
    lab: Labelling,
    *,
    top_vertebra: int | None = None,
    sacrum: bool = False,
    dens_index: int | None = None,
    landmarks: Sequence[tuple[int, int, str]] = (),
    lumbar: int = DEFAULT_LUMBAR,
    doubts: Sequence[str] = (),
) -> Labelling:
    """``lab`` with :attr:`~Labelling.verified`, :attr:`~Labelling.reason`, :attr:`~Labelling.anchors` and
    :attr:`~Labelling.verified_ids` set (in place; returned): verified when anchors on at least two different
    vertebrae agree with the ids (:func:`anchor_checks`), none disagrees, every id is :func:`pinned` by the kinds
    of the agreeing anchors (no id rests on a region's usual count across a junction no anchor checks), every gap
    lies between two agreeing anchors, and no flaw finding (``doubts``, :mod:`.flaws`) is doubtful. Ids not
    anatomical are never verified."""
    if not lab.anatomical:
        lab.verified, lab.anchors, lab.verified_ids = False, [], []
        lab.reason = f"{lab.method}: ids 1..{len(lab.ids)} count from the top, they are not VerSe ids"
        return lab
    anchors = anchor_list(
        lab.ids, top_vertebra=top_vertebra, sacrum=sacrum, dens_index=dens_index, landmarks=landmarks, lumbar=lumbar
    )
    agree, disagree = anchor_checks(lab.ids, anchors)
    ok = [(i, kind) for _, i, exp, kind in anchors if lab.ids[i] == exp]
    kinds = {kind for _, kind in ok}
    on = sorted({i for i, _ in ok})
    two = len(agree) >= 2 and not disagree
    loose = [v for v in lab.ids if not pinned(v, kinds)]
    outside = [g for g in lab.gaps if not (on and on[0] <= g.above and g.above + 1 <= on[-1])]
    lab.anchors = agree
    lab.verified_ids = [v for v in lab.ids if v not in loose] if two else []
    lab.verified = two and not loose and not outside and not doubts
    if lab.verified:
        span = f"{vertebra_name(lab.ids[0])}-{vertebra_name(lab.ids[-1])}"
        lab.reason = f"{' and '.join(agree)} agree on the count ({span})"
    elif disagree:
        lab.reason = "anchors disagree: " + "; ".join(disagree) + " (a transitional vertebra or a wrong anchor)"
    elif len(agree) < 2:
        lab.reason = (
            f"one anchor only ({agree[0] if agree else lab.method}): the count is not checked by a second anchor; "
            "a transitional column (L6, 4 lumbar, T13 or 11 thoracic vertebrae) would be numbered one off"
        )
    elif loose:
        names = ", ".join(vertebra_name(v) for v in loose)
        thoracic = all(VERSE_IDS["T1"] <= v <= VERSE_IDS["T12"] or v == VERSE_IDS["T13"] for v in loose)
        region = "thoracic" if thoracic else "lumbar"
        lab.reason = (
            f"{' and '.join(agree)} agree, but {names} {'is' if len(loose) == 1 else 'are'} named assuming the usual "
            f"number of {region} vertebrae across a junction no anchor checks (a T13, 11 thoracic, L6 or 4 lumbar "
            "column would be one off there)"
        )
    elif outside:
        lab.reason = (
            f"{' and '.join(agree)} agree, but a gap outside the vertebrae they anchor is estimated "
            f"({', '.join(f'{g.missing} missing below #{g.above + 1}' for g in outside)})"
        )
    else:
        lab.reason = "doubtful: " + "; ".join(doubts)
    return lab
