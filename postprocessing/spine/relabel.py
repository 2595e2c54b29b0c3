"""``nnspine relabel`` / :func:`relabel`: predictions in nnU-Net's consecutive labels → the original label values.

``nnspine convert spineps`` renumbers the SPINEPS semantic labels (41-49, 26, 60-62, 100) to 1..n and records
the mapping in ``dataset.json`` (:data:`nnunet_spine.core.dataset_json.LABEL_MAP_KEY`). nnU-Net copies that
``dataset.json`` into its model and prediction folders, so any of them (or the raw dataset, or its id) tells how
to map a prediction back. The back-mapping is a lookup table on the voxel values: voxel-exact, on the same grid,
with the prediction's NIfTI header (only the data type may change, to uint8).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nnunet_spine.core.dataset_json import read_label_map
from nnunet_spine.core.io import (
    NIFTI_SUFFIXES,
    Image,
    InputError,
    OutputExistsError,
    check_output,
    load_image,
    save_image,
)
from nnunet_spine.core.nnunet_folders import find_dataset_json

#: Label conventions ``--to`` accepts (the ``convention`` recorded by the converter).
CONVENTIONS = ("spineps",)

__all__ = ["relabel", "relabel_array", "load_mapping", "RelabelReport", "CONVENTIONS"]


@dataclass
class RelabelReport:
    """What :func:`relabel` wrote: ``(input, output)`` pairs, the mapping used and where it came from."""

    dataset_json: str
    convention: str
    mapping: dict[int, int]
    files: list[tuple[str, str]] = field(default_factory=list)

    def lines(self) -> list[str]:
        mapping = ", ".join(f"{k}->{v}" for k, v in self.mapping.items() if k)
        return [f"{len(self.files)} file(s) relabelled to {self.convention} ({mapping}) using {self.dataset_json}"] + [
            f"  {a} -> {b}" for a, b in self.files
        ]


def load_mapping(dataset: str | Path | int, to: str = "spineps") -> tuple[dict[int, int], Path]:
    """nnU-Net label → ``to`` value from the ``dataset.json`` of ``dataset`` (a file, a folder holding one, or an
    id / name: :func:`~nnunet_spine.core.nnunet_folders.find_dataset_json`); returns it with the file's path."""
    if to not in CONVENTIONS:
        raise InputError(f"--to {to}: unknown label convention (choose from {', '.join(CONVENTIONS)})")
    path = find_dataset_json(dataset)
    try:
        content = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read dataset.json ({exc})") from None
    if not isinstance(content, dict):
        raise InputError(f"{path}: not an nnU-Net dataset.json")
    return read_label_map(content, to, path), path


def relabel_array(pred: np.ndarray, mapping: Mapping[int, int]) -> np.ndarray:
    """Map every voxel value through ``mapping`` (nnU-Net label → value; uint8 result when values fit, else
    uint16). ``ValueError`` naming the values the mapping lacks."""
    data = np.asarray(pred)
    keys = np.array(sorted(mapping), dtype=np.int64)
    found = np.unique(data).astype(np.int64)
    extra = sorted(set(found.tolist()) - set(keys.tolist()))
    if extra:
        raise ValueError(f"labels {extra[:8]} are not in the dataset's labels {keys.tolist()}")
    dtype = np.uint8 if max(mapping.values(), default=0) <= 255 else np.uint16
    lut = np.zeros(int(keys.max()) + 1, dtype)
    for k, v in mapping.items():
        lut[int(k)] = v
    return lut[data.astype(np.int64)]


def _pairs(inp: Path, out: Path) -> list[tuple[Path, Path]]:
    """(prediction, output) pairs: every NIfTI file of a folder into the output folder, or one file."""
    if inp.is_dir():
        if out.exists() and not out.is_dir():
            raise InputError(f"{out}: is a file, expected an output folder (the input is a folder)")
        files = sorted(
            p
            for p in inp.iterdir()
            if p.is_file() and p.name.lower().endswith(NIFTI_SUFFIXES) and not p.name.startswith(".")
        )
        if not files:
            raise InputError(f"{inp}: no .nii.gz / .nii prediction in this folder")
        return [(p, out / p.name) for p in files]
    if not inp.exists():
        raise InputError(f"{inp}: file not found")
    if out.is_dir():
        return [(inp, out / inp.name)]
    if not out.name.lower().endswith(NIFTI_SUFFIXES):
        raise InputError(f"{out}: output must end in .nii.gz or .nii (or be a folder)")
    return [(inp, out)]


def _load_prediction(path: Path, mapping: Mapping[int, int]) -> Image:
    pred = load_image(path, "labels")
    extra = sorted(set(np.unique(pred.data).astype(np.int64).tolist()) - set(mapping))
    if extra:
        raise InputError(
            f"{path}: labels {extra[:8]} are not labels of the dataset (0..{max(mapping)}); "
            "a prediction of another model?"
        )
    return pred


def relabel(
    inp: str | Path, out: str | Path, dataset: str | Path | int, *, to: str = "spineps", overwrite: bool = False
) -> RelabelReport:
    """Relabel one prediction file, or every NIfTI file of a folder, to ``to`` values (module docstring).

    Every input is read and checked before anything is written; existing outputs are refused unless
    ``overwrite``. :class:`InputError` for a missing input, an unknown dataset or mapping, labels outside the
    dataset's, an output that exists.
    """
    mapping, source = load_mapping(dataset, to)
    pairs = _pairs(Path(inp), Path(out))
    for _, o in pairs:
        if o.exists() and not overwrite:
            raise OutputExistsError(f"{o}: output exists (use --overwrite to replace it)")
        if o.resolve() in {p.resolve() for p, _ in pairs}:
            raise InputError(f"{o}: output would replace an input (choose another -o)")
    for p, _ in pairs:  # all inputs valid before the first write
        _load_prediction(p, mapping)
    for _, o in pairs:
        check_output(o, overwrite)
    report = RelabelReport(dataset_json=str(source), convention=to, mapping=dict(sorted(mapping.items())))
    for p, o in pairs:
        pred = _load_prediction(p, mapping)
        values = relabel_array(pred.data, mapping)
        save_image(values, pred.affine, o, overwrite=overwrite, like=pred)
        report.files.append((str(p), str(o)))
    return report
