"""The ``nnspine`` console script.

Thin by design: each subcommand lives in a module of this package that defines
``register(subparsers)`` (adds its parser, with ``set_defaults(func=run)``) and ``run(args) -> int``.
Heavy libraries (torch, nnU-Net) are imported inside ``run`` so ``nnspine --help`` and light commands
start fast. Exit codes: 0 success, 2 bad usage or bad input (one line on stderr, no traceback),
1 unexpected internal error.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback

from nnunet_spine import __version__
from nnunet_spine.core.io import InputError

#: Subcommand modules, in the order ``nnspine --help`` lists them.
COMMAND_MODULES = [
    "phantom",
    "csa",
    "convert",
    "preprocess_soft",
    "trainers",
    "softmask",
    "relabel",
    "qc",
    "lesions",
    "evaluate",
    "cutouts",
    "fuse",
    "instances",
    "segment",
    "demo",
]

EXIT_OK, EXIT_INTERNAL, EXIT_BAD_INPUT = 0, 1, 2

#: Commands whose NIfTI and CSV results get a provenance sidecar (:mod:`nnunet_spine.core.provenance`); the
#: converters (nnU-Net datasets carry their own dataset.json), cutouts (nnU-Net inputs), phantoms, demos and QC
#: pictures do not.
PROVENANCE_COMMANDS = frozenset({"csa", "softmask", "relabel", "lesions", "evaluate", "fuse", "instances", "segment"})


class UsageError(InputError):
    """Bad combination of options (reported like bad input: exit 2)."""


class OneLineParser(argparse.ArgumentParser):
    """argparse with the project's error style: a usage error is one line on stderr (naming the option or path
    and pointing at ``--help``), exit 2 — not argparse's usage block. Subcommand parsers inherit it."""

    def error(self, message: str):
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every subcommand registered."""
    parser = OneLineParser(
        prog="nnspine",
        description=(
            "nnU-Net v2 plugin for spinal MRI: phantoms with known truth, dataset converters, soft cord "
            "segmentation targets, trainers, and postprocessing (CSA morphometry, soft masks, evaluation). "
            "Run 'nnspine <command> --help' for inputs, outputs and units."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"nnspine (nnunet-spine) {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    for name in COMMAND_MODULES:
        importlib.import_module(f"nnunet_spine.cli.{name}").register(sub)
    return parser


def _provenance(command: str, argv: list[str]):
    """Record what a results command reads and writes, for its provenance sidecars; nothing for other commands."""
    import contextlib

    from nnunet_spine.core.provenance import recording

    return recording(argv, __version__) if command in PROVENANCE_COMMANDS else contextlib.nullcontext()


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``nnspine``; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        with _provenance(args.command, sys.argv[1:] if argv is None else argv):
            return int(args.func(args) or 0)
    except InputError as exc:
        print(f"nnspine {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"nnspine {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # an internal error: say so, keep the traceback for bug reports
        if os.environ.get("NNSPINE_DEBUG"):
            traceback.print_exc()
        print(
            f"nnspine {args.command}: internal error: {type(exc).__name__}: {exc} "
            "(set NNSPINE_DEBUG=1 for the traceback)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
