"""``nnspine convert spineps``, ``spider`` and ``landmarks``: whole-spine dataset converters.

Registered into the ``convert`` command group by :mod:`nnunet_spine.cli.convert` (``register_spineps``,
``register_spider`` in its ``CONVERTERS`` list); heavy imports stay inside the ``run_*`` functions.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from nnunet_spine.cli.common import add_converter_options, add_exclude_options, new_parser, run_converter
from nnunet_spine.dataset_converters.defaults import SPINEPS_CHANNELS


def add_group_by(p: argparse.ArgumentParser) -> None:
    """``--group-by REGEX``: folds of ``splits_final.json`` grouped by person (``dataset_converters.splits``)."""
    p.add_argument(
        "--group-by",
        default=None,
        metavar="REGEX",
        help="folds grouped by person: the first capture group of REGEX (the whole match without one) searched in "
        "the subject label without sub- (e.g. '^[0-9]+' puts sub-9709Ses1 and sub-9709Ses2 in one fold); "
        "default: by subject label",
    )


SPINEPS_DESCRIPTION = """\
Images with SPINEPS-format semantic masks -> an nnU-Net raw dataset for whole-spine semantic segmentation.

Input (-i): a BIDS dataset (sub-XX[/ses-YY]/anat/<image>.nii.gz) or a folder of BIDS-named files side by
side. Each image of the first --channels contrast (default T2w) needs one semantic mask, under
derivatives/<pipeline>/sub-XX/anat/ or beside the image, named <image>_seg-spine_msk.nii.gz or as SPINEPS
names it (sub-XX_[mod-T2w_]seg-spine_msk, older seg-subreg). Mask values: SPINEPS semantic labels 41-49
(vertebra subregions: 41 arch, 42 spinous, 43/44 costal L/R, 45/46 superior articular L/R, 47/48 inferior
articular L/R, 49 body), 26 sacrum, 60 cord, 61 canal, 62 endplate, 100 disc; same grid as the image.

Output: $nnUNet_raw/DatasetID_NAME (ID on 3 digits):
  imagesTr/<image stem>_0000.nii.gz   the image, voxels and orientation unchanged (more --channels: _0001...)
  labelsTr/<image stem>.nii.gz        labels renumbered 1..n (the SPINEPS labels present, in value order)
  dataset.json                        labels named after SPINEPS; the nnU-Net -> SPINEPS mapping under
                                      'nnspine_label_map' (used by 'nnspine relabel')
Case identifiers are the images' BIDS stems (sub-01_T2w). A mask with other values (an instance mask
_seg-vert_msk is recognised and named), on another grid, or an existing dataset without --overwrite:
exit 2, nothing written. Images without a mask are skipped with a warning.
"""

SPINEPS_EPILOG = """\
examples:
  nnspine phantom --kind spine -o phantom_spine --subjects 4
  nnspine convert spineps -i phantom_spine --nnunet-dataset 510 --name SpinePhantom
  nnUNetv2_plan_and_preprocess -d 510 -c 3d_fullres --verify_dataset_integrity
  nnUNetv2_train 510 3d_fullres 0 -tr nnUNetTrainerSpineSemantic
"""

SPIDER_DESCRIPTION = """\
The public SPIDER lumbar MRI dataset -> an nnU-Net raw dataset (vertebra, disc, canal) and, with
--instances, SPINEPS-format instance masks.

Input (-i): SPIDER_ROOT/images/<id>_t1.mha, <id>_t2.mha, <id>_t2_SPACE.mha and masks/<same name>.mha, mask
values as SPIDER documents them: 1-25 vertebrae numbered from the bottom (the lowest, normally L5, is 1),
100 spinal canal, 101-125 partially visible vertebrae, 201-225 discs (numbered like the vertebra above,
L5/S1 = 201). Read with SimpleITK; geometry converted from ITK's LPS to RAS.

Output: $nnUNet_raw/DatasetID_NAME, one single-channel case per series (case id = file name, e.g. 12_t2):
  imagesTr/<id>_<seq>_0000.nii.gz     the image (same voxels and geometry, NIfTI)
  labelsTr/<id>_<seq>.nii.gz          1 vertebra, 2 disc, 3 canal; partially visible vertebrae are
                                      background unless --keep-partial (then vertebra)
  instancesTr/<id>_<seq>.nii.gz       with --instances: vertebrae by id, disc below vertebra X = 100+X,
                                      canal 0. Ids count from the top (highest vertebra = 1) unless --lowest
                                      names SPIDER's vertebra 1 (e.g. L5): then VerSe ids (L5=24, L4=23, ...)
A mask with other values, on another grid than its image, or an existing dataset without --overwrite:
exit 2, nothing written.
"""

SPIDER_EPILOG = """\
examples:
  nnspine convert spider -i SPIDER --nnunet-dataset 520 --name SPIDER
  nnspine convert spider -i SPIDER --nnunet-dataset 521 --name SPIDERt2 --sequences t2 --keep-partial \\
      --instances --lowest L5
"""


def register_spineps(conv: argparse._SubParsersAction) -> None:
    """Add ``nnspine convert spineps`` to the ``convert`` group."""
    p = new_parser(
        conv,
        "spineps",
        help="images + SPINEPS semantic masks -> nnU-Net raw dataset (labels 1..n)",
        description=SPINEPS_DESCRIPTION,
        epilog=SPINEPS_EPILOG,
    )
    p.add_argument("-i", "--input", required=True, type=Path, metavar="DATASET", help="BIDS dataset or folder")
    p.add_argument(
        "--channels",
        nargs="+",
        default=list(SPINEPS_CHANNELS),
        metavar="SPEC",
        help="image contrasts, one per input channel (BIDS suffix with optional entities, e.g. T2w "
        "acq-sag_T1w; default: %(default)s); the first names the cases",
    )
    add_group_by(p)
    add_exclude_options(p)
    add_converter_options(p)
    p.set_defaults(func=run_spineps)


LANDMARKS_DESCRIPTION = """\
Images with SPINEPS instance masks (VerSe ids) -> an nnU-Net raw dataset of landmark discs, for a stock nnU-Net
landmark model whose prediction anchors the vertebra ids ('nnspine fuse' / 'instances' / 'segment spine'
--landmarks), as TotalSpineSeg's first step does.

Input (-i): as 'nnspine convert spineps', with one instance mask per image (<image>_seg-vert_msk.nii.gz or
SPINEPS' naming; the phantom's, SPINEPS' or nnspine fuse's). Targets: the discs C2-C3 (class 1), C7-T1 (2),
T12-L1 (3) and L5-S1 (4), i.e. instances 102, 107, 119 and 124; all else background. A mask whose sidecar
says 'not anatomically labelled' is left out (warning); other values, another grid, an existing dataset
without --overwrite: exit 2, nothing written.
"""


def register_landmarks(conv: argparse._SubParsersAction) -> None:
    """Add ``nnspine convert landmarks`` to the ``convert`` group."""
    p = new_parser(
        conv,
        "landmarks",
        help="images + SPINEPS instance masks -> landmark discs C2-C3, C7-T1, T12-L1, L5-S1 (nnU-Net raw)",
        description=LANDMARKS_DESCRIPTION,
        epilog="examples:\n  nnspine convert landmarks -i phantom_spine --nnunet-dataset 530 --name Landmarks\n"
        "  nnUNetv2_plan_and_preprocess -d 530 -c 3d_fullres && nnUNetv2_train 530 3d_fullres 0\n",
    )
    p.add_argument("-i", "--input", required=True, type=Path, metavar="DATASET", help="BIDS dataset or folder")
    p.add_argument(
        "--channels",
        nargs="+",
        default=list(SPINEPS_CHANNELS),
        metavar="SPEC",
        help="image contrasts, one per input channel (default: %(default)s); the first names the cases",
    )
    add_group_by(p)
    add_exclude_options(p)
    add_converter_options(p)
    p.set_defaults(func=run_landmarks)


def run_landmarks(args: argparse.Namespace) -> int:
    from nnunet_spine.dataset_converters.landmarks import convert

    return run_converter(args, "landmarks", convert, channels=args.channels, group_by=args.group_by)


def register_spider(conv: argparse._SubParsersAction) -> None:
    """Add ``nnspine convert spider`` to the ``convert`` group."""
    p = new_parser(
        conv,
        "spider",
        help="SPIDER lumbar MRI -> nnU-Net raw dataset (+ SPINEPS instance masks)",
        description=SPIDER_DESCRIPTION,
        epilog=SPIDER_EPILOG,
    )
    p.add_argument(
        "-i", "--input", required=True, type=Path, metavar="SPIDER_ROOT", help="folder holding images/ and masks/"
    )
    p.add_argument(
        "--keep-partial",
        action="store_true",
        help="partially visible vertebrae (101-125) as vertebra (default: background)",
    )
    p.add_argument("--instances", action="store_true", help="also write SPINEPS-format instance masks (instancesTr/)")
    p.add_argument(
        "--lowest",
        metavar="VERTEBRA",
        help="VerSe name of SPIDER's vertebra 1 (e.g. L5): instance ids become VerSe ids",
    )
    p.add_argument(
        "--sequences",
        nargs="+",
        metavar="SEQ",
        help="only these series (file names ending in _SEQ, e.g. t2 t2_SPACE; default: all)",
    )
    add_converter_options(p)
    p.set_defaults(func=run_spider)


def run_spineps(args: argparse.Namespace) -> int:
    from nnunet_spine.dataset_converters.spineps import convert

    return run_converter(args, "spineps", convert, channels=args.channels, group_by=args.group_by)


def run_spider(args: argparse.Namespace) -> int:
    from nnunet_spine.dataset_converters.spider import convert

    return run_converter(
        args,
        "spider",
        convert,
        keep_partial=args.keep_partial,
        instances=args.instances,
        lowest=args.lowest,
        sequences=args.sequences,
    )
