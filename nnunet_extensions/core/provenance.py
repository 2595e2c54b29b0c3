"""Provenance sidecars: every NIfTI and CSV a results command writes gets a BIDS-derivatives JSON sidecar.

The sidecar has the form ``sct_deepseg`` writes beside its outputs (and the BIDS derivatives specification's
``GeneratedBy``)::

    {"GeneratedBy": [{"Name": "nnunet-spine", "Version": "0.1.0", "Date": "2026-12-06T07:30:00+00:00",
                      "CommandLine": "nnspine csa -i sub-01_T2w_label-SC_seg.nii.gz -o csa.csv"}],
     "Sources": ["sub-01_T2w_label-SC_seg.nii.gz"],
     "Models": [{"ModelFolder": ".../nnUNetTrainer__nnUNetPlans__3d_fullres", "Folds": ["0"],
                 "Checkpoint": "checkpoint_final.pth", "CheckpointSHA256": {"0": "..."}}]}

It is named as the output with ``.json`` for its ending (``sub-01_T2w_seg.nii.gz`` → ``sub-01_T2w_seg.json``).
A sidecar the command wrote itself (``lesions``' and ``fuse``'s, with their own keys) is kept and gains these keys.

How it works: the CLI runs a results command inside :func:`recording`; :mod:`nnunet_spine.core.io` notes every
image or table it reads (:func:`note_input`) and every file it writes (:func:`note_output`), nnU-Net model
loads note the model (:func:`note_model`), and when the command ends — also on an error, for what was written
until then — :func:`write_sidecars` writes one sidecar per NIfTI / CSV output that still exists. ``Sources``
lists the inputs of the output's own subject (and session) when its name is a BIDS name, else every input the
command read; ``Models`` every model loaded before the output was written. Outside :func:`recording` (library
use, tests, converters writing nnU-Net datasets) nothing is noted and no sidecar is written.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import shlex
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

#: Output endings that get a sidecar.
SIDECAR_ENDINGS = (".nii.gz", ".nii", ".csv")
#: ``GeneratedBy`` name.
GENERATOR = "nnunet-spine"


@dataclass
class Run:
    """What one command invocation read, loaded and wrote (paths as the command was given them)."""

    command_line: str
    version: str
    date: str
    inputs: list[str] = field(default_factory=list)
    models: list[dict] = field(default_factory=list)
    outputs: list[tuple[str, int]] = field(default_factory=list)  # (path, number of models loaded by then)


_RUN: Run | None = None


@contextlib.contextmanager
def recording(argv: Sequence[str], version: str) -> Iterator[Run]:
    """Note inputs, models and outputs while the block runs; write the sidecars when it ends (also on error)."""
    global _RUN
    previous = _RUN
    run = Run(
        command_line=" ".join(shlex.quote(a) for a in ["nnspine", *argv]),
        version=version,
        date=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    )
    _RUN = run
    try:
        yield run
    finally:
        _RUN = previous
        write_sidecars(run)


def note_input(path: str | os.PathLike) -> None:
    """Record a file the running command read (no-op outside :func:`recording`)."""
    if _RUN is not None and str(path) not in _RUN.inputs:
        _RUN.inputs.append(str(path))


def note_output(path: str | os.PathLike) -> None:
    """Record a file the running command wrote (no-op outside :func:`recording`)."""
    if _RUN is not None:
        _RUN.outputs.append((str(path), len(_RUN.models)))


def note_model(folder: str | os.PathLike, folds: Sequence[str | int] | None, checkpoint: str) -> None:
    """Record an nnU-Net model the running command loaded: its folder, folds and each fold's checkpoint SHA-256.

    ``folds`` None means the folds nnU-Net found (every ``fold_*`` with the checkpoint)."""
    if _RUN is None:
        return
    root = Path(folder)
    names = (
        [str(f) for f in folds]
        if folds
        else sorted(p.name[len("fold_") :] for p in root.glob("fold_*") if (p / checkpoint).is_file())
    )
    hashes = {f: _sha256(root / f"fold_{f}" / checkpoint) for f in names}
    _RUN.models.append(
        {"ModelFolder": str(root.resolve()), "Folds": names, "Checkpoint": checkpoint, "CheckpointSHA256": hashes}
    )


def _sha256(path: Path) -> str | None:
    """Hex SHA-256 of a file, ``None`` when it cannot be read."""
    try:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        return digest.hexdigest()
    except OSError:
        return None


def sidecar_path(output: str | os.PathLike) -> Path | None:
    """``<stem>.json`` beside a NIfTI or CSV output; ``None`` for other files."""
    p = Path(output)
    for ending in SIDECAR_ENDINGS:
        if p.name.endswith(ending):
            return p.with_name(p.name[: -len(ending)] + ".json")
    return None


def _subject_key(path: str) -> tuple[str, str] | None:
    """(subject, session) of a BIDS file name, ``None`` when the name is not BIDS."""
    from nnunet_spine.core.bids import subject_session

    subject, session = subject_session(path)
    return (subject, session) if subject else None


def sources_of(output: str, inputs: Sequence[str]) -> list[str]:
    """The inputs an output came from: those of its subject (and session, when both name one) for a BIDS-named
    output, else all of them."""
    key = _subject_key(output)
    if key is None:
        return list(inputs)
    mine = []
    for path in inputs:
        other = _subject_key(path)
        if other is not None and other[0] == key[0] and (not key[1] or not other[1] or other[1] == key[1]):
            mine.append(path)
    return mine


def sidecar(run: Run, output: str, n_models: int) -> dict:
    """The provenance keys of one output."""
    entry: dict = {
        "GeneratedBy": [{"Name": GENERATOR, "Version": run.version, "Date": run.date, "CommandLine": run.command_line}],
        "Sources": sources_of(output, run.inputs),
    }
    if n_models:
        entry["Models"] = run.models[:n_models]
    return entry


def _keep_own_generator(entry: dict, old) -> dict:
    """``entry`` with the ``Name`` / ``Description`` of a sidecar's own first ``GeneratedBy`` item when ours
    wrote it (``"nnunet-spine lesions"``): the command's sidecar keeps its name and gains version, date and
    command line."""
    if isinstance(old, list) and old and isinstance(old[0], dict) and str(old[0].get("Name", "")).startswith(GENERATOR):
        first = {**entry["GeneratedBy"][0], **{k: v for k, v in old[0].items() if k in ("Name", "Description")}}
        entry = {**entry, "GeneratedBy": [first, *old[1:]]}
    return entry


def write_sidecars(run: Run) -> list[Path]:
    """Write (or extend) the sidecar of every NIfTI / CSV output of ``run`` that exists; returns the sidecars.

    A sidecar that is already there and holds a JSON object keeps its other keys (the command's own sidecar);
    anything else there is replaced. Written atomically; a sidecar that cannot be written is skipped, since the
    outputs themselves are already in place."""
    from nnunet_spine.core.io import InputError, write_text

    written: list[Path] = []
    seen: set[str] = set()
    for output, n_models in reversed(run.outputs):  # the last write of a path counts
        side = sidecar_path(output)
        if side is None or output in seen or not Path(output).is_file():
            continue
        seen.add(output)
        data: dict = {}
        if side.is_file():
            try:
                old = json.loads(side.read_text())
                data = old if isinstance(old, dict) else {}
            except (OSError, ValueError):
                data = {}
        data.update(_keep_own_generator(sidecar(run, output, n_models), data.get("GeneratedBy")))
        try:
            write_text(side, json.dumps(data, indent=2) + "\n", overwrite=True)
        except InputError:
            continue
        written.append(side)
    return written[::-1]
