"""The soft-segmentation ablation (Bédard et al.'s claims) on cord phantoms, through the real console scripts.

Arms, each trained with the same budget (``--epochs`` x ``--iterations``) on ``--train-subjects`` phantom
subjects (5 contrasts each) and tested on ``--test-subjects`` held-out subjects:

  (a) stock nnUNetTrainer on each contrast's binary mask        (the baseline every p-value refers to)
  (b) nnUNetTrainerSoftSeg on the converter's soft GT
  (c) nnUNetTrainerSoftSegDA5 (nnU-Net's aggressive augmentation) on the soft GT
  (d) as (c), trained on 3 contrasts only, tested on the 2 left out (generalisation to unseen contrasts)

plus reference rows measured the same way (the held-out subjects' binary GT masks and exact partial-volume
truth). Printed: one table with, per row, the mean CSA error vs the phantom's true CSA at the chosen level (%,
signed and absolute), the SD of CSA across contrasts (mm², mean over subjects) and the Wilcoxon signed-rank
p-value of the per-subject SDs against arm (a) on the same contrasts (``nnspine evaluate compare-variability``;
at least 6 held-out subjects are needed for p < 0.05 to be possible). The whole pipeline is
``nnunet_spine.apps.ablation.run_ablation``; see its docstring for the details and the folder layout.

Also per row: where the predicted area lies (inside the true cord vs a halo outside it, % of the true area) and,
per budget, the radial profile of the predicted values around the true cord edge. With ``--budgets`` the same
arms are trained at several budgets (a learning curve: ``learning_curve.csv|png``); running the command again on
the same folder resumes it (finished arms are not retrained) and prints the tables.

Usage::

    python benchmarks/bench_softseg_ablation.py -o /tmp/ablation --target-spacing 1.6 --epochs 4 \
        --iterations 20                                                            # ~15 min on 2 CPU cores
    python benchmarks/bench_softseg_ablation.py -o /tmp/curve --target-spacing 1.6 \
        --budgets 4x20,4x100,16x100                                                # the CPU learning curve
    python benchmarks/bench_softseg_ablation.py -o /tmp/ablation --train-subjects 10 --test-subjects 10 \\
        --epochs 100 --iterations 250 --device cuda --tta                          # a GPU-sized budget
"""

from __future__ import annotations

import argparse
import sys
import time

from nnunet_spine.apps.ablation import (
    ARMS,
    SEEN_CONTRASTS,
    AblationConfig,
    format_table,
    parse_budgets,
    run_ablation,
)
from nnunet_spine.core.io import InputError


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("-o", "--output", required=True, help="working folder (new, or an earlier one with --overwrite)")
    p.add_argument("--train-subjects", type=int, default=2, help="training subjects, 5 contrasts each (default 2)")
    p.add_argument("--test-subjects", type=int, default=6, help="held-out subjects (default 6)")
    p.add_argument("--epochs", type=int, default=4, help="epochs, every arm (default 4)")
    p.add_argument("--iterations", type=int, default=25, help="training iterations per epoch (default 25)")
    p.add_argument("--val-iterations", type=int, default=2, help="validation iterations per epoch (default 2)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda", "mps"], help="nnU-Net device (default cpu)")
    p.add_argument("--tta", action="store_true", help="mirrored test-time augmentation (default off: 8x faster)")
    p.add_argument(
        "--gpu-memory-target",
        type=float,
        default=None,
        metavar="GB",
        help="planner's GPU memory target (default: 1 on cpu, for small patches; nnU-Net's on a GPU)",
    )
    p.add_argument(
        "--target-spacing",
        type=float,
        default=None,
        metavar="MM",
        help="isotropic 3d_fullres spacing for nnU-Net's planner (default: nnU-Net's choice, 0.8-0.9 mm "
        "on the phantoms; 1.6 makes a CPU run several times cheaper)",
    )
    p.add_argument("--level", type=int, default=3, help="vertebral level compared (default 3 = C3)")
    p.add_argument("--seen", default=",".join(SEEN_CONTRASTS), help="contrasts arm (d) trains on (default %(default)s)")
    p.add_argument("--arms", default="a,b,c,d", help="arms to run, a required (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="phantom seed (held-out subjects use seed + 1000)")
    p.add_argument(
        "--budgets",
        default=None,
        metavar="ExI,...",
        help="learning curve: budgets as EPOCHSxITERATIONS, comma-separated (e.g. 4x20,4x100,16x100); "
        "default: the one budget --epochs x --iterations",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="start over in an earlier ablation folder (default: resume it when its data settings match)",
    )
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    config = AblationConfig(
        n_train=args.train_subjects,
        n_test=args.test_subjects,
        epochs=args.epochs,
        iterations=args.iterations,
        val_iterations=args.val_iterations,
        device=args.device,
        level=args.level,
        seen_contrasts=tuple(c for c in args.seen.split(",") if c),
        seed=args.seed,
        tta=args.tta,
        gpu_memory_target_gb=args.gpu_memory_target,
        target_spacing_mm=args.target_spacing,
        arms=tuple(a for a in args.arms.split(",") if a),
    )
    t0 = time.perf_counter()
    try:
        if args.budgets:
            config.budgets = parse_budgets(args.budgets)
        result = run_ablation(
            args.output, config, overwrite=args.overwrite, say=lambda line: print(line, file=sys.stderr, flush=True)
        )
    except InputError as exc:  # bad arguments or an existing folder: one line, nothing run
        print(f"bench_softseg_ablation: error: {exc}", file=sys.stderr)
        return 2
    total = time.perf_counter() - t0
    budgets = ", ".join(f"{name} ({int(name.split('x')[0]) * int(name.split('x')[1])} it.)" for name in result.tables)
    print(
        f"\nSoft-segmentation ablation: {config.n_train} training subjects, {config.n_test} held-out subjects; "
        f"every arm trained with the same budget (epochs x iterations: {budgets}) on {config.device}"
        f"{' with' if config.tta else ' without'} test-time mirroring"
        f"{f', {config.target_spacing_mm} mm spacing' if config.target_spacing_mm else ''}; CSA at C{config.level}"
        f" (mm²)"
    )
    for arm in ARMS:
        if arm.key in config.arms:
            print(f"  ({arm.key}) {arm.description}")
    for name, table in result.tables.items():
        print(f"\nbudget {name}:")
        print(format_table(table))
    print(
        "\nCSA error: mean over held-out masks of (CSA - true CSA) / true CSA; SD: population SD across contrasts,"
        " mean over subjects; p: two-sided Wilcoxon signed-rank test of the per-subject SDs vs (a) on the same"
        " contrasts; missing: held-out masks with no cord at the level (counted as CSA 0 mm²); inside: predicted"
        " area inside the true cord minus the true area, halo: predicted area outside the true cord (both % of the"
        " true area, without the angle correction; inside + halo ≈ CSA error)"
    )
    print(f"\nper budget: {result.folder}/budget_<E>x<I>/ablation.csv, halo.csv, radial_profile.png")
    print(f"learning curve: {result.curve_csv} and learning_curve.png")
    print(
        "time (this run): "
        + ", ".join(f"{k} {v:.0f} s" for k, v in result.timings_s.items())
        + f"; total {total:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
