"""``nnspine preprocess-soft``: preprocess soft cord masks exactly as nnU-Net preprocessed the images."""

from __future__ import annotations

import sys

from nnunet_spine.cli.common import add_jobs, add_overwrite, add_quiet, new_parser

DESCRIPTION = """\
Crop and resample the soft masks of an nnU-Net dataset exactly as nnU-Net preprocessed its images, so that
the soft-segmentation trainers (nnspine trainers) can train on them. Run it after
'nnUNetv2_plan_and_preprocess' (which it needs: plans, and per case the bounding box, spacing and shapes
nnU-Net stored in <case>.pkl).

Input:  $nnUNet_raw/DatasetXXX_NAME/labelsTr_soft/<case><file_ending>: float masks in [0, 1], one per training
        case, on the grid of labelsTr/<case><file_ending>.
Output: $nnUNet_preprocessed/DatasetXXX_NAME/<data_identifier>/soft_targets/<case>.b2nd (float32, shape of
        the preprocessed case; transpose, nonzero crop, then linear resampling to the plans' spacing) and
        soft_targets.json (provenance; per case the Dice between soft>0.5 and nnU-Net's label, ~1 expected).
Plans are not modified (DefaultPreprocessor and LabelManager stay, so stock inference works). Re-running
nnUNetv2_plan_and_preprocess deletes the soft targets of the configurations it preprocesses: run this again.
"""

EPILOG = """\
examples:
  nnUNetv2_plan_and_preprocess -d 501 -c 3d_fullres --verify_dataset_integrity
  nnspine preprocess-soft -d 501 -c 3d_fullres
  nnspine preprocess-soft -d Dataset501_SpineSoft -c 2d 3d_fullres -p nnUNetResEncUNetMPlans --overwrite -j 4
"""


def register(subparsers) -> None:
    p = new_parser(
        subparsers,
        "preprocess-soft",
        help="preprocess soft masks beside nnU-Net's preprocessed data",
        description=DESCRIPTION,
        epilog=EPILOG,
    )
    p.add_argument(
        "-d", "--dataset", required=True, metavar="ID", help="dataset id (e.g. 501) or name (Dataset501_NAME)"
    )
    p.add_argument(
        "-c",
        "--configurations",
        nargs="+",
        default=["3d_fullres"],
        metavar="CONFIG",
        help="nnU-Net configuration(s) (default: 3d_fullres)",
    )
    p.add_argument(
        "-p", "--plans", default="nnUNetPlans", metavar="PLANS", help="plans identifier (default: nnUNetPlans)"
    )
    add_overwrite(p)
    add_jobs(p)
    add_quiet(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from nnunet_spine.integration.soft_targets.preprocess import preprocess_soft

    if args.jobs < 1:
        from nnunet_spine.cli import UsageError

        raise UsageError("--jobs must be at least 1")
    results = preprocess_soft(
        args.dataset,
        args.configurations,
        args.plans,
        overwrite=args.overwrite,
        num_processes=args.jobs,
        progress=not args.quiet,
    )
    for configuration, manifest in results.items():
        dices = [c["dice_soft_gt_0.5_vs_label"] for c in manifest["cases"]]
        worst = min(manifest["cases"], key=lambda c: c["dice_soft_gt_0.5_vs_label"])
        line = (
            f"{manifest['dataset']} {configuration}: {len(dices)} soft targets written; "
            f"Dice(soft>0.5, nnU-Net label) min {min(dices):.3f} ({worst['case']}), "
            f"mean {sum(dices) / len(dices):.3f}"
        )
        if not args.quiet:
            print(line, file=sys.stderr)
        if min(dices) < 0.8:
            print(
                f"warning: {worst['case']}: soft mask and label agree poorly (Dice {min(dices):.3f}); "
                "is labelsTr the soft mask binarized at 0.5?",
                file=sys.stderr,
            )
    return 0
