"""``nnspine convert <converter>``: dataset converters (a command group).

Each converter is a sub-subcommand registered by a function of :data:`CONVERTERS` that adds its parser to
the group and sets ``func``; heavy imports stay inside the ``run_*`` functions. Add new converters (lesion,
spineps, spider...) by appending their register function to :data:`CONVERTERS`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nnunet_spine.cli.common import add_converter_options, add_exclude_options, new_parser, run_converter
from nnunet_spine.cli.convert_cutouts import register_cutouts
from nnunet_spine.cli.convert_spine import add_group_by, register_landmarks, register_spider, register_spineps
from nnunet_spine.core.manual_masks import MASK_SUFFIXES
from nnunet_spine.dataset_converters.defaults import (
    LESION_CORD_SUFFIX,
    LESION_LABEL_SUFFIX,
    SOFTGT_REFERENCE,
    SOFTGT_RESOLUTION_MM,
)

SOFTGT_DESCRIPTION = """\
Soft (partial-volume) spinal cord ground truth from the binary cord masks of one or several contrasts per subject.

Input: a BIDS dataset (-i) with images sub-XX[/ses-YY]/anat/<image>.nii.gz and binary cord masks
derivatives/labels/sub-XX/anat/<image><suffix>.nii.gz (or beside the image) on each image's grid. Suffixes, in
order of preference: _label-SC_seg (spine-generic), _seg-manual (older SCT naming), _desc-<rater>_label-SC_seg
(one rater's, raters alphabetically), _seg; --mask-suffix uses one only. _gmseg-manual (grey matter) is never
a cord mask. Images without a mask (e.g. a second run) are never training cases; the report lists them.
Per subject, every contrast's mask is resampled (world coordinates, linear interpolation) into a space of
planes perpendicular to the reference contrast's S-I axis (--reference: default the subject's only labelled
contrast, else T2w; --reference-resolution mm in-plane, default 0.4; along S-I the reference's slices
subdivided to <= 1 mm), aligned onto the reference mask by slice-wise in-plane centre of mass (offsets
smoothed along S-I; --no-align disables), and averaged voxel-wise over the contrasts whose field of view
covers each point. The 0.5 surface of that average is the consensus cord boundary (moved along its normal
by one small offset per subject, typically 0.01-0.02 mm, so that the soft volumes equal the binary ones);
each contrast's soft mask is the fraction of each of its native voxels inside it (values 0..1, float32,
the image's grid). With one labelled contrast nothing is averaged: the soft mask is that mask's partial volume
on its own grid (the sidecar and dataset.json say so).

Outputs (the input dataset is never modified; existing files are refused unless --overwrite):
  DERIV_OUT/labels_softseg/sub-XX/anat/<image>_label-SC_softseg.nii.gz    soft mask
  DERIV_OUT/labels_softseg/sub-XX/anat/<image>_label-SC_softseg.json      sources, reference, method, version
  with --nnunet-dataset ID --name NAME, the nnU-Net raw dataset $nnUNet_raw/DatasetID_NAME (ID on 3 digits):
    imagesTr/<image>_0000.nii.gz      every (subject, contrast) image is a single-channel case ("MRI")
    labelsTr/<image>.nii.gz           soft >= 0.5 (uint8; labels background 0, cord 1)
    labelsTr_soft/<image>.nii.gz      the soft mask (float32, same grid): read by 'nnspine preprocess-soft'
    splits_final.json                 folds grouped by subject, or by person with --group-by REGEX (its first
                                      capture group, or whole match, in the subject label without sub-:
                                      '^[0-9]+' puts sub-9709Ses1 and sub-9709Ses2 in one fold); labels like
                                      <id>Ses<k> without --group-by give a warning

Printed per subject: contrasts used, alignment shift (mm), mean soft value on the boundary voxels of each
input mask (about 0.5 when the masks agree), soft and binary volumes (mm3); then the masks used per suffix and
the images without a mask. A subject without the reference contrast is skipped with a warning on stderr.
"""

SOFTGT_EPILOG = """\
examples:
  nnspine convert softgt -i bids_multicontrast --derivatives-out out/derivatives
  nnspine convert softgt -i spine-generic --derivatives-out out --nnunet-dataset 501 --name SpineSoft -j 4
  nnspine convert softgt -i gm_challenge --derivatives-out out --nnunet-dataset 502 --name GMSoft --group-by '^[0-9]+'
  nnUNetv2_plan_and_preprocess -d 501 -c 3d_fullres --verify_dataset_integrity
  nnspine preprocess-soft -d 501 -c 3d_fullres
"""


def add_mask_suffix(p: argparse.ArgumentParser, kind: str, example: str) -> None:
    """``--mask-suffix``: one mask naming instead of the order of preference (``core.manual_masks.MASK_SUFFIXES``)."""
    p.add_argument(
        "--mask-suffix",
        default=None,
        metavar="SUFFIX",
        help=f"use only {kind} masks <image>SUFFIX (e.g. {example}; * = any rater label); default: the first found of "
        + ", ".join(MASK_SUFFIXES[kind]),
    )


def register_softgt(conv: argparse._SubParsersAction) -> None:
    p = new_parser(
        conv,
        "softgt",
        help="soft cord GT averaged across contrasts -> BIDS derivative (+ nnU-Net raw dataset)",
        description=SOFTGT_DESCRIPTION,
        epilog=SOFTGT_EPILOG,
    )
    p.add_argument("-i", "--input", required=True, type=Path, metavar="BIDS_ROOT", help="input BIDS dataset")
    p.add_argument(
        "--derivatives-out",
        required=True,
        type=Path,
        metavar="DERIV_OUT",
        help="folder receiving labels_softseg/ (outside the input dataset, or its derivatives/ folder)",
    )
    p.add_argument(
        "--reference",
        default=None,
        metavar="CONTRAST",
        help=f"reference contrast (BIDS name after sub-XX_, e.g. T2w, T1w; default: the subject's only labelled "
        f"contrast, else {SOFTGT_REFERENCE})",
    )
    p.add_argument(
        "--no-align",
        dest="align",
        action="store_false",
        help="no slice-wise centre-of-mass alignment between contrasts",
    )
    p.add_argument(
        "--reference-resolution",
        type=float,
        default=SOFTGT_RESOLUTION_MM,
        metavar="MM",
        help="in-plane spacing of the averaging space in mm (default: %(default)s)",
    )
    add_mask_suffix(p, "cord", "_seg-manual")
    add_group_by(p)
    add_exclude_options(p)
    add_converter_options(p, dataset_required=False)
    p.set_defaults(func=run_softgt)


LESION_DESCRIPTION = """\
Multi-sequence lesion dataset (BIDS) -> nnU-Net raw dataset, one channel per sequence.

Input: a BIDS dataset (-i) with, per subject (or session), one image per sequence named in --channels
(image specs: a BIDS suffix, optionally after entities: T2w, T1w, STIR, acq-sag_T2w, ce-gd_T1w) and a
binary lesion mask derivatives/labels/sub-XX[/ses-YY]/anat/<image><label suffix>.nii.gz (or beside the
image) on the grid of one of those images (looked up in channel order); label suffixes, in order of
preference: _label-lesion_seg, _lesion-manual (older SCT naming), _desc-<rater>_label-lesion_seg (--label-suffix
uses one only; cord masks for --regions likewise: _label-SC_seg, _seg-manual, _desc-<rater>_label-SC_seg, _seg).
The first channel is the reference grid and names the case (its BIDS stem, e.g. sub-01_T2w). Other
sequences on another grid are resampled to it through world coordinates with linear interpolation (0
outside their field of view); a mask drawn on another channel is resampled with nearest neighbour.
The command says which were resampled.

Outputs ($nnUNet_raw/DatasetID_NAME, ID on 3 digits; the input dataset is never modified):
  imagesTr/<case>_0000.nii.gz, _0001, ...   one file per channel, in the order of --channels
  labelsTr/<case>.nii.gz                    lesion 1 (uint8); with --regions: cord 1, lesion 2
  dataset.json                              channel_names = the channels; labels {background 0, lesion 1},
                                            or with --regions {background 0, cord [1, 2], lesion 2} and
                                            regions_class_order [1, 2]; sources per case under "nnspine"
With --regions the cord mask (--cord-suffix) is required; lesion voxels outside the cord are still lesion
(label 2), and the report counts them.

A lesion mask drawn on another grid can lose small lesions when resampled: lesions and volume before and
after are written per resampled case to lesion_resampling.csv in the dataset folder, every case that changed
is printed, and a case that loses a lesion stops the command (exit 2, nothing written) unless
--allow-lesion-loss.
A subject missing a sequence or its lesion mask (or its cord mask with --regions) is skipped with a
one-line warning on stderr; --allow-missing writes an empty lesion mask instead (negative cases). A bad
file (not 3-D, NaN, non-binary mask, mask on a grid other than its image's) stops the command before
anything is written (exit 2, one line naming the file).
"""

LESION_EPILOG = """\
examples:
  nnspine phantom --kind lesion -o phantom_lesion --subjects 4
  nnspine convert lesion -i phantom_lesion --channels T2w,T1w --nnunet-dataset 201 --name LesionT2wT1w
  nnspine convert lesion -i bids --channels T2w --regions --allow-missing --nnunet-dataset 202 --name LesionT2w -j 4
  nnUNetv2_plan_and_preprocess -d 201 -c 3d_fullres --verify_dataset_integrity
"""


def register_lesion(conv: argparse._SubParsersAction) -> None:
    p = new_parser(
        conv,
        "lesion",
        help="multi-sequence lesion masks -> nnU-Net raw dataset (one channel per sequence, optional cord regions)",
        description=LESION_DESCRIPTION,
        epilog=LESION_EPILOG,
    )
    p.add_argument("-i", "--input", required=True, type=Path, metavar="BIDS_ROOT", help="input BIDS dataset")
    p.add_argument(
        "--channels",
        required=True,
        metavar="SPECS",
        help="sequences, one channel each, comma-separated, first = reference grid (e.g. T1w,T2w)",
    )
    p.add_argument(
        "--label-suffix",
        default=LESION_LABEL_SUFFIX,
        metavar="SUFFIX",
        help="lesion mask suffix after the image name (default: the first found of "
        + ", ".join(MASK_SUFFIXES["lesion"])
        + "; * = any rater label)",
    )
    p.add_argument(
        "--cord-suffix",
        default=LESION_CORD_SUFFIX,
        metavar="SUFFIX",
        help="cord mask suffix, used with --regions (default: the first found of "
        + ", ".join(MASK_SUFFIXES["cord"])
        + ")",
    )
    p.add_argument(
        "--regions",
        action="store_true",
        help="region labels: cord 1, lesion 2 (regions cord=[1,2], lesion=2; regions_class_order [1,2])",
    )
    p.add_argument(
        "--allow-missing",
        action="store_true",
        help="write an empty lesion mask for subjects without one (instead of skipping them)",
    )
    p.add_argument(
        "--allow-lesion-loss",
        action="store_true",
        help="convert even when resampling a lesion mask onto the first channel's grid loses a lesion",
    )
    add_group_by(p)
    add_exclude_options(p)
    add_converter_options(p)
    p.set_defaults(func=run_lesion)


#: Register functions of the converters, in the order ``nnspine convert --help`` lists them.
CONVERTERS = [register_softgt, register_lesion, register_spineps, register_spider, register_cutouts, register_landmarks]


def register(sub: argparse._SubParsersAction) -> None:
    p = new_parser(
        sub,
        "convert",
        help="dataset converters: softgt, lesion, spineps, spider, cutouts, landmarks (-> nnU-Net raw datasets)",
        description="Dataset converters. Run 'nnspine convert <converter> --help' for inputs, outputs and units.",
    )
    conv = p.add_subparsers(dest="converter", metavar="<converter>")
    for register_converter in CONVERTERS:
        register_converter(conv)

    def no_converter(args: argparse.Namespace) -> int:
        p.print_help(sys.stderr)
        return 2

    p.set_defaults(func=no_converter)


def run_softgt(args: argparse.Namespace) -> int:
    from nnunet_spine.cli import UsageError
    from nnunet_spine.dataset_converters.softgt import SoftGTWarning, convert

    if (args.nnunet_dataset is None) != (args.name is None):
        raise UsageError("--nnunet-dataset and --name go together")
    return run_converter(
        args,
        "softgt",
        convert,
        SoftGTWarning,
        derivatives_out=args.derivatives_out,
        reference=args.reference,
        align=args.align,
        reference_resolution=args.reference_resolution,
        mask_suffix=args.mask_suffix,
        group_by=args.group_by,
    )


def run_lesion(args: argparse.Namespace) -> int:
    from nnunet_spine.dataset_converters.lesion import LesionConversionWarning, convert

    return run_converter(
        args,
        "lesion",
        convert,
        LesionConversionWarning,
        channels=args.channels,
        label_suffix=args.label_suffix,
        cord_suffix=args.cord_suffix,
        regions=args.regions,
        allow_missing=args.allow_missing,
        allow_lesion_loss=args.allow_lesion_loss,
        group_by=args.group_by,
    )
