"""``nnspine fuse``: vertebra instance mask from the cutout predictions of the instance phase."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nnunet_extensions.cli.common import add_overwrite, add_quiet, new_parser

DESCRIPTION = """\
Fuse nnU-Net's predictions on the cutouts of 'nnspine cutouts' (labels 1 = vertebra above, 2 = centre
vertebra, 3 = vertebra below) into one SPINEPS instance mask on the semantic mask's grid.

Each predicted mask is compared by Dice with the predictions of the cutouts up to two above and below;
masks that agree (Dice > 0.3) are merged by majority vote (union where only two agree), ranked by
agreement and written first-come-first-served into unclaimed voxels; a candidate more than 60 % covered
by accepted vertebrae is skipped. Then instance voxels outside the vertebra labels 41-49 are removed,
instance fragments below 250 mm3 released, and vertebra voxels without an instance join their one
neighbouring vertebra (or, between several, the nearest one); vertebrae are numbered from the top (1, 2,
... or VerSe ids with --top-vertebra: C2 gives C2=2, C3=3, ...; L5 is followed by L6=25); the sacrum (26)
is kept; every disc (100) and endplate (62) component gets 100+X / 200+X from the nearest vertebral-body
centre above it (SPINEPS' rule). Cutouts without a prediction are named on stderr and the rest is fused.

Outputs in OUT_DIR, named as SPINEPS names them (sub-01_T2w_seg-spine_msk.nii.gz ->):
  sub-01_T2w_seg-vert_msk.nii.gz    instance mask (uint8): vertebrae, sacrum 26, discs 100+X, endplates 200+X
  sub-01_T2w_seg-spine_msk.nii.gz   cleaned semantic mask (vertebra voxels no vertebra could take removed)
  sub-01_T2w_seg-spine_ctd.json     vertebral-body centroids in world RAS mm, with ids (and names with
                                    --top-vertebra), plus the sacrum's centroid
  sub-01_T2w_seg-spine_snp.png      sagittal QC snapshot, one colour and name per vertebra (not with --no-qc)
OUT_DIR must not be the folder of the semantic mask (its cleaned copy has the same name).
"""

EPILOG = """\
example:
  nnspine cutouts --semantic sub-01_T2w_seg-spine_msk.nii.gz -o cutouts
  nnUNetv2_predict -i cutouts -o cutouts_pred -d 502 -c 3d_fullres -tr nnUNetTrainerVertebraCutout -f 0
  nnspine fuse --semantic sub-01_T2w_seg-spine_msk.nii.gz --cutouts cutouts --predictions cutouts_pred \\
      -o instances --top-vertebra C2
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = new_parser(
        sub,
        "fuse",
        help="instance phase: fuse cutout predictions into a vertebra instance mask",
        description=DESCRIPTION,
        epilog=EPILOG,
    )
    p.add_argument(
        "--semantic",
        required=True,
        type=Path,
        metavar="SEM",
        help="the semantic mask given to 'nnspine cutouts' (file, or folder of *_seg-spine_msk.nii.gz)",
    )
    p.add_argument("--cutouts", required=True, type=Path, metavar="DIR", help="folder written by 'nnspine cutouts'")
    p.add_argument(
        "--predictions",
        required=True,
        type=Path,
        metavar="PRED",
        help="nnUNetv2_predict output folder (<case>_<NNN>.nii.gz)",
    )
    p.add_argument("-o", "--output", required=True, type=Path, metavar="OUT_DIR", help="folder for the outputs")
    p.add_argument(
        "--top-vertebra",
        metavar="NAME",
        help="name of the top vertebra (e.g. C2, T1, L1): VerSe ids instead of 1, 2, ... from the top",
    )
    p.add_argument("--no-qc", dest="qc", action="store_false", help="no QC snapshot PNG")
    add_overwrite(p)
    add_quiet(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from postprocessing.spine.fusion_files import fuse

    report = fuse(
        args.semantic,
        args.cutouts,
        args.predictions,
        args.output,
        top_vertebra=args.top_vertebra,
        qc=args.qc,
        overwrite=args.overwrite,
    )
    for case, fusion, _ in report.cases:
        if fusion.missing:
            print(
                f"nnspine fuse: warning: {case}: no prediction in {args.predictions} for cutout(s) "
                f"{', '.join(fusion.missing)}; fused the other {len(fusion.used)}",
                file=sys.stderr,
            )
    if not args.quiet:
        print("\n".join(report.lines()))
    return 0
