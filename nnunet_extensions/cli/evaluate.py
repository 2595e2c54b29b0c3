"""``nnspine evaluate``: soft-segmentation metrics and CSA variability across contrasts."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nnunet_extensions.cli.common import add_overwrite, add_quiet, new_parser

SOFTSEG_EXAMPLE = """\
example:
  nnspine softmask -i pred -o pred_soft
  nnspine evaluate softseg --pred pred_soft --ref $nnUNet_raw/Dataset101_SoftCord/labelsTr_soft -o eval.csv
"""

VARIABILITY_EXAMPLE = """\
example (soft predictions of every contrast of each subject, levels from the disc labels of each image):
  nnspine evaluate csa-variability -i pred_soft --discs bids/derivatives/labels --vert 2:3 \\
      -o csa_variability.csv --plot csa_variability.png
"""

MASK_SUFFIXES = ("_label-SC_softseg", "_label-SC_seg", "_softseg", "_seg")


def register(sub: argparse._SubParsersAction) -> None:
    p = new_parser(sub, "evaluate", help="evaluate soft segmentations (soft Dice, MSE, CSA error, CSA variability)",
                   description="Evaluation commands. Run 'nnspine evaluate <what> --help'.")
    what = p.add_subparsers(dest="what", metavar="<what>")

    s = new_parser(
        what, "softseg", help="soft Dice, MSE, Dice at 0.5 and CSA error per case (CSV)",
        description=(
            "Compare predicted soft masks with reference masks (soft or binary), matched by file name.\n"
            "Per case: soft Dice = 2·Σp·r/(Σp+Σr); MSE over voxels; Dice of both binarized at 0.5; mean\n"
            "cross-sectional area (mm², angle-corrected) over the slices where the reference holds cord, for\n"
            "prediction and reference, and the error pred − ref in mm² and %. Masks must share the grid.\n"
            "Output: CSV with columns case, soft_dice, mse, dice_0.5, csa_pred_mm2, csa_ref_mm2,\n"
            "csa_error_mm2, csa_error_pct (and a MEAN row)."),
        epilog=SOFTSEG_EXAMPLE)
    s.add_argument("--pred", required=True, type=Path, metavar="DIR", help="folder of predicted soft masks (.nii.gz)")
    s.add_argument("--ref", required=True, type=Path, metavar="DIR", help="folder of reference masks, same file names")
    s.add_argument("-o", "--output", type=Path, default=Path("softseg_eval.csv"), metavar="CSV",
                   help="output CSV (default: softseg_eval.csv)")
    add_overwrite(s)
    add_quiet(s)
    s.set_defaults(func=run_softseg)

    v = new_parser(
        what, "csa-variability", help="CSA per contrast at chosen levels and its SD across contrasts (CSV + plot)",
        description=(
            "For each subject, the mean CSA (mm², angle-corrected) over the slices of the chosen vertebral\n"
            "levels, in each contrast's mask, and the standard deviation (and coefficient of variation, %)\n"
            "across contrasts: the headline metric of contrast-agnostic cord segmentation.\n"
            "Masks are named by BIDS image: sub-XX_<contrast>[_label-SC_softseg].nii.gz. Levels come from a\n"
            "disc-label file (--discs DIR) or a labelled-level file (--vertfiles DIR) of the same image, found\n"
            "anywhere under DIR as <sub-XX_contrast><suffix>.nii.gz on the mask's grid.\n"
            "Output: CSV with columns subject, contrast, filename, levels, n_slices, csa_mm2,\n"
            "csa_std_across_contrasts_mm2, csa_cv_across_contrasts_pct (one row per contrast, then an ALL row\n"
            "per subject); --plot draws CSA per contrast for each subject."),
        epilog=VARIABILITY_EXAMPLE)
    v.add_argument("-i", "--input", required=True, nargs="+", type=Path, metavar="MASK",
                   help="soft (or binary) cord masks, files or folders")
    src = v.add_mutually_exclusive_group(required=True)
    src.add_argument("--discs", type=Path, metavar="DIR", help="folder searched for disc point-label files")
    src.add_argument("--vertfiles", type=Path, metavar="DIR", help="folder searched for labelled-level files")
    v.add_argument("--disc-suffix", default="_label-discs_dlabel", help="disc file suffix (default: %(default)s)")
    v.add_argument("--vert-suffix", default="_label-SC_seg_labeled", help="level file suffix (default: %(default)s)")
    v.add_argument("--vert", default="2:3", help="levels, e.g. 2:3 (C2-C3, default) or 2,4")
    v.add_argument("--threshold", type=float, metavar="T", help="binarize the masks at T before measuring")
    v.add_argument("-o", "--output", type=Path, default=Path("csa_variability.csv"), metavar="CSV",
                   help="output CSV (default: csa_variability.csv)")
    v.add_argument("--plot", type=Path, metavar="PNG", help="also draw CSA per contrast and subject")
    add_overwrite(v)
    add_quiet(v)
    v.set_defaults(func=run_variability)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _case_name(path: Path) -> str:
    from nnunet_extensions.io import split_suffix

    stem, _ = split_suffix(path)
    for suffix in MASK_SUFFIXES:
        if stem.endswith(suffix):
            return stem[: -len(suffix)]
    return stem


def _finish_csv(df, path: Path, overwrite: bool) -> None:
    from nnunet_extensions.io import write_text

    write_text(path, df.to_csv(index=False), overwrite=overwrite)


def run_softseg(args: argparse.Namespace) -> int:
    import pandas as pd
    from tqdm.auto import tqdm

    from nnunet_extensions.io import InputError, check_output
    from postprocessing.metrics import SOFTSEG_COLUMNS, evaluate_softseg_case
    from postprocessing.csa import expand_inputs

    check_output(args.output, args.overwrite)
    for folder in (args.pred, args.ref):
        if not folder.is_dir():
            raise InputError(f"{folder}: folder not found")
    preds = expand_inputs([args.pred])
    if not preds:
        raise InputError(f"{args.pred}: no NIfTI masks")
    rows, skipped = [], 0
    for pred in tqdm(preds, desc="evaluate", unit="case", disable=args.quiet or not sys.stderr.isatty()):
        ref = args.ref / pred.name
        try:
            if not ref.exists():
                raise InputError(f"{pred}: no reference {ref}")
            rows.append(evaluate_softseg_case(pred, ref, case=_case_name(pred)))
        except InputError as exc:
            print(f"nnspine evaluate softseg: skipped: {exc}", file=sys.stderr)
            skipped += 1
    if not rows:
        raise InputError(f"{args.pred}: no case could be evaluated")
    df = pd.DataFrame(rows, columns=SOFTSEG_COLUMNS)
    mean = {"case": "MEAN", **df.drop(columns="case").mean().to_dict()}
    df = pd.concat([df, pd.DataFrame([mean])], ignore_index=True)
    _finish_csv(df, args.output, args.overwrite)
    if not args.quiet:
        print(df.to_string(index=False, float_format=lambda x: f"{x:.4f}"))
        print(f"wrote {args.output}")
    return 2 if skipped else 0


def _find(folder: Path, name: str) -> Path | None:
    hits = sorted(folder.rglob(f"{name}.nii.gz")) or sorted(folder.rglob(f"{name}.nii"))
    return hits[0] if hits else None


def run_variability(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from nnunet_extensions.io import InputError, check_output
    from postprocessing.csa import expand_inputs, measure_file
    from postprocessing.metrics import csa_at_levels, split_bids_name, variability_table

    from nnunet_extensions.labels import parse_levels

    try:
        levels = parse_levels(args.vert)
    except ValueError as exc:
        raise InputError(f"--vert: {exc}") from None
    check_output(args.output, args.overwrite)
    if args.plot:
        check_output(args.plot, args.overwrite)
    level_dir = args.discs or args.vertfiles
    if not level_dir.is_dir():
        raise InputError(f"{level_dir}: folder not found")
    masks = expand_inputs(args.input)
    if not masks:
        raise InputError(f"{args.input[0]}: no NIfTI masks")
    rows, skipped = [], 0
    for mask in tqdm(masks, desc="csa", unit="mask", disable=args.quiet or not sys.stderr.isatty()):
        case = _case_name(mask)
        subject, contrast = split_bids_name(case)
        try:
            if not mask.is_file():
                raise InputError(f"{mask}: file not found")
            if not subject:
                raise InputError(f"{mask}: name does not start with a BIDS subject (sub-XX_...)")
            suffix = args.disc_suffix if args.discs else args.vert_suffix
            level_file = _find(level_dir, f"{case}{suffix}")
            if level_file is None:
                raise InputError(f"{mask}: no level file {case}{suffix}.nii.gz under {level_dir}")
            per_slice = measure_file(mask, threshold=args.threshold,
                                     **({"discfile": level_file} if args.discs else {"vertfile": level_file}))
        except InputError as exc:
            print(f"nnspine evaluate csa-variability: skipped: {exc}", file=sys.stderr)
            skipped += 1
            continue
        csa, n = csa_at_levels(per_slice, levels)
        rows.append({"subject": subject, "contrast": contrast, "filename": str(mask), "levels": args.vert,
                     "n_slices": n, "csa_mm2": csa})
    if not rows:
        raise InputError(f"{args.input[0]}: no mask could be measured")
    df = variability_table(rows)
    _finish_csv(df, args.output, args.overwrite)
    if args.plot:
        from postprocessing.qc import plot_csa_variability

        plot_csa_variability(df, args.plot, levels_text=args.vert, overwrite=args.overwrite)
    if not args.quiet:
        print(df.drop(columns="filename").to_string(index=False, float_format=lambda x: f"{x:.2f}"))
        print(f"wrote {args.output}" + (f" and {args.plot}" if args.plot else ""))
    return 2 if skipped else 0
