"""``nnspine evaluate``: soft-segmentation metrics and CSA variability across contrasts.

A command group: each evaluation is a sub-subcommand registered by a function of :data:`EVALUATIONS` that
adds its parser and sets ``func``. The work is done by one library function per evaluation
(:mod:`nnunet_spine.postprocessing.cord.soft_metrics`); this module parses, calls it, writes the table and reports.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nnunet_spine.cli.common import add_overwrite, add_quiet, new_parser
from nnunet_spine.cli.evaluate_compare import register_compare
from nnunet_spine.cli.evaluate_instances import register_instances
from nnunet_spine.cli.evaluate_lesions import register_lesions
from nnunet_spine.cli.evaluate_summary import register_summary
from nnunet_spine.core.bids import SPINEPS_INSTANCE_SUFFIXES
from nnunet_spine.postprocessing.cord.levels import VERTFILE_KINDS

#: ``--vert-suffix`` defaults of ``evaluate csa-variability`` per ``--vertfile-kind`` (tried in order).
VERT_SUFFIXES = {
    "sct": ("_label-SC_seg_labeled",),
    "spineps": SPINEPS_INSTANCE_SUFFIXES,
    "auto": ("_label-SC_seg_labeled", *SPINEPS_INSTANCE_SUFFIXES),
}

SOFTSEG_EXAMPLE = """\
example:
  nnspine softmask -i pred -o pred_soft
  nnspine evaluate softseg --pred pred_soft --ref $nnUNet_raw/Dataset101_SoftCord/labelsTr_soft -o eval.csv
"""

VARIABILITY_EXAMPLE = """\
example (soft predictions of every contrast of each subject, levels from the disc labels of each image):
  nnspine evaluate csa-variability -i pred_soft --discs bids/derivatives/labels --vert 2:3 \\
      -o csa_variability.csv --plot csa_variability.png
levels from SPINEPS vertebra instance masks <image>_seg-vert_msk.nii.gz (nnspine instances), L1-L2:
  nnspine evaluate csa-variability -i pred_soft --vertfiles instances/ --vertfile-kind spineps --vert 20:21
"""


def register_softseg(what: argparse._SubParsersAction) -> None:
    """``nnspine evaluate softseg``."""
    s = new_parser(
        what,
        "softseg",
        help="soft Dice, MSE, Dice at 0.5 and CSA error per case (CSV)",
        description=(
            "Compare predicted soft masks with reference masks (soft or binary), matched by file name.\n"
            "Per case: soft Dice = 2·Σp·r/(Σp+Σr); MSE over voxels; Dice of both binarized at 0.5; mean\n"
            "cross-sectional area (mm², angle-corrected) over the slices where the reference holds cord, for\n"
            "prediction and reference, and the error pred − ref in mm² and %. Masks must share the grid.\n"
            "Output: CSV with columns case, soft_dice, mse, dice_0.5, csa_pred_mm2, csa_ref_mm2,\n"
            "csa_error_mm2, csa_error_pct (and a MEAN row)."
        ),
        epilog=SOFTSEG_EXAMPLE,
    )
    s.add_argument("--pred", required=True, type=Path, metavar="DIR", help="folder of predicted soft masks (.nii.gz)")
    s.add_argument("--ref", required=True, type=Path, metavar="DIR", help="folder of reference masks, same file names")
    s.add_argument(
        "-o",
        "--output",
        type=Path,
        default=Path("softseg_eval.csv"),
        metavar="CSV",
        help="output CSV (default: softseg_eval.csv)",
    )
    add_overwrite(s)
    add_quiet(s)
    s.set_defaults(func=run_softseg)


def register_csa_variability(what: argparse._SubParsersAction) -> None:
    """``nnspine evaluate csa-variability``."""
    v = new_parser(
        what,
        "csa-variability",
        help="CSA per contrast at chosen levels and its SD across contrasts (CSV + plot)",
        description=(
            "For each subject, the mean CSA (mm², angle-corrected) over the slices of the chosen vertebral\n"
            "levels, in each contrast's mask, and the standard deviation (and coefficient of variation, %)\n"
            "across contrasts: the headline metric of contrast-agnostic cord segmentation.\n"
            "Masks are named by BIDS image: sub-XX_<contrast>[_label-SC_softseg].nii.gz. Levels come from a\n"
            "disc-label file (--discs DIR) or a level file (--vertfiles DIR) of the same image, found\n"
            "anywhere under DIR as <sub-XX_contrast><suffix>.nii.gz on the mask's grid. A level file is an SCT\n"
            "labelled-level file or a SPINEPS vertebra instance mask (<image>_seg-vert_msk: each slice gets the\n"
            "vertebra at its height along the cord, VerSe ids converted to SCT levels, sacrum -> S1 = 25; L6/T13\n"
            "refused), as --vertfile-kind says (auto: from the name and values, as 'nnspine csa --help' explains).\n"
            "--vert is in SCT level numbers (C1=1 ... L1=20 ... L5=24).\n"
            "Output: CSV with columns subject, contrast, filename, levels, n_slices, csa_mm2,\n"
            "csa_std_across_contrasts_mm2, csa_cv_across_contrasts_pct (one row per contrast, then an ALL row\n"
            "per subject); --plot draws CSA per contrast for each subject."
        ),
        epilog=VARIABILITY_EXAMPLE,
    )
    v.add_argument(
        "-i",
        "--input",
        required=True,
        nargs="+",
        type=Path,
        metavar="MASK",
        help="soft (or binary) cord masks, files or folders",
    )
    src = v.add_mutually_exclusive_group(required=True)
    src.add_argument("--discs", type=Path, metavar="DIR", help="folder searched for disc point-label files")
    src.add_argument(
        "--vertfiles",
        type=Path,
        metavar="DIR",
        help="folder searched for level files (SCT labelled levels or SPINEPS instance masks)",
    )
    v.add_argument("--disc-suffix", default="_label-discs_dlabel", help="disc file suffix (default: %(default)s)")
    v.add_argument(
        "--vert-suffix",
        metavar="SUFFIX",
        help="level file suffix (default: _label-SC_seg_labeled for --vertfile-kind sct, _seg-vert_msk "
        "for spineps, either (in that order) for auto)",
    )
    v.add_argument(
        "--vertfile-kind",
        choices=VERTFILE_KINDS,
        default="auto",
        help="how --vertfiles are read: sct (labelled levels), spineps (vertebra instance masks) or auto (default)",
    )
    v.add_argument("--vert", default="2:3", help="levels, e.g. 2:3 (C2-C3, default) or 2,4")
    v.add_argument("--threshold", type=float, metavar="T", help="binarize the masks at T before measuring")
    v.add_argument(
        "-o",
        "--output",
        type=Path,
        default=Path("csa_variability.csv"),
        metavar="CSV",
        help="output CSV (default: csa_variability.csv)",
    )
    v.add_argument("--plot", type=Path, metavar="PNG", help="also draw CSA per contrast and subject")
    add_overwrite(v)
    add_quiet(v)
    v.set_defaults(func=run_variability)


#: Register functions of the evaluations, in the order ``nnspine evaluate --help`` lists them. A new
#: evaluation (e.g. lesion-wise metrics) appends its own ``register_<what>(what_subparsers)``.
EVALUATIONS = [
    register_softseg,
    register_csa_variability,
    register_compare,
    register_lesions,
    register_summary,
    register_instances,
]


def register(sub: argparse._SubParsersAction) -> None:
    p = new_parser(
        sub,
        "evaluate",
        help="evaluate: softseg, csa-variability, compare-variability, lesions, instances",
        description="Evaluation commands. Run 'nnspine evaluate <what> --help'.",
    )
    what = p.add_subparsers(dest="what", metavar="<what>")
    for register_evaluation in EVALUATIONS:
        register_evaluation(what)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _show_progress(args: argparse.Namespace) -> bool:
    return not args.quiet and sys.stderr.isatty()


def _report_skipped(command: str, skipped: list[str]) -> int:
    """One stderr line per skipped input; the exit code (2 when anything was skipped)."""
    for line in skipped:
        print(f"nnspine evaluate {command}: skipped: {line}", file=sys.stderr)
    return 2 if skipped else 0


def run_softseg(args: argparse.Namespace) -> int:
    from nnunet_spine.core.bids import with_subject_columns
    from nnunet_spine.core.io import check_output, write_text
    from nnunet_spine.postprocessing.cord.soft_metrics import evaluate_softseg

    check_output(args.output, args.overwrite)
    result = evaluate_softseg(args.pred, args.ref, progress=_show_progress(args))
    table = with_subject_columns(result.table, "case")
    write_text(args.output, table.to_csv(index=False), overwrite=args.overwrite)
    code = _report_skipped("softseg", result.skipped)
    if not args.quiet:
        print(result.table.to_string(index=False, float_format=lambda x: f"{x:.4f}"))
        print(f"wrote {args.output}")
    return code


def run_variability(args: argparse.Namespace) -> int:
    from nnunet_spine.core.io import InputError, check_output, write_text
    from nnunet_spine.core.labels import parse_levels
    from nnunet_spine.postprocessing.cord.soft_metrics import csa_variability

    try:
        levels = parse_levels(args.vert)
    except ValueError as exc:
        raise InputError(f"--vert: {exc}") from None
    if args.discs and args.vertfile_kind != "auto":
        from nnunet_spine.cli import UsageError

        raise UsageError("--vertfile-kind goes with --vertfiles, not --discs")
    check_output(args.output, args.overwrite)
    if args.plot:
        check_output(args.plot, args.overwrite)
    vert_suffix = (args.vert_suffix,) if args.vert_suffix else VERT_SUFFIXES[args.vertfile_kind]
    result = csa_variability(
        args.input,
        levels,
        discs=args.discs,
        vertfiles=args.vertfiles,
        suffix=args.disc_suffix if args.discs else vert_suffix,
        vertfile_kind=args.vertfile_kind,
        levels_text=args.vert,
        threshold=args.threshold,
        progress=_show_progress(args),
    )
    write_text(args.output, result.table.to_csv(index=False), overwrite=args.overwrite)
    if args.plot:
        from nnunet_spine.postprocessing.qc import plot_csa_variability

        plot_csa_variability(result.table, args.plot, levels_text=args.vert, overwrite=args.overwrite)
    code = _report_skipped("csa-variability", result.skipped)
    if not args.quiet:
        print(result.table.drop(columns="filename").to_string(index=False, float_format=lambda x: f"{x:.2f}"))
        print(f"wrote {args.output}" + (f" and {args.plot}" if args.plot else ""))
    return code
