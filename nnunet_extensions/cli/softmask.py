"""``nnspine softmask``: soft masks on the original grid from nnU-Net probability files."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nnunet_spine.cli.common import add_overwrite, add_quiet, new_parser

EXAMPLE = """\
example:
  nnUNetv2_predict -i imagesTs -o pred -d 101 -c 3d_fullres -f all -tr nnUNetTrainerSoftSeg --save_probabilities
  nnspine softmask -i pred -o pred_soft --threshold 0.5
  nnspine csa -i pred_soft/sub-01_T2w.nii.gz --perslice -o csa.csv
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = new_parser(
        sub,
        "softmask",
        help="soft masks (float32, original grid) from nnUNetv2_predict --save_probabilities output",
        description=(
            "Read <case>.npz + <case>.pkl written by 'nnUNetv2_predict --save_probabilities' and write the\n"
            "foreground probability of each case as a float32 soft mask (values 0..1, partial volume) on the\n"
            "input's original voxel grid and affine: OUT_DIR/<case>.nii.gz (same file ending as nnU-Net's\n"
            "segmentations). With --threshold T also OUT_DIR/binary/<case>.nii.gz (uint8, soft >= T).\n"
            "Works for predictions made with any of nnU-Net's NIfTI/ITK readers (SimpleITK or nibabel,\n"
            "with or without re-orientation)."
        ),
        epilog=EXAMPLE,
    )
    p.add_argument("-i", "--input", required=True, type=Path, metavar="PRED_DIR", help="nnUNetv2_predict output folder")
    p.add_argument("-o", "--output", required=True, type=Path, metavar="OUT_DIR", help="folder for the soft masks")
    p.add_argument("--threshold", type=float, metavar="T", help="also write binary masks (soft >= T), e.g. 0.5")
    p.add_argument("--channel", type=int, default=1, help="probability channel holding the soft mask (default: 1)")
    add_overwrite(p)
    add_quiet(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from nnunet_spine.cli import UsageError
    from nnunet_spine.postprocessing.cord.softmask import convert_case, find_cases, seg_file_ending

    if args.threshold is not None and not 0.0 < args.threshold <= 1.0:
        raise UsageError(f"--threshold must be in (0, 1], got {args.threshold}")
    cases = find_cases(args.input)
    for case in tqdm(cases, desc="softmask", unit="case", disable=args.quiet or not sys.stderr.isatty()):
        r = convert_case(
            args.input,
            case,
            args.output,
            channel=args.channel,
            threshold=args.threshold,
            ending=seg_file_ending(args.input, case),
            overwrite=args.overwrite,
        )
        if not args.quiet:
            print(
                f"{case}: {r.soft_path} shape={r.shape} voxel={tuple(round(v, 3) for v in r.voxel_mm)} mm "
                f"soft volume={r.volume_mm3:.1f} mm3"
            )
    return 0
