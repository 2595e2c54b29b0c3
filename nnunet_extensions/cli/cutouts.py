"""``nnspine cutouts``: nnU-Net input cases for the instance phase, one cutout per vertebral body."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nnunet_spine.cli.common import add_overwrite, add_quiet, new_parser

DESCRIPTION = """\
Cut a SPINEPS semantic mask (--semantic: a file, or a folder of *_seg-spine_msk.nii.gz files) into one
cutout per vertebral body, written as nnU-Net input cases for the instance-phase model.

Centres: vertebral bodies (label 49) eroded by --erosion-mm (separates touching bodies), split into
connected components, fragments below --min-body-mm3 (mm3, after erosion) dropped; numbered 000, 001, ...
from superior to inferior. Each cutout has --size voxels (P, I, R order) of --spacing mm (default
248 x 304 x 64 at 0.75 x 0.75 x 1.65 mm, about 186 x 228 x 106 mm, as SPINEPS), along the semantic mask's
own axes, centred on the body; labels are sampled by nearest neighbour, 0 outside the mask's field of view.

Outputs in OUT_DIR (existing files are refused unless --overwrite):
  <case>_<NNN>_0000.nii.gz ... <case>_<NNN>_0008.nii.gz   one-hot input channels (uint8 0/1) of the
        vertebra subregions 41, 42, ..., 49 (one-hot, not one label channel: nnU-Net normalises and
        interpolates channels as intensities, and mirroring must swap the left/right channels). Each
        NIfTI's affine places the cutout in world space, so predictions on it map back to the mask.
  cutouts.json   per case: the semantic file, its grid, and per cutout its name, body centre (world RAS mm),
                 affine and size; read by 'nnspine fuse'.
<case> is the mask's name without _seg-spine_msk (sub-01_T2w_seg-spine_msk.nii.gz -> sub-01_T2w).
"""

EPILOG = """\
example (instance phase with your own nnUNetv2_predict):
  nnspine cutouts --semantic sub-01_T2w_seg-spine_msk.nii.gz -o cutouts
  nnUNetv2_predict -i cutouts -o cutouts_pred -d 502 -c 3d_fullres -tr nnUNetTrainerVertebraCutout -f 0
  nnspine fuse --semantic sub-01_T2w_seg-spine_msk.nii.gz --cutouts cutouts --predictions cutouts_pred -o out
"""


def triple(kind: type):
    """argparse type: three comma-separated numbers (``248,304,64``)."""

    def parse(text: str):
        parts = [p.strip() for p in text.split(",")]
        try:
            values = tuple(kind(p) for p in parts)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected three comma-separated numbers, got {text!r}") from None
        if len(values) != 3 or any(v <= 0 for v in values):
            raise argparse.ArgumentTypeError(f"expected three positive comma-separated numbers, got {text!r}")
        return values

    return parse


def register(sub: argparse._SubParsersAction) -> None:
    from nnunet_spine.core.cutouts import BODY_EROSION_MM, DEFAULT_SIZE, DEFAULT_SPACING_MM, MIN_BODY_MM3

    p = new_parser(
        sub,
        "cutouts",
        help="instance phase: one nnU-Net input cutout per vertebral body of a semantic mask",
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
    p.add_argument("-o", "--output", required=True, type=Path, metavar="OUT_DIR", help="folder for the cutouts")
    p.add_argument(
        "--size",
        type=triple(int),
        default=DEFAULT_SIZE,
        metavar="P,I,R",
        help=f"cutout size in voxels (default: {','.join(map(str, DEFAULT_SIZE))})",
    )
    p.add_argument(
        "--spacing",
        type=triple(float),
        default=DEFAULT_SPACING_MM,
        metavar="P,I,R",
        help=f"cutout voxel size in mm (default: {','.join(map(str, DEFAULT_SPACING_MM))})",
    )
    p.add_argument(
        "--erosion-mm",
        type=float,
        default=BODY_EROSION_MM,
        metavar="MM",
        help=f"erosion radius of the vertebral bodies before splitting them (default: {BODY_EROSION_MM})",
    )
    p.add_argument(
        "--min-body-mm3",
        type=float,
        default=MIN_BODY_MM3,
        metavar="MM3",
        help=f"smallest eroded body fragment that gets a cutout (default: {MIN_BODY_MM3:g})",
    )
    add_overwrite(p)
    add_quiet(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nnunet_spine.core.cutouts import write_cutouts

    report = write_cutouts(
        args.semantic,
        args.output,
        size=args.size,
        spacing_mm=args.spacing,
        erosion_mm=args.erosion_mm,
        min_volume_mm3=args.min_body_mm3,
        overwrite=args.overwrite,
        progress=not args.quiet and sys.stderr.isatty(),
    )
    if not args.quiet:
        print("\n".join(report.lines()))
    return 0
