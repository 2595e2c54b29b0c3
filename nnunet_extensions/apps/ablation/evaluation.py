"""Measuring the ablation's held-out predictions: CSA tables, the comparison with arm a, and the halo split.

Per budget: ``nnspine evaluate csa-variability`` at one level on every arm's (and reference's) masks, missing
masks filled with CSA 0 (:func:`fill_missing`), ``nnspine evaluate compare-variability`` against arm a (Wilcoxon
signed-rank on the per-subject SDs), and, with the phantom's exact truth, where the predicted area lies
(:mod:`nnunet_spine.postprocessing.cord.halo`: inside the true cord or in a halo outside it) and the radial profile of
the predicted values around the true cord edge.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from nnunet_spine.apps.ablation.config import ARMS, CONTRASTS, AblationConfig
from nnunet_spine.apps.ablation.datasets import contrast_of

if TYPE_CHECKING:
    import pandas


def _truth(phantom: Path, level: int) -> dict[str, float]:
    """True CSA (mm²) of ``level`` per subject of a phantom."""
    out = {}
    for f in sorted((phantom / "derivatives" / "truth").glob("sub-*/sub-*_truth.json")):
        truth = json.loads(f.read_text())
        out[truth["subject"]] = float(truth["csa_per_level_mm2"][str(level)])
    return out


def read_rows(csa_csv: Path) -> pandas.DataFrame:  # noqa: F821
    """Per-contrast rows of a csa-variability table."""
    import pandas as pd

    df = pd.read_csv(csa_csv)
    df["subject"] = df["subject"].astype(str)
    df["contrast"] = df["contrast"].astype(str)
    return df[df["contrast"] != "ALL"]


def fill_missing(csa_csv: Path, subjects: list[str], contrasts: tuple[str, ...], out: Path) -> tuple[Path, int]:
    """The csa-variability table with a row for every (subject, contrast): a mask csa-variability skipped (empty:
    no cord predicted) or without cord at the level counts as CSA 0 mm² (the model missed the cord there).

    Each subject's ``ALL`` row (mean CSA, population SD in mm² and CV in % across contrasts) is recomputed.
    Returns the new table and the number of filled masks.
    """
    import numpy as np
    import pandas as pd

    from nnunet_spine.postprocessing.cord.soft_metrics import VARIABILITY_COLUMNS

    rows = read_rows(csa_csv)
    levels = str(rows["levels"].iloc[0]) if len(rows) else ""
    found = {(r.subject, r.contrast): r for r in rows.itertuples()}
    table, missing = [], 0
    for subject in subjects:
        per_subject = []
        for contrast in contrasts:
            r = found.get((subject, contrast))
            csa = float(r.csa_mm2) if r is not None else float("nan")
            if not np.isfinite(csa):
                missing += 1
                csa = 0.0
            per_subject.append(
                {
                    "subject": subject,
                    "contrast": contrast,
                    "levels": levels,
                    "csa_mm2": csa,
                    "filename": r.filename if r is not None else "",
                    "n_slices": int(r.n_slices) if r is not None else 0,
                }
            )
        values = np.array([r["csa_mm2"] for r in per_subject])
        sd, mean = float(np.std(values)), float(np.mean(values))
        cv = 100.0 * sd / mean if mean > 0 else float("nan")
        table += [{**r, "csa_std_across_contrasts_mm2": sd, "csa_cv_across_contrasts_pct": cv} for r in per_subject]
        table.append(
            {
                "subject": subject,
                "contrast": "ALL",
                "filename": "",
                "levels": levels,
                "n_slices": sum(r["n_slices"] for r in per_subject),
                "csa_mm2": mean,
                "csa_std_across_contrasts_mm2": sd,
                "csa_cv_across_contrasts_pct": cv,
            }
        )
    pd.DataFrame(table, columns=VARIABILITY_COLUMNS).to_csv(out, index=False)
    return out, missing


def summarize_row(csa_csv: Path, truth: dict[str, float], p: float = float("nan")) -> dict:
    """Mean CSA error vs truth (signed and absolute, % of the true CSA) and the mean over subjects of the SD of CSA
    across contrasts (population, mm², as csa-variability) of one (filled) csa-variability table."""
    import numpy as np

    rows = read_rows(csa_csv)
    error = np.array([100.0 * (r.csa_mm2 - truth[r.subject]) / truth[r.subject] for r in rows.itertuples()], float)
    sds = [float(np.std(g["csa_mm2"])) for _, g in rows.groupby("subject")]
    return {
        "n_subjects": int(rows["subject"].nunique()),
        "n_contrasts": int(rows["contrast"].nunique()),
        "csa_error_pct": float(np.mean(error)),
        "abs_csa_error_pct": float(np.mean(np.abs(error))),
        "sd_across_contrasts_mm2": float(np.mean(sds)),
        "wilcoxon_p_vs_a": p,
    }


def format_table(table: pandas.DataFrame) -> str:  # noqa: F821
    """The ablation table for a terminal: one line per row (CSA error in %, SD across contrasts in mm², p)."""

    def fmt(v, spec):
        return "-" if v != v else format(v, spec)

    lines = [
        f"{'row':<24} {'tested on':<10} {'subj':>4} {'missing':>7} {'CSA error %':>11} {'|error| %':>9} "
        f"{'SD mm²':>7} {'p vs (a)':>9} {'inside %':>8} {'halo %':>7}"
    ]
    for r in table.itertuples():
        tested = f"{r.n_contrasts} {'unseen' if r.test_contrasts != '+'.join(CONTRASTS) else 'all'}"
        lines.append(
            f"{r.row:<24} {tested:<10} {r.n_subjects:>4} {r.n_missing:>7} {fmt(r.csa_error_pct, '+.2f'):>11} "
            f"{fmt(r.abs_csa_error_pct, '.2f'):>9} {fmt(r.sd_across_contrasts_mm2, '.3f'):>7} "
            f"{fmt(r.wilcoxon_p_vs_a, '.3g'):>9} {fmt(getattr(r, 'inside_error_pct', float('nan')), '+.1f'):>8} "
            f"{fmt(getattr(r, 'halo_pct', float('nan')), '.1f'):>7}"
        )
    return "\n".join(lines)


@dataclass(frozen=True)
class _Measuring:
    """How one budget is measured: its output folder ``out`` (``csa/``, ``compare/``), the held-out phantom's
    labels folder (discs for csa-variability), the vertebral ``level``, the true CSA (mm²) per held-out subject
    and the command runner ``sh``."""

    out: Path
    labels: Path
    level: int
    truth: dict[str, float]
    sh: Callable[..., int]


def _contrast_files(source: Path, contrasts: tuple[str, ...]) -> list[Path]:
    """The masks in ``source`` of ``contrasts``, sorted."""
    return sorted(p for p in source.glob("*.nii.gz") if contrast_of(p) in contrasts)


def _csa_table(m: _Measuring, name: str, files: list[Path], contrasts: tuple[str, ...]) -> tuple[Path, int, list[Path]]:
    """csa-variability of ``files``, then every missing mask filled with CSA 0 (see :func:`fill_missing`);
    returns the filled table, the number of missing masks and ``files``."""
    csv = m.out / "csa" / f"{name}.csv"
    # exit 2: a mask was skipped (empty prediction); the table holds the others
    m.sh(
        "nnspine",
        "evaluate",
        "csa-variability",
        "-i",
        *map(str, files),
        "--discs",
        str(m.labels),
        "--vert",
        str(m.level),
        "-o",
        str(csv),
        "-q",
        ok=(0, 2),
    )
    return (*fill_missing(csv, sorted(m.truth), contrasts, m.out / "csa" / f"{name}_filled.csv"), files)


def _p_vs_a(m: _Measuring, name: str, table: Path, baseline: Path) -> float:
    """Wilcoxon p of ``nnspine evaluate compare-variability`` against arm a on the same contrasts."""
    import pandas as pd

    csv = m.out / "compare" / f"{name}_vs_a.csv"
    m.sh(
        "nnspine",
        "evaluate",
        "compare-variability",
        str(table),
        str(baseline),
        "--names",
        f"{name},a",
        "-o",
        str(csv),
        "-q",
    )
    cmp = pd.read_csv(csv)
    return float(cmp.loc[cmp["subject"].astype(str) == "ALL", "wilcoxon_p"].iloc[0])


def _row(
    m: _Measuring,
    baselines: dict[tuple[str, ...], tuple[Path, int, list[Path]]],
    row: str,
    name: str,
    method: str,
    train_c: str,
    contrasts: tuple[str, ...],
    measured: tuple[Path, int, list[Path]],
) -> dict:
    """One row of the ablation table from a ``measured`` (filled table, missing masks, files) of
    :func:`_csa_table`: CSA error (%) and SD across contrasts (mm²), and the p against arm a on the same
    ``contrasts`` (NaN for arm a's own rows); the files under ``_files``."""
    table, missing, used = measured
    p = float("nan") if row.startswith("(a)") else _p_vs_a(m, name, table, baselines[contrasts][0])
    summary = summarize_row(table, m.truth, p)
    return {
        "row": row,
        "method": method,
        "train_contrasts": train_c,
        "test_contrasts": "+".join(contrasts),
        "n_subjects": summary.pop("n_subjects"),
        "n_contrasts": summary.pop("n_contrasts"),
        "n_missing": missing,
        **summary,
        "_files": used,
    }


def _arm_rows(
    m: _Measuring,
    config: AblationConfig,
    masks: dict[str, Path],
    baselines: dict[tuple[str, ...], tuple[Path, int, list[Path]]],
) -> list[dict]:
    """The rows of the arms of ``config``; the arm tested on the unseen contrasts adds arm a's row on those
    contrasts (and its table to ``baselines``) first."""
    all_c, seen_c = "+".join(CONTRASTS), "+".join(config.seen_contrasts)
    rows = []
    for arm in (a for a in ARMS if a.key in config.arms):
        if arm.unseen_only:
            unseen = config.unseen_contrasts
            baselines[unseen] = _csa_table(m, "binary_unseen", _contrast_files(masks["binary"], unseen), unseen)
            rows.append(
                _row(
                    m,
                    baselines,
                    "(a) binary, unseen pair",
                    "binary_unseen",
                    "arm a on the contrasts arm d did not see",
                    all_c,
                    unseen,
                    baselines[unseen],
                )
            )
            measured = _csa_table(m, arm.name, _contrast_files(masks[arm.name], unseen), unseen)
            rows.append(
                _row(m, baselines, f"({arm.key}) {arm.name}", arm.name, arm.description, seen_c, unseen, measured)
            )
        elif arm.key == "a":
            measured = baselines[CONTRASTS]
            rows.append(_row(m, baselines, f"(a) {arm.name}", arm.name, arm.description, all_c, CONTRASTS, measured))
        else:
            measured = _csa_table(m, arm.name, _contrast_files(masks[arm.name], CONTRASTS), CONTRASTS)
            rows.append(
                _row(m, baselines, f"({arm.key}) {arm.name}", arm.name, arm.description, all_c, CONTRASTS, measured)
            )
    return rows


def _reference_rows(
    m: _Measuring, test: Path, baselines: dict[tuple[str, ...], tuple[Path, int, list[Path]]]
) -> list[dict]:
    """The rows of the held-out subjects' GT binary masks and exact partial-volume truth."""
    references = {
        "gt_binary": (
            "GT binary masks of the held-out subjects",
            sorted(m.labels.glob("sub-*/anat/*_label-SC_seg.nii.gz")),
        ),
        "gt_truth": (
            "exact partial-volume truth of the held-out subjects",
            sorted((test / "derivatives" / "truth").glob("sub-*/anat/*_label-SC_softseg.nii.gz")),
        ),
    }
    rows = []
    for name, (description, paths) in references.items():
        measured = _csa_table(m, name, paths, CONTRASTS)
        rows.append(_row(m, baselines, f"ref: {name}", name, description, "", CONTRASTS, measured))
    return rows


def _add_halo(rows: list[dict], test: Path, level: int) -> tuple[dict[str, list[Path]], list[dict]]:
    """Move each row's ``_files`` out (returned as row → files) and add its halo means (%) at ``level``; also
    returns the per-mask halo rows (areas in mm²)."""
    halo_rows = []
    sources = {row["row"]: row.pop("_files") for row in rows}
    for row in rows:
        split = halo_table(sources[row["row"]], test, level)
        halo_rows += [{"row": row["row"], **r} for r in split]
        row.update(halo_summary(split))
    return sources, halo_rows


def evaluate_budget(
    folder: Path,
    out: Path,
    config: AblationConfig,
    masks: dict[str, Path],
    sh: Callable[..., int],
) -> pandas.DataFrame:  # noqa: F821
    """The ablation table of one budget (one row per arm and reference; see ``run_ablation``), written as
    ``out/ablation.csv``, with the halo columns; also ``out/halo.csv`` (per row and contrast) and
    ``out/radial_profile.csv`` + ``.png``. ``masks``: arm name → folder of its held-out masks."""
    import pandas as pd

    from nnunet_spine.core.io import write_text

    test = folder / "phantom_test"
    (out / "csa").mkdir(parents=True, exist_ok=True)
    (out / "compare").mkdir(exist_ok=True)
    m = _Measuring(
        out=out,
        labels=test / "derivatives" / "labels",
        level=config.level,
        truth=_truth(test, config.level),
        sh=sh,
    )
    baselines = {CONTRASTS: _csa_table(m, "binary", _contrast_files(masks["binary"], CONTRASTS), CONTRASTS)}
    rows = _arm_rows(m, config, masks, baselines)
    rows += _reference_rows(m, test, baselines)
    sources, halo_rows = _add_halo(rows, test, config.level)
    table = pd.DataFrame(rows)
    write_text(out / "ablation.csv", table.to_csv(index=False, float_format="%.4g"), overwrite=True)
    write_text(out / "halo.csv", pd.DataFrame(halo_rows).to_csv(index=False, float_format="%.4g"), overwrite=True)
    profiles = radial_profiles(
        {row: files for row, files in sources.items() if not row.startswith("ref: gt_truth")}
        | {"ref: soft GT": soft_gt_files(folder)},
        test,
        config.level,
    )
    write_text(out / "radial_profile.csv", profiles.to_csv(index=False, float_format="%.4g"), overwrite=True)
    from nnunet_spine.postprocessing.qc import plot_radial_profiles

    plot_radial_profiles(profiles, out / "radial_profile.png", overwrite=True)
    return table


def soft_gt_files(folder: Path) -> list[Path]:
    """The converter's soft GT of the held-out subjects (written when the ablation folder was prepared)."""
    return sorted((folder / "deriv_test" / "labels_softseg").glob("sub-*/anat/*_label-SC_softseg.nii.gz"))


def _subject(path: Path) -> str:
    return path.name.split("_", 1)[0]


def _rpi_image(path: Path):
    """An image reoriented (no interpolation) to SCT's RPI voxel order, with its new affine."""
    import numpy as np

    from nnunet_spine.core.geometry import reorient
    from nnunet_spine.core.io import Image, load_image

    img = load_image(path)
    data, affine = reorient(np.asarray(img.data), img.affine)
    return Image(data=np.ascontiguousarray(data), affine=affine, path=img.path)


def _truth_and_slices(test: Path, subject: str, contrast: str, level: int):
    """The exact partial-volume truth of one held-out image (RPI) and its slices of ``level`` (from the
    phantom's labelled cord)."""
    import numpy as np

    from nnunet_spine.postprocessing.cord.levels import assign_slice_levels

    anat = Path(subject) / "anat"
    truth = _rpi_image(test / "derivatives/truth" / anat / f"{subject}_{contrast}_label-SC_softseg.nii.gz")
    levels = _rpi_image(test / "derivatives/labels" / anat / f"{subject}_{contrast}_label-SC_seg_labeled.nii.gz")
    per_slice = assign_slice_levels(np.asarray(truth.data, float), level_data=np.asarray(levels.data))
    return truth, np.flatnonzero(per_slice == level)


def halo_table(files: list[Path], test: Path, level: int) -> list[dict]:
    """Per mask of ``files``: subject, contrast, and the halo split at ``level`` (mean per slice, mm²) with
    ``inside_error_pct = 100 (inside - true) / true`` and ``halo_pct = 100 halo / true``."""
    from nnunet_spine.postprocessing.cord.halo import halo_split

    out = []
    for f in files:
        subject, contrast = _subject(f), contrast_of(f)
        truth, slices = _truth_and_slices(test, subject, contrast, level)
        split = halo_split(_rpi_image(f), truth, slices)
        true = split["true_mm2"]
        out.append(
            {
                "subject": subject,
                "contrast": contrast,
                **split,
                "inside_error_pct": 100.0 * (split["inside_mm2"] - true) / true,
                "halo_pct": 100.0 * split["halo_mm2"] / true,
            }
        )
    return out


def halo_summary(split: list[dict]) -> dict:
    """Means over masks of ``inside_error_pct`` and ``halo_pct`` (NaN without masks)."""
    import numpy as np

    if not split:
        return {"inside_error_pct": float("nan"), "halo_pct": float("nan")}
    return {
        "inside_error_pct": float(np.nanmean([r["inside_error_pct"] for r in split])),
        "halo_pct": float(np.nanmean([r["halo_pct"] for r in split])),
    }


def radial_profiles(sources: dict[str, list[Path]], test: Path, level: int) -> pandas.DataFrame:  # noqa: F821
    """Mean predicted value vs signed distance (mm) to the true cord edge, per row and contrast, over the
    held-out subjects and the slices of ``level`` (:func:`nnunet_spine.postprocessing.cord.halo.radial_profile`); the
    truth's own profile as row ``truth``. Columns ``row, contrast, distance_mm, value``."""
    import warnings

    import numpy as np
    import pandas as pd

    from nnunet_spine.postprocessing.cord.halo import PROFILE_EDGES_MM, radial_profile

    warnings.filterwarnings("ignore", "Mean of empty slice", RuntimeWarning)  # a bin no voxel of a contrast reaches

    edges = np.asarray(PROFILE_EDGES_MM)
    centres = 0.5 * (edges[1:] + edges[:-1])
    records = []
    truth_done: dict[tuple[str, str], np.ndarray] = {}
    for row, files in sources.items():
        per_contrast: dict[str, list[np.ndarray]] = {}
        for f in files:
            subject, contrast = _subject(f), contrast_of(f)
            truth, slices = _truth_and_slices(test, subject, contrast, level)
            mask = np.zeros(truth.shape, bool)
            mask[:, :, slices] = True
            per_contrast.setdefault(contrast, []).append(radial_profile(_rpi_image(f), truth, edges, mask))
            if (subject, contrast) not in truth_done:
                truth_done[(subject, contrast)] = radial_profile(truth, truth, edges, mask)
        for contrast, values in per_contrast.items():
            mean = np.nanmean(np.vstack(values), axis=0)
            records += [{"row": row, "contrast": contrast, "distance_mm": c, "value": v} for c, v in zip(centres, mean)]
    by_contrast: dict[str, list[np.ndarray]] = {}
    for (_, contrast), values in truth_done.items():
        by_contrast.setdefault(contrast, []).append(values)
    for contrast, values in by_contrast.items():
        mean = np.nanmean(np.vstack(values), axis=0)
        records += [{"row": "truth", "contrast": contrast, "distance_mm": c, "value": v} for c, v in zip(centres, mean)]
    return pd.DataFrame(records, columns=["row", "contrast", "distance_mm", "value"])
