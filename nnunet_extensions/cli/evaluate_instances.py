"""``nnspine evaluate instances``: panoptic metrics of SPINEPS-format vertebra instance masks (RQ, SQ, PQ,
ASSD, global Dice per structure group), or per-label Dice of semantic masks with ``--semantic``.

Registered under ``nnspine evaluate`` by :func:`register_instances` (called from :mod:`.evaluate`); the work
is done by :mod:`nnunet_spine.postprocessing.spine.panoptic`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nnunet_spine.cli.common import (
    add_exclude_options,
    add_overwrite,
    add_qc_report_option,
    add_quiet,
    new_parser,
    read_case_lists,
    say_skipped,
)

DESCRIPTION = """\
Compare predicted SPINEPS-format masks with reference masks, case by case.

Instance masks (default): vertebrae by VerSe id (C1=1 ... L5=24, L6=25, T13=28), sacrum 26, the disc
below vertebra X as 100+X, its endplates as 200+X. One row per case and structure group:
  vertebra (1-25, 28), ivd (101-125, 128), endplate (201-225, 228), sacrum (26), all (every instance).
Matching (--match, written into the CSV):
  label  same value = a pair; a true positive when its IoU >= 0.5 (--tp-metric iou, default, as
         panoptica's NaiveThresholdMatching) or its Dice >= 0.5 (--tp-metric dsc)
  iou    one-to-one pairs with IoU >= 0.5, values ignored (greedy by decreasing IoU)
Columns: case, structure, match, ref_instances, pred_instances, tp, fp (= pred - tp), fn (= ref - tp),
precision (tp/pred), recall (tp/ref), rq (tp / (tp + fp/2 + fn/2), the F1 of the matching), sq (mean IoU
of the true positives), sq_dsc (their mean Dice), pq (= sq * rq), pq_dsc (= sq_dsc * rq), assd_mm (mean
over true positives of the average symmetric surface distance, mm from the voxel size), global_dice
(Dice of the union of the group's reference instances with the union of its predicted ones),
pred_labelling_warning (--match label: the prediction's sidecar from 'nnspine fuse', <stem>.json beside it,
says its ids are not anatomical, 1..n from the top, or not verified by two anchors; also one line per case
on stderr; empty without a sidecar).
Undefined values are empty: precision without predicted instances, recall without reference ones, rq
without either, sq/sq_dsc/assd_mm without true positives, global_dice with both unions empty.

--semantic: semantic masks (41-49, 26, 60, 61, 62, 100); one row per case and label with the reference
and predicted volume (mm^3) and Dice (empty when the label is in neither mask).

The rows with case = ALL summarise the cases: counts and volumes summed, every other column the mean
over cases (empty values left out). Files, or folders matched by case name (the image's BIDS stem:
sub-01_T2w.nii.gz matches sub-01_T2w_seg-vert_msk.nii.gz, or _seg-spine_msk / _seg-subreg_msk with
--semantic); the masks of a case must share the grid. Bad input (values outside the SPINEPS set, a
semantic mask where an instance mask is expected or the reverse, different grids) stops the run with
one line naming the file, and nothing is written.
"""

EXAMPLE = """\
examples:
  nnspine evaluate instances --pred pred_instances/ --ref bids/derivatives/labels -o instances.csv
  nnspine evaluate instances --pred sub-01_T2w_seg-vert_msk.nii.gz --ref ref_seg-vert_msk.nii.gz --match iou -o m.csv
  nnspine evaluate instances --semantic --pred pred_semantic/ --ref bids/derivatives/labels -o dice.csv
"""


def register_instances(what: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``instances`` to the ``nnspine evaluate`` sub-commands; returns its parser."""
    from nnunet_spine.postprocessing.spine.panoptic import MATCH_RULES, TP_METRICS

    s = new_parser(
        what,
        "instances",
        help="panoptic metrics of vertebra instance masks (RQ, SQ, PQ, ASSD) or per-label Dice (CSV)",
        description=DESCRIPTION,
        epilog=EXAMPLE,
    )
    s.add_argument("--pred", required=True, type=Path, metavar="PRED", help="predicted mask (.nii.gz) or folder")
    s.add_argument(
        "--ref", required=True, type=Path, metavar="REF", help="reference mask or folder (searched recursively)"
    )
    s.add_argument("--semantic", action="store_true", help="semantic masks: per-label Dice instead of instance metrics")
    s.add_argument("--match", choices=MATCH_RULES, default=None, help="instance matching rule (default: label)")
    s.add_argument(
        "--tp-metric",
        choices=TP_METRICS,
        default=None,
        help="with --match label: a pair is a true positive when this is >= 0.5 (default: iou, as panoptica)",
    )
    s.add_argument(
        "-o",
        "--output",
        type=Path,
        default=Path("instance_metrics.csv"),
        metavar="CSV",
        help="output CSV (default: instance_metrics.csv)",
    )
    s.add_argument(
        "--qc", type=Path, metavar="DIR", help="also write a sagittal QC snapshot of each prediction, DIR/<case>_qc.png"
    )
    add_exclude_options(s)
    add_qc_report_option(s)
    add_overwrite(s)
    add_quiet(s)
    s.set_defaults(func=run_instances)
    return s


def run_instances(args: argparse.Namespace) -> int:
    import pandas as pd

    from nnunet_spine.cli import UsageError
    from nnunet_spine.core.bids import with_subject_columns
    from nnunet_spine.core.io import check_output, write_text
    from nnunet_spine.postprocessing.spine.panoptic import (
        COUNT_KEYS,
        INSTANCE_COLUMNS,
        LABELLING_WARNING,
        SEMANTIC_COLUMNS,
        SUMMARY_CASE,
        evaluate_instances,
        evaluate_semantic,
        qc_outputs,
        write_qc,
    )

    if args.semantic and (args.match is not None or args.tp_metric is not None):
        raise UsageError("--match and --tp-metric apply to instance masks, not with --semantic")
    match = args.match or "label"
    if args.tp_metric is not None and match != "label":
        raise UsageError("--tp-metric applies to --match label only")
    check_output(args.output, args.overwrite)
    qc_jobs = (
        qc_outputs(args.pred, args.ref, args.qc, semantic=args.semantic, overwrite=args.overwrite)
        if args.qc is not None
        else []
    )
    progress = not args.quiet and sys.stderr.isatty()
    from nnunet_spine.apps.qc_report import report_instance_evaluation, selected_inputs

    with selected_inputs(args.pred, *read_case_lists(args)) as (pred, skipped):
        if args.semantic:
            rows = evaluate_semantic(pred, args.ref, progress=progress)
        else:
            rows = evaluate_instances(pred, args.ref, match=match, tp_metric=args.tp_metric or "iou", progress=progress)
    say_skipped("evaluate instances", skipped, args)
    if args.semantic:
        df = pd.DataFrame(rows, columns=SEMANTIC_COLUMNS)
        show = ["label", "structure", "ref_volume_mm3", "pred_volume_mm3", "dice"]
    else:
        df = pd.DataFrame(rows, columns=INSTANCE_COLUMNS)
        show = ["structure", *COUNT_KEYS, "rq", "sq", "pq", "pq_dsc", "assd_mm", "global_dice"]
        warned = {r["case"]: r[LABELLING_WARNING] for r in rows if r["case"] != SUMMARY_CASE and r[LABELLING_WARNING]}
        for case, warning in warned.items():
            print(f"nnspine evaluate instances: warning: {case}: {warning}", file=sys.stderr)
    write_text(args.output, with_subject_columns(df, "case").to_csv(index=False), overwrite=args.overwrite)
    pictures = write_qc(qc_jobs, semantic=args.semantic, overwrite=args.overwrite)
    if args.qc_report is not None:
        report_instance_evaluation(args.qc_report, args.pred, args.ref, rows, semantic=args.semantic)
    if not args.quiet:
        summary = df[df["case"] == SUMMARY_CASE]
        n_cases = df.loc[df["case"] != SUMMARY_CASE, "case"].nunique()
        print(
            f"summary over {n_cases} case{'s' if n_cases != 1 else ''}"
            + ("" if args.semantic else f" (match {match})")
            + ":"
        )
        print(summary[show].to_string(index=False, float_format=lambda x: f"{x:.3f}"))
        print(f"wrote {args.output}" + (f" and {len(pictures)} QC picture(s) in {args.qc}" if pictures else ""))
    return 0
