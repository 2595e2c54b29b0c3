"""Evaluation metrics. Soft-segmentation metrics work on partial-volume masks (values in [0, 1]).

* soft Dice: ``2 Σ p·r / (Σ p + Σ r)`` (equals the usual Dice when both are binary);
* MSE: mean over voxels of ``(p − r)²``;
* Dice at 0.5: Dice of both masks binarized at 0.5.

Folder-level evaluations (:func:`evaluate_softseg`, :func:`csa_variability`) match files by their BIDS
names (:mod:`nnunet_spine.core.bids`), measure every case, and return an :class:`Evaluation`: the table
(with its summary rows) and one line per case left out. They never print; ``nnspine evaluate`` reports.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas


def soft_dice(pred: np.ndarray, ref: np.ndarray, eps: float = 1e-8) -> float:
    """Soft Dice of two masks with values in [0, 1]; 1.0 when both are empty."""
    p = np.asarray(pred, np.float64)
    r = np.asarray(ref, np.float64)
    denom = p.sum() + r.sum()
    if denom < eps:
        return 1.0
    return float(2.0 * (p * r).sum() / denom)


def mse(pred: np.ndarray, ref: np.ndarray) -> float:
    """Mean squared error over voxels."""
    d = np.asarray(pred, np.float64) - np.asarray(ref, np.float64)
    return float(np.mean(d * d))


def dice_at(pred: np.ndarray, ref: np.ndarray, threshold: float = 0.5) -> float:
    """Dice of both masks binarized at ``threshold`` (≥)."""
    return soft_dice(np.asarray(pred) >= threshold, np.asarray(ref) >= threshold)


@dataclass
class Evaluation:
    """Result of a folder-level evaluation: the metrics ``table`` (pandas DataFrame, summary rows included)
    and ``skipped``: one line per input left out, naming the file and the reason."""

    table: pandas.DataFrame
    skipped: list[str] = field(default_factory=list)


def add_mean_row(df: pandas.DataFrame, key: str = "case", label: str = "MEAN") -> pandas.DataFrame:
    """``df`` with one more row: ``key`` = ``label`` and the mean of every numeric column (NaNs left out)."""
    import pandas as pd

    mean = {key: label, **df.drop(columns=key).mean(numeric_only=True).to_dict()}
    return pd.concat([df, pd.DataFrame([mean], columns=df.columns)], ignore_index=True)


def _progress(items: Sequence, desc: str, unit: str, progress: bool):
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, unit=unit, disable=not progress)


# ------------------------------------------------------------------------------------ soft segmentation
#: Columns of ``nnspine evaluate softseg`` (CSA in mm², over the slices where the reference holds cord).
SOFTSEG_COLUMNS = [
    "case",
    "soft_dice",
    "mse",
    "dice_0.5",
    "csa_pred_mm2",
    "csa_ref_mm2",
    "csa_error_mm2",
    "csa_error_pct",
]


def evaluate_softseg_case(pred_path, ref_path, case: str | None = None) -> dict:
    """Soft Dice, MSE, Dice at 0.5 and mean-CSA error of one predicted soft mask against its reference.

    Both masks must be on the same grid (values in [0, 1]; binary references are fine). CSA is the mean
    per-slice area (angle-corrected, :mod:`nnunet_spine.postprocessing.cord.csa`) over the slices where the reference
    holds cord; the error is ``pred − ref`` in mm² and in % of the reference.
    """
    from nnunet_spine.core.io import check_same_grid, load_image
    from nnunet_spine.postprocessing.cord.csa import compute_csa

    ref = load_image(ref_path, "soft", allow_empty=False)
    pred = load_image(pred_path, "soft")
    check_same_grid(ref, pred)
    p, r = pred.data.astype(np.float64), ref.data.astype(np.float64)
    ref_csa = compute_csa(ref).set_index("slice")["area"]
    if np.any(p):
        pred_csa = compute_csa(pred).set_index("slice")["area"].reindex(ref_csa.index).fillna(0.0)
    else:
        pred_csa = ref_csa * 0.0
    csa_ref, csa_pred = float(ref_csa.mean()), float(pred_csa.mean())
    return {
        "case": case or str(pred_path),
        "soft_dice": soft_dice(p, r),
        "mse": mse(p, r),
        "dice_0.5": dice_at(p, r, 0.5),
        "csa_pred_mm2": csa_pred,
        "csa_ref_mm2": csa_ref,
        "csa_error_mm2": csa_pred - csa_ref,
        "csa_error_pct": 100.0 * (csa_pred - csa_ref) / csa_ref,
    }


def evaluate_softseg(pred_dir: str | os.PathLike, ref_dir: str | os.PathLike, *, progress: bool = False) -> Evaluation:
    """:func:`evaluate_softseg_case` for every NIfTI file of ``pred_dir`` against the file of the same name in
    ``ref_dir``; the case is the file's image stem (:func:`nnunet_spine.core.bids.case_name`).

    Returns the table (:data:`SOFTSEG_COLUMNS`, one row per case sorted by file name, then a ``MEAN`` row)
    and the cases skipped (no reference, unreadable, other grid...). Raises :class:`InputError` for a
    missing folder, a folder without NIfTI files, or when no case could be evaluated.
    """
    import pandas as pd

    from nnunet_spine.core.bids import case_name
    from nnunet_spine.core.io import InputError, require_folder
    from nnunet_spine.postprocessing.cord.csa import expand_inputs

    pred_dir, ref_dir = require_folder(pred_dir), require_folder(ref_dir)
    rows, skipped = [], []
    for pred in _progress(expand_inputs([pred_dir]), "evaluate", "case", progress):
        ref = ref_dir / pred.name
        try:
            if not ref.exists():
                raise InputError(f"{pred}: no reference {ref}")
            rows.append(evaluate_softseg_case(pred, ref, case=case_name(pred)))
        except InputError as exc:
            skipped.append(str(exc))
    if not rows:
        raise InputError(f"{pred_dir}: no case could be evaluated ({skipped[0]})")
    return Evaluation(add_mean_row(pd.DataFrame(rows, columns=SOFTSEG_COLUMNS)), skipped)


# ------------------------------------------------------------------------------ CSA across contrasts
#: Columns of ``nnspine evaluate csa-variability`` (one row per subject and contrast, then per subject).
VARIABILITY_COLUMNS = [
    "subject",
    "contrast",
    "filename",
    "levels",
    "n_slices",
    "csa_mm2",
    "csa_std_across_contrasts_mm2",
    "csa_cv_across_contrasts_pct",
]


def csa_at_levels(per_slice, levels: list[int]) -> tuple[float, int]:
    """Mean per-slice CSA (mm²) over the slices of the given vertebral levels, and how many slices."""
    sel = per_slice[np.isin(per_slice["level"].to_numpy(), levels)]
    return (float(sel["area"].mean()) if len(sel) else float("nan")), int(len(sel))


def variability_table(rows: list[dict]) -> pandas.DataFrame:  # noqa: F821
    """Add each subject's standard deviation (population, mm²) and CV (%) of CSA across contrasts.

    ``rows`` hold ``subject``, ``contrast``, ``csa_mm2``; contrasts with no slice at the levels (NaN) are
    left out of the statistics. Returns one row per (subject, contrast) followed by one summary row per
    subject (``contrast`` = ``ALL``).
    """
    import pandas as pd

    from nnunet_spine.postprocessing.cord.variability import spread

    df = pd.DataFrame(rows)
    out = []
    for subject, group in df.groupby("subject", sort=True):
        vals = group["csa_mm2"].dropna().to_numpy(float)
        std, cv = spread(vals)
        for _, r in group.iterrows():
            out.append({**r.to_dict(), "csa_std_across_contrasts_mm2": std, "csa_cv_across_contrasts_pct": cv})
        out.append(
            {
                "subject": subject,
                "contrast": "ALL",
                "filename": "",
                "levels": group["levels"].iloc[0],
                "n_slices": int(group["n_slices"].sum()),
                "csa_mm2": float(np.mean(vals)) if len(vals) else float("nan"),
                "csa_std_across_contrasts_mm2": std,
                "csa_cv_across_contrasts_pct": cv,
            }
        )
    return pd.DataFrame(out, columns=VARIABILITY_COLUMNS)


def csa_variability(
    masks: Sequence[str | os.PathLike],
    levels: Sequence[int],
    *,
    discs: str | os.PathLike | None = None,
    vertfiles: str | os.PathLike | None = None,
    suffix: str | Sequence[str],
    vertfile_kind: str = "auto",
    levels_text: str | None = None,
    threshold: float | None = None,
    progress: bool = False,
) -> Evaluation:
    """CSA (mm², angle-corrected, mean over the slices of ``levels``) of every mask, and its spread across
    each subject's contrasts (:func:`variability_table`).

    ``masks``: files or folders of cord masks named ``sub-XX_<contrast>[<mask suffix>].nii.gz``
    (:data:`nnunet_spine.core.bids.CORD_MASK_SUFFIXES` are stripped to get the image stem). Levels come
    from ``<image stem><suffix>.nii[.gz]`` found anywhere under exactly one of ``discs`` (disc point
    labels) or ``vertfiles`` (labelled-level masks or SPINEPS vertebra instance masks, read as
    ``vertfile_kind`` says: :func:`nnunet_spine.postprocessing.cord.levels.level_file_kind`); ``suffix`` may be several,
    tried in order. ``levels`` are SCT level numbers (an instance mask's VerSe ids are converted).
    ``levels_text`` is written in the ``levels`` column (default: the levels joined by commas). Masks that
    cannot be measured are skipped (one line each); :class:`InputError` when none can.
    """
    from nnunet_spine.core.bids import case_name, find_by_stem, split_subject
    from nnunet_spine.core.io import InputError, require_folder
    from nnunet_spine.postprocessing.cord.csa import expand_inputs, measure_file

    if (discs is None) == (vertfiles is None):
        raise ValueError("give exactly one of discs and vertfiles")
    level_dir = require_folder(discs if discs is not None else vertfiles)
    level_kind = "discfile" if discs is not None else "vertfile"
    text = levels_text if levels_text is not None else ",".join(map(str, levels))
    suffixes = [suffix] if isinstance(suffix, str) else list(suffix)
    paths = expand_inputs(list(masks))
    if not paths:
        raise InputError("no NIfTI masks given")
    rows, skipped = [], []
    for mask in _progress(paths, "csa", "mask", progress):
        case = case_name(mask)
        subject, contrast = split_subject(case)
        try:
            if not mask.is_file():
                raise InputError(f"{mask}: file not found")
            if not subject:
                raise InputError(f"{mask}: name does not start with a BIDS subject (sub-XX_...)")
            level_file = next((f for f in (find_by_stem(level_dir, f"{case}{x}") for x in suffixes) if f), None)
            if level_file is None:
                raise InputError(
                    f"{mask}: no level file {' or '.join(case + x + '.nii.gz' for x in suffixes)} under {level_dir}"
                )
            extra = {"vertfile_kind": vertfile_kind} if level_kind == "vertfile" else {}
            per_slice = measure_file(mask, threshold=threshold, **{level_kind: level_file}, **extra)
        except InputError as exc:
            skipped.append(str(exc))
            continue
        csa, n = csa_at_levels(per_slice, list(levels))
        rows.append(
            {
                "subject": subject,
                "contrast": contrast,
                "filename": str(mask),
                "levels": text,
                "n_slices": n,
                "csa_mm2": csa,
            }
        )
    if not rows:
        raise InputError(f"{paths[0]}: no mask could be measured ({skipped[0]})")
    return Evaluation(variability_table(rows), skipped)
