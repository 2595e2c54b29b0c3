"""Argument helpers shared by the subcommands (one place for each common option)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_overwrite(parser: argparse.ArgumentParser) -> None:
    """``--overwrite``: allow replacing existing outputs (refused by default)."""
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs (default: refuse)")


def add_jobs(parser: argparse.ArgumentParser) -> None:
    """``-j/--jobs N``: parallel worker processes."""
    parser.add_argument("-j", "--jobs", type=int, default=1, metavar="N", help="parallel worker processes (default: 1)")


def add_quiet(parser: argparse.ArgumentParser) -> None:
    """``-q/--quiet``: no progress bars."""
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars or summaries on stderr")


def new_parser(sub, name: str, help: str, description: str, epilog: str | None = None) -> argparse.ArgumentParser:
    """Add a subcommand parser with the project's formatting (description and examples kept as written)."""
    return sub.add_parser(
        name,
        help=help,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def int_at_least(minimum: int):
    """argparse type: a whole number >= ``minimum`` (one clear message otherwise)."""

    def parse(value: str) -> int:
        try:
            n = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None
        if n < minimum:
            raise argparse.ArgumentTypeError(f"expected a number >= {minimum}, got {n}")
        return n

    return parse


def existing_path(value: str) -> Path:
    """argparse type: a path that exists (file or folder); otherwise argparse's one-line usage error naming it
    (exit 2). What the path must contain is checked by the I/O layer, which names the file."""
    path = Path(value)
    if not path.exists():
        raise argparse.ArgumentTypeError(f"{value}: not found")
    return path


# ------------------------------------------------------------------------------------------- converters
def add_converter_options(parser: argparse.ArgumentParser, *, dataset_required: bool = True) -> None:
    """The converter protocol's options (:mod:`nnunet_spine.dataset_converters.protocol`), the same for every ``nnspine convert``
    command: ``--nnunet-dataset``, ``--name``, ``--raw-root``, ``-j/--jobs``, ``--overwrite``, ``-q/--quiet``."""
    from nnunet_spine.dataset_converters.defaults import JOBS

    where = "also write" if not dataset_required else "write"
    parser.add_argument(
        "--nnunet-dataset",
        required=dataset_required,
        type=int,
        metavar="ID",
        help=f"{where} the nnU-Net raw dataset DatasetID_NAME (ID 1..999)",
    )
    parser.add_argument(
        "--name", required=dataset_required, metavar="NAME", help="nnU-Net dataset name (letters, digits, _ or -)"
    )
    parser.add_argument("--raw-root", type=Path, metavar="DIR", help="nnU-Net raw folder (default: $nnUNet_raw)")
    parser.add_argument(
        "-j", "--jobs", type=int, default=JOBS, metavar="N", help=f"parallel worker processes (default: {JOBS})"
    )
    add_overwrite(parser)
    add_quiet(parser)


def run_converter(
    args: argparse.Namespace, command: str, convert, warning_class: type[Warning] | None = None, **options
) -> int:
    """Call a converter with the protocol's arguments from ``args`` and the converter's ``options``; print its
    warnings on stderr (``nnspine convert COMMAND: warning: ...``) and its report on stdout (unless ``--quiet``)."""
    import sys
    import warnings

    with warnings.catch_warnings():
        if warning_class is not None:  # the converter's warnings are in its report, printed below
            warnings.simplefilter("ignore", warning_class)
        report = convert(
            args.input,
            nnunet_dataset=args.nnunet_dataset,
            name=args.name,
            raw_root=args.raw_root,
            overwrite=args.overwrite,
            jobs=args.jobs,
            progress=not args.quiet and sys.stderr.isatty(),
            **options,
        )
    for w in report.warnings:
        print(f"nnspine convert {command}: warning: {w}", file=sys.stderr)
    if not args.quiet:
        print("\n".join(report.lines()))
    return 0
