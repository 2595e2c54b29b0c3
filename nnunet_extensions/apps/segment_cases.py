"""The models and cases of ``nnspine segment`` (:mod:`nnunet_spine.apps.segment`): an nnU-Net v2 results folder
read and checked for a task, the cases of an image, a folder of images or a BIDS dataset (one image per model
channel, the first naming the case) and a part of them for a sharded run, nnU-Net's predictor loaded once and run
on one case (the whole image, or a box of it), and the steps under which a case's failure is recorded."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nnunet_spine.core.io import InputError, load_image, same_grid, save_image

#: Names of a lesion model's lesion label or region (``dataset.json``, compared without case).
LESION_NAMES = ("lesion", "lesions")


# --------------------------------------------------------------------------------------------- steps
class StepFailed(Exception):
    """A case's step failed: ``step`` names it (``predict``, ``csa``, ``lesions``, ``cutouts``, ``fuse`` …) and
    ``cause`` is what it raised."""

    def __init__(self, step: str, cause: Exception):
        super().__init__(f"{step}: {cause}")
        self.step, self.cause = step, cause


@contextlib.contextmanager
def step(name: str) -> Iterator[None]:
    """Run a block as the step ``name``: what it raises comes out as :class:`StepFailed` naming the step. The
    outermost step wins (``landmarks`` around the landmark model's ``predict``)."""
    try:
        yield
    except StepFailed as exc:
        raise StepFailed(name, exc.cause) from exc.cause
    except Exception as exc:  # noqa: BLE001 - re-raised with the step's name
        raise StepFailed(name, exc) from exc


def failure_reason(exc: BaseException) -> str:
    """One line for ``failures.csv``: an :class:`InputError`'s message, else the exception's type and first
    line."""
    if isinstance(exc, StepFailed):
        exc = exc.cause
    if isinstance(exc, InputError):
        return str(exc)
    lines = str(exc).splitlines()
    return f"{type(exc).__name__}: {lines[0][:200] if lines else ''}"


# --------------------------------------------------------------------------------------------- model
@dataclass
class Model:
    """An nnU-Net v2 results folder (``.../DatasetXXX_NAME/<trainer>__<plans>__<configuration>``)."""

    folder: Path
    dataset: dict
    trainer: str
    channels: list[str]
    labels: dict
    #: Folds with the checkpoint (``fold_all`` as ``"all"``).
    folds: list[str] = field(default_factory=list)

    def default_folds(self) -> list[str]:
        """Folds used when none are chosen: the numbered ones, as nnU-Net's fold detection finds them, else
        ``all`` (which nnU-Net's detection skips: a model trained on ``all`` only would have none)."""
        return [f for f in self.folds if f.isdigit()] or self.folds

    @property
    def soft(self) -> bool:
        """Trained on soft targets (our soft-segmentation trainers): its output is a probability."""
        return "SoftSeg" in self.trainer

    def lesion_label(self) -> str | None:
        """The name of the label or region holding the lesions (:data:`LESION_NAMES`, without case), or None."""
        hits = [k for k in self.labels if k.lower() in LESION_NAMES]
        return hits[0] if len(hits) == 1 else None

    def label_value(self, name: str) -> int | None:
        """Value written for label or region ``name`` (a region's value is the last of its labels)."""
        v = self.labels.get(name)
        if v is None:
            return None
        return int(v[-1]) if isinstance(v, list) else int(v)


def read_model(folder: str | Path, folds: Sequence[str] | None, checkpoint: str) -> Model:
    """Check an nnU-Net results folder and its checkpoints; :class:`InputError` naming what is missing."""
    from nnunet_spine.integration.predictor import read_model_folder

    f, ds = read_model_folder(folder)
    found = sorted(p.name[len("fold_") :] for p in f.glob("fold_*") if (p / checkpoint).is_file())
    for fold in folds or []:
        if fold not in found:
            raise InputError(f"{f / f'fold_{fold}' / checkpoint}: checkpoint not found (folds with it: {found})")
    if not found:
        raise InputError(f"{f}: no fold_*/{checkpoint} (train the model or choose --checkpoint)")
    channels = [str(v) for _, v in sorted(ds.get("channel_names", {}).items(), key=lambda kv: int(kv[0]))]
    return Model(f, ds, f.name.split("__")[0], channels, dict(ds.get("labels", {})), found)


def check_model_for(model: Model, task: str) -> None:
    """A model trained on other labels fails here, naming what the task expects."""
    names = {k for k in model.labels if k != "background"}
    if task == "cord" and len(names) != 1:
        raise InputError(
            f"{model.folder}: a cord model has background and one foreground label; this one has {sorted(names)}"
        )
    if task == "lesion" and model.lesion_label() is None:
        raise InputError(
            f"{model.folder}: a lesion model has a 'lesion' label or region; this one has {sorted(names)} "
            "(a lesion model whose label has another name: rename it 'lesion' in its dataset.json)"
        )
    if task == "landmarks":
        from nnunet_spine.core.labels import LANDMARK_NAMES

        expected = {"background": 0, **{name: k for k, name in LANDMARK_NAMES.items()}}
        if {k: v for k, v in model.labels.items()} != expected:
            raise InputError(
                f"{model.folder}: not a landmark model (labels {model.labels}; expected {expected}, "
                "as 'nnspine convert landmarks' writes them)"
            )
    if task == "spine":
        from nnunet_spine.core.dataset_json import LABEL_MAP_KEY

        if model.dataset.get(LABEL_MAP_KEY, {}).get("convention") != "spineps":
            raise InputError(
                f"{model.folder}: not a SPINEPS semantic model (its dataset.json has no SPINEPS label map; "
                "train it on a dataset written by 'nnspine convert spineps')"
            )


# --------------------------------------------------------------------------------------------- cases
@dataclass
class Case:
    """One case: its name (the first channel's stem), images in channel order, output folder (relative)."""

    name: str
    images: list[Path]
    rel_dir: str = ""


def find_cases(
    source: str | Path,
    n_channels: int,
    channels: Sequence[str] | None = None,
    say: Callable[[str], None] = lambda _: None,
) -> list[Case]:
    """Cases of an image, a folder of images or a BIDS dataset (module docstring), sorted by name. A BIDS dataset
    without ``channels`` makes every image a case, and ``say`` says so with the sequences found."""
    from nnunet_spine.core import bids

    src = Path(source)
    if not src.exists():
        raise InputError(f"{src}: not found")
    if channels is not None and len(channels) != n_channels:
        raise InputError(f"--channels {','.join(channels)}: the model has {n_channels} channel(s)")
    if src.is_file() or not any(p.is_dir() for p in src.glob("sub-*")):
        files = [src] if src.is_file() else bids.list_nifti(src)
        if n_channels != 1:
            raise InputError(
                f"{src}: the model takes {n_channels} channels; give a BIDS dataset and --channels "
                "(one sequence per channel)"
            )
        if not files:
            raise InputError(f"{src}: no NIfTI images")
        return sorted((Case(bids.nifti_stem(p) or p.stem, [p]) for p in files), key=lambda c: c.name)
    cases, contrasts = [], set()
    for unit in bids.find_units(src):
        images, _ = bids.list_images(unit)
        if channels is None:
            if n_channels != 1:
                raise InputError(f"{src}: the model takes {n_channels} channels; say which with --channels")
            cases += [Case(im.stem, [im.path], unit.rel_dir) for im in images]
            contrasts |= {im.contrast for im in images}
            continue
        picked = [bids.select_images(images, spec) for spec in channels]
        if all(len(p) == 1 for p in picked):
            cases.append(Case(picked[0][0].stem, [p[0].path for p in picked], unit.rel_dir))
    if not cases:
        raise InputError(f"{src}: no case with {'the sequences ' + ','.join(channels) if channels else 'images'}")
    if channels is None:
        say(f"no --channels: every image is a case ({', '.join(sorted(contrasts))}; {len(cases)} in all)")
    return sorted(cases, key=lambda c: c.name)


def shard(cases: Sequence[Case], num_parts: int = 1, part_id: int = 0) -> list[Case]:
    """Part ``part_id`` of ``num_parts``: cases ``part_id``, ``part_id + num_parts``, … (nnU-Net's rule)."""
    if num_parts < 1 or not 0 <= part_id < num_parts:
        raise InputError(f"--part-id {part_id} --num-parts {num_parts}: need 0 <= part-id < num-parts")
    return list(cases)[part_id::num_parts]


# --------------------------------------------------------------------------------------------- predictor
def make_predictor(model: Model, folds: Sequence[str] | None, checkpoint: str, device: str, progress: bool):
    """nnU-Net's predictor with ``nnUNetv2_predict``'s defaults, loaded once for the run."""
    from nnunet_spine.integration.predictor import load_predictor

    return load_predictor(model.folder, folds or model.default_folds(), checkpoint, device, progress)


def case_inputs(case: Case, n_channels: int, tmp: Path) -> list[Path]:
    """The case's images in channel order, each read and checked; channels not on the first channel's grid are
    resampled onto it in world coordinates (linear, 0 outside their view), as ``nnspine convert lesion`` does
    when it writes training images, and written to ``tmp``."""
    from nnunet_spine.core.geometry import resample_to_grid

    if len(case.images) != n_channels:
        raise InputError(f"{case.images[0]}: {len(case.images)} image(s), the model takes {n_channels}")
    ref = load_image(case.images[0], "image")  # a bad image fails here with its name, before the network runs
    paths = [case.images[0]]
    for k, p in enumerate(case.images[1:], start=1):
        img = load_image(p, "image")
        if same_grid(ref, img):
            paths.append(p)
            continue
        data = resample_to_grid(img.data, img.affine, ref.shape, ref.affine, order=1, cval=0)
        out = tmp / "inputs" / f"{case.name}_{k:04d}.nii.gz"
        out.parent.mkdir(parents=True, exist_ok=True)
        save_image(data.astype(np.float32), ref.affine, out, dtype=np.float32)
        paths.append(out)
    return paths


def predict_case(
    predictor, model: Model, case: Case, tmp: Path, probabilities: bool, box: tuple[slice, ...] | None = None
) -> Path:
    """nnU-Net's prediction of one case into ``tmp`` (``<case>.nii.gz``, with ``.npz``/``.pkl`` when asked).

    ``box`` (voxel slices of the first channel's grid): the network sees only that part of every channel (each
    written with its shifted affine, :func:`~nnunet_spine.core.geometry.crop_affine`) and its label map is
    put back on the whole grid, 0 outside the box. Not with ``probabilities``."""
    from nnunet_spine.core.geometry import crop_affine

    with step("inputs"):
        inputs = case_inputs(case, len(model.channels), tmp)
    if box is None:
        with step("predict"):
            predictor.predict_from_files_sequential(
                [[str(p) for p in inputs]], [str(tmp / case.name)], save_probabilities=probabilities, overwrite=True
            )
        return tmp / f"{case.name}.nii.gz"
    if probabilities:
        raise ValueError("predict_case: a cropped prediction has no whole-image probabilities")
    crop_dir = tmp / "cropped"
    crop_dir.mkdir(parents=True, exist_ok=True)
    cropped, ref = [], None
    for k, path in enumerate(inputs):
        img = load_image(path, "image")
        ref = img if ref is None else ref
        cropped.append(crop_dir / f"{case.name}_{k:04d}.nii.gz")
        save_image(img.data[box].astype(np.float32), crop_affine(img.affine, box), cropped[-1], dtype=np.float32)
    with step("predict"):
        predictor.predict_from_files_sequential(
            [[str(p) for p in cropped]], [str(crop_dir / case.name)], save_probabilities=False, overwrite=True
        )
    part = load_image(crop_dir / f"{case.name}.nii.gz", "labels")
    full = np.zeros(ref.shape, dtype=part.data.dtype)
    full[box] = part.data
    save_image(full, ref.affine, tmp / f"{case.name}.nii.gz", like=part)
    return tmp / f"{case.name}.nii.gz"
