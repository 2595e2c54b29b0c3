"""``nnspine trainers``: list the nnU-Net trainers of this package; print the ``nnUNet_extTrainer`` setting."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from nnunet_extensions.cli.common import new_parser

DESCRIPTION = """\
List the nnU-Net trainers this package provides (name and a one-sentence description), or, with --export, print
the shell line that lets stock nnU-Net find them:

  export nnUNet_extTrainer=<folder inside the installed package>

The folder holds only a module that re-exports the trainer classes from the installed package, so training,
final validation and prediction (which nnU-Net partly runs in spawned worker processes) all find them.
Set it for nnUNetv2_train and for nnUNetv2_predict.
"""

EPILOG = """\
examples:
  nnspine trainers
  eval "$(nnspine trainers --export)"
  nnUNetv2_train 501 3d_fullres 0 -tr nnUNetTrainerSoftSeg
"""

#: Module (in :func:`discovery_folder`) that re-exports the trainers.
DISCOVERY_MODULE = "nnspine_softseg_trainers"


def discovery_folder() -> Path:
    """The folder to give nnU-Net as ``nnUNet_extTrainer``."""
    return (Path(__file__).resolve().parent.parent / "discovery").resolve()


def register(subparsers) -> None:
    p = new_parser(subparsers, "trainers", help="list the nnU-Net trainers of this package / print nnUNet_extTrainer",
                   description=DESCRIPTION, epilog=EPILOG)
    p.add_argument("--export", action="store_true",
                   help="print 'export nnUNet_extTrainer=<folder>' for use with eval in a POSIX shell")
    p.set_defaults(func=run)


def run(args) -> int:
    folder = discovery_folder()
    if args.export:
        if not (folder / f"{DISCOVERY_MODULE}.py").is_file():
            raise RuntimeError(f"{folder}: discovery module {DISCOVERY_MODULE}.py missing from the installation")
        print(f"export nnUNet_extTrainer={shlex.quote(str(folder))}")
        return 0
    from trainers.registry import all_trainers, describe

    trainers = all_trainers()
    width = max(len(t.__name__) for t in trainers)
    for t in trainers:
        print(f"{t.__name__:<{width}}  {describe(t)}")
    print("(to let nnU-Net find them: eval \"$(nnspine trainers --export)\")", file=sys.stderr)
    return 0
