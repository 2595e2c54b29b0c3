"""``nnspine csa``: cord cross-sectional area and shape metrics per slice / level, SCT-compatible CSV."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nnunet_spine.cli.common import add_overwrite, add_qc_report_option, add_quiet, existing_path, new_parser
from nnunet_spine.postprocessing.cord.levels import VERTFILE_KINDS

DESCRIPTION = """\
Measure the spinal cord cross-sectional area (CSA) and shape, slice by slice, from cord masks, and
write them in the CSV layout of SCT's sct_process_segmentation.

Inputs
  -i SEG [SEG ...]   cord masks (NIfTI, or MHA/NRRD), binary (0/1) or soft (partial-volume fractions in
                     [0, 1]; partial volume is counted), 3-D, any orientation; folders are replaced by
                     the .nii/.nii.gz files they hold. Slices are taken along the voxel axis closest to the
                     subject's S-I axis and numbered inferior -> superior as in SCT's RPI orientation.
  --label N          the cord is label N of a label mask given as -i (e.g. --label 60: the cord of a
                     SPINEPS semantic mask _seg-spine_msk).
  --vertfile FILE    vertebral levels on the same grid, one of two kinds (--vertfile-kind):
                       sct      labelled levels in SCT numbering (SCT's *_labeled.nii.gz, PAM50_levels):
                                a slice belongs to the level its cord voxels mostly carry;
                       spineps  a SPINEPS vertebra instance mask (_seg-vert_msk: vertebrae by VerSe id,
                                discs 100+X, endplates 200+X; cord and canal 0): a slice belongs to the
                                vertebra at its height measured along the cord (positions projected onto
                                the cord's centreline); a vertebra spans from the disc above it to the disc
                                below (midway between neighbouring vertebrae where a disc is missing).
                                VerSe ids become SCT levels: C1-L5 = 1-24 unchanged, sacrum 26 -> S1 = 25.
                                A mask holding L6 (25) or T13 (28) is refused (SCT numbering has neither).
                       auto     (default) spineps when the file is named *_seg-vert_msk* or holds values
                                >= 100 (disc/endplate ids; SCT levels stop at 30), else sct; a file with
                                only values 1-30 and no label on any cord voxel is refused as ambiguous
                                (say --vertfile-kind). The kind used is named on the last line.
  --discfile FILE    disc point labels on the same grid (SCT convention: value n marks the top of
                     vertebra n: 3 = C2-C3, 8 = C7-T1, 20 = T12-L1, 25 = L5-S1), read as SCT's
                     -discfile: each label moves to the nearest point of the cord's centreline; a slice
                     at or below disc n and above disc n+1 is level n, slices below the lowest disc
                     take its value, slices above the highest disc t are level t-1; a missing disc is
                     not interpolated. Landmarks 49/50 (pontomedullary groove/junction) are ignored.

Output
  One CSV (default ./csa.csv; '-o -' prints it) with every column of SCT 7.x's default output, in SCT's
  order and quoting, so scripts that read SCT's CSV by column name read this one:
    Timestamp       time of this run (YYYY-MM-DD HH:MM:SS)
    SCT Version     this tool and its version (nnunet-spine X.Y.Z), not SCT's
    Filename, Slice (I->S) ("0:54" for a group, "10" for one slice), VertLevel ("2:3" for several)
    DistancePMJ     always empty: as SCT without -pmj (distance to the pontomedullary junction needs a
                    PMJ label, which this tool does not take)
    MEAN/STD over slices of
      area [mm^2]
      angle_AP, angle_RL [degrees; angle_AP: rotation about the A-P axis, + when the cord runs toward
        the subject's left going up; angle_RL: rotation about the R-L axis, + when it runs anterior]
      diameter_AP [mm; mean A-P extent across a 3 mm band through the centre of mass, as SCT 7]
      diameter_AP_ellipse, diameter_RL [mm; axes of the equivalent ellipse closest to A-P / R-L]
      length_anterior, length_posterior [mm; the parts of diameter_AP in front of / behind the centre
        of mass; they add up to diameter_AP]
      eccentricity [0-1], orientation [degrees, + when the cord's left side is anterior],
      solidity [0-1, area / convex hull area]
    SUM(length)     [mm of centreline]
  VertLevel and --vert are always SCT level numbers (C1=1 ... T1=8 ... L1=20 ... L5=24, S1=25).
  STD is the population standard deviation. Text fields are quoted, numbers are not (as SCT writes).
  Default: one row per file over all its slices; --perslice: one row per slice; --perlevel: one per level.
  The area is corrected for the cord's obliquity with a smooth centreline fitted along S-I (area = sum of
  voxel fractions x in-plane voxel area x cos(angle between centreline and slice normal)).
  Several inputs go into one CSV, told apart by Filename. --plot adds a PNG of CSA along S-I with the
  level boundaries. An existing CSV or picture is never replaced without --overwrite.

Exit status: 0 all measured; 2 bad usage or bad input (a bad file among several is reported on stderr,
skipped, and the others are still measured and written); 1 internal error.
"""

EPILOG = """\
examples:
  nnspine csa -i t2_seg.nii.gz --perslice -o t2_csa_perslice.csv
  nnspine csa -i t2_seg.nii.gz --vert 2:5 --vertfile t2_seg_labeled.nii.gz --perlevel -o csa_levels.csv
  nnspine csa -i predictions/ --threshold 0.5 -o csa_all.csv --plot csa_all.png --overwrite
  # levels from a SPINEPS vertebra instance mask (nnspine instances / nnspine fuse, or SPINEPS itself):
  nnspine csa -i sub-01_T2w_softseg.nii.gz --vertfile sub-01_T2w_seg-vert_msk.nii.gz --perlevel --vert 20:24
  # the cord of the semantic mask itself, levels from its instance mask:
  nnspine csa -i sub-01_T2w_seg-spine_msk.nii.gz --label 60 --vertfile sub-01_T2w_seg-vert_msk.nii.gz --perlevel
"""


def _levels(text: str) -> list[int]:
    """argparse type for ``--vert`` (:func:`nnunet_spine.core.labels.parse_levels`)."""
    from nnunet_spine.core.labels import parse_levels

    try:
        return parse_levels(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _threshold(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}") from None
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}")
    return value


def register(subparsers) -> None:
    p = new_parser(
        subparsers,
        "csa",
        help="cord cross-sectional area and shape per slice/level (SCT-compatible CSV)",
        description=DESCRIPTION,
        epilog=EPILOG,
    )
    p.add_argument(
        "-i",
        "--input",
        nargs="+",
        required=True,
        type=existing_path,
        metavar="SEG",
        help="cord mask file(s) or folder(s) of NIfTI masks",
    )
    p.add_argument(
        "-o",
        "--output",
        default="csa.csv",
        metavar="OUT.csv",
        help="output CSV (default: csa.csv in the current folder; '-' prints to stdout)",
    )
    rows = p.add_mutually_exclusive_group()
    rows.add_argument("--perslice", action="store_true", help="one row per slice")
    rows.add_argument(
        "--perlevel", action="store_true", help="one row per vertebral level (needs --vertfile or --discfile)"
    )
    p.add_argument(
        "--vert",
        type=_levels,
        metavar="LEVELS",
        help="only these vertebral levels, e.g. 2:5 or 2,4 (needs --vertfile or --discfile)",
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument(
        "--vertfile",
        type=existing_path,
        metavar="LEVELS.nii.gz",
        help="labelled vertebral levels (SCT) or a SPINEPS vertebra instance mask, on the mask's grid",
    )
    src.add_argument(
        "--discfile",
        type=existing_path,
        metavar="DISCS.nii.gz",
        help="disc point labels on the mask's grid (value n = top of vertebra n)",
    )
    p.add_argument(
        "--vertfile-kind",
        choices=VERTFILE_KINDS,
        default="auto",
        help="how --vertfile is read: sct (labelled levels), spineps (vertebra instance mask, VerSe ids "
        "-> SCT levels) or auto (default: from its name and values; see above)",
    )
    cord = p.add_mutually_exclusive_group()
    cord.add_argument(
        "--threshold",
        type=_threshold,
        metavar="T",
        help="binarize the mask first: voxels >= T count as cord (default: use values as fractions)",
    )
    cord.add_argument(
        "--label",
        type=int,
        metavar="N",
        help="the cord is label N of a label mask (e.g. 60 in a SPINEPS semantic mask)",
    )
    p.add_argument(
        "--no-angle-correction",
        dest="angle_correction",
        action="store_false",
        help="do not correct for the centreline's obliquity (angles reported as 0)",
    )
    p.add_argument(
        "--plot",
        type=Path,
        metavar="OUT.png",
        help="also draw CSA along S-I with level boundaries (QC picture)",
    )
    add_qc_report_option(p)
    add_overwrite(p)
    add_quiet(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from nnunet_spine.cli import UsageError
    from nnunet_spine.core.io import InputError, check_output

    has_levels = args.vertfile is not None or args.discfile is not None
    if (args.vert or args.perlevel) and not has_levels:
        raise UsageError("--vert and --perlevel need a level source: --vertfile or --discfile")
    if args.vertfile_kind != "auto" and args.vertfile is None:
        raise UsageError("--vertfile-kind needs --vertfile")
    to_stdout = str(args.output) == "-"
    if not to_stdout:
        check_output(args.output, args.overwrite)  # refuse early, before any work
    if args.plot is not None:
        check_output(args.plot, args.overwrite)

    from nnunet_spine.postprocessing.cord import csa, csa_table
    from nnunet_spine.postprocessing.cord.levels import level_file_kind, select_levels

    vertfile_note = None
    if args.vertfile is not None:  # decided once, before any work; said on the last line
        from nnunet_spine.core.io import load_image

        kind, reason = level_file_kind(load_image(args.vertfile, "labels"), args.vertfile_kind)
        vertfile_note = (
            f"levels from {args.vertfile} read as "
            + (
                "a SPINEPS vertebra instance mask, VerSe ids -> SCT levels"
                if kind == "spineps"
                else "SCT labelled levels"
            )
            + f" ({reason})"
        )
    files = csa.expand_inputs(args.input, exclude=[p for p in (args.vertfile, args.discfile) if p is not None])
    per = "slice" if args.perslice else "level" if args.perlevel else "all"
    show_bar = len(files) > 1 and not args.quiet and sys.stderr.isatty()
    iterator = files
    if show_bar:
        from tqdm import tqdm

        iterator = tqdm(files, desc="nnspine csa", unit="file", file=sys.stderr)

    rows, per_slices, skipped = [], [], 0
    stamp = csa_table.now_timestamp()  # one Timestamp for the whole run
    for path in iterator:
        try:
            columns = csa.measure_file_columns(
                path,
                vertfile=args.vertfile,
                vertfile_kind=args.vertfile_kind,
                discfile=args.discfile,
                threshold=args.threshold,
                label=args.label,
                angle_correction=args.angle_correction,
            )
            found = csa_table.summary_rows(columns, per=per, vert=args.vert, filename=str(path), timestamp=stamp)
            if not found:
                raise InputError(f"{path}: no slice of level(s) {csa_table.format_ranges(args.vert or [])} holds cord")
        except InputError as exc:
            if len(files) == 1:
                raise
            skipped += 1
            message = f"nnspine csa: error: {exc} (skipped)"
            if show_bar:
                iterator.write(message, file=sys.stderr)
            else:
                print(message, file=sys.stderr)
            continue
        rows.extend(found)
        if args.plot is not None:
            per_slices.append((str(path), select_levels(columns, args.vert)))
    if not rows:
        raise InputError(f"none of the {len(files)} inputs could be measured; no CSV written")

    text = csa_table.csv_text(rows)
    if to_stdout:
        sys.stdout.write(text)
    else:
        from nnunet_spine.core.io import write_text

        write_text(args.output, text, overwrite=args.overwrite)
    if args.plot is not None:
        import pandas as pd

        from nnunet_spine.postprocessing.qc import plot_csa_profile

        table = pd.concat([pd.DataFrame(cols).assign(Filename=name) for name, cols in per_slices], ignore_index=True)
        plot_csa_profile(table, args.plot, overwrite=args.overwrite, title="Cord CSA along S-I")
    if args.qc_report is not None:
        from nnunet_spine.apps.qc_report import report_csa

        report_csa(args.qc_report, files, rows, root=args.input[0] if len(args.input) == 1 else None)
    if not args.quiet:  # one line saying what was written (on stderr when the CSV went to stdout)
        line = _written_line(args, len(rows), per, len(files) - skipped, skipped)
        print(line + (f"; {vertfile_note}" if vertfile_note else ""), file=sys.stderr if to_stdout else sys.stdout)
    return 2 if skipped else 0


def _written_line(args, n_rows: int, per: str, n_files: int, skipped: int) -> str:
    """``wrote csa.csv (52 rows, one per slice, from 1 file) and csa.png``."""
    where = "stdout" if str(args.output) == "-" else str(args.output)
    each = {"slice": "one per slice", "level": "one per level", "all": "one per file"}[per]
    files = f"{n_files} file{'s' if n_files != 1 else ''}" + (f"; {skipped} skipped" if skipped else "")
    line = f"wrote {where} ({n_rows} row{'s' if n_rows != 1 else ''}, {each}, from {files})"
    return line + (f" and {args.plot}" if args.plot is not None else "")
