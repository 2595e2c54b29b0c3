"""QC report entries from the results of ``nnspine`` commands (``--qc-report DIR``).

One function per command, each called once after the command wrote its results: it reads what the
command wrote (masks, its table's values), draws the entry's pictures with
:mod:`nnunet_spine.postprocessing.qc.report` and adds the entries to the report in ``DIR``.

Each entry's ``file`` is the input-relative path of the case's image (mask suffixes stripped, so that
manual-correction finds the image and its mask by its own suffixes); ``cmdline`` is the command as typed.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from nnunet_spine.core.bids import (
    CORD_MASK_SUFFIXES,
    LESION_SEG,
    SPINEPS_INSTANCE_SUFFIXES,
    SPINEPS_SEMANTIC_SUFFIXES,
    case_name,
)
from nnunet_spine.core.io import NIFTI_SUFFIXES, Image, load_image, same_grid, split_suffix
from nnunet_spine.postprocessing.qc.report import Entry, add_entries, axial_mosaic, label_colours, sagittal_picture

#: Mask suffixes stripped from a file name to name the case's image (longest first).
MASK_SUFFIXES = tuple(
    sorted(
        {*CORD_MASK_SUFFIXES, LESION_SEG, *SPINEPS_SEMANTIC_SUFFIXES, *SPINEPS_INSTANCE_SUFFIXES}, key=len, reverse=True
    )
)


def command_line(argv: Sequence[str] | None = None) -> str:
    """The command as typed: ``nnspine`` and its arguments, shell-quoted."""
    args = list(sys.argv[1:] if argv is None else argv)
    return shlex.join(["nnspine", *args])


def image_file(path: str | os.PathLike, root: str | os.PathLike | None = None) -> str:
    """Input-relative path of the case's image: ``path`` relative to the input folder ``root`` (its name for
    a file input), the mask suffix stripped (``pred/sub-01_T2w_label-SC_seg.nii.gz`` → ``sub-01_T2w.nii.gz``)."""
    p = Path(path)
    rel = Path(p.name)
    if root is not None and Path(root).is_dir():
        try:
            rel = p.resolve().relative_to(Path(root).resolve())
        except ValueError:
            rel = Path(p.name)
    ending = split_suffix(p)[1] if split_suffix(p)[1].lower() in NIFTI_SUFFIXES else ".nii.gz"
    return (rel.parent / f"{case_name(p, MASK_SUFFIXES)}{ending}").as_posix()


def _names(file: str) -> dict[str, str]:
    """subject, session and contrast of a case from its name's leading ``sub-``/``ses-`` parts (BIDS), taken
    as text whatever characters they hold; empty when the name has none."""
    tokens = split_suffix(Path(file).name)[0].split("_")
    subject = tokens.pop(0) if tokens and tokens[0].startswith("sub-") else ""
    session = tokens.pop(0) if subject and tokens and tokens[0].startswith("ses-") else ""
    return {"subject": subject, "session": session, "contrast": "_".join(tokens) if subject else ""}


def _dataset(root: str | os.PathLike | None) -> str:
    """The dataset's name: the folder above ``derivatives/`` when the input lies in one, else the input
    folder's name (the parent folder's for a file input)."""
    if root is None:
        return ""
    r = Path(root).resolve()
    r = r if r.is_dir() else r.parent
    return next((p.parent.name for p in (r, *r.parents) if p.name == "derivatives"), r.name)


def _optional(path: str | os.PathLike | None, like: Image, kind: str = "image") -> np.ndarray | None:
    """The data of an optional companion file when it exists and lies on ``like``'s grid, else None."""
    if path is None or not Path(path).is_file():
        return None
    img = load_image(path, kind)
    return np.asarray(img.data) if same_grid(like, img) else None


def _entry(command: str, file: str, yml_key: str, pictures, *, root=None, cmdline=None, **fields) -> Entry:
    """An :class:`Entry` with the case's names from ``file`` and the command line."""
    background, overlay = pictures
    return Entry(
        command=command,
        file=file,
        yml_key=yml_key,
        background=background,
        overlay=overlay,
        cmdline=cmdline or command_line(),
        dataset=_dataset(root),
        **_names(file),
        **fields,
    )


def _fmt(value, digits: int = 2) -> str:
    """A number as text (``n/a`` for missing / NaN)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "n/a" if value is None else str(value)
    return "n/a" if not np.isfinite(v) else f"{v:.{digits}f}"


# ----------------------------------------------------------------------------------------------- commands
def report_csa(report_dir, files: Iterable[Path], rows: Sequence[dict], *, root=None, cmdline=None) -> list[Path]:
    """Entries of ``nnspine csa``: per measured mask an axial mosaic around the cord (mask > 0.5 in red, the
    mask's footprint as background) and its mean CSA (mm², the table's ``MEAN(area)``) with the levels."""
    entries = []
    by_file: dict[str, list[dict]] = {}
    for r in rows:
        by_file.setdefault(str(r["Filename"]), []).append(r)
    for path in files:
        found = by_file.get(str(path))
        if not found:
            continue
        mask = load_image(path, "soft")
        labels = (np.asarray(mask.data, np.float32) > 0.5).astype(np.uint8)
        values = {}
        for r in found:
            level = str(r.get("VertLevel") or "")
            values[f"CSA (mm², levels {level})" if level else "mean CSA (mm²)"] = _fmt(r.get("MEAN(area)"))
        pictures = axial_mosaic(labels, mask.affine, label_colours("cord"), image=np.asarray(mask.data, np.float32))
        file = image_file(path, root)
        entries.append(_entry("csa", file, "FILES_SEG", pictures, root=root, cmdline=cmdline, values=values))
    return add_entries(report_dir, entries)


def report_lesions(report_dir, jobs: Sequence, table, *, root=None, cmdline=None) -> list[Path]:
    """Entries of ``nnspine lesions``: per prediction an axial mosaic around the cord (``--cord``; else around
    the lesions) of the kept lesions, the image (``--image``) behind them; values: lesions kept / removed,
    kept volume (mm³)."""
    entries = []
    for job in jobs:
        out = load_image(job.output, "labels")
        rows = table[table["filename"] == str(job.pred)]
        total = rows[rows["lesion"] == "total"]
        values = {}
        if len(total):
            values = {
                "lesions": str(total.iloc[0]["removed"]),
                "kept volume (mm³)": _fmt(total.iloc[0]["volume_mm3"], 1),
            }
        cord = _optional(getattr(job, "cord", None), out, "binary")
        image = _optional(getattr(job, "image", None), out)
        pictures = axial_mosaic(
            out.data, out.affine, label_colours("lesion"), image=image if image is not None else cord, centre_mask=cord
        )
        file = image_file(job.pred, root)
        entries.append(_entry("lesions", file, "FILES_LESION", pictures, root=root, cmdline=cmdline, values=values))
    return add_entries(report_dir, entries)


def report_lesion_evaluation(report_dir, pred, ref, rows: Sequence[dict], *, cmdline=None) -> list[Path]:
    """Entries of ``nnspine evaluate lesions``: per case an axial mosaic around the lesions, voxels of both
    masks green (true positive), of the prediction only orange, of the reference only red; values: Dice,
    lesion F1, TP / FP / FN lesions."""
    from nnunet_spine.postprocessing.lesion.metrics import pair_cases

    by_case = {str(r["case"]): r for r in rows}
    entries = []
    for case, p_path, r_path in pair_cases(pred, ref):
        r = by_case.get(str(case))
        if r is None:
            continue
        p_img, r_img = load_image(p_path, "labels"), load_image(r_path, "labels")
        p, q = np.asarray(p_img.data) > 0, np.asarray(r_img.data) > 0
        labels = np.where(p & q, 1, np.where(p, 2, np.where(q, 3, 0))).astype(np.uint8)
        values = {
            "Dice": _fmt(r.get("dice"), 3),
            "lesion F1": _fmt(r.get("lesion_f1"), 3),
            "TP / FP / FN lesions": f"{r.get('tp')} / {r.get('fp')} / {r.get('fn')}",
        }
        pictures = axial_mosaic(labels, p_img.affine, label_colours("evaluation"), image=(p | q).astype(np.float32))
        file = image_file(p_path, pred)
        entries.append(
            _entry("evaluate lesions", file, "FILES_LESION", pictures, root=pred, cmdline=cmdline, values=values)
        )
    return add_entries(report_dir, entries)


def _fusion_values(fusion) -> dict[str, str]:
    """Vertebra count, names and labelling status of a fused case."""
    names = ", ".join(fusion.label_name(v) for v in fusion.vertebra_ids())
    lab = fusion.labelling
    return {
        "vertebrae": f"{len(fusion.vertebrae)} ({names})",
        "labelling": lab.method if lab is not None else "ids 1..n from the top (not anatomical)",
        "verified": ("yes" if lab.verified else "no") + (f" ({lab.reason})" if lab.reason else "")
        if lab is not None
        else "no",
    }


def report_fusion(report_dir, report, semantic, *, command: str = "fuse", image=None, cmdline=None) -> list[Path]:
    """Entries of ``nnspine fuse`` / ``instances``
    (:class:`~nnunet_spine.postprocessing.spine.fusion_files.FuseReport`):
    per case a sagittal picture of the vertebra instances (colour per id), the image behind them when
    ``image`` is a file on the mask's grid; values: vertebra count and names, labelling, verified."""
    entries = []
    for case, fusion, paths in report.cases:
        vert = load_image(paths["vert"], "labels")
        img = _optional(image, vert) if image is not None and Path(image).is_file() else None
        pictures = sagittal_picture(vert.data, vert.affine, label_colours("instances"), image=img)
        file = image_file(Path(semantic) / f"{case}.nii.gz" if Path(semantic).is_dir() else semantic, semantic)
        entries.append(
            _entry(
                command,
                file,
                "FILES_LABEL",
                pictures,
                root=semantic,
                cmdline=cmdline,
                plane="sagittal",
                values=_fusion_values(fusion),
            )
        )
    return add_entries(report_dir, entries)


def report_instance_evaluation(
    report_dir, pred, ref, rows: Sequence[dict], *, semantic: bool, cmdline=None
) -> list[Path]:
    """Entries of ``nnspine evaluate instances``: per case a sagittal picture of the prediction (SPINEPS
    colours for ``semantic``, a colour per vertebra id otherwise); values: the case's summary row (PQ, global
    Dice for instances; mean Dice for semantic masks)."""
    from nnunet_spine.postprocessing.spine.panoptic import pair_files

    by_case: dict[str, list[dict]] = {}
    for r in rows:
        by_case.setdefault(str(r["case"]), []).append(r)
    entries = []
    suffixes = SPINEPS_SEMANTIC_SUFFIXES if semantic else SPINEPS_INSTANCE_SUFFIXES
    for case, p_path, _ in pair_files(pred, ref, suffixes, "semantic" if semantic else "instance"):
        found = by_case.get(str(case))
        if not found:
            continue
        img = load_image(p_path, "labels")
        if semantic:
            dice = [float(r["dice"]) for r in found if r.get("dice") is not None]
            values = {"mean Dice over labels": _fmt(np.nanmean(dice) if dice else None, 3)}
        else:
            summary = next((r for r in found if str(r.get("structure", "")) in ("all", "vertebra", "ALL")), found[0])
            what = summary.get("structure", "")
            values = {
                f"{k} ({what})": _fmt(summary.get(k), 3) for k in ("pq", "rq", "sq", "global_dice") if k in summary
            }
            values[f"TP / FP / FN ({what})"] = " / ".join(str(summary.get(k)) for k in ("tp", "fp", "fn"))
        pictures = sagittal_picture(
            img.data, img.affine, label_colours("spine" if semantic else "instances"), semantic=semantic
        )
        file = image_file(p_path, pred)
        entries.append(
            _entry(
                "evaluate instances",
                file,
                "FILES_LABEL",
                pictures,
                root=pred,
                cmdline=cmdline,
                plane="sagittal",
                values=values,
            )
        )
    return add_entries(report_dir, entries)


def _segment_values(task: str, main: Path, table: Path | None, fields: dict) -> dict[str, str]:
    """Key values of a ``segment`` case: mean CSA over the slices of its per-slice table (cord), the lesion
    table's total row (lesion), the labelling fields of the summary (spine)."""
    import pandas as pd

    if task == "cord" and table is not None and table.is_file():
        return {"mean CSA over slices (mm²)": _fmt(pd.read_csv(table)["MEAN(area)"].mean())}
    if task == "lesion" and table is not None and table.is_file():
        df = pd.read_csv(table)
        total = df[df["lesion"].astype(str) == "total"]
        if len(total):
            return {"lesions": str(total.iloc[0]["removed"]), "kept volume (mm³)": _fmt(total.iloc[0]["volume_mm3"], 1)}
    return {k: str(v) for k, v in fields.items() if k in ("labelling", "verified", "reason")}


def report_segment(report_dir, task: str, report, cases: Sequence, source, out: Path, model) -> list[Path]:
    """Entries of ``nnspine segment`` (:class:`~nnunet_spine.apps.segment.SegmentReport`): per finished case the
    main result over the case's first image, an axial mosaic around the cord (cord, lesion) or a sagittal picture
    (spine: the vertebra instance mask); the model (its results folder) in the entry."""
    from nnunet_spine.apps.segment_tasks import outputs_of

    by_name = {c.name: c for c in cases}
    done = {name: written for name, status, _, written in report.done if status == "ok"}
    yml_key = {"cord": "FILES_SEG", "lesion": "FILES_LESION", "spine": "FILES_LABEL"}[task]
    entries = []
    for name, written in done.items():
        case = by_name.get(name)
        if case is None:
            continue
        paths = outputs_of(task, case, Path(out), model)
        image = load_image(case.images[0], "image")
        if task == "spine":
            vert = next(p for p in paths if p.name.endswith(f"{SPINEPS_INSTANCE_SUFFIXES[0]}.nii.gz"))
            mask = load_image(vert, "labels")
            back = np.asarray(image.data) if same_grid(mask, image) else None
            pictures = sagittal_picture(mask.data, mask.affine, label_colours("instances"), image=back)
            table = None
        else:
            mask = load_image(paths[0], "soft" if task == "cord" else "labels")
            labels = (np.asarray(mask.data, np.float32) > 0.5).astype(np.uint8) if task == "cord" else mask.data
            back = np.asarray(image.data) if same_grid(mask, image) else None
            lut = label_colours("cord" if task == "cord" else "lesion")
            pictures = axial_mosaic(labels, mask.affine, lut, image=back)
            table = paths[1]
        values = _segment_values(task, paths[0], table, getattr(written, "fields", {}))
        file = image_file(case.images[0], source)
        entries.append(
            _entry(
                f"segment {task}",
                file,
                yml_key,
                pictures,
                root=source,
                model="/".join(Path(model.folder).parts[-2:]),
                plane="sagittal" if task == "spine" else "axial",
                values=values,
            )
        )
    return add_entries(report_dir, entries)


# ------------------------------------------------------------------------------------------- the loop
@contextlib.contextmanager
def selected_inputs(path, exclude=None, include=None) -> Iterator[tuple[Path, list[str]]]:
    """The input with the cases ``--exclude-yml`` lists (or ``--include-yml`` does not) left out, as
    ``sct_run_batch -exclude-yml`` skips them: yields ``(input to use, skipped cases' image files)``.

    ``exclude`` / ``include`` are :class:`~nnunet_spine.core.qc_yml.CaseList` or None. A folder with cases left out
    is replaced by a temporary folder of links to the kept files (same relative paths, so case names are
    unchanged); a folder or file with nothing left out is used as it is. Every case left out raises
    :class:`~nnunet_spine.core.io.InputError` naming the lists.
    """
    from nnunet_spine.core.bids import list_nifti
    from nnunet_spine.core.io import InputError
    from nnunet_spine.core.qc_yml import filter_cases

    p = Path(path)
    if exclude is None and include is None:
        yield p, []
        return
    files = list_nifti(p) if p.is_dir() else [p]
    kept, skipped = filter_cases(files, exclude=exclude, include=include, path_of=lambda f: image_file(f, p))
    names = [image_file(f, p) for f in skipped]
    if not kept:
        lists = " and ".join(str(c.path) for c in (exclude, include) if c is not None)
        raise InputError(f"{p}: every case is left out by {lists} ({len(skipped)} skipped)")
    if not skipped:
        yield p, []
        return
    with tempfile.TemporaryDirectory(prefix=".nnspine-selected-") as tmp:
        for f in kept:
            link = Path(tmp) / f.resolve().relative_to(p.resolve())
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(f.resolve())
        yield Path(tmp), names
