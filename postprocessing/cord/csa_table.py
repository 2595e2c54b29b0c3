"""SCT's CSV for CSA: aggregation of per-slice metrics (:mod:`nnunet_spine.postprocessing.cord.csa`) into the rows and
columns of SCT 7.x's default ``sct_process_segmentation`` output, and the CSV text.

``summarize`` / ``summary_rows`` produce all columns of SCT's default CSV in SCT's order (:data:`SCT_COLUMNS`): one
row over all selected slices, one row per slice, or one row per vertebral level. ``MEAN`` and ``STD`` (population,
ddof=0) are taken over slices, ``SUM(length)`` adds the slice lengths (mm). ``Timestamp`` is the time of the run;
``SCT Version`` keeps SCT's column name but names this tool; ``DistancePMJ`` stays empty (SCT fills it only with
``-pmj``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np

from nnunet_spine.core.bids import subject_session
from nnunet_spine.postprocessing.cord.csa import METRICS
from nnunet_spine.postprocessing.cord.levels import select_levels

if TYPE_CHECKING:
    import pandas

#: How summary rows group the slices: one row over all, one per slice, one per vertebral level.
Aggregation = Literal["all", "slice", "level"]

#: Columns before the metrics in SCT's CSV. ``SCT Version`` keeps SCT's name (scripts read columns by name)
#: but holds this tool's name and version; ``DistancePMJ`` stays empty (SCT fills it only with ``-pmj``).
SCT_PREFIX_COLUMNS = ["Timestamp", "SCT Version", "Filename", "Slice (I->S)", "VertLevel", "DistancePMJ"]
#: All columns of SCT 7.x's default ``sct_process_segmentation`` CSV, in SCT's order.
SCT_COLUMNS = [
    *SCT_PREFIX_COLUMNS,
    *(f"{stat}({m})" for m in METRICS[:-1] for stat in ("MEAN", "STD")),
    "SUM(length)",
]
#: Our CSV: SCT's columns, names and order kept, then the BIDS ``subject`` and ``session`` of ``Filename`` (empty
#: when the name is not BIDS; SCT's CSV has none, SCT issue #3888).
CSV_COLUMNS = [*SCT_COLUMNS, "subject", "session"]


def now_timestamp() -> str:
    """The current local time as SCT's ``Timestamp`` column writes it: ``YYYY-MM-DD HH:MM:SS``."""
    import datetime

    return datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S")


def tool_version() -> str:
    """Value of the ``SCT Version`` column: this tool and its version (``nnunet-spine 0.1.0``), not SCT."""
    from nnunet_spine import __version__

    return f"nnunet-spine {__version__}"


def format_ranges(values: Iterable[int]) -> str:
    """SCT's compact list format: ``[1, 2, 3, 5] → "1:3;5"``; ``[] → ""``."""
    vals = sorted({int(v) for v in values})
    if not vals:
        return ""
    parts, start, prev = [], vals[0], vals[0]
    for v in vals[1:] + [None]:
        if v is not None and v == prev + 1:
            prev = v
            continue
        parts.append(str(start) if start == prev else f"{start}:{prev}")
        if v is not None:
            start = prev = v
    return ";".join(parts)


def summary_rows(
    per_slice,
    *,
    per: Aggregation = "all",
    vert: Sequence[int] | None = None,
    filename: str | None = None,
    timestamp: str | None = None,
) -> list[dict]:
    """:func:`summarize` without pandas: a list of row dicts keyed by :data:`CSV_COLUMNS`.

    ``per_slice`` is a DataFrame from :func:`compute_csa` or a dict from :func:`per_slice_columns`.
    ``timestamp``: value of the ``Timestamp`` column (default: now, local time, as SCT writes it).
    """
    if timestamp is None:
        timestamp = now_timestamp()
    if filename is None:
        filename = str(getattr(per_slice, "attrs", {}).get("filename", ""))
    sel = select_levels(per_slice, vert)
    cols = {key: np.asarray(sel[key]) for key in ("slice", "level", *METRICS)}
    order = np.argsort(cols["slice"], kind="stable")
    cols = {key: value[order] for key, value in cols.items()}
    slices, levels = cols["slice"].astype(int), cols["level"].astype(int)
    n = slices.size
    if per == "slice":
        group = np.arange(n)
    elif per == "level":
        keep = levels > 0
        slices, levels = slices[keep], levels[keep]
        cols = {key: value[keep] for key, value in cols.items()}
        # groups numbered in I→S order of their first slice
        uniq, first = np.unique(levels, return_index=True)
        rank = np.empty(uniq.size, int)
        rank[np.argsort(first, kind="stable")] = np.arange(uniq.size)
        group = rank[np.searchsorted(uniq, levels)]
    elif per == "all":
        group = np.zeros(n, int)
    else:
        raise ValueError(f"per must be 'all', 'slice' or 'level', not {per!r}")
    n_groups = int(group.max()) + 1 if group.size else 0
    if n_groups == 0:
        return []
    stats = {}
    with np.errstate(invalid="ignore", divide="ignore"):
        for metric in METRICS[:-1]:
            v = cols[metric].astype(float)
            ok = np.isfinite(v)
            cnt = np.bincount(group, ok, n_groups)
            mean = np.bincount(group, np.where(ok, v, 0.0), n_groups) / cnt
            dev = np.where(ok, v - mean[group], 0.0)
            stats[f"MEAN({metric})"] = mean
            stats[f"STD({metric})"] = np.sqrt(np.bincount(group, dev * dev, n_groups) / cnt)
    length = cols["length"].astype(float)
    stats["SUM(length)"] = np.bincount(group, np.where(np.isfinite(length), length, 0.0), n_groups)
    if per == "slice":
        slice_text = [str(v) for v in slices]
        level_text = [str(v) if v > 0 else "" for v in levels]
    else:
        members = np.argsort(group, kind="stable")
        bounds = np.searchsorted(group[members], np.arange(n_groups + 1))
        parts = [members[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
        slice_text = [format_ranges(slices[m]) for m in parts]
        level_text = [format_ranges(v for v in levels[m] if v > 0) for m in parts]
    lists = {key: value.tolist() for key, value in stats.items()}
    subject, session = subject_session(filename or "")
    return [
        {
            "Timestamp": timestamp,
            "SCT Version": tool_version(),
            "Filename": filename,
            "Slice (I->S)": slice_text[g],
            "VertLevel": level_text[g],
            "DistancePMJ": "",
            **{key: lists[key][g] for key in lists},
            "subject": subject,
            "session": session,
        }
        for g in range(n_groups)
    ]


def summarize(
    per_slice,
    *,
    per: Aggregation = "all",
    vert: Sequence[int] | None = None,
    filename: str | None = None,
    timestamp: str | None = None,
) -> pandas.DataFrame:  # noqa: F821
    """Aggregate a per-slice table (from :func:`compute_csa`) into SCT's CSV columns, then ``subject`` and
    ``session`` (:data:`CSV_COLUMNS`).

    Parameters
    ----------
    per : "all" | "slice" | "level"
        One row over all selected slices, one row per slice, or one row per vertebral level (slices without
        a level are left out). Rows are in I→S order, as SCT writes them.
    vert : list of int, optional
        Keep only the slices of these vertebral levels.
    filename : str, optional
        Value of the ``Filename`` column (default: ``per_slice.attrs["filename"]``).
    timestamp : str, optional
        Value of the ``Timestamp`` column (default: now, ``YYYY-MM-DD HH:MM:SS``).

    ``MEAN``/``STD`` (population standard deviation, as SCT) are over slices, ignoring NaN;
    ``SUM(length)`` adds the slice lengths. An empty selection gives an empty table.
    """
    import pandas as pd

    return pd.DataFrame(
        summary_rows(per_slice, per=per, vert=vert, filename=filename, timestamp=timestamp), columns=CSV_COLUMNS
    )


def csv_text(rows: Sequence[dict] | pandas.DataFrame) -> str:  # noqa: F821
    """CSV text with :data:`CSV_COLUMNS` (SCT's, then ``subject`` and ``session``) quoted as SCT writes them: text
    in double quotes, numbers bare (full precision); NaN as an empty text field."""
    import csv
    import io

    if hasattr(rows, "to_dict"):
        rows = rows.to_dict("records")
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n", quoting=csv.QUOTE_NONNUMERIC)
    buf.write(",".join(CSV_COLUMNS) + "\n")  # header bare, as SCT's
    for row in rows:
        writer.writerow(["" if isinstance(v, float) and math.isnan(v) else v for v in (row[c] for c in CSV_COLUMNS)])
    return buf.getvalue()
