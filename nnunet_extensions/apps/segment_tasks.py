"""One case of ``nnspine segment`` (:mod:`nnunet_spine.apps.segment`), per task: ``cord`` (soft or binary mask →
CSA per slice, per level with level or disc files → the CSA profile QC), ``lesion`` (lesion mask → the lesion
table and QC; the prediction cropped around the cord with ``--crop-to-cord``), ``spine`` (semantic mask in SPINEPS
values → cutouts → instance model → fusion and labelling); the result names each writes and the level, disc and
cord files each reads."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nnunet_spine.apps.segment_cases import Case, Model, check_model_for, make_predictor, predict_case, read_model, step
from nnunet_spine.core.io import InputError, load_image, save_image, write_text
from nnunet_spine.postprocessing.spine.labelling import DEFAULT_LUMBAR

#: Result file names (suffixes after the case name), as the converters and SPINEPS name them.
CORD_SOFT_SUFFIX = "_label-SC_softseg"
CORD_SEG_SUFFIX = "_label-SC_seg"
LESION_SUFFIX = "_label-lesion_seg"
SEMANTIC_SUFFIX = "_seg-spine_msk"
#: Disc label files looked for when ``--disc-suffix`` is not given: SCT's name, then the one BIDS datasets (and
#: ``nnspine phantom``) write.
DISC_SUFFIXES = ("_label-SC_seg_labeled_discs", "_label-discs_dlabel")


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
    from nnunet_spine.core.bids import find_case_file

    try:
        return find_case_file(folder, case, DISC_SUFFIXES, "disc label file")
    except InputError as exc:
        raise InputError(f"{exc}; files named otherwise: --disc-suffix") from None


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


def possible_outputs(task: str, case: Case, out: Path, model: Model, opts: Options) -> list[Path]:
    """Every file a run of this case may write (what is removed before it runs again, or when it fails)."""
    paths = list(outputs_of(task, case, out, model))
    if task == "lesion" and (model.label_value("cord") is not None or opts.crop_to_cord is not None):
        paths.append(out / case.rel_dir / f"{case.name}{CORD_SEG_SUFFIX}.nii.gz")
    return paths


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
    """A case's written paths (a list), with the summary fields a task adds
    (:data:`~nnunet_spine.apps.segment_records.SUMMARY_COLUMNS` after ``outputs``) and lines worth a warning."""

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
