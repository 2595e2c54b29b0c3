"""``nnspine segment {cord,lesion,spine}``: one command from image(s) to results with any nnU-Net v2 model.

For every case: nnU-Net's own predictor (``nnUNetPredictor``, loaded once for the whole run, the same settings as
``nnUNetv2_predict``: tile step 0.5, Gaussian weighting, test-time mirroring on the axes the checkpoint allows)
writes its usual outputs into a private temporary folder, and the product's own functions turn them into the
results — exactly what ``nnUNetv2_predict`` followed by ``nnspine softmask`` / ``csa`` / ``lesions`` / ``relabel``
/ ``instances`` would write (the e2e tests compare them voxel for voxel and row for row):

* ``cord``: the soft mask (models trained with a soft-segmentation trainer: ``--save_probabilities`` →
  foreground probability on the image's grid) or the binary mask (label 1) → CSA per slice (SCT's CSV), per level
  with ``--vertfiles`` / ``--discfiles`` (a folder of level files named ``<case><suffix>``) → the CSA profile QC;
* ``lesion``: the lesion mask (the ``lesion`` label or region of the model's ``dataset.json``; a region model's
  cord too) → the lesion table and QC of ``nnspine lesions`` (cord-relative columns with the predicted cord);
* ``spine``: the semantic model's prediction → SPINEPS label values (the model's label map) → cutouts → the
  instance model (``--instance-model``) → fusion and labelling → SPINEPS' outputs.

Inputs: one image, a folder of images, or a BIDS dataset (``sub-*/[ses-*/]anat``; ``--channels`` picks the
sequences, one per model channel, the first naming the case). Outputs go to ``-o`` as BIDS derivatives
(``sub-XX/anat/<case>_label-SC_softseg.nii.gz`` …; flat for non-BIDS inputs), plus ``segment_summary.csv`` and
``failures.csv`` (case, step, reason) per part, each rewritten atomically as every case ends (a killed run
leaves valid records of the cases it finished; a resume keeps the earlier rows and replaces those of the cases
it runs again). ``num_parts`` / ``part_id`` (nnU-Net's convention: part K takes cases K, K + N, K + 2N … of the
sorted list) shard a cohort with no coordination; ``skip_existing`` resumes: a case is finished when its last
record says ``ok`` and every output it lists exists, every other case runs again (its old outputs removed
first). A failing case is recorded with the step that failed, its partial outputs removed, and the others go on.
nnU-Net's own messages go to ``<out>/logs/nnunet[_part-K].log``.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nnunet_spine.core.io import InputError, check_output, load_image, same_grid, save_image, write_text
from nnunet_spine.apps.segment_records import SUMMARY_CSV, Records, remove_outputs
from nnunet_spine.postprocessing.spine.labelling import DEFAULT_LUMBAR

TASKS = ("cord", "lesion", "spine")
#: Result file names (suffixes after the case name), as the converters and SPINEPS name them.
CORD_SOFT_SUFFIX = "_label-SC_softseg"
CORD_SEG_SUFFIX = "_label-SC_seg"
LESION_SUFFIX = "_label-lesion_seg"
SEMANTIC_SUFFIX = "_seg-spine_msk"
#: Disc label files looked for when ``--disc-suffix`` is not given: SCT's name, then the one BIDS datasets (and
#: ``nnspine phantom``) write.
DISC_SUFFIXES = ("_label-SC_seg_labeled_discs", "_label-discs_dlabel")
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


# --------------------------------------------------------------------------------------------- tasks
@dataclass
class Options:
    """What the task steps need besides the model."""

    vertfiles: Path | None = None
    vert_suffix: str = "_label-SC_seg_labeled"
    discfiles: Path | None = None
    #: None: each of :data:`DISC_SUFFIXES`, the first found.
    disc_suffix: str | None = None
    min_volume_mm3: float = 0.0
    instance_model: Path | None = None
    instance_folds: Sequence[str] | None = None
    labelling: str = "auto"
    top_vertebra: str | None = None
    #: ``spine``: lumbar vertebrae above the sacrum anchor, and endplates merged (62) or split (52/53), as ``fuse``.
    lumbar: int = DEFAULT_LUMBAR
    endplates: str = "merged"
    #: ``spine``: a landmark model (``nnspine convert landmarks``) whose prediction anchors the vertebra ids.
    landmark_model: Path | None = None
    device: str = "cpu"
    qc: bool = True
    #: ``lesion``: predict only around the cord: a folder of cord masks ``<case><cord_suffix>``, one mask file
    #: (one-image input) or a cord model's results folder; the box is the mask's grown by ``crop_margin_mm``.
    crop_to_cord: Path | None = None
    cord_suffix: str = CORD_SEG_SUFFIX
    crop_margin_mm: float = 10.0
    #: Set by :func:`segment` from ``crop_to_cord`` (masks or a loaded cord model).
    cord_source: CordSource | None = field(default=None, repr=False)
    #: Set by :func:`segment` from ``landmark_model``: (model, predictor).
    landmarks: tuple | None = field(default=None, repr=False)
    #: Set by :func:`segment` from ``instance_model``: the loaded cutout model (``apps.instances``).
    instances: object | None = field(default=None, repr=False)
    #: Cases left out / the only cases run (:class:`~nnunet_spine.core.qc_yml.CaseList`: ``--exclude-yml`` /
    #: ``--include-yml``), and the QC report folder the finished cases are added to (``--qc-report``).
    exclude: object | None = None
    include: object | None = None
    qc_report: Path | None = None


class CordSource:
    """Where a case's cord mask comes from for ``--crop-to-cord``: a mask file, a folder of masks named
    ``<case><suffix>``, or a cord model (nnU-Net results folder; loaded once, run on the case's first
    channel(s) as ``segment cord`` runs it)."""

    def __init__(self, source: Path, suffix: str, folds: Sequence[str] | None, checkpoint: str, device: str):
        self.source, self.suffix = Path(source), suffix
        self.model = self.predictor = None
        if self.source.is_dir() and (self.source / "dataset.json").is_file():
            self.model = read_model(self.source, None, checkpoint)
            check_model_for(self.model, "cord")
            self.predictor = make_predictor(self.model, None, checkpoint, device, progress=False)

    @property
    def predicted(self) -> bool:
        """The mask comes from a cord model (and is written as a result)."""
        return self.model is not None

    def mask(self, case: Case, ref, tmp: Path):
        """The case's binary cord mask on ``ref``'s grid (nearest-neighbour resampling when another grid)."""
        from nnunet_spine.core.geometry import resample_to_grid

        if self.model is not None:
            n = len(self.model.channels)
            sub = Case(case.name, case.images[:n], case.rel_dir)
            (tmp / "cord").mkdir(parents=True, exist_ok=True)
            seg = load_image(predict_case(self.predictor, self.model, sub, tmp / "cord", self.model.soft), "labels")
            if self.model.soft:  # the soft mask's foreground probability, binarised at 0.5
                from nnunet_spine.postprocessing.cord.softmask import convert_case

                convert_case(tmp / "cord", case.name, tmp / "cord_soft", overwrite=True)
                data = load_image(tmp / "cord_soft" / f"{case.name}.nii.gz", "soft").data >= 0.5
            else:
                data = seg.data == 1
            img_data, affine = data, seg.affine
        else:
            path = _level_file(self.source, case.name, self.suffix, "cord mask")
            img = load_image(path, "labels")
            img_data, affine = img.data != 0, img.affine
        if img_data.shape != ref.shape or not np.allclose(affine, ref.affine, atol=1e-3):
            img_data = resample_to_grid(img_data.astype(np.float32), affine, ref.shape, ref.affine, order=0) > 0.5
        return img_data


def _level_file(folder: Path | None, case: str, suffix: str, what: str = "level file") -> Path | None:
    """``<case><suffix>.nii[.gz]`` anywhere under ``folder``; ``folder`` itself when it is a file (one-image runs)."""
    if folder is None:
        return None
    if Path(folder).is_file():
        return Path(folder)
    from nnunet_spine.core.bids import find_by_stem

    hit = find_by_stem(folder, f"{case}{suffix}")
    if hit is None:
        raise InputError(f"{folder}: no {what} {case}{suffix}.nii.gz for case {case}")
    return hit


def disc_file(folder: Path | None, case: str, suffix: str | None) -> Path | None:
    """The case's disc label file: ``<case><suffix>``, or with no ``suffix`` the first of :data:`DISC_SUFFIXES`
    found; :class:`InputError` naming every name looked for when none is there."""
    if folder is None or suffix is not None or Path(folder).is_file():
        return _level_file(folder, case, suffix or DISC_SUFFIXES[0], "disc label file")
    from nnunet_spine.core.bids import find_by_stem

    for s in DISC_SUFFIXES:
        hit = find_by_stem(folder, f"{case}{s}")
        if hit is not None:
            return hit
    names = " or ".join(f"{case}{s}.nii.gz" for s in DISC_SUFFIXES)
    raise InputError(f"{folder}: no disc label file {names} for case {case} (--disc-suffix)")


def disc_suffixes_found(folder: Path, cases: Sequence[Case]) -> list[str]:
    """Which of :data:`DISC_SUFFIXES` the cases' disc files use in ``folder`` (to say which was found)."""
    from nnunet_spine.core.bids import find_by_stem

    found = []
    for s in DISC_SUFFIXES:
        if any(find_by_stem(folder, f"{c.name}{s}") is not None for c in cases):
            found.append(s)
    return found


def outputs_of(task: str, case: Case, out: Path, model: Model) -> list[Path]:
    """The result files of one case (the first is its main result)."""
    d = out / case.rel_dir
    if task == "cord":
        mask = d / f"{case.name}{CORD_SOFT_SUFFIX if model.soft else CORD_SEG_SUFFIX}.nii.gz"
        return [mask, d / f"{case.name}_csa_perslice.csv", d / f"{case.name}_csa.png"]
    if task == "lesion":
        stem = d / case.name
        return [Path(f"{stem}{LESION_SUFFIX}.nii.gz"), Path(f"{stem}_lesions.csv"), Path(f"{stem}_lesions.png")]
    from nnunet_spine.postprocessing.spine.fusion_files import output_names

    return [d / name for name in output_names(f"{case.name}{SEMANTIC_SUFFIX}.nii.gz").values()]


def run_cord(predictor, model: Model, case: Case, tmp: Path, out: Path, opts: Options) -> list[Path]:
    """Soft or binary cord mask, CSA per slice (SCT CSV) and the CSA profile QC of one case."""
    from nnunet_spine.postprocessing.cord import csa, csa_table
    from nnunet_spine.postprocessing.cord.softmask import convert_case

    mask, table, plot = outputs_of("cord", case, out, model)
    seg = predict_case(predictor, model, case, tmp, probabilities=model.soft)
    with step("mask"):
        mask.parent.mkdir(parents=True, exist_ok=True)
        if model.soft:
            convert_case(tmp, case.name, mask.parent, ending=f"{CORD_SOFT_SUFFIX}.nii.gz", overwrite=True)
        else:
            img = load_image(seg, "labels")
            save_image((img.data == 1).astype(np.uint8), img.affine, mask, overwrite=True, like=img)
    with step("levels"):
        vertfile = _level_file(opts.vertfiles, case.name, opts.vert_suffix)
        discfile = disc_file(opts.discfiles, case.name, opts.disc_suffix)
    with step("csa"):
        columns = csa.measure_file_columns(mask, vertfile=vertfile, discfile=discfile)
        rows = csa_table.summary_rows(columns, per="slice", filename=str(mask), timestamp=csa_table.now_timestamp())
        write_text(table, csa_table.csv_text(rows), overwrite=True)
    written = [mask, table]
    if opts.qc:
        import pandas as pd

        from nnunet_spine.postprocessing.qc import plot_csa_profile

        with step("qc"):
            plot_csa_profile(pd.DataFrame(columns).assign(Filename=str(mask)), plot, overwrite=True, title=case.name)
        written.append(plot)
    return written


def run_lesion(predictor, model: Model, case: Case, tmp: Path, out: Path, opts: Options) -> list[Path]:
    """Lesion mask (labelled 1..N), the lesion table and its QC; a region model's cord mask beside them."""
    from nnunet_spine.core.geometry import mask_box
    from nnunet_spine.postprocessing.lesion.lesions import LesionJob, run_lesions

    lesions, table, qc = outputs_of("lesion", case, out, model)
    box, crop_cord = None, None
    if opts.cord_source is not None:
        with step("crop-to-cord"):
            ref = load_image(case.images[0], "image")
            crop_cord = opts.cord_source.mask(case, ref, tmp)
            box = mask_box(crop_cord, ref.affine, opts.crop_margin_mm)
            if box is None:
                raise InputError(f"{case.name}: the cord mask for --crop-to-cord is empty (nothing to crop to)")
    seg_path = predict_case(predictor, model, case, tmp, probabilities=False, box=box)
    with step("lesions"):
        seg = load_image(seg_path, "labels")
        value = model.label_value(model.lesion_label())
        cord_value = model.label_value("cord")
        binary = tmp / f"{case.name}_lesion.nii.gz"
        save_image((seg.data == value).astype(np.uint8), seg.affine, binary, like=seg)
        cord = None
        if cord_value is not None:  # a region model: the cord region is every label of it
            region = model.labels["cord"]
            values = region if isinstance(region, list) else [region]
            cord = lesions.parent / f"{case.name}{CORD_SEG_SUFFIX}.nii.gz"
            cord.parent.mkdir(parents=True, exist_ok=True)
            save_image(np.isin(seg.data, values).astype(np.uint8), seg.affine, cord, overwrite=True, like=seg)
        elif crop_cord is not None:  # the cord the crop used: a result when predicted, else the user's on this grid
            name = f"{case.name}{CORD_SEG_SUFFIX}.nii.gz"
            cord = lesions.parent / name if opts.cord_source.predicted else tmp / name
            cord.parent.mkdir(parents=True, exist_ok=True)
            save_image(crop_cord.astype(np.uint8), seg.affine, cord, overwrite=True, like=seg)
        job = LesionJob(case.name, binary, lesions, cord=cord, image=case.images[0], qc=qc if opts.qc else None)
        run_lesions([job], table, min_volume_mm3=opts.min_volume_mm3, overwrite=True)
    return [p for p in (lesions, table, qc if opts.qc else None, cord) if p is not None and p.parent != tmp]


class Written(list):
    """A case's written paths (a list), with the summary fields a task adds (:data:`~nnunet_spine.apps.segment_records.SUMMARY_COLUMNS` after
    ``outputs``) and lines worth a warning."""

    def __init__(self, paths, fields: dict[str, str] | None = None, warnings: Sequence[str] = ()):
        super().__init__(paths)
        self.fields = dict(fields or {})
        self.warnings = list(warnings)


def run_spine(predictor, model: Model, case: Case, tmp: Path, out: Path, opts: Options) -> Written:
    """Semantic mask in SPINEPS values → cutouts → the instance model (loaded once for the run, in
    ``opts.instances``) → fusion and labelling → SPINEPS outputs."""
    from nnunet_spine.apps.instances import predict_instances
    from nnunet_spine.core.dataset_json import read_label_map
    from nnunet_spine.postprocessing.spine.relabel import relabel_array

    if opts.instances is None:
        raise ValueError("run_spine: the instance model is not loaded (segment loads it)")
    seg_path = predict_case(predictor, model, case, tmp, probabilities=False)
    with step("relabel"):
        seg = load_image(seg_path, "labels")
        values = read_label_map(model.dataset, "spineps", model.folder / "dataset.json")
        semantic = tmp / "semantic" / f"{case.name}{SEMANTIC_SUFFIX}.nii.gz"
        semantic.parent.mkdir(parents=True, exist_ok=True)
        save_image(relabel_array(seg.data, values).astype(np.uint8), seg.affine, semantic, like=seg)
    landmarks = None
    if opts.landmarks is not None:  # the landmark model on the same image(s)
        lm_model, lm_predictor = opts.landmarks
        sub = Case(case.name, case.images[: len(lm_model.channels)], case.rel_dir)
        (tmp / "landmarks").mkdir(parents=True, exist_ok=True)
        with step("landmarks"):
            landmarks = predict_case(lm_predictor, lm_model, sub, tmp / "landmarks", probabilities=False)
    report = predict_instances(
        semantic,
        opts.instances,
        out / case.rel_dir,
        top_vertebra=opts.top_vertebra,
        labelling=opts.labelling,
        lumbar=opts.lumbar,
        endplates=opts.endplates,
        landmarks=landmarks,
        image=case.images[0],
        qc=opts.qc,
        overwrite=True,
        work_dir=tmp / "instances",
        step=step,
        discfile=disc_file(opts.discfiles, case.name, opts.disc_suffix) if opts.discfiles is not None else None,
    )
    paths = [p for _, _, paths in report.cases for p in paths.values()]
    fields = report.summary_rows()[0] if report.cases else {}
    warnings = [f"labelling not verified: {fields['reason']}"] if fields.get("verified") == "false" else []
    warnings += [line.split(": ", 1)[1] for line in report.warnings()]  # without the case: segment names it
    return Written(paths, {k: v for k, v in fields.items() if k != "case"}, warnings)


RUNNERS: dict[str, Callable] = {"cord": run_cord, "lesion": run_lesion, "spine": run_spine}


# --------------------------------------------------------------------------------------------- the run
@dataclass
class SegmentReport:
    """What a run did: per case ``(case, status, seconds, outputs)``, failures ``(case, step, reason)``, the cases
    skipped as finished, and where the records and nnU-Net's log are."""

    done: list[tuple[str, str, float, list[Path]]] = field(default_factory=list)
    failures: list[tuple[str, str, str]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    #: cases left out by ``options.exclude`` / ``options.include`` (their images' input-relative paths)
    excluded: list[str] = field(default_factory=list)
    summary: Path | None = None
    failures_csv: Path | None = None
    log: Path | None = None


def possible_outputs(task: str, case: Case, out: Path, model: Model, opts: Options) -> list[Path]:
    """Every file a run of this case may write (what is removed before it runs again, or when it fails)."""
    paths = list(outputs_of(task, case, out, model))
    if task == "lesion" and (model.label_value("cord") is not None or opts.crop_to_cord is not None):
        paths.append(out / case.rel_dir / f"{case.name}{CORD_SEG_SUFFIX}.nii.gz")
    return paths


@contextlib.contextmanager
def nnunet_output_to(log: Path | None) -> Iterator[None]:
    """nnU-Net's own prints (stdout and stderr) appended to ``log`` while the block runs; as they are when None."""
    if log is None:
        yield
        return
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
        yield


def check_options(task: str, opts: Options, model: Model, checkpoint: str) -> None:
    """Options that belong to another task, a bad margin, a missing instance model or landmark model that is not
    one: :class:`InputError` before anything runs."""
    from nnunet_spine.integration.predictor import check_device

    if opts.crop_margin_mm < 0:
        raise InputError(f"--crop-margin-mm {opts.crop_margin_mm}: must be >= 0")
    check_device(opts.device)
    if opts.crop_to_cord is not None and task != "lesion":
        raise InputError(f"--crop-to-cord is an option of 'nnspine segment lesion', not of 'nnspine segment {task}'")
    if opts.landmark_model is not None and task != "spine":
        raise InputError(f"--landmark-model is an option of 'nnspine segment spine', not of 'nnspine segment {task}'")
    crop = Path(opts.crop_to_cord) if opts.crop_to_cord is not None else None
    if crop is not None and crop.is_dir() and (crop / "dataset.json").is_file():  # a cord model: checked now
        check_model_for(read_model(crop, None, checkpoint), "cord")
    if task == "spine":
        from nnunet_spine.apps.instances import check_instance_model

        if opts.instance_model is None:
            raise InputError("segment spine needs --instance-model (a model trained on 'nnspine convert cutouts')")
        check_instance_model(opts.instance_model, opts.instance_folds)
        if opts.landmark_model is not None:
            check_model_for(read_model(opts.landmark_model, None, checkpoint), "landmarks")


def load_helpers(task: str, opts: Options, checkpoint: str) -> None:
    """The run's other models, each loaded once: the cord model of ``--crop-to-cord``, the landmark model and the
    instance model of ``segment spine``."""
    if opts.crop_to_cord is not None:
        opts.cord_source = CordSource(opts.crop_to_cord, opts.cord_suffix, None, checkpoint, opts.device)
    if opts.landmark_model is not None:
        lm = read_model(opts.landmark_model, None, checkpoint)
        check_model_for(lm, "landmarks")
        opts.landmarks = (lm, make_predictor(lm, None, checkpoint, opts.device, progress=False))
    if task == "spine":
        from nnunet_spine.apps.instances import load_instance_model

        opts.instances = load_instance_model(opts.instance_model, opts.instance_folds, device=opts.device)


def segment(
    task: str,
    source: str | Path,
    out: str | Path,
    model_folder: str | Path,
    *,
    folds: Sequence[str] | None = None,
    checkpoint: str = "checkpoint_final.pth",
    channels: Sequence[str] | None = None,
    num_parts: int = 1,
    part_id: int = 0,
    skip_existing: bool = False,
    overwrite: bool = False,
    options: Options | None = None,
    progress: bool = False,
    say: Callable[[str], None] = lambda _: None,
    on_failure: Callable[[str, str, str], None] = lambda *_: None,
    nnunet_log: bool = True,
) -> SegmentReport:
    """Segment every case of this part (module docstring). Model, inputs and output folder are checked before
    the network loads; then each case runs on its own: a failure (bad image, a step's refusal) is recorded with
    its step, reported to ``on_failure(case, step, reason)`` as it happens, and the run goes on. Existing results
    stop the run before any work unless ``skip_existing`` (finished cases are skipped) or ``overwrite``.
    ``say`` gets progress lines; nnU-Net's own prints go to ``<out>/logs/`` (``nnunet_log``). A run interrupted
    (KeyboardInterrupt, SystemExit: the CLI turns SIGTERM into one) records the case it was in as
    ``interrupted``, removes its temporary folder and re-raises."""
    from tqdm.auto import tqdm

    if task not in TASKS:
        raise InputError(f"unknown task {task!r} (choose from {', '.join(TASKS)})")
    opts = options or Options()
    model = read_model(model_folder, folds, checkpoint)
    check_model_for(model, task)
    check_options(task, opts, model, checkpoint)
    every = find_cases(source, len(model.channels), channels, say=say)
    every, excluded = select_cases(every, source, opts)
    cases = shard(every, num_parts, part_id)
    if not cases:
        raise InputError(
            f"{source}: part {part_id} of {num_parts} has no case ({len(every)} case(s) in all; "
            f"--part-id goes from 0 to {min(num_parts, len(every)) - 1} here)"
        )
    for option, given in (
        ("--vertfiles", opts.vertfiles),
        ("--discfiles", opts.discfiles),
        ("--crop-to-cord", opts.crop_to_cord),
    ):
        if given is not None and Path(given).is_file() and len(cases) > 1:
            raise InputError(f"{option} {given}: one file for {len(cases)} cases (give a folder of <case> files)")
        if given is not None and not Path(given).exists():
            raise InputError(f"{option} {given}: not found")
    if opts.discfiles is not None and opts.disc_suffix is None and Path(opts.discfiles).is_dir():
        found = disc_suffixes_found(Path(opts.discfiles), cases)
        say(
            f"--discfiles: {' and '.join(f'<case>{s}' for s in found)} found"
            if found
            else f"--discfiles: no {' or '.join(f'<case>{s}' for s in DISC_SUFFIXES)} found (--disc-suffix?)"
        )
    out = Path(out)
    part = f"_part-{part_id}" if num_parts > 1 else ""
    summary, failures_csv = out / SUMMARY_CSV.replace(".csv", f"{part}.csv"), out / f"failures{part}.csv"
    if not (skip_existing or overwrite):  # existing results are refused (one line naming the file)
        for c in cases:
            for p in possible_outputs(task, c, out, model, opts):
                check_output(p, overwrite)
        check_output(summary, overwrite)
        check_output(failures_csv, overwrite)
    records = Records(summary, failures_csv, keep_earlier=skip_existing or overwrite)
    todo = [
        c for c in cases if not (skip_existing and records.finished(c.name, out, outputs_of(task, c, out, model)[0]))
    ]
    report = SegmentReport(summary=summary, failures_csv=failures_csv, excluded=excluded)
    report.skipped = [c.name for c in cases if c not in todo]
    if report.skipped:
        say(f"{len(report.skipped)} case(s) already segmented: skipped (--skip-existing)")
    out.mkdir(parents=True, exist_ok=True)
    records.write()
    report.log = out / "logs" / f"nnunet{part}.log" if nnunet_log and todo else None
    inputs = [opts.vertfiles, opts.discfiles, opts.crop_to_cord]
    bar = tqdm(todo, desc=f"segment {task}", unit="case", disable=not progress)  # on the user's stderr
    runner = RUNNERS[task]
    with nnunet_output_to(report.log):
        predictor = None
        if todo:
            load_helpers(task, opts, checkpoint)
            predictor = make_predictor(model, folds, checkpoint, opts.device, progress=False)
        for case in bar:
            keep = [*case.images, *inputs]
            remove_outputs([*possible_outputs(task, case, out, model, opts), *records.outputs(case.name, out)], keep)
            t0 = time.perf_counter()
            tmp = Path(tempfile.mkdtemp(prefix="nnspine-segment-"))
            try:
                written = runner(predictor, model, case, tmp, out, opts)
                seconds = round(time.perf_counter() - t0, 2)
                report.done.append((case.name, "ok", seconds, written))
                fields = getattr(written, "fields", None)
                records.record(case.name, "ok", seconds, [str(p.relative_to(out)) for p in written], None, fields)
                for line in getattr(written, "warnings", []):
                    say(f"warning: {case.name}: {line}")
            except Exception as exc:  # noqa: BLE001 - one case's failure must not lose the others; recorded
                where = exc.step if isinstance(exc, StepFailed) else "case"
                failure = (case.name, where, failure_reason(exc))
                remove_outputs(possible_outputs(task, case, out, model, opts), keep)
                seconds = round(time.perf_counter() - t0, 2)
                report.failures.append(failure)
                report.done.append((case.name, "failed", seconds, []))
                records.record(case.name, "failed", seconds, [], failure)
                on_failure(*failure)
            except BaseException as exc:  # interrupted: recorded, then on its way
                seconds = round(time.perf_counter() - t0, 2)
                why = "SIGTERM" if isinstance(exc, SystemExit) else type(exc).__name__
                remove_outputs(possible_outputs(task, case, out, model, opts), keep)
                records.record(case.name, "interrupted", seconds, [], (case.name, "case", f"interrupted ({why})"))
                raise
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    if opts.qc_report is not None:
        from nnunet_spine.apps.qc_report import report_segment

        report_segment(opts.qc_report, task, report, todo, source, out, model)
    return report


def select_cases(cases: Sequence[Case], source: str | Path, opts: Options) -> tuple[list[Case], list[str]]:
    """The cases ``opts.exclude`` / ``opts.include`` keep, and the input-relative image paths of those left out
    (matched by the first channel's image); every case left out raises :class:`InputError`."""
    if opts.exclude is None and opts.include is None:
        return list(cases), []
    from nnunet_spine.apps.qc_report import image_file
    from nnunet_spine.core.qc_yml import filter_cases

    kept, left = filter_cases(
        cases, exclude=opts.exclude, include=opts.include, path_of=lambda c: image_file(c.images[0], source)
    )
    if not kept:
        lists = " and ".join(str(c.path) for c in (opts.exclude, opts.include) if c is not None)
        raise InputError(f"{source}: every case is left out by {lists} ({len(left)} skipped)")
    return kept, [image_file(c.images[0], source) for c in left]
