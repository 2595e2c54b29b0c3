"""``nnspine segment {cord,lesion,spine}``: one command from image(s) to results.

Parses the options and calls :func:`nnunet_spine.apps.segment.segment`.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

from nnunet_spine.cli.common import (
    add_exclude_options,
    add_overwrite,
    add_qc_report_option,
    add_quiet,
    new_parser,
    read_case_lists,
    say_skipped,
)
from nnunet_spine.cli.fuse import add_id_options

DESCRIPTION = """\
One command from image(s) to results with any trained nnU-Net v2 model (ours or a published one in nnU-Net
format). nnU-Net's predictor runs in this process with nnUNetv2_predict's settings, loaded once for the
whole cohort; the results are exactly those of nnUNetv2_predict followed by the nnspine commands below.

  cord    soft mask (soft-segmentation trainers) or binary mask -> CSA per slice (SCT's CSV, per level with
          --vertfiles / --discfiles) -> CSA profile QC           <case>_label-SC_softseg.nii.gz (or _seg),
                                                                 <case>_csa_perslice.csv, <case>_csa.png
  lesion  lesion mask (the model's 'lesion' label or region) -> lesions 1..N, table and QC of 'nnspine
          lesions' (cord-relative columns with a region model's cord); --crop-to-cord predicts only
          around the cord (a mask or a cord model), as SCT's lesion pipelines crop around the cord
                                                                 <case>_label-lesion_seg.nii.gz,
                                                                 <case>_lesions.csv, <case>_lesions.png
  spine   semantic mask (SPINEPS values) -> cutouts -> --instance-model -> fusion and anatomical labelling
          -> SPINEPS' outputs (_seg-spine_msk, _seg-vert_msk, _ctd.json, _snp.png, sidecar)

Input (-i): an image, a folder of images, or a BIDS dataset (sub-*/[ses-*/]anat; --channels picks one
sequence per model channel, the first naming the case). Outputs under -o as BIDS derivatives (flat for
non-BIDS input), with segment_summary.csv (case, status, seconds, outputs;
for spine: labelling, verified, reason) and failures.csv (case, step,
reason), updated as each case ends. A case that fails is recorded with the step that failed, its partial
outputs removed, and the others go on (exit 2 when any failed). Cohorts: --num-parts N --part-id K runs part K
of N (cases K, K+N, ...: nnU-Net's convention; one scheduler job each, no coordination); --skip-existing
resumes a run (a case is finished when its record says ok and its outputs exist; others run again); existing
results are refused unless one of them or --overwrite. nnU-Net's own messages go to OUT_DIR/logs/; -q hides
progress, not the errors or the final count.
"""

EPILOG = """\
examples:
  M=$nnUNet_results/Dataset101_SoftCord/nnUNetTrainerSoftSeg__nnUNetPlans__3d_fullres
  nnspine segment cord -i sub-01_T2w.nii.gz -o seg --model $M -f 0
  nnspine segment lesion -i bids/ --channels T2w,T1w -o seg --model .../nnUNetTrainerLesion__nnUNetPlans__3d_fullres
  nnspine segment spine -i bids/ --channels T2w -o seg \\
      --model .../nnUNetTrainerSpineSemantic__nnUNetPlans__3d_fullres \\
      --instance-model .../nnUNetTrainerVertebraCutout__nnUNetPlans__3d_fullres
  SLURM array of 8 jobs: nnspine segment cord -i bids/ -o seg --model M --num-parts 8 --part-id $SLURM_ARRAY_TASK_ID
"""


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("-i", "--input", required=True, type=Path, metavar="IN", help="image, folder or BIDS dataset")
    p.add_argument("-o", "--output", required=True, type=Path, metavar="OUT_DIR", help="results folder")
    p.add_argument("--model", required=True, type=Path, metavar="DIR", help="nnU-Net results folder of the model")
    p.add_argument("-f", "--folds", nargs="+", metavar="FOLD", help="folds to ensemble (default: every fold found)")
    p.add_argument("-chk", "--checkpoint", default="checkpoint_final.pth", help="checkpoint (default: final)")
    p.add_argument("--channels", metavar="SPEC,...", help="BIDS sequences, one per model channel (e.g. T2w,T1w)")
    p.add_argument("--device", help="cuda, cpu or mps (default: cuda when available, else cpu)")
    p.add_argument("--num-parts", type=int, default=1, metavar="N", help="shard the cohort into N parts")
    p.add_argument("--part-id", type=int, default=0, metavar="K", help="the part this run does (0 ... N-1)")
    p.add_argument("--skip-existing", action="store_true", help="skip cases whose results exist (resume)")
    p.add_argument("--no-qc", dest="qc", action="store_false", help="no QC pictures")
    add_qc_report_option(p)
    add_exclude_options(p)
    add_overwrite(p)
    add_quiet(p)


def register(sub: argparse._SubParsersAction) -> None:
    p = new_parser(
        sub, "segment", help="one command from image(s) to results (cord, lesion, spine)", description=DESCRIPTION,
        epilog=EPILOG,
    )  # fmt: skip
    what = p.add_subparsers(dest="task", metavar="<task>")
    cord = new_parser(what, "cord", help="cord mask -> CSA", description=DESCRIPTION, epilog=EPILOG)
    _common(cord)
    cord.add_argument(
        "--vertfiles", type=Path, metavar="DIR|FILE", help="level files <case><--vert-suffix>.nii.gz (or one file)"
    )
    cord.add_argument("--vert-suffix", default="_label-SC_seg_labeled", help="(default: _label-SC_seg_labeled)")
    cord.add_argument(
        "--discfiles", type=Path, metavar="DIR|FILE", help="disc label files <case><--disc-suffix>.nii.gz (or one file)"
    )
    cord.add_argument(
        "--disc-suffix",
        help="(default: whichever exists of _label-SC_seg_labeled_discs (SCT) and _label-discs_dlabel (BIDS))",
    )
    lesion = new_parser(what, "lesion", help="lesion mask -> lesion table", description=DESCRIPTION, epilog=EPILOG)
    _common(lesion)
    lesion.add_argument("--min-volume-mm3", type=float, default=0.0, help="remove smaller lesions (default: 0)")
    lesion.add_argument(
        "--crop-to-cord", type=Path, metavar="MASK|DIR|MODEL",
        help="predict only in a box around the cord: a cord mask (one image), a folder of <case><--cord-suffix> "
        "masks, or a cord model's results folder; the cord also gives the cord-relative lesion columns",
    )  # fmt: skip
    lesion.add_argument("--cord-suffix", default="_label-SC_seg", help="cord mask names (default: _label-SC_seg)")
    lesion.add_argument(
        "--crop-margin-mm", type=float, default=10.0, help="box = cord's bounding box grown by this (default: 10 mm)"
    )
    spine = new_parser(what, "spine", help="semantic -> instances (SPINEPS)", description=DESCRIPTION, epilog=EPILOG)
    _common(spine)
    spine.add_argument("--instance-model", type=Path, required=True, metavar="DIR", help="cutout model folder")
    spine.add_argument("--instance-folds", nargs="+", metavar="FOLD", help="its folds (default: every fold)")
    add_id_options(spine)
    spine.add_argument(
        "--landmark-model", type=Path, metavar="DIR",
        help="a landmark model ('nnspine convert landmarks'): its predicted discs anchor the vertebra ids",
    )  # fmt: skip
    # another task's option: accepted here only to name the command it belongs to (one line, exit 2)
    for s in (cord, spine):
        s.add_argument("--crop-to-cord", type=Path, help=argparse.SUPPRESS)
    for s in (cord, lesion):
        s.add_argument("--landmark-model", type=Path, help=argparse.SUPPRESS)
    for s in (cord, lesion, spine):
        s.set_defaults(func=run)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


@contextlib.contextmanager
def terminate_as_exit() -> Iterator[None]:
    """SIGTERM (a scheduler's kill, ``timeout``) raises ``SystemExit(143)`` while the block runs, as Ctrl-C raises
    KeyboardInterrupt, so the run's ``finally`` blocks remove its temporary folders and record the case."""

    def _raise(signum, _frame):
        raise SystemExit(128 + signum)

    try:
        previous = signal.signal(signal.SIGTERM, _raise)
    except ValueError:  # not the main thread: leave the signal as it is
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _say_when_terminated(err, out: Path) -> Iterator[None]:
    """One line when SIGTERM ends the run (the exit status stays 143)."""
    try:
        yield
    except SystemExit as exc:
        if exc.code == 128 + signal.SIGTERM:
            print(f"nnspine segment: terminated (SIGTERM); finished cases are recorded in {out}", file=err)
        raise


def run(args: argparse.Namespace) -> int:
    from nnunet_spine.apps.segment import segment
    from nnunet_spine.apps.segment_tasks import Options

    device = args.device
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    opts = Options(device=device, qc=args.qc)
    opts.qc_report, (opts.exclude, opts.include) = args.qc_report, read_case_lists(args)
    opts.crop_to_cord = getattr(args, "crop_to_cord", None)
    opts.landmark_model = getattr(args, "landmark_model", None)
    if args.task == "cord":
        opts.vertfiles, opts.vert_suffix = args.vertfiles, args.vert_suffix
        opts.discfiles, opts.disc_suffix = args.discfiles, args.disc_suffix
    elif args.task == "lesion":
        opts.min_volume_mm3 = args.min_volume_mm3
        opts.cord_suffix, opts.crop_margin_mm = args.cord_suffix, args.crop_margin_mm
    else:
        opts.instance_model, opts.instance_folds = args.instance_model, args.instance_folds
        opts.labelling, opts.top_vertebra = args.labelling, args.top_vertebra
        opts.lumbar, opts.endplates = args.lumbar_vertebrae, args.endplates
        opts.discfiles = args.discfile
    err = sys.stderr  # ours: nnU-Net's prints go to the log while the cases run

    def say(line: str) -> None:
        if not args.quiet:
            print(line, file=err)

    def failed(case: str, step: str, reason: str) -> None:
        print(f"nnspine segment: error: {case} ({step}): {reason}", file=err, flush=True)

    with terminate_as_exit(), _say_when_terminated(err, args.output):
        report = segment(
            args.task,
            args.input,
            args.output,
            args.model,
            folds=args.folds,
            checkpoint=args.checkpoint,
            channels=args.channels.split(",") if args.channels else None,
            num_parts=args.num_parts,
            part_id=args.part_id,
            skip_existing=args.skip_existing,
            overwrite=args.overwrite,
            options=opts,
            progress=not args.quiet and err.isatty(),
            say=say,
            on_failure=failed,
        )
    say_skipped("segment", report.excluded, args)
    ok = sum(1 for _, s, _, _ in report.done if s == "ok")
    skipped = f", {len(report.skipped)} skipped (finished)" if report.skipped else ""
    log = f"; nnU-Net's messages: {report.log}" if report.log else ""
    records = f"{report.summary}, {report.failures_csv}"
    print(f"{ok} case(s) segmented, {len(report.failures)} failed{skipped}; {records}{log}")
    return 2 if report.failures else 0
