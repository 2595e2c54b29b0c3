"""``nnspine convert cutouts``: the instance-phase (cutout) nnU-Net training dataset.

Exposes :func:`register_cutouts` for the ``convert`` command group (:mod:`nnunet_spine.cli.convert`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from nnunet_spine.cli.common import add_converter_options, new_parser, run_converter
from nnunet_spine.core.cutouts import DEFAULT_SIZE, DEFAULT_SPACING_MM
from nnunet_spine.dataset_converters.defaults import CUTOUT_MAX_SHIFT_MM, CUTOUT_SEED, CUTOUT_SHIFTS

DESCRIPTION = """\
Instance-phase training dataset from SPINEPS masks: per vertebral body, the cutout 'nnspine cutouts'
makes (one-hot vertebra subregions 41-49 as 9 input channels; --size voxels of --spacing mm, PIR), plus
--shifts copies whose centre is moved by a random vector of at most --max-shift-mm mm (seeded by --seed),
with the target 1 = vertebra above the centre one, 2 = centre vertebra, 3 = vertebra below, 0 elsewhere
(above/below: neighbours in the S-I order of the vertebral-body centroids).

Input (-i): a folder with, at any depth, semantic masks <stem>_seg-spine_msk.nii.gz (or _seg-subreg) and
their instance masks <stem>_seg-vert_msk.nii.gz beside them, on the same grid (e.g. the output of
'nnspine phantom --kind spine', or SPINEPS derivatives). Semantic masks without an instance mask are
skipped with a warning.

Output: $nnUNet_raw/DatasetID_NAME (ID on 3 digits) with imagesTr/<stem>_<NNN>[s<k>]_<CCCC>.nii.gz,
labelsTr/<stem>_<NNN>[s<k>].nii.gz and dataset.json (channel names noNorm, labels background/above/
centre/below, channel_labels) and splits_final.json: folds grouped by subject, every cutout of a subject
(all its masks and shifted copies, sharing the <stem>_ prefix) in one fold, so validation is on unseen
subjects (nnUNetv2_plan_and_preprocess copies it to nnUNet_preprocessed, where training uses it instead of
nnU-Net's random split of the cutouts; with one subject no split is written). A splits_final.json that
nnspine did not write is left as it is.
"""

EPILOG = """\
example:
  nnspine phantom --kind spine -o spine --subjects 4 --vertebrae 17
  nnspine convert cutouts -i spine --nnunet-dataset 502 --name VertebraCutouts --shifts 2 --max-shift-mm 10
  nnUNetv2_plan_and_preprocess -d 502 -c 3d_fullres --verify_dataset_integrity
"""


def register_cutouts(conv: argparse._SubParsersAction) -> None:
    """Add ``cutouts`` to the ``nnspine convert`` group."""
    p = new_parser(
        conv,
        "cutouts",
        help="instance-phase cutout dataset (vertebra above/centre/below) -> nnU-Net raw",
        description=DESCRIPTION,
        epilog=EPILOG,
    )
    from nnunet_spine.cli.cutouts import triple

    p.add_argument("-i", "--input", required=True, type=Path, metavar="DATASET", help="folder with SPINEPS mask pairs")
    p.add_argument(
        "--shifts",
        type=int,
        default=CUTOUT_SHIFTS,
        metavar="N",
        help="shifted copies per vertebra (default: %(default)s)",
    )
    p.add_argument(
        "--max-shift-mm",
        type=float,
        default=CUTOUT_MAX_SHIFT_MM,
        metavar="S",
        help="largest shift of a copy's centre in mm (default: %(default)s)",
    )
    p.add_argument("--seed", type=int, default=CUTOUT_SEED, help="random seed of the shifts (default: %(default)s)")
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
    add_converter_options(p)
    p.set_defaults(func=run_cutouts)


def run_cutouts(args: argparse.Namespace) -> int:
    from nnunet_spine.dataset_converters.cutouts import CutoutWarning, convert

    return run_converter(
        args,
        "cutouts",
        convert,
        CutoutWarning,
        shifts=args.shifts,
        max_shift_mm=args.max_shift_mm,
        seed=args.seed,
        size=args.size,
        spacing_mm=args.spacing,
    )
