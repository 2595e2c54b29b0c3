"""``nnspine evaluate compare-variability``: two methods' CSA variability across contrasts, paired by subject."""

from __future__ import annotations

import argparse
from pathlib import Path

from nnunet_spine.cli.common import add_overwrite, add_quiet, new_parser

DESCRIPTION = """\
Compare two methods' CSA variability across contrasts, subject by subject, from two tables written by
'nnspine evaluate csa-variability' for the same subjects, levels and contrasts (e.g. a soft-trained model
and a binary-trained one).

Per subject and method: the population SD (mm²) and CV (%) of CSA across contrasts, and the paired
differences (first − second). Over subjects: the Wilcoxon signed-rank test (two-sided, scipy) on the
per-subject SDs, and the mean CSA of each contrast for each method.

Output CSV columns: subject, contrast, levels, n_contrasts, csa_<A>_mm2, csa_<B>_mm2, sd_<A>_mm2,
sd_<B>_mm2, sd_diff_mm2, cv_<A>_pct, cv_<B>_pct, cv_diff_pct, n_subjects, wilcoxon_statistic, wilcoxon_p.
Rows: one per subject (contrast = ALL); one per contrast (subject = MEAN: mean CSA over subjects); one
summary row (subject = ALL: mean SDs, n_subjects, wilcoxon_statistic, wilcoxon_p).
Tables that do not pair up (different subjects, levels or contrasts) are refused (exit 2).
"""

EPILOG = """\
example:
  nnspine evaluate csa-variability -i pred_soft --discs bids/derivatives/labels --vert 3 -o soft.csv
  nnspine evaluate csa-variability -i pred_binary --discs bids/derivatives/labels --vert 3 -o binary.csv
  nnspine evaluate compare-variability soft.csv binary.csv --names soft,binary -o compare.csv --plot compare.png
"""


def _names(text: str) -> tuple[str, str]:
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 2 or not all(parts):
        raise argparse.ArgumentTypeError(f"expected two names such as soft,binary, got {text!r}")
    return parts[0], parts[1]


def register_compare(what: argparse._SubParsersAction) -> None:
    """Add ``compare-variability`` to the ``nnspine evaluate`` subcommands."""
    c = new_parser(
        what,
        "compare-variability",
        help="two methods' CSA SD across contrasts, paired (Wilcoxon)",
        description=DESCRIPTION,
        epilog=EPILOG,
    )
    c.add_argument("tables", nargs=2, type=Path, metavar="TABLE.csv", help="two csa-variability tables")
    c.add_argument(
        "--names",
        type=_names,
        default=("A", "B"),
        metavar="A,B",
        help="names of the two methods, used in the column names (default: A,B)",
    )
    c.add_argument(
        "-o",
        "--output",
        type=Path,
        default=Path("compare_variability.csv"),
        metavar="CSV",
        help="output CSV (default: compare_variability.csv)",
    )
    c.add_argument("--plot", type=Path, metavar="PNG", help="also draw the paired SDs (one line per subject)")
    add_overwrite(c)
    add_quiet(c)
    c.set_defaults(func=run_compare)


def run_compare(args: argparse.Namespace) -> int:
    from nnunet_spine.core.io import check_output, write_text
    from nnunet_spine.postprocessing.cord.variability import compare_variability, read_variability_table

    check_output(args.output, args.overwrite)
    if args.plot:
        check_output(args.plot, args.overwrite)
    a, b = (read_variability_table(t) for t in args.tables)
    result = compare_variability(a, b, names=args.names, sources=tuple(str(t) for t in args.tables))
    write_text(args.output, result.table.to_csv(index=False, float_format="%.4g"), overwrite=args.overwrite)
    if args.plot:
        from nnunet_spine.postprocessing.qc import plot_paired_variability

        plot_paired_variability(result, args.plot, overwrite=args.overwrite)
    if not args.quiet:
        na, nb = result.names
        summary = result.table[result.table["subject"] == "ALL"].iloc[0]
        print(
            f"{result.n_subjects} subjects: mean CSA SD across contrasts {na} {summary[f'sd_{na}_mm2']:.3f} mm², "
            f"{nb} {summary[f'sd_{nb}_mm2']:.3f} mm²; Wilcoxon signed-rank statistic "
            f"{result.wilcoxon_statistic:.4g}, p = {result.wilcoxon_p:.4g}"
        )
        print(f"wrote {args.output}" + (f" and {args.plot}" if args.plot else ""))
    return 0
