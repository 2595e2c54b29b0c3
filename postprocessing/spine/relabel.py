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
#: Label conventions of other tools' outputs ``--from`` accepts (no ``--dataset`` needed).
SOURCES = ("totalspineseg", "spineps")

__all__ = [
    "relabel",
    "relabel_array",
    "load_mapping",
    "RelabelReport",
    "CONVENTIONS",
    "SOURCES",
    "from_totalspineseg",
    "to_totalspineseg",
    "relabel_from_totalspineseg",
    "relabel_to_totalspineseg",
]


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


# ------------------------------------------------------------------------------ TotalSpineSeg ids
def from_totalspineseg(data: np.ndarray, name: str = "<array>") -> tuple[np.ndarray, np.ndarray]:
    """A TotalSpineSeg step-2 label array (:data:`nnunet_spine.core.labels.TOTALSPINESEG_LABELS`) → our instance
    array (vertebrae by VerSe id, sacrum 26, discs ``100 + X``; uint8) and a semantic array holding cord 60 and
    canal 61 (uint8), voxel for voxel (:data:`~nnunet_spine.core.labels.TOTALSPINESEG_TO_SPINEPS`).
    :class:`InputError` naming ``name`` for values that are not TotalSpineSeg ids or have no SPINEPS id (L7 = 47)."""
    from nnunet_spine.core.labels import CANAL, CORD, TOTALSPINESEG_LABELS, TOTALSPINESEG_TO_SPINEPS

    values = np.asarray(data).astype(np.int64)
    found = [int(v) for v in np.unique(values) if v]
    unknown = [v for v in found if v not in TOTALSPINESEG_LABELS]
    if unknown:
        raise InputError(
            f"{name}: values {unknown[:8]} are not TotalSpineSeg ids (1, 2, 11-17, 21-32, 41-47, 50, 63-100)"
        )
    orphan = [v for v in found if v not in TOTALSPINESEG_TO_SPINEPS]
    if orphan:
        names = ", ".join(f"{v} ({TOTALSPINESEG_LABELS[v]})" for v in orphan)
        raise InputError(f"{name}: TotalSpineSeg labels {names} have no SPINEPS/VerSe id")
    lut = np.zeros(max(TOTALSPINESEG_LABELS) + 1, np.int64)
    for tss, ours in TOTALSPINESEG_TO_SPINEPS.items():
        lut[tss] = ours
    mapped = lut[values]
    semantic = np.where(np.isin(mapped, (CORD, CANAL)), mapped, 0).astype(np.uint8)
    instance = np.where(np.isin(mapped, (CORD, CANAL)), 0, mapped).astype(np.uint8)
    return instance, semantic


def to_totalspineseg(
    instance: np.ndarray,
    semantic: np.ndarray | None = None,
    zooms_mm: tuple[float, float, float] = (1.0, 1.0, 1.0),
    name: str = "<array>",
) -> np.ndarray:
    """Our instance array (and optionally a semantic one for cord 60 / canal 61) → TotalSpineSeg ids (uint8).

    TotalSpineSeg has no endplates: each endplate voxel (``200 + X``) joins the vertebra nearest to it (Euclidean
    distance in mm, ``zooms_mm`` the voxel size), since SPINEPS' ``200 + X`` covers X's lower and the next vertebra's
    upper endplate. Cord and canal are taken where the instance mask is 0. :class:`InputError` naming ``name``
    for values with no TotalSpineSeg id (T13 = 28, coccyx 27, discs 101, 125, 128) or that are not instances."""
    from scipy import ndimage

    from nnunet_spine.core.labels import (
        CANAL,
        CORD,
        SPINEPS_TO_TOTALSPINESEG,
        instance_kind,
        instance_name,
        instance_value_problem,
    )

    inst = np.asarray(instance).astype(np.int64)
    found = [int(v) for v in np.unique(inst) if v]
    problem = instance_value_problem(found)
    if problem:
        raise InputError(f"{name}: {problem}")
    endplates = [v for v in found if instance_kind(v)[0] == "endplate"]
    orphan = [v for v in found if v not in SPINEPS_TO_TOTALSPINESEG and v not in endplates]
    if orphan:
        names = ", ".join(f"{v} ({instance_name(v)})" for v in orphan)
        raise InputError(f"{name}: {names} have no TotalSpineSeg id")
    if endplates:
        is_endplate = np.isin(inst, endplates)
        vertebra = (inst > 0) & ~is_endplate & np.isin(inst, [v for v in found if instance_kind(v)[0] == "vertebra"])
        if vertebra.any():
            _, idx = ndimage.distance_transform_edt(~vertebra, sampling=zooms_mm, return_indices=True)
            inst = np.where(is_endplate, inst[tuple(idx)], inst)
        else:
            inst = np.where(is_endplate, 0, inst)
    lut = np.zeros(max(SPINEPS_TO_TOTALSPINESEG) + 1, np.uint8)
    for ours, tss in SPINEPS_TO_TOTALSPINESEG.items():
        lut[ours] = tss
    out = lut[inst]
    if semantic is not None:
        sem = np.asarray(semantic).astype(np.int64)
        for label in (CORD, CANAL):
            out[(sem == label) & (inst == 0)] = SPINEPS_TO_TOTALSPINESEG[label]
    return out


def totalspineseg_output_names(inp: Path, out: Path) -> tuple[Path, Path]:
    """Where ``--from totalspineseg`` writes: the instance mask and the cord/canal semantic mask, named as SPINEPS
    names them (:func:`nnunet_spine.postprocessing.spine.fusion_files.output_names`): ``-o`` a folder →
    ``<input stem>_seg-vert_msk.nii.gz`` and ``<input stem>_seg-spine_msk.nii.gz`` in it; ``-o`` a file → that file
    for the instances and its ``seg-spine`` partner beside it (``x_seg-vert_msk`` → ``x_seg-spine_msk``;
    ``x.nii.gz`` → ``x_seg-spine_msk.nii.gz``)."""
    from nnunet_spine.postprocessing.spine.fusion_files import output_names

    if out.is_dir() or not out.name.lower().endswith(NIFTI_SUFFIXES):
        names = output_names(inp)
        return out / names["vert"], out / names["spine"]
    return out, out.parent / output_names(out)["spine"]


@dataclass
class ConversionReport:
    """What :func:`relabel_from_totalspineseg` / :func:`relabel_to_totalspineseg` wrote: per input, its outputs."""

    source: str
    target: str
    files: list[tuple[str, list[str]]] = field(default_factory=list)

    def lines(self) -> list[str]:
        return [f"{len(self.files)} file(s) converted from {self.source} to {self.target}"] + [
            f"  {a} -> {', '.join(b)}" for a, b in self.files
        ]


def _inputs(inp: Path, keep=lambda p: True) -> list[Path]:
    if inp.is_dir():
        files = sorted(
            p
            for p in inp.iterdir()
            if p.is_file() and p.name.lower().endswith(NIFTI_SUFFIXES) and not p.name.startswith(".") and keep(p)
        )
        if not files:
            raise InputError(f"{inp}: no .nii.gz / .nii mask in this folder")
        return files
    if not inp.exists():
        raise InputError(f"{inp}: file not found")
    return [inp]


def _refuse_existing(outputs: list[Path], inputs: list[Path], overwrite: bool) -> None:
    ins = {p.resolve() for p in inputs}
    for o in outputs:
        if o.resolve() in ins:
            raise InputError(f"{o}: output would replace an input (choose another -o)")
        if o.exists() and not overwrite:
            raise OutputExistsError(f"{o}: output exists (use --overwrite to replace it)")
    for o in outputs:
        check_output(o, overwrite)


def relabel_from_totalspineseg(inp: str | Path, out: str | Path, *, overwrite: bool = False) -> ConversionReport:
    """TotalSpineSeg step-2 output(s) (a file or a folder of them) → our instance mask and cord/canal semantic mask
    per input (:func:`from_totalspineseg`, names :func:`totalspineseg_output_names`), voxel-exact on the input's grid
    and header. All inputs are read and checked before anything is written."""
    inp, out = Path(inp), Path(out)
    files = _inputs(inp)
    if inp.is_dir() and out.exists() and not out.is_dir():
        raise InputError(f"{out}: is a file, expected an output folder (the input is a folder)")
    pairs = [(p, totalspineseg_output_names(p, out)) for p in files]
    for p, _ in pairs:
        from_totalspineseg(load_image(p, "labels").data, str(p))
    _refuse_existing([o for _, names in pairs for o in names], files, overwrite)
    report = ConversionReport(source="totalspineseg", target="spineps")
    for p, (vert, spine) in pairs:
        img = load_image(p, "labels")
        instance, semantic = from_totalspineseg(img.data, str(p))
        save_image(instance, img.affine, vert, overwrite=overwrite, dtype=np.uint8, like=img)
        save_image(semantic, img.affine, spine, overwrite=overwrite, dtype=np.uint8, like=img)
        report.files.append((str(p), [str(vert), str(spine)]))
    return report


def relabel_to_totalspineseg(
    inp: str | Path, out: str | Path, *, semantic: str | Path | None = None, overwrite: bool = False
) -> ConversionReport:
    """Our instance mask(s) → TotalSpineSeg ids (:func:`to_totalspineseg`). A folder input converts its SPINEPS
    instance masks (``*_seg-vert_msk*``), each with the ``seg-spine`` semantic mask beside it when there is one
    (cord, canal); a file input takes ``semantic`` if given. Outputs keep the input's file name (``-o`` a folder)
    or are ``-o`` (a name not ending in ``.nii.gz`` / ``.nii`` is a folder); same grid and header, uint8."""
    from nnunet_spine.core.io import check_same_grid
    from nnunet_spine.postprocessing.cord.levels import is_spineps_instance_name
    from nnunet_spine.postprocessing.spine.fusion_files import output_names

    inp, out = Path(inp), Path(out)
    if inp.is_dir():
        if semantic is not None:
            raise InputError("--semantic: give it with one instance mask, not a folder (the folder's own are used)")
        files = _inputs(inp, is_spineps_instance_name)
        partners = {p: p.parent / output_names(p)["spine"] for p in files}
        partners = {p: s if s.exists() else None for p, s in partners.items()}
        if out.exists() and not out.is_dir():
            raise InputError(f"{out}: is a file, expected an output folder (the input is a folder)")
        pairs = [(p, out / p.name) for p in files]
    else:
        files = _inputs(inp)
        partners = {inp: Path(semantic) if semantic is not None else None}
        is_folder = out.is_dir() or not out.name.lower().endswith(NIFTI_SUFFIXES)
        pairs = [(inp, out / inp.name if is_folder else out)]

    def convert(p: Path) -> tuple[Image, np.ndarray]:
        img = load_image(p, "labels")
        sem = None
        if partners[p] is not None:
            sem_img = load_image(partners[p], "labels")
            check_same_grid(img, sem_img)
            sem = sem_img.data
        return img, to_totalspineseg(img.data, sem, tuple(float(z) for z in img.zooms), str(p))

    for p, _ in pairs:
        convert(p)
    _refuse_existing([o for _, o in pairs], files + [s for s in partners.values() if s is not None], overwrite)
    report = ConversionReport(source="spineps", target="totalspineseg")
    for p, o in pairs:
        img, tss = convert(p)
        save_image(tss, img.affine, o, overwrite=overwrite, dtype=np.uint8, like=img)
        report.files.append((str(p), [str(o)]))
    return report
