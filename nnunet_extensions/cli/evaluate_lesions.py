"""``nnspine evaluate lesions``: lesion-wise detection metrics (sensitivity, precision, F1), Dice and volumes.

Registered under ``nnspine evaluate`` by :func:`register_lesions` (called from :mod:`.evaluate`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nnunet_extensions.cli.common import add_overwrite, add_quiet, new_parser

LESIONS_EXAMPLE = """\
examples:
  nnspine evaluate lesions --pred pred/ --ref $nnUNet_raw/Dataset201_Lesion/labelsTr --label 2 -o lesions.csv
  nnspine evaluate lesions --pred pred/ --ref bids/derivatives/labels --label 2 --ref-label all \\
      --match iou --per-lesion per_lesion.csv -o lesions.csv
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


def register_lesions(what: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``lesions`` to the ``nnspine evaluate`` sub-commands; returns its parser."""
    from postprocessing.lesion.metrics import CONNECTIVITIES, DEFAULT_CONNECTIVITY, DEFAULT_MATCH, MATCH_RULES

    s = new_parser(
        what,
        "lesions",
        help="lesion-wise sensitivity, precision, F1, Dice and volumes per case (CSV)",
        description=(
            "Compare predicted lesion masks with reference masks, lesion by lesion. A lesion is a connected\n"
            "component (--connectivity, default 26). Matching rules (--match, written into the CSV):\n"
            "  overlap  a reference lesion is detected when >= 10 % of its volume is predicted; a predicted\n"
            "           lesion is a false positive when it overlaps no reference voxel (SCT, ATLAS)\n"
            "  iou      one-to-one matching of lesions with IoU > 0.5 (panoptica)\n"
            "sensitivity = tp/ref_lesions, precision = (pred_lesions - fp)/pred_lesions, F1 their harmonic\n"
            "mean. Empty cases are defined: both empty -> 1, 1, 1; reference empty -> sensitivity 1,\n"
            "precision 0, F1 0; prediction empty -> 0, 0, 0. The ALL row sums counts and volumes over cases\n"
            "and computes the rates from the sums. Files, or folders matched by case name (the image stem:\n"
            "sub-01_T2w.nii.gz, sub-01_T2w_label-lesion_seg.nii.gz); masks of a case must share the grid.\n"
            "Output columns: case, match, connectivity, ref_lesions, pred_lesions, tp, fp, fn,\n"
            "lesion_sensitivity, lesion_precision, lesion_f1, dice, ref_volume_mm3, pred_volume_mm3,\n"
            "intersection_mm3, volume_error_mm3 (pred - ref)."
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
        default=ALL,
        metavar="L",
        help="lesion label of a multi-label or region prediction, or 'all' (default: all foreground)",
    )
    s.add_argument(
        "--ref-label",
        type=_label,
        default=None,
        metavar="L",
        help="lesion label of the reference, or 'all' (default: the same as --label; binary BIDS "
        "lesion masks with a region prediction need --ref-label all)",
    )
    s.add_argument("--match", choices=MATCH_RULES, default=DEFAULT_MATCH, help="matching rule (default: %(default)s)")
    s.add_argument(
        "--connectivity",
        type=int,
        choices=CONNECTIVITIES,
        default=DEFAULT_CONNECTIVITY,
        help="lesion connectivity (default: %(default)s)",
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
    add_overwrite(s)
    add_quiet(s)
    s.set_defaults(func=run_lesions)
    return s


def run_lesions(args: argparse.Namespace) -> int:
    import pandas as pd

    from nnunet_extensions.core.io import check_output, write_text
    from postprocessing.lesion.metrics import CASE_COLUMNS, PER_LESION_COLUMNS, evaluate_lesions

    check_output(args.output, args.overwrite)
    if args.per_lesion:
        check_output(args.per_lesion, args.overwrite)
    label = None if args.label == ALL else args.label
    ref_label = label if args.ref_label is None else None if args.ref_label == ALL else args.ref_label
    rows, lesions = evaluate_lesions(
        args.pred,
        args.ref,
        label=label,
        ref_label=ref_label,
        match=args.match,
        connectivity=args.connectivity,
        progress=not args.quiet and sys.stderr.isatty(),
    )
    df = pd.DataFrame(rows, columns=CASE_COLUMNS)
    text = df.to_csv(index=False)
    per_text = pd.DataFrame(lesions, columns=PER_LESION_COLUMNS).to_csv(index=False) if args.per_lesion else None
    write_text(args.output, text, overwrite=args.overwrite)
    if per_text is not None:
        write_text(args.per_lesion, per_text, overwrite=args.overwrite)
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
            "volume_error_mm3",
        ]
        print(df[show].to_string(index=False, float_format=lambda x: f"{x:.3f}"))
        print(
            f"match {args.match}, connectivity {args.connectivity}; wrote {args.output}"
            + (f" and {args.per_lesion}" if args.per_lesion else "")
        )
    return 0
