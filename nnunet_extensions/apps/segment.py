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

This module is the cohort run; the models, cases and nnU-Net's prediction of one case are in
:mod:`~nnunet_spine.apps.segment_cases`, what each task makes of it in :mod:`~nnunet_spine.apps.segment_tasks`, the
records in :mod:`~nnunet_spine.apps.segment_records`.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from nnunet_spine.apps.segment_cases import (
    Case,
    Model,
    StepFailed,
    check_model_for,
    failure_reason,
    find_cases,
    make_predictor,
    read_model,
    shard,
)
from nnunet_spine.apps.segment_records import SUMMARY_CSV, Records, remove_outputs
from nnunet_spine.apps.segment_tasks import (
    DISC_SUFFIXES,
    RUNNERS,
    CordSource,
    Options,
    disc_suffixes_found,
    outputs_of,
    possible_outputs,
)
from nnunet_spine.core.io import InputError, check_output

TASKS = ("cord", "lesion", "spine")


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
