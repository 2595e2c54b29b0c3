"""The instance phase with a trained cutout model: semantic mask(s) → cutouts → nnU-Net's predictor (in this
process) → :func:`nnunet_spine.postprocessing.spine.fusion_files.fuse` (``nnspine instances``, and ``segment spine`` per
case).

The model is read, checked and loaded once (:func:`load_instance_model`) and then used for any number of
semantic masks (:func:`predict_instances`): a run over a cohort loads its checkpoints once, not once per case.
Folds are found as ``segment`` finds them (:meth:`nnunet_spine.apps.segment_cases.Model.default_folds`: the
numbered folds, else ``all``).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nnunet_spine.apps.segment_cases import Model, make_predictor, read_model
from nnunet_spine.core.cutouts import (
    DEFAULT_SIZE,
    DEFAULT_SPACING_MM,
    case_name,
    load_semantic,
    semantic_files,
    write_cutouts,
)
from nnunet_spine.core.io import InputError, check_output
from nnunet_spine.core.labels import CUTOUT_CHANNEL_LABELS, CUTOUT_TARGET_LABELS
from nnunet_spine.postprocessing.spine.fusion_files import FuseReport, fuse, output_names
from nnunet_spine.postprocessing.spine.labelling import DEFAULT_LUMBAR


@dataclass
class CutoutModel:
    """A trained instance-phase model folder and the cutout geometry it was trained on."""

    folder: Path
    size: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]


def read_cutout_model(folder: str | os.PathLike) -> CutoutModel:
    """Check an nnU-Net results folder (``.../DatasetXXX_NAME/<trainer>__<plans>__<config>``) holds a cutout
    model (9 input channels, labels above/centre/below) and read its cutout size and spacing from its
    ``dataset.json`` (written by ``nnspine convert cutouts``; SPINEPS' defaults when absent)."""
    from nnunet_spine.integration.predictor import read_model_folder

    f, ds = read_model_folder(folder)
    labels = {str(k): int(v) for k, v in ds.get("labels", {}).items()}
    n_channels = len(ds.get("channel_names", {}))
    if labels != CUTOUT_TARGET_LABELS or n_channels != len(CUTOUT_CHANNEL_LABELS):
        raise InputError(
            f"{f}: not an instance-phase cutout model (labels {labels}, {n_channels} channel(s); "
            f"expected {CUTOUT_TARGET_LABELS} and {len(CUTOUT_CHANNEL_LABELS)} channels)"
        )
    size = tuple(int(n) for n in ds.get("cutout_size", DEFAULT_SIZE))
    spacing = tuple(float(s) for s in ds.get("cutout_spacing_mm", DEFAULT_SPACING_MM))
    return CutoutModel(f, size, spacing)  # type: ignore[arg-type]


@dataclass
class InstanceModel:
    """A checked cutout model, the folds it uses and (once :func:`load_instance_model` loaded it) its predictor."""

    cutouts: CutoutModel
    model: Model
    folds: list[str]
    checkpoint: str
    predictor: Any = None


def check_instance_model(
    folder: str | os.PathLike, folds: Sequence[str] | None = None, checkpoint: str = "checkpoint_final.pth"
) -> InstanceModel:
    """The cutout model's folder, folds and checkpoints checked, nothing loaded: :class:`InputError` naming what
    is wrong (not a cutout model, a fold without the checkpoint, no checkpoint at all)."""
    cm = read_cutout_model(folder)
    model = read_model(cm.folder, [str(f) for f in folds] if folds else None, checkpoint)
    use = [str(f) for f in folds] if folds else model.default_folds()
    return InstanceModel(cm, model, use, checkpoint)


def load_instance_model(
    folder: str | os.PathLike,
    folds: Sequence[str] | None = None,
    checkpoint: str = "checkpoint_final.pth",
    device: str = "cpu",
    progress: bool = False,
) -> InstanceModel:
    """:func:`check_instance_model`, then nnU-Net's predictor loaded (once, for every mask it will see)."""
    im = check_instance_model(folder, folds, checkpoint)
    im.predictor = make_predictor(im.model, im.folds, checkpoint, device, progress)
    return im


def check_discfile(discfile: str | os.PathLike | None, semantic: str | os.PathLike) -> None:
    """``--discfile`` before anything loads: every case's SCT disc labels are found and readable
    (:func:`~nnunet_spine.postprocessing.spine.fusion_files.disc_labels_for`); :class:`InputError` naming what is
    missing or wrong."""
    from nnunet_spine.postprocessing.spine.fusion_files import disc_labels_for

    for f in semantic_files(semantic) if discfile is not None else []:
        disc_labels_for(discfile, case_name(f))


def check_landmarks(landmarks: str | os.PathLike | None, semantic: str | os.PathLike) -> None:
    """``--landmarks`` before anything loads: a file (one semantic mask) or a folder holding ``<case>.nii.gz`` for
    every case; :class:`InputError` naming what is missing."""
    if landmarks is None:
        return
    from nnunet_spine.core.bids import find_by_stem

    p = Path(landmarks)
    if not p.exists():
        raise InputError(f"{p}: not found (--landmarks)")
    files = semantic_files(semantic)
    if p.is_file():
        if len(files) > 1:
            raise InputError(f"{p}: one landmark file for {len(files)} semantic masks (give a folder of <case> files)")
        return
    for f in files:
        case = case_name(f)
        if find_by_stem(p, case) is None:
            raise InputError(f"{p}: no landmark prediction {case}.nii.gz for case {case} (--landmarks)")


def check_instance_outputs(semantic: str | os.PathLike, out_dir: str | os.PathLike, overwrite: bool) -> None:
    """Every semantic mask readable and every output path free (or ``overwrite``), before the network runs."""
    out = Path(out_dir)
    for f in semantic_files(semantic):
        load_semantic(f)
        for name in output_names(f).values():
            if (out / name).resolve() == Path(f).resolve():
                raise InputError(
                    f"{out / name}: output would replace the input semantic mask (choose another -o folder)"
                )
            check_output(out / name, overwrite)


def predict_cutouts(instance_model: InstanceModel, cutouts: Path, predictions: Path) -> None:
    """nnU-Net's loaded predictor on a folder of cutouts (as ``nnUNetv2_predict``; one process, no workers)."""
    if instance_model.predictor is None:
        raise ValueError("predict_cutouts: the instance model is not loaded (load_instance_model)")
    predictions.mkdir(parents=True, exist_ok=True)
    instance_model.predictor.predict_from_files_sequential(
        str(cutouts), str(predictions), save_probabilities=False, overwrite=True
    )


def predict_instances(
    semantic: str | os.PathLike,
    instance_model: InstanceModel,
    out_dir: str | os.PathLike,
    *,
    top_vertebra: str | None = None,
    labelling: str = "auto",
    lumbar: int = DEFAULT_LUMBAR,
    endplates: str = "merged",
    image: str | os.PathLike | None = None,
    landmarks: str | os.PathLike | None = None,
    qc: bool = True,
    overwrite: bool = False,
    work_dir: str | os.PathLike | None = None,
    step=None,
    discfile: str | os.PathLike | None = None,
) -> FuseReport:
    """Cutouts → the loaded instance model → fusion, for a semantic mask or a folder of them. Cutouts and
    predictions live in ``work_dir`` (a temporary folder when not given); the outputs are :func:`fuse`'s.
    Inputs, landmarks and the output paths are checked before the network runs. ``step(name)``, when given, is
    a context manager naming the step that is running (``cutouts``, ``predict-instances``, ``fuse``)."""
    import contextlib

    at = step or (lambda _name: contextlib.nullcontext())
    check_landmarks(landmarks, semantic)
    check_discfile(discfile, semantic)
    check_instance_outputs(semantic, out_dir, overwrite)
    cm = instance_model.cutouts
    with contextlib.ExitStack() as stack:
        if work_dir is None:
            work_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="nnspine_instances_"))
        cut, pred = Path(work_dir) / "cutouts", Path(work_dir) / "predictions"
        with at("cutouts"):
            write_cutouts(semantic, cut, size=cm.size, spacing_mm=cm.spacing_mm)
        with at("predict-instances"):
            predict_cutouts(instance_model, cut, pred)
        with at("fuse"):
            return fuse(
                semantic,
                cut,
                pred,
                out_dir,
                top_vertebra=top_vertebra,
                labelling=labelling,
                lumbar=lumbar,
                endplates=endplates,
                image=image,
                landmarks=landmarks,
                qc=qc,
                overwrite=overwrite,
                discfile=discfile,
            )
