"""The records of one ``nnspine segment`` run or part: ``segment_summary.csv`` (a row per case) and
``failures.csv`` (a row per failure), kept on disk as cases end, and the removal of a case's old outputs before it
runs again. The run itself is :func:`nnunet_spine.apps.segment.segment`."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

from nnunet_spine.core.bids import SUBJECT_COLUMNS, subject_session
from nnunet_spine.core.io import InputError, write_text

SUMMARY_CSV = "segment_summary.csv"
FAILURES_CSV = "failures.csv"
#: ``subject``, ``session``: the case's BIDS entities (:func:`nnunet_spine.core.bids.subject_session`), last as in
#: every result table.
FAILURE_COLUMNS = ["case", "step", "reason", *SUBJECT_COLUMNS]
#: ``labelling``, ``verified``, ``reason``: a spine case's vertebra labelling (empty for the other tasks).
SUMMARY_COLUMNS = ["case", "status", "seconds", "outputs", "labelling", "verified", "reason", *SUBJECT_COLUMNS]
#: The columns a task fills through ``fields``.
TASK_COLUMNS = ("labelling", "verified", "reason")


def _csv(rows: Sequence[Sequence], columns: Sequence[str]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    w.writerows(rows)
    return buf.getvalue()


def _read_rows(path: Path, columns: Sequence[str]) -> list[list[str]]:
    """The rows of one of our CSV records (none when absent); :class:`InputError` when it is not one."""
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    if not rows or rows[0] != list(columns):
        raise InputError(f"{path}: not a record of 'nnspine segment' (columns {rows[0] if rows else []})")
    return [r for r in rows[1:] if r]


class Records:
    """``segment_summary.csv`` and ``failures.csv`` of one part, kept on disk as cases end: each update rewrites
    both files atomically, so a killed run leaves valid records of every case it finished. Earlier rows are
    kept (a resume); a case that runs again replaces its rows."""

    def __init__(self, summary: Path, failures: Path, keep_earlier: bool):
        self.summary, self.failures = summary, failures
        self.rows = {r[0]: r for r in _read_rows(summary, SUMMARY_COLUMNS)} if keep_earlier else {}
        self.failed = [r for r in _read_rows(failures, FAILURE_COLUMNS)] if keep_earlier else []

    def finished(self, case: str, out: Path, main: Path) -> bool:
        """The case's last record says ok and its main result and every output the record lists exist."""
        row = self.rows.get(case)
        if row is None or row[1] != "ok" or not main.exists():
            return False
        return all((out / rel).exists() for rel in row[3].split(";") if rel)

    def outputs(self, case: str, out: Path) -> list[Path]:
        """The outputs the case's record lists (an earlier run's)."""
        row = self.rows.get(case)
        return [out / rel for rel in row[3].split(";") if rel] if row else []

    def record(self, case: str, status: str, seconds: float, outputs: Sequence[str], failure=None, fields=None) -> None:
        """Replace the case's rows with these and write both files (``fields``: the task's extra columns)."""
        extra = [(fields or {}).get(c, "") for c in TASK_COLUMNS]
        names = list(subject_session(case))
        self.rows[case] = [case, status, f"{seconds:g}", ";".join(outputs), *extra, *names]
        self.failed = [r for r in self.failed if r[0] != case] + ([[*failure, *names]] if failure else [])
        self.write()

    def write(self) -> None:
        """Both files, atomically."""
        write_text(self.summary, _csv(list(self.rows.values()), SUMMARY_COLUMNS), overwrite=True)
        write_text(self.failures, _csv(self.failed, FAILURE_COLUMNS), overwrite=True)


def remove_outputs(paths: Sequence[Path], keep: Sequence[Path]) -> None:
    """Remove the files of ``paths`` that exist, never one of ``keep`` or one under a folder of ``keep`` (the
    inputs: images, level files, cord masks)."""
    kept = [Path(k).resolve() for k in keep if k is not None]
    for p in paths:
        r = Path(p).resolve()
        if any(r == k or k in r.parents for k in kept):
            continue
        if p.is_file() or p.is_symlink():
            p.unlink()
