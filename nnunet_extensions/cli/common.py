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
    """The converter protocol's options (:mod:`nnunet_spine.dataset_converters.protocol`), the same for every
    ``nnspine convert`` command: ``--nnunet-dataset``, ``--name``, ``--raw-root``, ``-j/--jobs``, ``--overwrite``,
    ``-q/--quiet``."""
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

    if hasattr(args, "exclude_yml"):  # add_exclude_options: the case lists go to the converter
        options["exclude"], options["include"] = read_case_lists(args)
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
    say_skipped(f"convert {command}", report.excluded, args)
    if not args.quiet:
        print("\n".join(report.lines()))
    return 0


# ------------------------------------------------------------------------------------------- QC report
def add_qc_report_option(parser: argparse.ArgumentParser) -> None:
    """``--qc-report DIR``: add one entry per case to the offline HTML QC report in DIR (``DIR/index.html``)."""
    parser.add_argument(
        "--qc-report",
        type=Path,
        metavar="DIR",
        help="add the cases to the HTML QC report in DIR (DIR/index.html; keys, marks, Save Fails: docs/qc.md)",
    )


def add_exclude_options(parser: argparse.ArgumentParser) -> None:
    """``--exclude-yml FILE`` / ``--include-yml FILE``: skip (or keep only) the cases a ``qc_fail.yml``-style
    file lists (:mod:`nnunet_spine.core.qc_yml`), as ``sct_run_batch -exclude-yml`` / ``-include-yml``."""
    parser.add_argument(
        "--exclude-yml",
        type=Path,
        metavar="FILE",
        help="skip the cases this YAML lists (qc_fail.yml from the QC report, manual-correction's layout)",
    )
    parser.add_argument(
        "--include-yml", type=Path, metavar="FILE", help="process only the cases this YAML lists (same layout)"
    )


def read_case_lists(args: argparse.Namespace):
    """``(exclude, include)`` :class:`~nnunet_spine.core.qc_yml.CaseList` of ``--exclude-yml`` / ``--include-yml``
    (None when not given); a bad file raises InputError naming it."""
    from nnunet_spine.core.qc_yml import read_case_list

    exclude, include = getattr(args, "exclude_yml", None), getattr(args, "include_yml", None)
    return (
        read_case_list(exclude) if exclude is not None else None,
        read_case_list(include) if include is not None else None,
    )


def say_skipped(command: str, skipped, args: argparse.Namespace) -> None:
    """One line on stderr naming the cases ``--exclude-yml`` / ``--include-yml`` left out, as ``sct_run_batch``
    reports its exclusions."""
    import sys

    if skipped:
        lists = ", ".join(str(p) for p in (getattr(args, "exclude_yml", None), getattr(args, "include_yml", None)) if p)
        print(f"nnspine {command}: skipped {len(skipped)} case(s) by {lists}: {', '.join(skipped)}", file=sys.stderr)
