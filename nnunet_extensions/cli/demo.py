"""``nnspine demo``: the soft-cord pipeline (or, with ``--lesion``, the lesion pipeline) end to end on
built-in phantoms."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from nnunet_spine.cli.common import add_overwrite, new_parser

DESCRIPTION = """\
Run the whole soft spinal-cord pipeline on built-in synthetic data with exact truth, using the real
nnU-Net console scripts (about 2.5 min on 2 idle cores, measured: see the README):

  1. cord phantoms (2 training subjects + 1 held-out test subject, 5 contrasts each)
  2. CSA per vertebral level of the test subject (exact soft mask, binary mask) vs the true CSA
  3. nnspine convert softgt → nnU-Net raw dataset with soft targets
  4. nnUNetv2_plan_and_preprocess + nnspine preprocess-soft
  5. nnUNetv2_train 990 3d_fullres all -tr nnUNetTrainerSoftSeg_demo -p nnUNetPlansCPUDemo -device cpu
     (150 CPU iterations), through nnU-Net's own entry point with random, numpy and torch seeded (0):
     python -m nnunet_spine.apps.demo train --seed 0 <those arguments>
  6. nnUNetv2_predict --save_probabilities → nnspine softmask → CSA of the predicted soft masks, and the
     spread of C3 CSA across the 5 contrasts (binary masks, soft GT, predictions)

Outputs in the demo folder: csa_per_level.csv (mm², error in % of the true CSA), csa_profile.png (CSA
along S-I with level boundaries), csa_C3_across_contrasts.csv, nnunet.log (nnU-Net's output), and every
intermediate folder. Every command is printed as it is run; at the end, the trained model's nnU-Net results
folder and a ready 'nnspine segment cord ... --model <that folder>' line.
nnU-Net folders are created inside the demo folder; your own nnU-Net environment is not touched.
The seed does not make runs identical: PyTorch's multithreaded CPU arithmetic (and, with nnUNet_n_proc_DA > 0,
nnU-Net's unseeded data-loading workers) can change the predicted CSA from run to run.

With --lesion, the lesion pipeline instead (a few minutes on 2 CPU cores):

  1. lesion phantoms (4 training subjects + 1 held-out test subject; T2w sagittal 0.8 mm and T1w-like
     axial 1 mm; 10 lesions each, from single voxels to touching pairs, with known volumes)
  2. nnspine convert lesion --channels T2w,T1w → nnU-Net raw datasets (training; the test subject)
  3. the phantom's prediction with known errors (1 missed, 1 false positive, 1 split, 1 boundary error)
     → nnspine lesions → nnspine evaluate lesions: its lesion counts must equal the truth's
  4. nnUNetv2_plan_and_preprocess (small CPU plans)
  5. nnUNetv2_train ... -tr nnUNetTrainerLesion_demo, seeded as above with --seed (default 0)
  6. nnUNetv2_predict → nnspine lesions (lesions < 1 mm³ or > 2 mm from the cord removed, numbered S→I)
     → nnspine evaluate lesions of the raw and the postprocessed prediction

Outputs: lesion_metrics.csv (lesion-wise sensitivity, precision, F1, Dice, volumes in mm³; rule overlap,
26-connectivity), lesions.csv (one row per lesion: volume mm³, centroid mm, S-I extent, axial diameter),
lesions_qc.png (sagittal and axial views of the largest lesions, kept and removed outlined), the same for
the phantom's prediction (*_phantom_prediction.*), timings_s.json, nnunet.log.
"""

EPILOG = """\
examples:
  nnspine demo                      # in a new temporary folder
  nnspine demo -o demo_out          # in demo_out (must be empty or new; --overwrite to redo)
  nnspine demo --no-train -o quick  # phantoms + CSA only (seconds)
  nnspine demo --lesion -o lesion_demo
  nnspine demo --lesion --no-train -o quick_lesion   # phantoms, conversion, known-error check (seconds)
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = new_parser(
        sub,
        "demo",
        help="run the soft-cord (or --lesion) pipeline on built-in phantoms (real nnU-Net, CPU)",
        description=DESCRIPTION,
        epilog=EPILOG,
    )
    p.add_argument("-o", "--output", type=Path, metavar="DIR", help="demo folder (default: a new temporary folder)")
    p.add_argument(
        "--no-train",
        action="store_true",
        help="no nnU-Net: only phantoms and CSA (stages 1-2); with --lesion stages 1-3",
    )
    p.add_argument("--lesion", action="store_true", help="the lesion pipeline instead of the soft-cord one")
    p.add_argument(
        "--trainer",
        metavar="NAME",
        help="nnU-Net trainer of the demo (default: nnUNetTrainerSoftSeg_demo, or "
        "nnUNetTrainerLesion_demo with --lesion; the _debug variants for a quicker check)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        metavar="N",
        help="with --lesion: seed of the phantoms (training subjects N, test subject 1000+N) and of nnU-Net's "
        "training, 0-999 (default: 0); the soft demo's training is seeded with 0",
    )
    add_overwrite(p)
    p.set_defaults(func=run)


def _check_trainer(name: str, lesion: bool) -> None:
    """Refuse a trainer that is not one of this package's soft (or, with --lesion, lesion) trainers."""
    from nnunet_spine.cli import UsageError
    from nnunet_spine.trainers.registry import all_trainers

    if lesion:
        from nnunet_spine.trainers.lesion import nnUNetTrainerLesion as family
    else:
        from nnunet_spine.trainers.softseg import nnUNetTrainerSoftSeg as family
    names = [t.__name__ for t in all_trainers() if issubclass(t, family)]
    if name not in names:
        raise UsageError(
            f"--trainer {name}: not a {'lesion' if lesion else 'soft'} trainer of this package "
            f"({', '.join(names)}; the lesion trainers go with --lesion)"
        )


def run(args: argparse.Namespace) -> int:
    if not 0 <= args.seed <= 999:
        from nnunet_spine.cli import UsageError

        raise UsageError(f"--seed {args.seed}: must be in 0-999")
    if args.trainer:
        _check_trainer(args.trainer, args.lesion)
    if args.lesion:
        return run_lesion(args)
    from nnunet_spine.apps.demo import DEMO_TRAINER, UNSEEDED, compact_table, run_demo, verdict

    folder = args.output or Path(tempfile.mkdtemp(prefix="nnspine_demo_"))
    print(f"nnspine demo in {folder}", flush=True)
    result = run_demo(
        folder,
        train=not args.no_train,
        trainer=args.trainer or DEMO_TRAINER,
        overwrite=args.overwrite,
        say=lambda s: print(s, flush=True),
    )
    print()
    print("CSA per vertebral level of the held-out test subject (T2w), mm² (error vs the true CSA, %):")
    print(compact_table(result.table).to_string(index=False))
    if result.spread is not None:
        print("\nC3 CSA of each contrast of the test subject, mm² (last row: population SD across contrasts):")
        print(result.spread.to_string(index=False, float_format=lambda x: f"{x:.2f}"))
        print()
        for line in verdict(result.table, result.spread):
            print(line)
    if result.trained:
        print("(predictions come from a short CPU training run; a full nnUNetTrainerSoftSeg run is the real thing)")
        print(UNSEEDED)
    _print_written(result)
    if result.model is not None:
        print(f"model (nnU-Net results folder, for 'nnspine segment --model'): {result.model}")
        print(f"  {result.segment_command()}")
    _print_total(result)
    return 0


def _print_written(result) -> None:
    """The result files of a demo (``result.written()``), one a line."""
    print("\nwrote " + "\n      ".join(str(p) for p in result.written()))


def _print_total(result) -> None:
    """A demo's total time over its stages (``result.timings_s``)."""
    print(f"total {sum(result.timings_s.values()):.0f} s")


def run_lesion(args: argparse.Namespace) -> int:
    """``nnspine demo --lesion``: run, then print the metrics table and what was written."""
    from nnunet_spine.apps.demo_lesion import DEMO_TRAINER, compact_metrics, run_lesion_demo, unseeded, verdict

    folder = args.output or Path(tempfile.mkdtemp(prefix="nnspine_lesion_demo_"))
    print(f"nnspine demo --lesion in {folder}", flush=True)
    result = run_lesion_demo(
        folder,
        train=not args.no_train,
        trainer=args.trainer or DEMO_TRAINER,
        seed=args.seed,
        overwrite=args.overwrite,
        say=lambda s: print(s, flush=True),
    )
    print()
    print(
        "Lesion-wise metrics of the held-out test subject (rule overlap, 26-connectivity; sens = lesion "
        "sensitivity, prec = lesion precision, vol err = predicted - reference volume):"
    )
    table = compact_metrics(result.metrics)
    print(table.to_string(index=False))
    print()
    for line in verdict(result):
        print(line)
    if result.trained:
        print(
            f"(the network comes from a short CPU training run, {result.trainer}; a full nnUNetTrainerLesion "
            "run is the real thing)"
        )
        print(unseeded(args.seed))
    _print_written(result)
    _print_total(result)
    return 0 if result.counts_match_truth else 1
