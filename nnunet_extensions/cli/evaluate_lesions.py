"""``nnspine evaluate lesions``: lesion-wise detection (sensitivity, precision, F1), voxel-wise Dice, sensitivity,
specificity and precision, surface distances and volumes per case, with pooled, mean and SD rows.

Registered under ``nnspine evaluate`` by :func:`register_lesions` (called from :mod:`.evaluate`).
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

LESIONS_EXAMPLE = """\
examples:
  nnspine evaluate lesions --pred pred/ --ref $nnUNet_raw/Dataset201_Lesion/labelsTr --label 2 -o lesions.csv
  nnspine evaluate lesions --pred pred/ --ref bids/derivatives/labels --label 2 --ref-label all \\
      --match iou --per-lesion per_lesion.csv --by-size-mm3 20,100 --by-size-output by_size.csv -o lesions.csv
  nnspine evaluate lesions --pred pred/ --ref ref/ --match overlap --overlap-fraction 0.1 --anima-fp-limits \\
      --min-lesion-mm3 3 -o anima_like.csv
"""

ALL = "all"


def _label(value: str) -> int | str:
    """argparse type: a positive label value, or ``all`` (every non-zero voxel)."""
    if value.lower() == ALL:
        return ALL
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a label value (integer ≥ 1) or 'all', got {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a label value ≥ 1 or 'all', got {n}")
    return n


def _pair(value: str) -> tuple[float, float]:
    """argparse type: ``B,G`` → (β, γ)."""
    try:
        beta, gamma = (float(v) for v in value.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected BETA,GAMMA (e.g. 0.7,0.65), got {value!r}") from None
    return beta, gamma


def add_match_options(s: argparse.ArgumentParser) -> None:
    """``--match``, ``--overlap-fraction``, ``--anima-fp-limits``, ``--iou-threshold``, ``--strict``,
    ``--min-lesion-mm3`` and ``--connectivity`` (read back by :func:`match_rule`)."""
    from nnunet_spine.core.lesion_matching import (
        ANIMA_FP_LIMITS,
        CONNECTIVITIES,
        DEFAULT_CONNECTIVITY,
        DEFAULT_MATCH,
        IOU_THRESHOLD,
        MATCH_RULES,
        OVERLAP_MIN_FRACTION,
    )

    s.add_argument("--match", choices=MATCH_RULES, default=DEFAULT_MATCH, help="matching rule (default: %(default)s)")
    s.add_argument(
        "--overlap-fraction",
        type=float,
        default=OVERLAP_MIN_FRACTION,
        metavar="A",
        help="overlap rule: fraction of a reference lesion's volume to predict (ANIMA's alpha; default: %(default)s)",
    )
    s.add_argument(
        "--anima-fp-limits",
        type=_pair,
        nargs="?",
        const=ANIMA_FP_LIMITS,
        default=None,
        metavar="B,G",
        help="overlap rule: ANIMA's false-positive ratio limits beta,gamma "
        f"(without a value: {ANIMA_FP_LIMITS[0]},{ANIMA_FP_LIMITS[1]})",
    )
    s.add_argument(
        "--iou-threshold",
        type=float,
        default=IOU_THRESHOLD,
        metavar="T",
        help="iou rule: a pair matches when IoU >= T (panoptica; default: %(default)s)",
    )
    s.add_argument("--strict", action="store_true", help="iou rule: IoU > T instead of >= T (Kirillov et al.)")
    s.add_argument(
        "--min-lesion-mm3",
        type=float,
        default=0.0,
        metavar="MM3",
        help="drop lesions smaller than this volume (mm³) from both masks before counting (default: keep all)",
    )
    s.add_argument(
        "--connectivity",
        type=int,
        choices=CONNECTIVITIES,
        default=DEFAULT_CONNECTIVITY,
        help="lesion connectivity (default: %(default)s)",
    )


def match_rule(args: argparse.Namespace):
    """The :class:`~nnunet_spine.core.lesion_matching.MatchRule` of :func:`add_match_options`' options."""
    from nnunet_spine.core.lesion_matching import MatchRule

    return MatchRule(
        args.match,
        overlap_fraction=args.overlap_fraction,
        iou_threshold=args.iou_threshold,
        strict=args.strict,
        fp_limits=args.anima_fp_limits,
        min_lesion_mm3=args.min_lesion_mm3,
    )


def register_lesions(what: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``lesions`` to the ``nnspine evaluate`` sub-commands; returns its parser."""
    from nnunet_spine.postprocessing.lesion.surface import DEFAULT_NSD_TOLERANCE_MM

    s = new_parser(
        what,
        "lesions",
        help="lesion-wise detection, voxel-wise Dice/sensitivity/specificity, HD95/ASSD/NSD per case (CSV)",
        description=(
            "Compare predicted lesion masks with reference masks, lesion by lesion and voxel by voxel. A lesion\n"
            "is a connected component (--connectivity, default 26). Matching rules (--match; the rule and its\n"
            "parameters are written into the CSV's match column):\n"
            "  overlap  a reference lesion is detected when >= 10 % of its volume is predicted (ANIMA's alpha,\n"
            "           --overlap-fraction; ANIMA's false-positive limits with --anima-fp-limits); a predicted\n"
            "           lesion is a false positive when it overlaps no reference voxel\n"
            "  any      detected when any voxel is predicted (ATLAS, ISLES)\n"
            "  iou      one-to-one matching of lesions with IoU >= 0.5 (panoptica; --iou-threshold, --strict)\n"
            "lesion sensitivity = tp/ref_lesions, precision = (pred_lesions - fp)/pred_lesions, F1 their\n"
            "harmonic mean; empty cases are defined (both empty -> 1, 1, 1). Voxel-wise: dice, voxel_sensitivity\n"
            "(NaN for an empty reference), voxel_specificity (over the whole image), voxel_precision (NaN for an\n"
            "empty prediction); hd95_mm, assd_mm and nsd at --nsd-tolerance-mm as panoptica defines them.\n"
            "Summary rows: ALL sums counts and volumes over cases and computes rates from the sums; MEAN and SD\n"
            "(n-1) are over cases, NaN skipped, N counts the cases used (Hille et al. report means over cases).\n"
            "Files, or folders matched by case name (sub-01_T2w.nii.gz, sub-01_T2w_label-lesion_seg.nii.gz);\n"
            "masks of a case must share the grid. A prediction with several labels needs --label, unless\n"
            "its JSON sidecar says \"LesionInstances\": true ('nnspine lesions' output: all non-zero is lesion).\n"
            "Output columns: case, match, connectivity, ref_lesions, pred_lesions, tp, fp, fn,\n"
            "lesion_sensitivity, lesion_precision, lesion_f1, dice, voxel_sensitivity, voxel_specificity,\n"
            "voxel_precision, hd95_mm, assd_mm, nsd, nsd_tolerance_mm, ref_volume_mm3, pred_volume_mm3,\n"
            "intersection_mm3, volume_error_mm3 (pred - ref), image_volume_mm3."
        ),
        epilog=LESIONS_EXAMPLE,
    )
    s.add_argument("--pred", required=True, type=Path, metavar="PRED", help="predicted mask (.nii.gz) or folder")
    s.add_argument(
        "--ref", required=True, type=Path, metavar="REF", help="reference mask or folder (searched recursively)"
    )
    s.add_argument(
        "--label",
        type=_label,
        default=None,
        metavar="L",
        help="lesion label of a multi-label or region prediction, or 'all' for every non-zero voxel "
        "(default: the one label of a binary prediction)",
    )
    s.add_argument(
        "--ref-label",
        type=_label,
        default=None,
        metavar="L",
        help="lesion label of the reference, or 'all' (default: the same as --label; binary BIDS "
        "lesion masks with a region prediction need --ref-label all)",
    )
    add_match_options(s)
    s.add_argument(
        "--nsd-tolerance-mm",
        type=float,
        default=DEFAULT_NSD_TOLERANCE_MM,
        metavar="MM",
        help="tolerance of the normalized surface Dice (mm; default: %(default)s)",
    )
    s.add_argument(
        "-o",
        "--output",
        type=Path,
        default=Path("lesion_metrics.csv"),
        metavar="CSV",
        help="output CSV (default: lesion_metrics.csv)",
    )
    s.add_argument(
        "--per-lesion",
        type=Path,
        metavar="CSV",
        help="also write one row per reference lesion (detected, Dice, volume error)",
    )
    s.add_argument(
        "--by-size-mm3",
        metavar="EDGES",
        help="reference-lesion volume bin edges in mm³ for --by-size-output (e.g. 20,100 -> <20, 20-100, >=100)",
    )
    s.add_argument(
        "--by-size-output",
        type=Path,
        metavar="CSV",
        help="write lesion detection per volume bin (size_bin, ref_lesions, detected, lesion_sensitivity)",
    )
    add_exclude_options(s)
    add_qc_report_option(s)
    add_overwrite(s)
    add_quiet(s)
    s.set_defaults(func=run_lesions)
    return s


def run_lesions(args: argparse.Namespace) -> int:
    import pandas as pd

    from nnunet_spine.core.bids import with_subject_columns
    from nnunet_spine.core.io import InputError, check_output, write_text
    from nnunet_spine.postprocessing.lesion.metrics import (
        BY_SIZE_COLUMNS,
        PER_LESION_COLUMNS,
        cases_csv,
        detection_by_size,
        evaluate_lesions,
        parse_size_edges,
    )

    rule = match_rule(args)
    outputs = [args.output, args.per_lesion, args.by_size_output]
    for out in filter(None, outputs):
        check_output(out, args.overwrite)
    if (args.by_size_mm3 is None) != (args.by_size_output is None):
        raise InputError("--by-size-mm3 and --by-size-output go together")
    edges = parse_size_edges(args.by_size_mm3) if args.by_size_mm3 else None
    label = None if args.label in (None, ALL) else args.label
    ref_label = label if args.ref_label is None else None if args.ref_label == ALL else args.ref_label
    from nnunet_spine.apps.qc_report import report_lesion_evaluation, selected_inputs

    with selected_inputs(args.pred, *read_case_lists(args)) as (pred, skipped):
        rows, lesions = evaluate_lesions(
            pred,
            args.ref,
            label=label,
            ref_label=ref_label,
            match=rule,
            connectivity=args.connectivity,
            nsd_tolerance_mm=args.nsd_tolerance_mm,
            all_foreground=args.label == ALL,
            progress=not args.quiet and sys.stderr.isatty(),
        )
    say_skipped("evaluate lesions", skipped, args)
    texts = {args.output: cases_csv(rows)}
    if args.per_lesion:
        per_lesion = pd.DataFrame(lesions, columns=PER_LESION_COLUMNS)
        texts[args.per_lesion] = with_subject_columns(per_lesion, "case").to_csv(index=False)
    if edges:
        by_size = pd.DataFrame(detection_by_size(lesions, edges), columns=BY_SIZE_COLUMNS)
        texts[args.by_size_output] = by_size.to_csv(index=False)
    for out, text in texts.items():
        write_text(out, text, overwrite=args.overwrite)
    if args.qc_report is not None:
        report_lesion_evaluation(args.qc_report, args.pred, args.ref, rows)
    if not args.quiet:
        show = [
            "case",
            "ref_lesions",
            "pred_lesions",
            "tp",
            "fp",
            "fn",
            "lesion_sensitivity",
            "lesion_precision",
            "lesion_f1",
            "dice",
            "voxel_sensitivity",
            "voxel_specificity",
            "hd95_mm",
        ]
        df = pd.DataFrame(rows)
        print(df[df["case"] != "N"][show].to_string(index=False, float_format=lambda x: f"{x:.3f}"))
        if edges:
            print(by_size.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
        print(f"match {rule.name}, connectivity {args.connectivity}; wrote {', '.join(map(str, texts))}")
    return 0
