"""``nnspine evaluate summary``: the configuration table of a lesion study from ``evaluate lesions`` CSVs.

Registered under ``nnspine evaluate`` by :func:`register_summary` (called from :mod:`.evaluate`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from nnunet_spine.cli.common import add_overwrite, add_quiet, new_parser

SUMMARY_EXAMPLE = """\
example (Hille et al.'s table: three sequence sets x 2D / 3D, T2w 3D as the baseline; the datasets name
their cases sub-01_T2w, sub-01_T1w, so they are paired by subject):
  nnspine evaluate summary --pair subject T2w_3d=t2_3d.csv T1w_3d=t1_3d.csv both_3d=both_3d.csv \\
      T2w_2d=t2_2d.csv T1w_2d=t1_2d.csv both_2d=both_2d.csv -o table.csv
"""


def _named_csv(value: str) -> tuple[str, Path]:
    """argparse type: ``NAME=CSV``."""
    name, sep, path = value.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=CSV, got {value!r}")
    return name, Path(path)


def register_summary(what: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``summary`` to the ``nnspine evaluate`` sub-commands; returns its parser."""
    from nnunet_spine.postprocessing.lesion.configurations import PAIRINGS, SUMMARY_METRICS

    s = new_parser(
        what,
        "summary",
        help="configuration table (mean, SD, paired Wilcoxon p) from several 'evaluate lesions' CSVs",
        description=(
            "One row per configuration (NAME=CSV, CSVs written by 'nnspine evaluate lesions'): config,\n"
            "n_cases, baseline, and per metric <metric>_mean, <metric>_sd (over cases, sample SD n-1, NaN\n"
            "skipped) and wilcoxon_p_<metric>: two-sided Wilcoxon signed-rank test (scipy), paired by case,\n"
            "against the baseline (--baseline, default the first; NaN for the baseline itself, 1 when no case\n"
            f"differs). Metrics: {', '.join(SUMMARY_METRICS)}.\n"
            "Every configuration must hold the same cases (exit 2 naming the missing ones). A picture with a\n"
            "box and the paired per-case values per metric is written beside the table (--plot)."
        ),
        epilog=SUMMARY_EXAMPLE,
    )
    s.add_argument("tables", nargs="+", type=_named_csv, metavar="NAME=CSV", help="configuration name and its CSV")
    s.add_argument("-o", "--output", type=Path, required=True, metavar="CSV", help="output table (CSV)")
    s.add_argument("--baseline", metavar="NAME", help="configuration the others are tested against (default: first)")
    s.add_argument(
        "--pair",
        choices=PAIRINGS,
        default="case",
        help="pair cases across configurations by case name, or by BIDS subject (and session) when the datasets"
        " name cases after different sequences (sub-01_T1w, sub-01_T2w) (default: case)",
    )
    s.add_argument("--plot", type=Path, metavar="PNG", help="picture path (default: the output with .png)")
    add_overwrite(s)
    add_quiet(s)
    s.set_defaults(func=run_summary)
    return s


def run_summary(args: argparse.Namespace) -> int:
    import pandas as pd

    from nnunet_spine.core.io import InputError, check_output, read_csv_table, write_text
    from nnunet_spine.postprocessing.lesion.configurations import (
        SUMMARY_METRICS,
        case_values,
        configuration_table,
        per_case,
    )
    from nnunet_spine.postprocessing.qc.lesion import plot_configurations

    names = [name for name, _ in args.tables]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise InputError(f"configuration {repeated[0]} given twice")
    plot = args.plot or args.output.with_suffix(".png")
    check_output(args.output, args.overwrite)
    check_output(plot, args.overwrite)
    tables = {name: read_csv_table(path) for name, path in args.tables}
    for name, path in args.tables:  # a table that is not one is named by its file
        per_case(tables[name], f"{path} ({name})", args.pair)
    table = configuration_table(tables, args.baseline, pair=args.pair)
    write_text(args.output, table.to_csv(index=False), overwrite=args.overwrite)
    plot_configurations(
        {m: case_values(tables, m, args.pair) for m in SUMMARY_METRICS},
        plot,
        title=f"{table['n_cases'].iloc[0]} cases per configuration",
        overwrite=args.overwrite,
    )
    if not args.quiet:
        show = ["config", "n_cases", *(f"{m}_mean" for m in ("dice", "voxel_sensitivity", "lesion_f1"))]
        show += ["wilcoxon_p_dice"]
        with pd.option_context("display.width", 160):
            print(table[show].to_string(index=False, float_format=lambda x: f"{x:.3f}"))
        print(f"wrote {args.output} and {plot}")
    return 0
