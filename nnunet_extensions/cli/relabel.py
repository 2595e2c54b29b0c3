"""``nnspine relabel``: nnU-Net predictions in consecutive labels back to the dataset's label values (SPINEPS), and
TotalSpineSeg's label ids to and from SPINEPS'."""

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

TotalSpineSeg (no --dataset): its ids (totalspineseg/resources/labels_maps/tss_map.json: 1 cord, 2 canal,
11-17 C1-C7, 21-32 T1-T12, 41-45 L1-L5, 46 L6, 47 L7, 50 sacrum, discs 63-67 C2-C3..C6-C7, 71-82
C7-T1..T11-T12, 91-95 T12-L1..L4-L5, 100 L5-S; the cross-walk table is in docs/spine.md).
  --from totalspineseg   a TotalSpineSeg step-2 output -> two SPINEPS masks per input:
                         <stem>_seg-vert_msk.nii.gz  instance mask: vertebrae by VerSe id (C1=1 .. L5=24,
                                                     L6=25, sacrum 26), disc below vertebra X = 100+X (uint8)
                         <stem>_seg-spine_msk.nii.gz cord 60 and canal 61 only (uint8)
                         (-o a folder: <stem> is the input's; -o FILE: FILE is the instance mask and its
                         seg-spine partner goes beside it). L7 (47) has no VerSe id: exit 2.
  --from spineps --to totalspineseg
                         a SPINEPS instance mask (a folder: its *_seg-vert_msk* files) -> TotalSpineSeg ids
                         (uint8, same file name in an -o folder); cord and canal from --semantic, or in a
                         folder from the _seg-spine_msk beside each mask. Endplates (200+X) join the nearest
                         vertebra; T13 (28), coccyx (27) and discs 101, 125, 128 have no TotalSpineSeg id: exit 2.
"""

EPILOG = """\
examples:
  nnUNetv2_predict -i imagesTs -o pred -d 501 -c 3d_fullres -f 0 -tr nnUNetTrainerSpineSemantic
  nnspine relabel -i pred -o pred_spineps --dataset 501 --to spineps
  nnspine relabel -i pred/sub-01_T2w.nii.gz -o sub-01_T2w_seg-spine_msk.nii.gz --dataset pred/dataset.json
  nnspine relabel -i step2_output -o spineps_masks --from totalspineseg
  nnspine relabel -i sub-01_T2w_seg-vert_msk.nii.gz -o sub-01_T2w_tss.nii.gz --from spineps --to totalspineseg \
      --semantic sub-01_T2w_seg-spine_msk.nii.gz
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
        metavar="ID|dataset.json",
        help="dataset id or name, a dataset.json, or a folder holding one (nnU-Net predictions; not with --from)",
    )
    p.add_argument(
        "--from",
        dest="source",
        choices=["totalspineseg", "spineps"],
        help="label convention of the input masks, instead of --dataset",
    )
    p.add_argument(
        "--to",
        default="spineps",
        choices=["spineps", "totalspineseg"],
        help="target label convention (default: spineps)",
    )
    p.add_argument(
        "--semantic",
        type=Path,
        metavar="SEG-SPINE.nii.gz",
        help="with --from spineps --to totalspineseg: the semantic mask whose cord (60) and canal (61) are added",
    )
    add_overwrite(p)
    add_quiet(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from nnunet_spine.cli import UsageError
    from nnunet_spine.postprocessing.spine import relabel as rl

    if args.source is not None and args.dataset is not None:
        raise UsageError("--from and --dataset exclude each other (--dataset is for nnU-Net predictions)")
    if args.semantic is not None and not (args.source == "spineps" and args.to == "totalspineseg"):
        raise UsageError("--semantic goes with --from spineps --to totalspineseg")
    if args.source == "totalspineseg":
        if args.to != "spineps":
            raise UsageError("--from totalspineseg converts to spineps (leave out --to or say --to spineps)")
        report = rl.relabel_from_totalspineseg(args.input, args.output, overwrite=args.overwrite)
    elif args.source == "spineps":
        if args.to != "totalspineseg":
            raise UsageError("--from spineps needs --to totalspineseg")
        report = rl.relabel_to_totalspineseg(args.input, args.output, semantic=args.semantic, overwrite=args.overwrite)
    else:
        if args.dataset is None:
            raise UsageError("give --dataset (nnU-Net predictions) or --from totalspineseg|spineps")
        if args.to != "spineps":
            raise UsageError("--to totalspineseg needs --from spineps (predictions relabel to spineps)")
        report = rl.relabel(args.input, args.output, args.dataset, to=args.to, overwrite=args.overwrite)
    if not args.quiet:
        print("\n".join(report.lines()))
    return 0
