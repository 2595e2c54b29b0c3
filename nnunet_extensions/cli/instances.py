"""``nnspine instances``: semantic mask → vertebra instance mask in one call (cutouts, nnU-Net, fusion)."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

from nnunet_spine.cli.common import add_overwrite, add_qc_report_option, add_quiet, new_parser
from nnunet_spine.cli.fuse import add_labelling_options, report_warnings

DESCRIPTION = """\
The instance phase in one call: 'nnspine cutouts' on the semantic mask (or on every *_seg-spine_msk.nii.gz
of a folder), nnU-Net's own predictor run in this process on the cutouts with the trained cutout model
(--model: the results folder $nnUNet_results/DatasetXXX_NAME/<trainer>__<plans>__<configuration>, folds
-f, default: the numbered folds found, else 'all'; loaded once for all masks), then 'nnspine fuse'.
Cutout size and spacing come from the model's dataset.json (as 'nnspine convert cutouts' wrote them).
Cutouts and predictions are temporary; the outputs are those of 'nnspine fuse' (run 'nnspine fuse --help'
for the method and the files):
  OUT_DIR/<stem>_seg-vert_msk.nii.gz, <stem>_seg-spine_msk.nii.gz, <stem>_seg-spine_ctd.json,
  <stem>_seg-spine_snp.png, <stem>_label-discs_dlabel.nii.gz (SCT disc labels, when the ids are anatomical)
nnU-Net's own messages go to stderr (none with -q).
"""

EPILOG = """\
example:
  nnspine instances --semantic sub-01_T2w_seg-spine_msk.nii.gz \\
      --model $nnUNet_results/Dataset502_VertebraCutouts/nnUNetTrainerVertebraCutout__nnUNetPlans__3d_fullres \\
      -f 0 --device cuda -o instances --top-vertebra C2
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = new_parser(
        sub,
        "instances",
        help="instance phase in one call: cutouts -> nnU-Net -> fused instance mask",
        description=DESCRIPTION,
        epilog=EPILOG,
    )
    p.add_argument(
        "--semantic",
        required=True,
        type=Path,
        metavar="SEM",
        help="SPINEPS semantic mask (.nii.gz) or a folder of *_seg-spine_msk.nii.gz",
    )
    p.add_argument("--model", required=True, type=Path, metavar="RESULTS_FOLDER", help="trained cutout model folder")
    p.add_argument("-f", "--folds", nargs="+", metavar="FOLD", help="folds to ensemble, e.g. 0 or 0 1 2 3 4 or all")
    p.add_argument(
        "-chk", "--checkpoint", default="checkpoint_final.pth", help="checkpoint file (default: checkpoint_final.pth)"
    )
    p.add_argument("--device", help="torch device: cuda, cpu or mps (default: cuda when available, else cpu)")
    p.add_argument("-o", "--output", required=True, type=Path, metavar="OUT_DIR", help="folder for the outputs")
    add_labelling_options(p)
    p.add_argument("--no-qc", dest="qc", action="store_false", help="no QC snapshot PNG")
    add_qc_report_option(p)
    add_overwrite(p)
    add_quiet(p)
    p.set_defaults(func=run)


def _default_device() -> str:
    """``cuda`` when torch sees a CUDA device, else ``cpu`` (torch is imported only here, at run time)."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def run(args: argparse.Namespace) -> int:
    from nnunet_spine.apps.instances import (
        check_discfile,
        check_instance_model,
        check_instance_outputs,
        check_landmarks,
        load_instance_model,
        predict_instances,
    )
    from nnunet_spine.cli import UsageError

    for f in args.folds or []:
        if f != "all" and not f.isdigit():
            raise UsageError(f"-f/--folds: expected fold numbers or 'all', got {f!r}")
    # everything the user gave is checked before the checkpoints load
    check_instance_model(args.model, args.folds, args.checkpoint)
    check_landmarks(args.landmarks, args.semantic)
    check_discfile(args.discfile, args.semantic)
    check_instance_outputs(args.semantic, args.output, args.overwrite)
    sink = open(os.devnull, "w") if args.quiet else sys.stderr
    try:
        with contextlib.redirect_stdout(sink):
            model = load_instance_model(
                args.model,
                args.folds,
                args.checkpoint,
                device=args.device or _default_device(),
                progress=not args.quiet and sys.stderr.isatty(),
            )
            report = predict_instances(
                args.semantic,
                model,
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
    finally:
        if sink is not sys.stderr:
            sink.close()
    for case, fusion, _ in report.cases:
        if fusion.missing:
            print(
                f"nnspine instances: warning: {case}: no prediction for cutout(s) {', '.join(fusion.missing)}",
                file=sys.stderr,
            )
    report_warnings("instances", report)
    if args.qc_report is not None:
        from nnunet_spine.apps.qc_report import report_fusion

        report_fusion(args.qc_report, report, args.semantic, command="instances", image=args.image)
    if not args.quiet:
        print("\n".join(report.lines()))
    return 0
