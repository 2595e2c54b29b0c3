"""``nnspine qc <picture>``: quality-control pictures from files (a command group; pictures from
:mod:`nnunet_spine.postprocessing.qc`). Add pictures by appending their register function to :data:`QC_PICTURES`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nnunet_spine.cli.common import add_overwrite, new_parser

SPINE_DESCRIPTION = """\
Sagittal snapshot of a SPINEPS semantic mask: the mid-sagittal slice and one parasagittal slice through each
side's articular processes (panels: subject's right, mid, left), labels in SPINEPS' colours with a legend,
superior up, anterior right, axes in mm, each panel titled with its world x (RAS mm).

Input: -i a SPINEPS semantic mask (labels 41-49, 26, 60-62, 100: e.g. <image>_seg-spine_msk.nii.gz or the
output of 'nnspine relabel'), optionally --image the image on the same grid (drawn in grey underneath).
Output: -o PNG (refused if it exists unless --overwrite). An instance mask, other label values or a grid
mismatch: exit 2, nothing written.
"""

SPINE_EPILOG = """\
examples:
  nnspine qc spine -i sub-01_T2w_seg-spine_msk.nii.gz --image sub-01_T2w.nii.gz -o sub-01_qc.png
  nnspine qc spine -i pred_spineps/sub-01_T2w.nii.gz -o sub-01_pred_qc.png
"""


def register_spine(pictures: argparse._SubParsersAction) -> None:
    p = new_parser(
        pictures,
        "spine",
        help="sagittal snapshot of a SPINEPS semantic mask (mid + both sides)",
        description=SPINE_DESCRIPTION,
        epilog=SPINE_EPILOG,
    )
    p.add_argument("-i", "--input", required=True, type=Path, metavar="SEG", help="SPINEPS semantic mask")
    p.add_argument("--image", type=Path, metavar="IMG", help="image on the mask's grid (grey background)")
    p.add_argument("-o", "--output", required=True, type=Path, metavar="PNG", help="output picture")
    p.add_argument("--title", help="title above the panels (default: the mask's file name)")
    add_overwrite(p)
    p.set_defaults(func=run_spine)


REPORT_DESCRIPTION = """\
Rebuild the offline HTML QC report in DIR (DIR/index.html) from its entries (DIR/entries/*.json), e.g. after
deleting some entries' files. Entries are added by the commands' --qc-report DIR option; marks made in the
browser are kept (they are keyed by the report's id, DIR/report_id). Keys, marks and the qc_fail.yml loop:
docs/qc.md. A folder that holds no report: exit 2, nothing written.
"""


def register_report(pictures: argparse._SubParsersAction) -> None:
    p = new_parser(
        pictures,
        "report",
        help="rebuild the HTML QC report of a --qc-report folder (DIR/index.html)",
        description=REPORT_DESCRIPTION,
        epilog="example:\n  nnspine qc report qc/  # then open qc/index.html in a browser\n",
    )
    p.add_argument("report_dir", type=Path, metavar="DIR", help="the report folder (--qc-report DIR)")
    p.set_defaults(func=run_report)


#: Register functions of the pictures, in the order ``nnspine qc --help`` lists them.
QC_PICTURES = [register_spine, register_report]


def register(sub: argparse._SubParsersAction) -> None:
    p = new_parser(
        sub,
        "qc",
        help="quality-control pictures (spine: sagittal snapshot of a SPINEPS mask) and the HTML QC report",
        description="Quality-control pictures. Run 'nnspine qc <picture> --help' for inputs and outputs.",
    )
    pictures = p.add_subparsers(dest="picture", metavar="<picture>")
    for register_picture in QC_PICTURES:
        register_picture(pictures)

    def no_picture(args: argparse.Namespace) -> int:
        p.print_help(sys.stderr)
        return 2

    p.set_defaults(func=no_picture)


def run_report(args: argparse.Namespace) -> int:
    from nnunet_spine.postprocessing.qc.report import read_entries, rebuild_report

    index = rebuild_report(args.report_dir)
    print(f"{index}: {len(read_entries(args.report_dir))} entries")
    return 0


def run_spine(args: argparse.Namespace) -> int:
    from nnunet_spine.postprocessing.qc import plot_spine_semantic

    out = plot_spine_semantic(
        args.input, args.output, image=args.image, title=args.title or args.input.name, overwrite=args.overwrite
    )
    print(out)
    return 0
