"""``nnspine trainers``: list the nnU-Net trainers of this package; print the ``nnUNet_extTrainer`` setting."""

from __future__ import annotations

import shlex
import sys

from nnunet_spine.cli.common import new_parser

DESCRIPTION = """\
List the nnU-Net trainers this package provides (name and a one-sentence description), or, with --export, print
the shell line that lets stock nnU-Net find them:

  export nnUNet_extTrainer=<folder inside the installed package>

The folder holds one module that binds the names of every trainer class of the installed package (read from its
trainer registry), so training, final validation and prediction (which nnU-Net partly runs in spawned worker
processes) all find them.
Set it for nnUNetv2_train and for nnUNetv2_predict.
"""

EPILOG = """\
examples:
  nnspine trainers
  eval "$(nnspine trainers --export)"
  nnUNetv2_train 501 3d_fullres 0 -tr nnUNetTrainerSoftSeg
"""


def register(subparsers) -> None:
    p = new_parser(
        subparsers,
        "trainers",
        help="list the nnU-Net trainers of this package / print nnUNet_extTrainer",
        description=DESCRIPTION,
        epilog=EPILOG,
    )
    p.add_argument(
        "--export",
        action="store_true",
        help="print 'export nnUNet_extTrainer=<folder>' for use with eval in a POSIX shell",
    )
    p.set_defaults(func=run)


def run(args) -> int:
    if args.export:
        from nnunet_spine.integration.trainer_lookup import trainer_environment

        for key, value in trainer_environment().items():
            print(f"export {key}={shlex.quote(value)}")
        return 0
    from nnunet_spine.trainers.registry import all_trainers, describe

    trainers = all_trainers()
    width = max(len(t.__name__) for t in trainers)
    for t in trainers:
        print(f"{t.__name__:<{width}}  {describe(t)}")
    print('(to let nnU-Net find them: eval "$(nnspine trainers --export)")', file=sys.stderr)
    return 0
