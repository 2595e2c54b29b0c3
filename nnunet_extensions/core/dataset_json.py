"""The dataset.json contract between nnspine's converters and every later step (nnU-Net raw folder names,
file ending, and the label mapping a converter records in ``dataset.json``).

Converters write it (:mod:`nnunet_spine.dataset_converters.nnunet_raw`); soft-target preprocessing, trainers and
postprocessing read it. It lives in the core so readers need not import a converter. nnU-Net copies
``dataset.json`` into its results and prediction folders, so the mapping travels with every model and prediction.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from nnunet_spine.core.io import InputError

#: File ending used by the converters (NIfTI, read by nnU-Net's SimpleITKIO).
FILE_ENDING = ".nii.gz"
IMAGES_TR = "imagesTr"
LABELS_TR = "labelsTr"
#: Raw soft (partial-volume) labels beside ``labelsTr``: float masks in [0, 1], read by ``nnspine preprocess-soft``.
LABELS_TR_SOFT = "labelsTr_soft"
#: SPINEPS-format instance masks beside ``labelsTr`` (vertebrae, discs 100+X), same grid; nnU-Net ignores them.
INSTANCES_TR = "instancesTr"
#: ``dataset.json`` key holding a converter's label mapping (:func:`label_map_entry`).
LABEL_MAP_KEY = "nnspine_label_map"


def label_map_entry(convention: str, values: Mapping[int, int]) -> dict:
    """The ``dataset.json`` value of :data:`LABEL_MAP_KEY`: ``{"convention": "spineps", "values": {"1": 41, ...}}``
    (nnU-Net label, as a JSON string key, → the value it stands for in ``convention``; background 0 → 0)."""
    return {"convention": str(convention), "values": {str(int(k)): int(v) for k, v in sorted(values.items())}}


def read_label_map(
    dataset_json: Mapping, convention: str, source: str | os.PathLike = "dataset.json"
) -> dict[int, int]:
    """nnU-Net label → ``convention`` value, from a ``dataset.json`` written by a converter (:func:`label_map_entry`).

    :class:`InputError` naming ``source`` when the key is missing, malformed or for another convention.
    """
    entry = dataset_json.get(LABEL_MAP_KEY)
    if not isinstance(entry, Mapping) or not isinstance(entry.get("values"), Mapping):
        raise InputError(
            f"{source}: no '{LABEL_MAP_KEY}' label mapping (the dataset was not written by an nnspine "
            f"converter that remaps labels, e.g. 'nnspine convert spineps')"
        )
    if entry.get("convention") != convention:
        raise InputError(f"{source}: labels map to the {entry.get('convention')!r} convention, not {convention!r}")
    try:
        mapping = {int(k): int(v) for k, v in entry["values"].items()}
    except (TypeError, ValueError):
        raise InputError(f"{source}: '{LABEL_MAP_KEY}' values must map integer labels to integers") from None
    declared = sorted(int(v) for v in dataset_json.get("labels", {}).values() if isinstance(v, int))
    missing = [v for v in declared if v not in mapping]
    if missing:
        raise InputError(f"{source}: nnU-Net labels {missing} have no entry in '{LABEL_MAP_KEY}'")
    return mapping
