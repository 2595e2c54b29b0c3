"""``nnspine relabel``: nnU-Net predictions in consecutive labels back to the dataset's label values (SPINEPS)."""

from __future__ import annotations

from pathlib import Path

from nnunet_spine.cli.common import add_overwrite, add_quiet, new_parser

DESCRIPTION = """\
Map nnU-Net predictions (labels 1..n) back to the label values of the dataset they were trained on.

'nnspine convert spineps' renumbers the SPINEPS semantic labels (41-49 vertebra subregions, 26 sacrum,
60 cord, 61 canal, 62 endplate, 100 disc) to consecutive integers and stores the mapping in dataset.json
(key nnspine_label_map). nnU-Net copies dataset.json into its model and prediction folders, so --dataset may
be the dataset id or name, a dataset.json, or a folder holding one (raw dataset, trained model, predictions).

Input (-i): one prediction .nii.gz / .nii, or a folder of them (other files are ignored).
Output (-o): a file for a file (or a folder to write it into), a folder for a folder (same file names).
Voxel-exact: every voxel keeps its position; the grid, affine and NIfTI header are the prediction's (data
type uint8). Labels outside the dataset's, or an existing output without --overwrite: exit 2, nothing written.
"""

EPILOG = """\
examples:
  nnUNetv2_predict -i imagesTs -o pred -d 501 -c 3d_fullres -f 0 -tr nnUNetTrainerSpineSemantic
  nnspine relabel -i pred -o pred_spineps --dataset 501 --to spineps
  nnspine relabel -i pred/sub-01_T2w.nii.gz -o sub-01_T2w_seg-spine_msk.nii.gz --dataset pred/dataset.json
"""


def register(subparsers) -> None:
    p = new_parser(
        subparsers,
        "relabel",
        help="nnU-Net predictions -> SPINEPS label values (voxel-exact)",
        description=DESCRIPTION,
        epilog=EPILOG,
    )
    p.add_argument("-i", "--input", required=True, type=Path, metavar="PRED", help="prediction file or folder")
    p.add_argument("-o", "--output", required=True, type=Path, metavar="OUT", help="output file or folder")
    p.add_argument(
        "--dataset",
        required=True,
        metavar="ID|dataset.json",
        help="dataset id or name, a dataset.json, or a folder holding one",
    )
    p.add_argument("--to", default="spineps", choices=["spineps"], help="target label convention (default: spineps)")
    add_overwrite(p)
    add_quiet(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from nnunet_spine.postprocessing.spine.relabel import relabel

    report = relabel(args.input, args.output, args.dataset, to=args.to, overwrite=args.overwrite)
    if not args.quiet:
        print("\n".join(report.lines()))
    return 0
