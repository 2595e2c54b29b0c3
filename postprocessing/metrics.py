"""Evaluation metrics. Soft-segmentation metrics work on partial-volume masks (values in [0, 1]).

* soft Dice: ``2 Σ p·r / (Σ p + Σ r)`` (equals the usual Dice when both are binary);
* MSE: mean over voxels of ``(p − r)²``;
* Dice at 0.5: Dice of both masks binarized at 0.5.
"""

from __future__ import annotations

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


# ------------------------------------------------------------------------------------ soft segmentation
#: Columns of ``nnspine evaluate softseg`` (CSA in mm², over the slices where the reference holds cord).
SOFTSEG_COLUMNS = ["case", "soft_dice", "mse", "dice_0.5", "csa_pred_mm2", "csa_ref_mm2", "csa_error_mm2",
                   "csa_error_pct"]


def evaluate_softseg_case(pred_path, ref_path, case: str | None = None) -> dict:
    """Soft Dice, MSE, Dice at 0.5 and mean-CSA error of one predicted soft mask against its reference.

    Both masks must be on the same grid (values in [0, 1]; binary references are fine). CSA is the mean
    per-slice area (angle-corrected, :mod:`postprocessing.csa`) over the slices where the reference holds
    cord; the error is ``pred − ref`` in mm² and in % of the reference.
    """
    from nnunet_extensions.io import check_same_grid, load_image
    from postprocessing.csa import compute_csa

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


# ------------------------------------------------------------------------------ CSA across contrasts
#: Columns of ``nnspine evaluate csa-variability`` (one row per subject and contrast, then per subject).
VARIABILITY_COLUMNS = ["subject", "contrast", "filename", "levels", "n_slices", "csa_mm2", "csa_std_across_contrasts_mm2",
                       "csa_cv_across_contrasts_pct"]


def split_bids_name(name: str) -> tuple[str, str]:
    """``sub-01_flip-1_mt-on_MTS`` → ``("sub-01", "flip-1_mt-on_MTS")``; non-BIDS names give ``("", name)``."""
    import re

    m = re.match(r"^(sub-[A-Za-z0-9]+)(?:_(.*))?$", name)
    if not m:
        return "", name
    return m.group(1), m.group(2) or ""


def csa_at_levels(per_slice, levels: list[int]) -> tuple[float, int]:
    """Mean per-slice CSA (mm²) over the slices of the given vertebral levels, and how many slices."""
    sel = per_slice[np.isin(per_slice["level"].to_numpy(), levels)]
    return (float(sel["area"].mean()) if len(sel) else float("nan")), int(len(sel))


def variability_table(rows: list[dict]) -> "pandas.DataFrame":  # noqa: F821
    """Add each subject's standard deviation (population, mm²) and CV (%) of CSA across contrasts.

    ``rows`` hold ``subject``, ``contrast``, ``csa_mm2``; contrasts with no slice at the levels (NaN) are
    left out of the statistics. Returns one row per (subject, contrast) followed by one summary row per
    subject (``contrast`` = ``ALL``).
    """
    import pandas as pd

    df = pd.DataFrame(rows)
    out = []
    for subject, group in df.groupby("subject", sort=True):
        vals = group["csa_mm2"].dropna().to_numpy(float)
        std = float(np.std(vals)) if len(vals) >= 2 else float("nan")
        cv = 100.0 * std / float(np.mean(vals)) if len(vals) >= 2 else float("nan")
        for _, r in group.iterrows():
            out.append({**r.to_dict(), "csa_std_across_contrasts_mm2": std, "csa_cv_across_contrasts_pct": cv})
        out.append({"subject": subject, "contrast": "ALL", "filename": "", "levels": group["levels"].iloc[0],
                    "n_slices": int(group["n_slices"].sum()), "csa_mm2": float(np.mean(vals)) if len(vals) else float("nan"),
                    "csa_std_across_contrasts_mm2": std, "csa_cv_across_contrasts_pct": cv})
    return pd.DataFrame(out, columns=VARIABILITY_COLUMNS)
