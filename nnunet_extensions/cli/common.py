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


def existing_path(value: str) -> Path:
    """argparse type: a path (existence is checked by the I/O layer, which names the file)."""
    return Path(value)
