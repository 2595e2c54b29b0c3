"""``nnspine segment {cord,lesion,spine}``: one command from image(s) to results with any nnU-Net v2 model.

For every case: nnU-Net's own predictor (``nnUNetPredictor``, loaded once for the whole run, the same settings as
``nnUNetv2_predict``: tile step 0.5, Gaussian weighting, test-time mirroring on the axes the checkpoint allows)
writes its usual outputs into a private temporary folder, and the product's own functions turn them into the
results — exactly what ``nnUNetv2_predict`` followed by ``nnspine softmask`` / ``csa`` / ``lesions`` / ``relabel``
/ ``instances`` would write (the e2e tests compare them voxel for voxel and row for row):

* ``cord``: the soft mask (models trained with a soft-segmentation trainer: ``--save_probabilities`` →
  foreground probability on the image's grid) or the binary mask (label 1) → CSA per slice (SCT's CSV), per level
  with ``--vertfile`` / ``--discfile`` (a folder of level files named ``<case><suffix>``) → the CSA profile QC;
* ``lesion``: the lesion mask (the ``lesion`` label or region of the model's ``dataset.json``; a region model's
  cord too) → the lesion table and QC of ``nnspine lesions`` (cord-relative columns with the predicted cord);
* ``spine``: the semantic model's prediction → SPINEPS label values (the model's label map) → cutouts → the
  instance model (``--instance-model``) → fusion and labelling → SPINEPS' outputs.

Inputs: one image, a folder of images, or a BIDS dataset (``sub-*/[ses-*/]anat``; ``--channels`` picks the
sequences, one per model channel, the first naming the case). Outputs go to ``-o`` as BIDS derivatives
(``sub-XX/anat/<case>_label-SC_softseg.nii.gz`` …; flat for non-BIDS inputs), plus ``segment_summary.csv`` and
``failures.csv`` (case, step, reason) per run or part. ``num_parts`` / ``part_id`` (nnU-Net's convention: part
K takes cases K, K + N, K + 2N … of the sorted list) shard a cohort with no coordination; ``skip_existing``
resumes; a failing case is recorded and the others go on.
"""

from __future__ import annotations

import csv
import io
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nnunet_extensions.core.io import InputError, check_output, load_image, same_grid, save_image, write_text

TASKS = ("cord", "lesion", "spine")
#: Result file names (suffixes after the case name), as the converters and SPINEPS name them.
CORD_SOFT_SUFFIX = "_label-SC_softseg"
CORD_SEG_SUFFIX = "_label-SC_seg"
LESION_SUFFIX = "_label-lesion_seg"
SEMANTIC_SUFFIX = "_seg-spine_msk"
SUMMARY_CSV = "segment_summary.csv"
FAILURES_CSV = "failures.csv"
FAILURE_COLUMNS = ["case", "step", "reason"]
SUMMARY_COLUMNS = ["case", "status", "seconds", "outputs"]


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

    def label_value(self, name: str) -> int | None:
        """Value written for label or region ``name`` (a region's value is the last of its labels)."""
        v = self.labels.get(name)
        if v is None:
            return None
        return int(v[-1]) if isinstance(v, list) else int(v)


def read_model(folder: str | Path, folds: Sequence[str] | None, checkpoint: str) -> Model:
    """Check an nnU-Net results folder and its checkpoints; :class:`InputError` naming what is missing."""
    from nnunet_extensions.integration.predictor import read_model_folder

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
    if task == "lesion" and "lesion" not in names and len(names) != 1:
        raise InputError(
            f"{model.folder}: a lesion model has a 'lesion' label or region (or one foreground label); "
            f"this one has {sorted(names)}"
        )
    if task == "landmarks":
        from nnunet_extensions.core.labels import LANDMARK_NAMES

        expected = {"background": 0, **{name: k for k, name in LANDMARK_NAMES.items()}}
        if {k: v for k, v in model.labels.items()} != expected:
            raise InputError(
                f"{model.folder}: not a landmark model (labels {model.labels}; expected {expected}, "
                "as 'nnspine convert landmarks' writes them)"
            )
    if task == "spine":
        from nnunet_extensions.core.dataset_json import LABEL_MAP_KEY

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


def find_cases(source: str | Path, n_channels: int, channels: Sequence[str] | None = None) -> list[Case]:
    """Cases of an image, a folder of images or a BIDS dataset (module docstring), sorted by name."""
    from nnunet_extensions.core import bids

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
    cases = []
    for unit in bids.find_units(src):
        images, _ = bids.list_images(unit)
        if channels is None:
            if n_channels != 1:
                raise InputError(f"{src}: the model takes {n_channels} channels; say which with --channels")
            cases += [Case(im.stem, [im.path], unit.rel_dir) for im in images]
            continue
        picked = [bids.select_images(images, spec) for spec in channels]
        if all(len(p) == 1 for p in picked):
            cases.append(Case(picked[0][0].stem, [p[0].path for p in picked], unit.rel_dir))
    if not cases:
        raise InputError(f"{src}: no case with {'the sequences ' + ','.join(channels) if channels else 'images'}")
    return sorted(cases, key=lambda c: c.name)


def shard(cases: Sequence[Case], num_parts: int = 1, part_id: int = 0) -> list[Case]:
    """Part ``part_id`` of ``num_parts``: cases ``part_id``, ``part_id + num_parts``, … (nnU-Net's rule)."""
    if num_parts < 1 or not 0 <= part_id < num_parts:
        raise InputError(f"--part-id {part_id} --num-parts {num_parts}: need 0 <= part-id < num-parts")
    return list(cases)[part_id::num_parts]


# --------------------------------------------------------------------------------------------- predictor
def make_predictor(model: Model, folds: Sequence[str] | None, checkpoint: str, device: str, progress: bool):
    """nnU-Net's predictor with ``nnUNetv2_predict``'s defaults, loaded once for the run."""
    from nnunet_extensions.integration.predictor import load_predictor

    return load_predictor(model.folder, folds or model.default_folds(), checkpoint, device, progress)


def case_inputs(case: Case, n_channels: int, tmp: Path) -> list[Path]:
    """The case's images in channel order, each read and checked; channels not on the first channel's grid are
    resampled onto it in world coordinates (linear, 0 outside their view), as ``nnspine convert lesion`` does
    when it writes training images, and written to ``tmp``."""
    from nnunet_extensions.core.geometry import resample_to_grid

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
    written with its shifted affine, :func:`~nnunet_extensions.core.geometry.crop_affine`) and its label map is
    put back on the whole grid, 0 outside the box. Not with ``probabilities``."""
    from nnunet_extensions.core.geometry import crop_affine

    inputs = case_inputs(case, len(model.channels), tmp)
    if box is None:
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
    disc_suffix: str = "_label-SC_seg_labeled_discs"
    min_volume_mm3: float = 0.0
    instance_model: Path | None = None
    instance_folds: Sequence[str] | None = None
    labelling: str = "auto"
    top_vertebra: str | None = None
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
        from nnunet_extensions.core.geometry import resample_to_grid

        if self.model is not None:
            n = len(self.model.channels)
            sub = Case(case.name, case.images[:n], case.rel_dir)
            (tmp / "cord").mkdir(parents=True, exist_ok=True)
            seg = load_image(predict_case(self.predictor, self.model, sub, tmp / "cord", self.model.soft), "labels")
            if self.model.soft:  # the soft mask's foreground probability, binarised at 0.5
                from postprocessing.cord.softmask import convert_case

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
    from nnunet_extensions.core.bids import find_by_stem

    hit = find_by_stem(folder, f"{case}{suffix}")
    if hit is None:
        raise InputError(f"{folder}: no {what} {case}{suffix}.nii.gz for case {case}")
    return hit


def outputs_of(task: str, case: Case, out: Path, model: Model) -> list[Path]:
    """The result files of one case (the first is the one ``--skip-existing`` looks for)."""
    d = out / case.rel_dir
    if task == "cord":
        mask = d / f"{case.name}{CORD_SOFT_SUFFIX if model.soft else CORD_SEG_SUFFIX}.nii.gz"
        return [mask, d / f"{case.name}_csa_perslice.csv", d / f"{case.name}_csa.png"]
    if task == "lesion":
        stem = d / case.name
        return [Path(f"{stem}{LESION_SUFFIX}.nii.gz"), Path(f"{stem}_lesions.csv"), Path(f"{stem}_lesions.png")]
    from postprocessing.spine.fusion_files import output_names

    return [d / name for name in output_names(f"{case.name}{SEMANTIC_SUFFIX}.nii.gz").values()]


def run_cord(predictor, model: Model, case: Case, tmp: Path, out: Path, opts: Options) -> list[Path]:
    """Soft or binary cord mask, CSA per slice (SCT CSV) and the CSA profile QC of one case."""
    from postprocessing.cord import csa, csa_table
    from postprocessing.cord.softmask import convert_case

    mask, table, plot = outputs_of("cord", case, out, model)
    seg = predict_case(predictor, model, case, tmp, probabilities=model.soft)
    mask.parent.mkdir(parents=True, exist_ok=True)
    if model.soft:
        convert_case(tmp, case.name, mask.parent, ending=f"{CORD_SOFT_SUFFIX}.nii.gz", overwrite=True)
    else:
        img = load_image(seg, "labels")
        save_image((img.data == 1).astype(np.uint8), img.affine, mask, overwrite=True, like=img)
    vertfile = _level_file(opts.vertfiles, case.name, opts.vert_suffix)
    discfile = _level_file(opts.discfiles, case.name, opts.disc_suffix)
    columns = csa.measure_file_columns(mask, vertfile=vertfile, discfile=discfile)
    rows = csa_table.summary_rows(columns, per="slice", filename=str(mask), timestamp=csa_table.now_timestamp())
    write_text(table, csa_table.csv_text(rows), overwrite=True)
    written = [mask, table]
    if opts.qc:
        import pandas as pd

        from postprocessing.qc import plot_csa_profile

        plot_csa_profile(pd.DataFrame(columns).assign(Filename=str(mask)), plot, overwrite=True, title=case.name)
        written.append(plot)
    return written


def run_lesion(predictor, model: Model, case: Case, tmp: Path, out: Path, opts: Options) -> list[Path]:
    """Lesion mask (labelled 1..N), the lesion table and its QC; a region model's cord mask beside them."""
    from nnunet_extensions.core.geometry import mask_box
    from postprocessing.lesion.lesions import LesionJob, run_lesions

    lesions, table, qc = outputs_of("lesion", case, out, model)
    box, crop_cord = None, None
    if opts.cord_source is not None:
        ref = load_image(case.images[0], "image")
        crop_cord = opts.cord_source.mask(case, ref, tmp)
        box = mask_box(crop_cord, ref.affine, opts.crop_margin_mm)
        if box is None:
            raise InputError(f"{case.name}: the cord mask for --crop-to-cord is empty (nothing to crop to)")
    seg_path = predict_case(predictor, model, case, tmp, probabilities=False, box=box)
    seg = load_image(seg_path, "labels")
    value = model.label_value("lesion")
    if value is None:  # one foreground label
        value = next(model.label_value(k) for k in model.labels if k != "background")
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


def run_spine(predictor, model: Model, case: Case, tmp: Path, out: Path, opts: Options) -> list[Path]:
    """Semantic mask in SPINEPS values → cutouts → instance model → fusion and labelling → SPINEPS outputs."""
    from nnunet_extensions.core.dataset_json import read_label_map
    from postprocessing.spine.fusion_files import predict_instances
    from postprocessing.spine.relabel import relabel_array

    if opts.instance_model is None:
        raise InputError("segment spine needs --instance-model (a model trained on 'nnspine convert cutouts')")
    seg_path = predict_case(predictor, model, case, tmp, probabilities=False)
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
        landmarks = predict_case(lm_predictor, lm_model, sub, tmp / "landmarks", probabilities=False)
    folder = out / case.rel_dir
    report = predict_instances(
        semantic,
        opts.instance_model,
        folder,
        folds=opts.instance_folds,
        device=opts.device,
        top_vertebra=opts.top_vertebra,
        labelling=opts.labelling,
        landmarks=landmarks,
        image=case.images[0],
        qc=opts.qc,
        overwrite=True,
    )
    return [p for _, _, paths in report.cases for p in paths.values()]


RUNNERS: dict[str, Callable] = {"cord": run_cord, "lesion": run_lesion, "spine": run_spine}


# --------------------------------------------------------------------------------------------- the run
@dataclass
class SegmentReport:
    """What a run did: per case ``(case, status, seconds, outputs)``, failures ``(case, step, reason)``."""

    done: list[tuple[str, str, float, list[Path]]] = field(default_factory=list)
    failures: list[tuple[str, str, str]] = field(default_factory=list)
    summary: Path | None = None
    failures_csv: Path | None = None


def _csv(rows: Sequence[Sequence], columns: Sequence[str]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    w.writerows(rows)
    return buf.getvalue()


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
) -> SegmentReport:
    """Segment every case of this part (module docstring). Model, inputs and output folder are checked before
    the network loads; then each case runs on its own: a failure (bad image, a step's refusal) is recorded with
    its step and the run goes on. Existing results stop the run before any work unless ``skip_existing``
    (those cases are skipped) or ``overwrite``."""
    from tqdm.auto import tqdm

    if task not in TASKS:
        raise InputError(f"unknown task {task!r} (choose from {', '.join(TASKS)})")
    opts = options or Options()
    if opts.crop_margin_mm < 0:
        raise InputError(f"--crop-margin-mm {opts.crop_margin_mm}: must be >= 0")
    model = read_model(model_folder, folds, checkpoint)
    check_model_for(model, task)
    if opts.crop_to_cord is not None and task != "lesion":
        raise InputError(f"--crop-to-cord is for 'segment lesion', not 'segment {task}'")
    if opts.landmark_model is not None:
        if task != "spine":
            raise InputError(f"--landmark-model is for 'segment spine', not 'segment {task}'")
        check_model_for(read_model(opts.landmark_model, None, checkpoint), "landmarks")
    cases = shard(find_cases(source, len(model.channels), channels), num_parts, part_id)
    for option, given in (
        ("--vertfiles", opts.vertfiles),
        ("--discfiles", opts.discfiles),
        ("--crop-to-cord", opts.crop_to_cord),
    ):
        if given is not None and Path(given).is_file() and len(cases) > 1:
            raise InputError(f"{option} {given}: one file for {len(cases)} cases (give a folder of <case> files)")
        if given is not None and not Path(given).exists():
            raise InputError(f"{option} {given}: not found")
    out = Path(out)
    part = f"_part-{part_id}" if num_parts > 1 else ""
    summary, failures_csv = out / SUMMARY_CSV.replace(".csv", f"{part}.csv"), out / f"failures{part}.csv"
    # existing results: skipped with skip_existing, else refused (one line naming the file) unless overwrite
    todo = []
    for c in cases:
        first = outputs_of(task, c, out, model)[0]
        if skip_existing and first.exists():
            continue
        if not skip_existing:
            check_output(first, overwrite)
        todo.append(c)
    if not skip_existing:
        check_output(summary, overwrite)
        check_output(failures_csv, overwrite)
    if opts.crop_to_cord is not None and todo:
        opts.cord_source = CordSource(opts.crop_to_cord, opts.cord_suffix, None, checkpoint, opts.device)
    if opts.landmark_model is not None and todo:
        lm = read_model(opts.landmark_model, None, checkpoint)
        check_model_for(lm, "landmarks")
        opts.landmarks = (lm, make_predictor(lm, None, checkpoint, opts.device, progress=False))
    out.mkdir(parents=True, exist_ok=True)
    report = SegmentReport(summary=summary, failures_csv=failures_csv)
    if len(cases) > len(todo):
        say(f"{len(cases) - len(todo)} case(s) already segmented: skipped (--skip-existing)")
    predictor = make_predictor(model, folds, checkpoint, opts.device, progress=False) if todo else None
    runner = RUNNERS[task]
    for case in tqdm(todo, desc=f"segment {task}", unit="case", disable=not progress):
        t0 = time.perf_counter()
        tmp = Path(tempfile.mkdtemp(prefix="nnspine-segment-"))
        try:
            written = runner(predictor, model, case, tmp, out, opts)
            report.done.append((case.name, "ok", round(time.perf_counter() - t0, 2), written))
        except InputError as exc:
            report.failures.append((case.name, task, str(exc)))
            report.done.append((case.name, "failed", round(time.perf_counter() - t0, 2), []))
        except Exception as exc:  # noqa: BLE001 - one case's crash must not lose the others; recorded with its type
            report.failures.append((case.name, task, f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"))
            report.done.append((case.name, "failed", round(time.perf_counter() - t0, 2), []))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    rows = [(c, s, t, ";".join(str(p.relative_to(out)) for p in w)) for c, s, t, w in report.done]
    write_text(summary, _csv(rows, SUMMARY_COLUMNS), overwrite=True)
    write_text(failures_csv, _csv(report.failures, FAILURE_COLUMNS), overwrite=True)
    return report
