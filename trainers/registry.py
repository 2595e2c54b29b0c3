"""The trainers this package provides, one module per family, and their one-sentence descriptions.

Each family module (``nnunet_spine.trainers.softseg``, ...) ends with a ``TRAINERS`` tuple. One discovery shim,
``nnunet_extensions/integration/discovery/nnspine_trainers.py``, binds the names of :func:`all_trainers` for
nnU-Net's ``nnUNet_extTrainer`` lookup, so a new trainer needs no change there. ``nnspine trainers`` lists
:func:`all_trainers` with :func:`describe`.
"""

from __future__ import annotations

import importlib
import re

#: Trainer families, in listing order; each module defines ``TRAINERS``.
TRAINER_MODULES = (
    "nnunet_spine.trainers.softseg",
    "nnunet_spine.trainers.lesion",
    "nnunet_spine.trainers.spine_semantic",
    "nnunet_spine.trainers.vertebra_cutout",
    "nnunet_spine.trainers.softseg_da5",
    "nnunet_spine.trainers.budget",
)


def all_trainers() -> list[type]:
    """Every trainer class of every family, in listing order."""
    return [t for module in TRAINER_MODULES for t in importlib.import_module(module).TRAINERS]


def _plain(text: str) -> str:
    """Docstring text without reST markup: ``:class:`~a.b.C``` → ``C``, ````x```` → ``x``, ```x``` → ``x``."""
    text = re.sub(r":[a-z]+:`~([^`]+)`", lambda m: m.group(1).rsplit(".", 1)[-1], text)
    text = re.sub(r":[a-z]+:`([^`]+)`", r"\1", text)
    text = re.sub(r"``([^`]+)``", r"\1", text)
    return re.sub(r"`([^`]+)`", r"\1", text)


def describe(cls: type) -> str:
    """The first sentence of a trainer's docstring, on one line and without reST markup ('' if none).

    A sentence ends at a full stop followed by the end of the first paragraph or by a capitalised word.
    """
    doc = (cls.__doc__ or "").strip()
    paragraph = " ".join(line.strip() for line in doc.split("\n\n", 1)[0].splitlines())
    match = re.match(r"(.+?\.)(?=\s+[A-Z]|$)", paragraph)
    return _plain(match.group(1) if match else paragraph)


def trainer_epochs(name: str) -> int | None:
    """Epochs the named trainer of this package runs (its :class:`nnunet_spine.trainers.short_runs.ShortRun`
    ``NUM_EPOCHS``); ``None`` for an unknown trainer or one that keeps nnU-Net's default."""
    for cls in all_trainers():
        if cls.__name__ == name:
            epochs = getattr(cls, "NUM_EPOCHS", None)
            return int(epochs) if isinstance(epochs, int) else None
    return None
