"""Running one function over many items (subjects, cases) in worker processes, order kept.

Shared by the dataset converters' ``--jobs``. Workers are started with ``spawn`` (no state inherited from
the parent), so results equal a serial run; the first exception (e.g. an ``InputError`` found by a worker)
cancels what has not started and is raised in the caller.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any


def process_pool(jobs: int, n_items: int) -> AbstractContextManager:
    """A process pool (spawn) of ``min(jobs, n_items)`` workers for ``jobs > 1``, else a null context (None)."""
    if jobs <= 1 or n_items <= 1:
        return contextlib.nullcontext(None)
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(max_workers=min(jobs, n_items), mp_context=multiprocessing.get_context("spawn"))


def run_all(fn: Callable[[Any, Any], Any], items: Sequence, arg: Any, pool=None, bar=None) -> list:
    """``[fn(item, arg) for item in items]``, in the worker processes of ``pool`` when given (order kept);
    ``bar`` (tqdm) advances by one per finished item."""
    if pool is None or len(items) <= 1:
        out = []
        for item in items:
            out.append(fn(item, arg))
            if bar is not None:
                bar.update(1)
        return out
    from concurrent.futures import as_completed

    results: list = [None] * len(items)
    futures = {pool.submit(fn, item, arg): i for i, item in enumerate(items)}
    try:
        for fut in as_completed(futures):
            results[futures[fut]] = fut.result()
            if bar is not None:
                bar.update(1)
    except BaseException:
        for f in futures:
            f.cancel()
        raise
    return results
