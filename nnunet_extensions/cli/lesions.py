"""``nnspine lesions``: remove small / off-cord lesions, number lesions superior→inferior, lesion table, QC."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nnunet_spine.cli.common import add_overwrite, add_qc_report_option, add_quiet, new_parser
from nnunet_spine.cli.evaluate_lesions import ALL, _label

EXAMPLE = """\
examples:
  nnspine lesions -i pred/sub-01_T2w.nii.gz --label 2 --cord cord/sub-01_T2w_label-SC_seg.nii.gz \\
      --min-volume-mm3 5 -o sub-01_T2w_lesions.nii.gz --table lesions.csv --qc lesions.png
  nnspine lesions -i pred/ --label 2 --cord bids/derivatives/labels --vertfile levels/ \\
      -o pred_lesions/ --table lesions.csv --qc qc/
"""


def register(sub: argparse._SubParsersAction) -> None:
    from nnunet_spine.core.lesion_matching import CONNECTIVITIES, DEFAULT_CONNECTIVITY
    from nnunet_spine.postprocessing.lesion.lesions import DEFAULT_CORD_DILATION_MM

    p = new_parser(
        sub,
        "lesions",
        help="remove small or off-cord lesions, number them S→I, lesion table and QC picture",
        description=(
            "Lesions are connected components (--connectivity, default 26; SCT uses 18) of the --label of a\n"
            "prediction (a prediction with several labels needs --label, unless it is the output of this\n"
            "command: its JSON sidecar marks lesion instances). Lesions below --min-volume-mm3\n"
            "(volume from the voxel size) are removed ('small'); with --cord, lesions with no voxel within\n"
            "--cord-dilation-mm of the cord mask (Euclidean mm, anisotropic voxels too) are removed\n"
            "('outside_cord'). Kept lesions are numbered\n"
            "1..N from superior to inferior (world S of the centroid) in the output image; removed lesions\n"
            "continue N+1.. in the table and QC picture only, so nothing disappears silently. Beside each\n"
            'output image a JSON sidecar (same stem, .json) says "LesionInstances": true, so\n'
            "'nnspine evaluate lesions' scores the output as it is (every non-zero voxel is lesion).\n"
            "Table (CSV): filename, lesion, volume_mm3, centroid_x_mm, centroid_y_mm, centroid_z_mm (world\n"
            "RAS), extent_si_mm (S-I extent incl. one voxel), max_axial_diameter_mm (largest Feret diameter\n"
            "of the axial cross-sections, voxel corners), vert_level (SCT numbering, with --vertfile),\n"
            "with --cord SCT's measures of the lesion's part inside the cord mask (sct_analyze_lesion -s,\n"
            "cord-angle corrected; 0 for a lesion entirely outside the cord): volume_in_cord_mm3,\n"
            "length_along_cord_mm (slices x thickness / cos angle),\n"
            "max_equivalent_diameter_mm (2 sqrt(max area x cos angle / pi)),\n"
            "removed (empty, 'small' or 'outside_cord'); then per file a row lesion = total with the count\n"
            "and total volume of the kept lesions.\n"
            "A folder of predictions is processed in one call (outputs: a folder, same file names); cord\n"
            "masks, level files and images are then folders searched by case name (the image stem).\n"
            "Bad input: nothing is written."
        ),
        epilog=EXAMPLE,
    )
    p.add_argument("-i", "--input", required=True, type=Path, metavar="PRED", help="prediction (.nii.gz) or folder")
    p.add_argument(
        "--label",
        type=_label,
        default=None,
        metavar="L",
        help="lesion label of a multi-label or region prediction, or 'all' for every non-zero voxel "
        "(default: the one label of a binary prediction)",
    )
    p.add_argument("--cord", type=Path, metavar="CORD", help="binary cord mask (file, or folder searched by case)")
    p.add_argument(
        "--cord-dilation-mm",
        type=float,
        default=DEFAULT_CORD_DILATION_MM,
        metavar="MM",
        help="keep lesions within this distance of the cord mask (default: %(default)s mm)",
    )
    p.add_argument(
        "--min-volume-mm3",
        type=float,
        default=0.0,
        metavar="MM3",
        help="remove lesions smaller than this volume (default: 0, keep all)",
    )
    p.add_argument(
        "--vertfile",
        type=Path,
        metavar="LEVELS",
        help="labelled vertebral levels (SCT numbering) on the prediction's grid (file or folder)",
    )
    p.add_argument("--image", type=Path, metavar="IMG", help="image drawn behind the QC outlines (file or folder)")
    p.add_argument(
        "--connectivity",
        type=int,
        choices=CONNECTIVITIES,
        default=DEFAULT_CONNECTIVITY,
        help="lesion connectivity (default: %(default)s)",
    )
    p.add_argument(
        "-o",
        "--output",
        required=True,
        type=Path,
        metavar="OUT",
        help="labelled lesions (.nii.gz) with a JSON sidecar beside it, or a folder for a folder input",
    )
    p.add_argument("--table", required=True, type=Path, metavar="CSV", help="lesion table (CSV)")
    p.add_argument("--qc", type=Path, metavar="PNG", help="QC picture (a folder for a folder input)")
    add_qc_report_option(p)
    add_overwrite(p)
    add_quiet(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nnunet_spine.postprocessing.lesion.lesions import check_options, plan_jobs, run_lesions

    check_options(args.min_volume_mm3, args.cord_dilation_mm)
    jobs = plan_jobs(
        args.input,
        args.output,
        cord=args.cord,
        vertfile=args.vertfile,
        image=args.image,
        qc=args.qc,
        overwrite=args.overwrite,
    )
    df = run_lesions(
        jobs,
        args.table,
        label=None if args.label in (None, ALL) else args.label,
        all_foreground=args.label == ALL,
        cord_dilation_mm=args.cord_dilation_mm,
        min_volume_mm3=args.min_volume_mm3,
        connectivity=args.connectivity,
        overwrite=args.overwrite,
        progress=not args.quiet and sys.stderr.isatty(),
    )
    if args.qc_report is not None:
        from nnunet_spine.apps.qc_report import report_lesions

        report_lesions(args.qc_report, jobs, df, root=args.input)
    if not args.quiet:
        totals = df[df["lesion"] == "total"]
        for _, r in totals.iterrows():
            print(f"{r['filename']}: {r['removed']}, kept volume {r['volume_mm3']:.1f} mm³")
        print(f"wrote {args.output}, {args.table}" + (f" and {args.qc}" if args.qc else ""))
    return 0
