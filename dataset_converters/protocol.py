"""The converter protocol: one signature, one writing path, one report shape, subject-grouped splits.

Every converter module of this package (``softgt``, ``lesion``, ``spineps``, ``spider``, ``cutouts``,
``landmarks``) exposes::

    convert(source, *, nnunet_dataset, name, raw_root=None, overwrite=False, jobs=1, progress=False,
            **options) -> Report

* ``source`` — what it reads (a BIDS dataset, a SPIDER folder, a folder of SPINEPS masks); never modified.
* ``nnunet_dataset``, ``name`` — the dataset ``DatasetXXX_NAME`` (ID 1..999) under ``raw_root`` (default
  ``$nnUNet_raw``). :func:`output_folder` resolves and checks it once, before any input is read: an
  ``nnUNet_raw`` that cannot be created, a file in the way, a folder inside the source, or an ID already used by
  another name is bad input (:class:`~nnunet_spine.core.io.InputError`, exit 2 in the CLI).
* ``overwrite`` — replace an existing dataset (refused otherwise); ``jobs`` — worker processes
  (:mod:`nnunet_spine.dataset_converters.parallel`; results equal ``jobs=1``); ``progress`` — a tqdm bar on stderr.
* Options specific to a converter are keyword-only too; their defaults live in
  :mod:`nnunet_spine.dataset_converters.defaults`, which the CLI reads (``tests/test_converter_protocol.py``
  checks both).

Writing: every input is checked first; then the whole dataset is written into a staging folder
(:func:`nnunet_spine.dataset_converters.nnunet_raw.staged_dataset`) that replaces the dataset's entries only when
everything succeeded. The last step inside the stage is :func:`write_dataset_splits`: ``splits_final.json`` with all
cases of a subject in one fold (:mod:`nnunet_spine.dataset_converters.splits`), kept untouched when it is the user's.

Report: each converter's report extends :class:`ConversionReport` (dataset folder, cases, the split, warnings);
the CLI prints ``report.lines()``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from nnunet_spine.core.io import InputError
from nnunet_spine.dataset_converters import nnunet_raw
from nnunet_spine.dataset_converters.splits import (
    SPLITS_FILE,
    SplitsReport,
    grouping_warning,
    is_nnspine_split,
    subject_groups,
    write_splits,
)


@dataclass(kw_only=True)
class ConversionReport:
    """What every converter reports: the dataset folder written, its number of cases, the split, warnings."""

    nnunet_dataset: str = ""
    num_cases: int = 0
    splits: SplitsReport | None = None
    warnings: list[str] = field(default_factory=list)
    #: images left out by ``exclude`` / ``include`` case lists (``--exclude-yml`` / ``--include-yml``), as given
    excluded: list[str] = field(default_factory=list)

    def dataset_lines(self) -> list[str]:
        """The lines every converter ends its report with: where the dataset is, and its split."""
        out = [f"nnU-Net raw dataset: {self.nnunet_dataset} ({self.num_cases} training cases)"]
        if self.splits is not None:
            out += self.splits.lines()
        return out

    def lines(self) -> list[str]:
        """Human-readable summary (converters add their own lines before :meth:`dataset_lines`)."""
        return self.dataset_lines()


def select_cases(
    cases: Iterable, exclude, include, path_of, root: str | os.PathLike, *, every: bool = True
) -> tuple[list, list[str]]:
    """``(kept, left_out)``: ``cases`` without those an ``exclude`` case list names, and only those an ``include``
    list names (:class:`~nnunet_spine.core.qc_yml.CaseList`, ``--exclude-yml`` / ``--include-yml``, as
    ``sct_run_batch``); ``path_of(case)`` is the case's image path, ``left_out`` those paths relative to ``root``
    (the dataset read). ``every``: ``cases`` are all the dataset's, so lists that leave out every one of them are
    :func:`everything_left_out` (False: a part of the dataset, the caller checks the whole)."""
    from nnunet_spine.core.qc_yml import filter_cases

    cases = list(cases)
    if exclude is None and include is None:
        return cases, []
    kept, skipped = filter_cases(cases, exclude=exclude, include=include, path_of=path_of)
    left_out = [Path(os.path.relpath(path_of(c), root)).as_posix() for c in skipped]
    if every and cases and not kept:
        raise everything_left_out(left_out, exclude, include)
    return kept, left_out


def everything_left_out(left_out: list[str], exclude, include) -> InputError:
    """The error when the case lists leave out every case (one line naming the lists)."""
    lists = " and ".join(str(c.path) for c in (exclude, include) if c is not None)
    return InputError(f"{lists}: every case ({len(left_out)}) is left out; nothing to convert")


def is_inside(path: str | os.PathLike, root: str | os.PathLike) -> bool:
    """True when ``path`` (resolved) lies in ``root`` (resolved)."""
    try:
        Path(path).resolve().relative_to(Path(root).resolve())
        return True
    except ValueError:
        return False


def check_jobs(jobs: int) -> int:
    """``jobs`` as a positive number of worker processes (InputError otherwise)."""
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise InputError(f"--jobs must be a whole number >= 1, got {jobs!r}")
    return jobs


def _check_creatable(folder: Path, what: str) -> None:
    """``folder`` exists as a writable folder, or can be created: its first existing ancestor is a writable
    folder. Nothing is created here."""
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder}: is a file, expected a folder ({what})")
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise InputError(f"{folder}: cannot create the {what}: {probe} is a file")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise InputError(f"{folder}: cannot create the {what}: {probe} is not writable")


def output_folder(
    source: str | os.PathLike, nnunet_dataset: int, name: str, raw_root: str | os.PathLike | None = None
) -> Path:
    """The dataset folder ``<raw_root or $nnUNet_raw>/DatasetXXX_NAME``, checked before any work: the raw folder
    can be created, no file stands in the way, the dataset is not inside ``source``, the ID is not taken by
    another name. :class:`InputError` naming the path otherwise."""
    root = nnunet_raw.raw_root(raw_root)
    _check_creatable(root, "nnU-Net raw folder (nnUNet_raw)")
    folder = nnunet_raw.dataset_folder(root, nnunet_dataset, name)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder}: is a file, expected an nnU-Net dataset folder")
    if is_inside(folder, source):
        raise InputError(f"{folder}: is inside the input {source}, which is never modified")
    return folder


def bids_subject(case: str) -> str:
    """The subject of a case named after a BIDS image (``sub-01_ses-2_T2w`` → ``sub-01``); other names are their
    own subject."""
    token = case.split("_", 1)[0]
    return token if token.startswith("sub-") and len(token) > 4 else case


def check_grouping(subjects: Iterable[str], group_by: str | None) -> list[str]:
    """Check ``--group-by`` against the dataset's subjects before anything is written (:class:`InputError` for an
    expression that is not one, has no group or finds no person in a subject); the warning (a list of at most one
    line) when labels look like ``<id>Ses<k>`` and no grouping was given."""
    subjects = sorted(set(subjects))
    subject_groups(subjects, group_by)
    warning = grouping_warning(subjects, group_by)
    return [warning] if warning else []


def write_dataset_splits(
    stage: Path, folder: Path, case_subjects: dict[str, str], group_by: str | None = None
) -> SplitsReport:
    """The subject-grouped split of a staged dataset (:func:`nnunet_spine.dataset_converters.splits.write_splits`;
    ``group_by``: persons named by ``--group-by``); a split nnspine wrote earlier that no longer applies (one subject
    left) is removed when the stage commits."""
    report = write_splits(stage, folder, case_subjects, group_by)
    if report.status == "none" and (folder / SPLITS_FILE).is_file() and is_nnspine_split(folder):
        nnunet_raw.remove_on_commit(stage, SPLITS_FILE)
    return report


__all__ = [
    "ConversionReport",
    "bids_subject",
    "check_grouping",
    "check_jobs",
    "is_inside",
    "output_folder",
    "write_dataset_splits",
]
