"""``nnspine phantom``: write a deterministic synthetic BIDS dataset with exact truth."""

from __future__ import annotations

import argparse
from pathlib import Path

from nnunet_spine.cli.common import add_overwrite, add_quiet, int_at_least, new_parser

KINDS = ("cord", "spine", "lesion")
DEFAULT_VERTEBRAE = 5

DESCRIPTION = """\
Write a synthetic dataset with known truth, in BIDS layout (images under sub-XX/anat/, masks under
derivatives/labels/, truth under derivatives/truth/). The same --seed always gives identical files.
World coordinates are RAS+ mm, volumes mm³, areas mm².

kinds and what each writes per subject (XX = 01, 02, ...):

  cord    5 contrasts of one curved cord (T2w, T1w, T2starw, flip-1_mt-on_MTS, flip-2_mt-off_MTS),
          with subject motion between scans:
            sub-XX/anat/sub-XX_<contrast>.nii.gz
            derivatives/labels/.../sub-XX_<contrast>_label-SC_seg.nii.gz          binary cord (fraction >= 0.5)
            derivatives/labels/.../sub-XX_<contrast>_label-SC_seg_labeled.nii.gz  cord labelled by level
            derivatives/labels/.../sub-XX_<contrast>_label-discs_dlabel.nii.gz    disc points (SCT values)
            derivatives/truth/.../sub-XX_<contrast>_label-SC_softseg.nii.gz       exact partial-volume cord
            truth JSON: csa_per_level_mm2, discs_z_mm, per-contrast shift_mm, voxel_mm, axcodes

  spine   sagittal T2w (PIR, 1 x 1 mm in-plane, 3 mm R-L slices), --vertebrae mobile vertebrae ending
          at L5 (default 5: L1-L5) on a sacrum, with SPINEPS-style masks:
            sub-XX/anat/sub-XX_T2w.nii.gz
            derivatives/labels/.../sub-XX_T2w_seg-spine_msk.nii.gz   semantic: 41-49 vertebra subregions,
                                       26 sacrum, 60 cord, 61 canal, 62 endplate, 100 disc
            derivatives/labels/.../sub-XX_T2w_seg-vert_msk.nii.gz    instance: vertebra X (L1=20 ... L5=24),
                                       sacrum 26, disc below X = 100+X, endplates 200+(vertebra
                                       above the endplate): X's lower one and the next vertebra's
                                       upper one are 200+X; cord and canal are 0 (as in SPINEPS)
            truth JSON: vertebra_ids, discs, voxels and volume_mm3 per semantic label and per instance,
                        voxels per (vertebra, subregion)

  lesion  sagittal T2w cord (PSR, 0.8 mm iso) with 10 lesions (tiny 1- and 3-voxel ones, a face-touching
          and a corner-touching pair, two at the cord border) and a "prediction" with known errors
          (1 missed, 1 false positive, 1 split, 1 boundary error):
            sub-XX/anat/sub-XX_T2w.nii.gz
            derivatives/labels/.../sub-XX_T2w_label-SC_seg.nii.gz         binary cord
            derivatives/labels/.../sub-XX_T2w_label-lesion_seg.nii.gz     binary lesions
            derivatives/truth/.../sub-XX_T2w_label-lesion_dseg.nii.gz     lesion ids 1-10
            derivatives/prediction/.../sub-XX_T2w_label-lesion_seg.nii.gz predicted lesions
            sub-XX/anat/sub-XX_T1w.nii.gz                                 second contrast: T1w-like, axial
                                                                          RAS 1 mm, lesions hypointense
            derivatives/labels/.../sub-XX_T1w_label-{SC,lesion}_seg.nii.gz  its cord mask; the T2w lesions
                                                                          resampled to it (nearest)
            truth JSON: per lesion id, role, voxels, volume_mm3, centroid_mm, at_cord_border, touches;
                        connected components under 6/18/26-connectivity; expected TP/FP/FN

The truth JSON of subject XX is derivatives/truth/sub-XX/sub-XX_truth.json. A non-empty output folder
is refused unless --overwrite (files are then replaced, other files are left as they are).
"""

EPILOG = """\
examples:
  nnspine phantom --kind cord -o phantom_cord
  nnspine phantom --kind spine -o phantom_spine --subjects 2 --vertebrae 7 --seed 3
  nnspine phantom --kind lesion -o phantom_lesion --overwrite
"""


_positive_int = int_at_least(1)
_seed = int_at_least(0)


def register(subparsers) -> argparse.ArgumentParser:
    """Add ``phantom`` to the ``nnspine`` subcommands."""
    p = new_parser(
        subparsers,
        "phantom",
        help="write a synthetic BIDS dataset with exact truth (cord, spine, lesion)",
        description=DESCRIPTION,
        epilog=EPILOG,
    )
    p.add_argument("--kind", required=True, choices=KINDS, help="which phantom to write")
    p.add_argument(
        "-o",
        "--output",
        required=True,
        type=Path,
        metavar="OUT_DIR",
        help="dataset folder to create (refused if it exists and is not empty, unless --overwrite)",
    )
    p.add_argument("--subjects", type=_positive_int, default=1, metavar="N", help="number of subjects (default: 1)")
    p.add_argument(
        "--seed", type=_seed, default=0, metavar="S", help="random seed, >= 0; same seed, same files (default: 0)"
    )
    p.add_argument(
        "--vertebrae",
        type=_positive_int,
        default=None,
        metavar="N",
        help=f"spine only: mobile vertebrae above the sacrum, counted up from L5, 1-24 "
        f"(default: {DEFAULT_VERTEBRAE} = L1-L5; 17 = T1-L5; 24 = C1-L5)",
    )
    p.add_argument(
        "--variant",
        default=None,
        metavar="NAME",
        help="spine only: the column (default: standard, ending at L5 on the sacrum); transitional: L6, 4-lumbar, "
        "T13, 11-thoracic (as many vertebrae as --vertebrae, ending on the sacrum); field of view cropped above "
        "the sacrum: lumbar-no-sacrum, cervical (from C2), thoracic (from T3). The truth JSON holds the true ids",
    )
    add_overwrite(p)
    add_quiet(p)
    p.set_defaults(func=run)
    return p


def _check_args(args) -> None:
    from nnunet_spine.cli import UsageError
    from nnunet_spine.core.io import InputError

    if args.vertebrae is not None and args.kind != "spine":
        raise UsageError(f"--vertebrae applies to --kind spine only (got --kind {args.kind})")
    if args.vertebrae is not None and args.vertebrae > 24:
        raise UsageError(f"--vertebrae must be between 1 and 24 (C1-L5), got {args.vertebrae}")
    if args.variant is not None:
        from nnunet_spine.phantoms.spine_dataset import variant_numbers

        if args.kind != "spine":
            raise UsageError(f"--variant applies to --kind spine only (got --kind {args.kind})")
        try:
            variant_numbers(args.variant, args.vertebrae or DEFAULT_VERTEBRAE)
        except ValueError as exc:
            raise UsageError(f"--variant {args.variant}: {exc}") from None
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder")


def run(args) -> int:
    """Write the requested phantom and print where its files and truth are."""
    _check_args(args)
    progress = not args.quiet
    if args.kind == "cord":
        from nnunet_spine.phantoms.cord_dataset import write_cord_dataset

        result = write_cord_dataset(
            args.output, n_subjects=args.subjects, seed=args.seed, overwrite=args.overwrite, progress=progress
        )
    elif args.kind == "spine":
        from nnunet_spine.phantoms.spine_dataset import write_spine_dataset

        result = write_spine_dataset(
            args.output,
            n_subjects=args.subjects,
            seed=args.seed,
            n_vertebrae=args.vertebrae or DEFAULT_VERTEBRAE,
            variant=args.variant or "standard",
            overwrite=args.overwrite,
            progress=progress,
        )
    else:
        from nnunet_spine.phantoms.lesion import write_lesion_dataset

        result = write_lesion_dataset(
            args.output, n_subjects=args.subjects, seed=args.seed, overwrite=args.overwrite, progress=progress
        )
    print(summary(args.kind, result, args.seed))
    return 0


def summary(kind: str, result: dict, seed: int) -> str:
    """A few lines: what was written, where the images, masks and truth are, key truth numbers."""
    root = Path(result["root"])
    subs = list(result["subjects"])
    lines = [
        f"phantom {kind}: {len(subs)} subject(s) written to {root} (seed {seed})",
        f"  images: {root}/sub-XX/anat/   masks: {root}/derivatives/labels/",
        f"  truth:  {root}/derivatives/truth/sub-XX/sub-XX_truth.json",
    ]
    first = result["subjects"][subs[0]]
    if kind == "cord":
        csa = ", ".join(f"{k}: {v:.1f}" for k, v in first["csa_per_level_mm2"].items())
        lines.append(f"  {subs[0]}: contrasts {', '.join(first['acquisitions'])}; CSA per level (mm²) {csa}")
    elif kind == "spine":
        from nnunet_spine.core.labels import vertebra_name

        names = " ".join(vertebra_name(v) for v in first["vertebra_ids"])
        sacrum = " + sacrum" if first["sacrum_id"] else " (field of view cropped above the sacrum)"
        lines.append(
            f"  {subs[0]}: vertebrae {names}{sacrum}, {len(first['instance_ids'])} instances, "
            f"{len(first['semantic_labels'])} semantic labels, voxel {first['voxel_mm']} mm"
        )
    else:
        cc = first["connected_components"]
        exp = first["prediction"]["expected"]["26"]
        lines.append(
            f"  {subs[0]}: {first['n_lesions']} lesions ({first['total_lesion_volume_mm3']:.1f} mm³), "
            f"{cc['6']} components (6-conn), {cc['26']} (26-conn); prediction in "
            f"{root}/derivatives/prediction/: expected (26-conn) TP {exp['tp_ref']}, FN {exp['fn']}, FP {exp['fp']}"
        )
    return "\n".join(lines)
