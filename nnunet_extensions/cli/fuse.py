"""``nnspine fuse``: vertebra instance mask from the cutout predictions of the instance phase."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nnunet_spine.cli.common import add_overwrite, add_qc_report_option, add_quiet, new_parser

DESCRIPTION = """\
Fuse nnU-Net's predictions on the cutouts of 'nnspine cutouts' (labels 1 = vertebra above, 2 = centre
vertebra, 3 = vertebra below) into one SPINEPS instance mask on the semantic mask's grid.

Each predicted mask is compared by Dice with the predictions of the cutouts up to two above and below;
masks that agree (Dice > 0.3) form groups, ranked by agreement (ties bottom first) and written
first-come-first-served into unclaimed voxels: a group of three by majority vote, or by union when its
agreement is below 0.45, a group of two by union (SPINEPS' rules); a candidate more than 60 % covered by
accepted vertebrae is skipped; partners that disagree are kept and reported. Then instance voxels outside
the vertebra labels are removed, instance fragments below 250 mm3 released, and vertebra voxels without
an instance join their one neighbouring vertebra (or, between several, the nearest one).

Vertebra ids (--labelling auto, the default): --top-vertebra NAME when given (C2 gives C2=2, C3=3, ...;
L5 is followed by L6=25); else the sacrum (26) directly below the lowest vertebra makes it L5
(--lumbar-vertebrae 4 or 6 for L4 / L6), and a dens (SPINEPS 2.x label 51) makes its vertebra C2; with
both, the count between them is checked and one vertebra more or fewer is reported as a transitional
candidate (T13/L6, or 4 lumbar / 11 thoracic), not guessed. Ids are "verified" only when two independent
anchors (sacrum, dens, a landmark disc, SCT disc labels given with --discfile, --top-vertebra) agree on
them; ids from one anchor are "not verified" (a transitional column would be one off), said on stderr, in
the sidecar and in the POI header. What networks get wrong is checked before the ids are given (thresholds
in docs/spine.md): a merged instance is split at the disc between its two bodies, or (a body much taller
than its neighbours) kept, counted as two and the ids left unverified; two instances sharing one body are
joined; partial vertebrae at the field-of-view edges never make a gap; bodies without an arch are removed;
a doubtful sacrum leaves the ids unverified. Without an
anchor (or --labelling none) ids
are 1, 2, ... from the top and every output says "not anatomically labelled". A gap in the column (body
centres much further apart than their neighbours: a missing vertebra) is reported, and anchored ids skip
it instead of shifting. The sacrum (26) is kept; every disc (100) and endplate component gets 100+X /
200+X from the nearest vertebral-body centre above it (SPINEPS' rule). Cutouts without a prediction are
named on stderr and the rest is fused. SPINEPS 2.x semantic masks (50, 51, 52/53) are read as body and
endplate for the fusion and keep their labels in the cleaned semantic mask; every dens (51) voxel is C2's, as
SPINEPS assigns it; --endplates split writes superior (52) and inferior (53) endplates as SPINEPS 2.x does.

Outputs in OUT_DIR, named as SPINEPS names them (sub-01_T2w_seg-spine_msk.nii.gz ->):
  sub-01_T2w_seg-vert_msk.nii.gz    instance mask (uint8): vertebrae, sacrum 26, discs 100+X, endplates 200+X
  sub-01_T2w_seg-spine_msk.nii.gz   cleaned semantic mask (vertebra voxels no vertebra could take removed)
  sub-01_T2w_seg-spine_ctd.json     vertebral-body centroids in TPTBox's POI format as SPINEPS writes it
                                    (voxel coordinates, subregion 50; TPTBox.POI.load reads it); header keys
                                    nnspine_anatomically_labelled, nnspine_labelling_verified, _reason, _method
  sub-01_T2w_seg-vert_msk.json      sidecar: how the ids were found, verified or not and why, gaps, anomalies,
                                    world centroids
  sub-01_T2w_seg-spine_snp.png      sagittal QC snapshot, one colour and name per vertebra (not with --no-qc)
  sub-01_T2w_label-discs_dlabel.nii.gz  SCT disc labels (only for anatomical ids): one voxel per disc at its
                                    posterior tip, value N = the disc at the top of SCT level N (3 = C2-C3 ...
                                    25 = L5-S1), as SPINEPS' generate_disc_labels maps IVD ids; discs with no
                                    SCT value (below T13 or L6) are skipped and named on stderr
OUT_DIR must not be the folder of the semantic mask (its cleaned copy has the same name).
"""

EPILOG = """\
example:
  nnspine cutouts --semantic sub-01_T2w_seg-spine_msk.nii.gz -o cutouts
  nnUNetv2_predict -i cutouts -o cutouts_pred -d 502 -c 3d_fullres -tr nnUNetTrainerVertebraCutout -f 0
  nnspine fuse --semantic sub-01_T2w_seg-spine_msk.nii.gz --cutouts cutouts --predictions cutouts_pred \\
      -o instances                        # ids from the sacrum / dens, or --top-vertebra C2
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
    add_labelling_options(p)
    p.add_argument("--no-qc", dest="qc", action="store_false", help="no QC snapshot PNG")
    add_qc_report_option(p)
    add_overwrite(p)
    add_quiet(p)
    p.set_defaults(func=run)


def add_id_options(p: argparse.ArgumentParser) -> None:
    """--top-vertebra, --labelling, --lumbar-vertebrae, --endplates and --discfile: one spelling for fuse, instances
    and segment spine."""
    from nnunet_spine.postprocessing.spine.labelling import DEFAULT_LUMBAR, LABELLING_MODES

    p.add_argument(
        "--top-vertebra",
        metavar="NAME",
        help="name of the top vertebra (e.g. C2, T1, L1): VerSe ids from it, overriding the anchors",
    )
    p.add_argument(
        "--labelling",
        choices=LABELLING_MODES,
        default="auto",
        help="auto: anatomical ids from the sacrum / dens / landmark anchors when present; none: 1, 2, ... from "
        "the top (default: auto)",
    )
    p.add_argument(
        "--lumbar-vertebrae",
        type=int,
        choices=(4, 5, 6),
        default=DEFAULT_LUMBAR,
        help=f"lumbar vertebrae above the sacrum anchor (default: {DEFAULT_LUMBAR})",
    )
    p.add_argument(
        "--endplates",
        choices=("merged", "split"),
        default="merged",
        help="endplates in the cleaned semantic mask: merged (62) or split into superior 52 / inferior 53 as "
        "SPINEPS 2.x (default: merged)",
    )
    p.add_argument(
        "--discfile",
        type=Path,
        metavar="FILE|DIR",
        help="SCT disc labels (one voxel per disc, value N = the disc at the top of SCT level N: 3 = C2-C3 ... "
        "25 = L5-S1) anchoring the vertebra ids: a file, or a folder holding <case>_label-discs_dlabel.nii.gz; a "
        "disc names the vertebra above it, two or more that agree verify the ids",
    )


def add_labelling_options(p: argparse.ArgumentParser) -> None:
    """:func:`add_id_options`, --landmarks and --image (fuse and instances)."""
    add_id_options(p)
    p.add_argument(
        "--landmarks",
        type=Path,
        metavar="PRED",
        help="a landmark model's prediction (discs C2-C3, C7-T1, T12-L1, L5-S1 as classes 1-4, 'nnspine convert "
        "landmarks'): a file, or a folder of <case>.nii.gz; landmark discs anchor the ids",
    )
    p.add_argument(
        "--image",
        type=Path,
        metavar="IMG",
        help="draw the snapshot over this image (a file on the semantic mask's grid, or a folder of <case>.nii.gz)",
    )


def report_warnings(command: str, report) -> None:
    """Anomalies, disagreeing partners, the not-labelled notice and the not-verified notice (ids from one
    anchor, or anchors that disagree: :attr:`Labelling.reason`) on stderr, one line each."""
    for case, fusion, _ in report.cases:
        lab = fusion.labelling
        if lab is not None and not lab.anatomical:
            print(f"nnspine {command}: warning: {case}: {lab.method}", file=sys.stderr)
        elif lab is not None and not lab.verified:
            print(f"nnspine {command}: warning: {case}: labelling not verified: {lab.reason}", file=sys.stderr)
        for line in (lab.anomalies if lab is not None else []) + fusion.disagreements:
            print(f"nnspine {command}: warning: {case}: {line}", file=sys.stderr)
    for line in report.warnings():
        print(f"nnspine {command}: warning: {line}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from nnunet_spine.postprocessing.spine.fusion_files import fuse

    report = fuse(
        args.semantic,
        args.cutouts,
        args.predictions,
        args.output,
        top_vertebra=args.top_vertebra,
        labelling=args.labelling,
        lumbar=args.lumbar_vertebrae,
        endplates=args.endplates,
        image=args.image,
        landmarks=args.landmarks,
        qc=args.qc,
        overwrite=args.overwrite,
        discfile=args.discfile,
    )
    for case, fusion, _ in report.cases:
        if fusion.missing:
            print(
                f"nnspine fuse: warning: {case}: no prediction in {args.predictions} for cutout(s) "
                f"{', '.join(fusion.missing)}; fused the other {len(fusion.used)}",
                file=sys.stderr,
            )
    report_warnings("fuse", report)
    if args.qc_report is not None:
        from nnunet_spine.apps.qc_report import report_fusion

        report_fusion(args.qc_report, report, args.semantic, command="fuse", image=args.image)
    if not args.quiet:
        print("\n".join(report.lines()))
    return 0
