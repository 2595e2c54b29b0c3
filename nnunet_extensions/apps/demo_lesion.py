"""``nnspine demo --lesion``: the lesion pipeline on built-in phantoms, with real nnU-Net.

Stages (each prints a header and its duration):

1. phantoms (``nnspine phantom --kind lesion``): training subjects and one held-out test subject, each a
   sagittal T2w (0.8 mm) and an axial T1w-like image (1 mm) of a cord with 10 lesions of known volume;
2. ``nnspine convert lesion --channels T2w,T1w``: the training subjects → nnU-Net raw dataset
   :data:`DEMO_DATASET_ID`; the test subject → dataset :data:`DEMO_TEST_DATASET_ID` (its ``imagesTr`` is
   the prediction input, T1w resampled onto the T2w grid; its ``labelsTr`` the reference);
3. the yardstick: the phantom's "prediction" with known errors (1 missed, 1 false positive, 1 split,
   1 boundary error) → ``nnspine lesions`` → ``nnspine evaluate lesions``; its counts must equal the
   expected counts stored in the phantom's truth JSON (``--no-train`` stops here);
4. ``nnUNetv2_plan_and_preprocess`` (small CPU plans);
5. ``nnUNetv2_train … -tr nnUNetTrainerLesion_demo`` (CPU), through nnU-Net's own entry point after seeding
   Python's ``random``, numpy and torch with the demo's seed (what that cannot fix: :func:`unseeded`);
6. ``nnUNetv2_predict`` on the test subject → ``nnspine lesions`` (small and off-cord lesions removed,
   numbered S→I, lesion table, QC picture) → ``nnspine evaluate lesions`` of the raw and the
   postprocessed prediction.

The folder, the stages, the nnU-Net commands (printed as ``$`` lines as they are run) and the seeded training are
those of :mod:`nnunet_spine.apps.demo_steps`, shared with the soft-cord demo: nnU-Net runs through its real
console scripts with its folders inside the demo folder, so a user's own nnU-Net folders are never touched.
Library functions here never print: progress goes through ``say``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from nnunet_spine.apps.demo_steps import DemoRun, existing, unseeded_note
from nnunet_spine.core.io import write_text
from nnunet_spine.dataset_converters.lesion import convert
from nnunet_spine.phantoms.lesion import write_lesion_dataset
from nnunet_spine.postprocessing.lesion.lesions import TOTAL, plan_jobs, run_lesions
from nnunet_spine.postprocessing.lesion.metrics import evaluate_lesions

DEMO_DATASET_ID = 991
DEMO_DATASET_NAME = "nnspineDemoLesion"
DEMO_TEST_DATASET_ID = 992
DEMO_TEST_DATASET_NAME = "nnspineDemoLesionTest"
DEMO_TRAINER = "nnUNetTrainerLesion_demo"
#: Sequences, one nnU-Net channel each; the first (T2w, sagittal 0.8 mm) is the reference grid.
DEMO_CHANNELS = ("T2w", "T1w")
#: Planned GPU memory (GB): nnU-Net shrinks the patch to fit, 28 x 72 x 40 voxels here instead of the whole
#: 40 x 88 x 56 image at 1 GB; a CPU iteration then costs a third (about 2.5 s of one core instead of 7.5).
GPU_MEMORY_TARGET_GB = 0.25
#: Phantom seeds: training subjects and the held-out test subject never share a random stream.
TRAIN_SEED, TEST_SEED = 0, 1000
N_TRAIN_SUBJECTS = 4
#: ``nnspine lesions`` settings on the network's prediction: specks below this volume go (the phantom's
#: smallest true lesions are 1 voxel = 0.51 mm³ and 3 voxels = 1.54 mm³), as do lesions farther than
#: :data:`CORD_DILATION_MM` from the cord mask.
MIN_VOLUME_MM3 = 1.0
CORD_DILATION_MM = 2.0
#: Lesion metrics are computed with these (``nnspine evaluate lesions`` defaults).
MATCH, CONNECTIVITY = "overlap", 26
#: Columns shown in the demo's metrics table (besides ``prediction``).
SHOWN_COLUMNS = (
    "ref_lesions",
    "pred_lesions",
    "tp",
    "fp",
    "fn",
    "lesion_sensitivity",
    "lesion_precision",
    "lesion_f1",
    "dice",
    "volume_error_mm3",
)
#: Row names of the metrics table.
PHANTOM_ROW = "phantom prediction (known errors)"
EXPECTED_ROW = "phantom prediction, expected (truth JSON)"
RAW_ROW = "nnU-Net prediction"
POST_ROW = "nnU-Net + nnspine lesions"


@dataclass
class LesionDemoResult:
    """Paths and tables produced by :func:`run_lesion_demo`."""

    folder: Path
    metrics: pd.DataFrame  # one row per prediction kind (and the expected counts)
    metrics_csv: Path
    lesion_tables: list[Path]
    qc: list[Path]
    trained: bool
    counts_match_truth: bool  #: the phantom prediction's counts equal the truth JSON's expected counts
    trainer: str = DEMO_TRAINER
    timings_s: dict = field(default_factory=dict)
    missed: list[str] = field(default_factory=list)  #: phantom lesions the network missed ("role (volume mm³)")
    removed: dict[str, int] = field(default_factory=dict)  #: lesions nnspine lesions removed, by reason
    commands: list = field(default_factory=list)  #: every command run, as printed (``shell_line``)

    def written(self) -> list[Path]:
        """The result files (beside the intermediate folders)."""
        return existing([self.metrics_csv, *self.lesion_tables, *self.qc, self.folder / "nnunet.log"])


@dataclass
class PostprocessEvaluation:
    """:func:`postprocess_and_evaluate`'s result: case rows (``CASE_COLUMNS`` of
    :mod:`nnunet_spine.postprocessing.lesion.metrics`) before and after ``nnspine lesions``, the per-reference-lesion
    rows after it, and how many lesions ``nnspine lesions`` removed, by reason (``small``, ``outside_cord``)."""

    raw: dict
    post: dict
    per_lesion: list[dict]
    removed: dict[str, int]


def postprocess_and_evaluate(
    prediction: Path,
    reference: Path,
    *,
    cord: Path,
    image: Path,
    out_mask: Path,
    table: Path,
    qc: Path,
    min_volume_mm3: float,
) -> PostprocessEvaluation:
    """``nnspine lesions`` on one prediction (cord proximity, minimum volume, S→I numbering, table, QC)
    and ``nnspine evaluate lesions`` of the prediction before and after, against ``reference``.
    All files on the reference's grid; outputs are overwritten (demo folder)."""
    jobs = plan_jobs(prediction, out_mask, cord=cord, image=image, qc=qc, overwrite=True)
    lesions = run_lesions(
        jobs,
        table,
        cord_dilation_mm=CORD_DILATION_MM,
        min_volume_mm3=min_volume_mm3,
        connectivity=CONNECTIVITY,
        overwrite=True,
    )
    reasons = lesions.loc[lesions["lesion"] != TOTAL, "removed"].dropna()
    raw = evaluate_lesions(prediction, reference, match=MATCH, connectivity=CONNECTIVITY)[0][0]
    post_rows, per_lesion = evaluate_lesions(
        out_mask, reference, match=MATCH, connectivity=CONNECTIVITY, all_foreground=True
    )
    return PostprocessEvaluation(
        raw, post_rows[0], per_lesion, {str(k): int(v) for k, v in reasons[reasons != ""].value_counts().items()}
    )


def missed_lesions(per_lesion: list[dict], truth: dict) -> list[str]:
    """Names of the reference lesions a prediction missed: for each undetected reference lesion, the
    phantom lesion (role, volume mm³) whose centroid is nearest to it."""
    out = []
    for row in per_lesion:
        if row["detected"]:
            continue
        c = np.array([row["centroid_x_mm"], row["centroid_y_mm"], row["centroid_z_mm"]])
        best = min(truth["lesions"], key=lambda t: float(np.linalg.norm(np.array(t["centroid_mm"]) - c)))
        out.append(f"{best['role']} ({best['volume_mm3']:.1f} mm³)")
    return out


def _expected_row(truth: dict, case: str) -> dict:
    """Counts the truth JSON expects for the phantom's prediction (rule ``overlap``, 26-connectivity)."""
    counts = truth["prediction"]["expected_counts"][str(CONNECTIVITY)]
    return {
        "prediction": EXPECTED_ROW,
        "case": case,
        "match": MATCH,
        "connectivity": CONNECTIVITY,
        **{k: counts[k] for k in ("ref_lesions", "pred_lesions", "tp", "fp", "fn")},
    }


#: The test subject's case (its T2w is the reference grid).
CASE = "sub-01_T2w"


def unseeded(seed: int) -> str:
    """What the lesion demo's training seed cannot make repeatable (said with its verdict)."""
    return unseeded_note(seed, "the lesions the network finds can differ between runs")


@dataclass
class _Evaluations:
    """The metrics table's rows and the ``nnspine lesions`` tables and QC pictures (the network's first), as the
    stages add them."""

    rows: list[dict] = field(default_factory=list)
    lesion_tables: list[Path] = field(default_factory=list)
    qc: list[Path] = field(default_factory=list)
    counts_match: bool = False
    missed: list[str] = field(default_factory=list)
    removed: dict[str, int] = field(default_factory=dict)


def _postprocess(
    run: DemoRun, prediction: Path, test_dataset: Path, evaluations: _Evaluations, *, phantom: bool
) -> PostprocessEvaluation:
    """:func:`postprocess_and_evaluate` of the phantom's known-error prediction (``phantom``: no volume threshold,
    files ``*_phantom_prediction*``) or of the network's (:data:`MIN_VOLUME_MM3`), its table and QC picture added
    to ``evaluations``."""
    test_root, suffix = run.folder / "phantom_test", "_phantom_prediction" if phantom else ""
    labels = test_root / "derivatives/labels/sub-01/anat"
    table, qc = run.folder / f"lesions{suffix}.csv", run.folder / f"lesions_qc{suffix}.png"
    evaluation = postprocess_and_evaluate(
        prediction,
        test_dataset / "labelsTr" / f"{CASE}.nii.gz",
        cord=labels / f"{CASE}_label-SC_seg.nii.gz",
        image=test_root / "sub-01/anat" / f"{CASE}.nii.gz",
        out_mask=run.folder / f"{'phantom_' if phantom else ''}prediction_lesions" / f"{CASE}.nii.gz",
        table=table,
        qc=qc,
        min_volume_mm3=0.0 if phantom else MIN_VOLUME_MM3,
    )
    at = len(evaluations.qc) if phantom else 0  # the network's files come first
    evaluations.lesion_tables.insert(at, table)
    evaluations.qc.insert(at, qc)
    return evaluation


def _convert(run: DemoRun, train: bool) -> Path:
    """Stage 2: the test subject (and, ``train``, the training subjects) → nnU-Net raw datasets; the test
    subject's dataset folder."""
    channels, raw_root = ",".join(DEMO_CHANNELS), run.folder / "nnUNet_raw"  # no other nnU-Net folder unless trained
    text = f"nnspine convert lesion --channels {channels}: test subject → Dataset{DEMO_TEST_DATASET_ID}" + (
        f", training subjects → Dataset{DEMO_DATASET_ID}" if train else ""
    )
    with run.stage(2, "convert", text):
        test_report = convert(
            run.folder / "phantom_test",
            channels=list(DEMO_CHANNELS),
            nnunet_dataset=DEMO_TEST_DATASET_ID,
            name=DEMO_TEST_DATASET_NAME,
            raw_root=raw_root,
        )
        if train:
            convert(
                run.folder / "phantom_train",
                channels=list(DEMO_CHANNELS),
                nnunet_dataset=DEMO_DATASET_ID,
                name=DEMO_DATASET_NAME,
                raw_root=raw_root,
            )
        resampled = ", ".join(sorted({ch for c in test_report.cases for ch in c.resampled})) or "none"
        run.say(f"      channels {channels}; resampled onto the {DEMO_CHANNELS[0]} grid: {resampled}")
    return Path(test_report.nnunet_dataset)


def _yardstick(run: DemoRun, test_dataset: Path, truth: dict) -> _Evaluations:
    """Stage 3: the phantom's prediction with known errors, postprocessed and evaluated; do its counts equal
    those the truth JSON expects?"""
    evaluations = _Evaluations()
    with run.stage(
        3,
        "phantom prediction",
        "the phantom's prediction with known errors → nnspine lesions → nnspine evaluate lesions "
        "(counts vs the truth JSON)",
    ):
        prediction = run.folder / "phantom_test/derivatives/prediction/sub-01/anat" / f"{CASE}_label-lesion_seg.nii.gz"
        post = _postprocess(run, prediction, test_dataset, evaluations, phantom=True).post
        expected = _expected_row(truth, CASE)
        counts = ("ref_lesions", "pred_lesions", "tp", "fp", "fn")
        evaluations.counts_match = all(int(post[k]) == int(expected[k]) for k in counts)
        run.say(
            f"      counts {'equal' if evaluations.counts_match else 'DIFFER FROM'} the truth's expected counts "
            f"(TP {expected['tp']}, FP {expected['fp']}, FN {expected['fn']})"
        )
        evaluations.rows += [{"prediction": PHANTOM_ROW, **post}, expected]
    return evaluations


def _predict(run: DemoRun, trainer: str, test_dataset: Path, truth: dict, evaluations: _Evaluations) -> None:
    """Stage 6: the trained network's prediction of the test subject, postprocessed and evaluated."""
    with run.stage(6, "predict", "nnUNetv2_predict on the test subject → nnspine lesions → nnspine evaluate lesions"):
        prediction = run.folder / "prediction"
        run.predict(test_dataset / "imagesTr", prediction, DEMO_DATASET_ID, trainer)
        network = _postprocess(run, prediction / f"{CASE}.nii.gz", test_dataset, evaluations, phantom=False)
        evaluations.rows += [{"prediction": RAW_ROW, **network.raw}, {"prediction": POST_ROW, **network.post}]
        evaluations.missed = missed_lesions(network.per_lesion, truth)
        evaluations.removed = network.removed


def run_lesion_demo(
    folder: str | os.PathLike,
    *,
    train: bool = True,  # False: stages 1-3 only (no nnU-Net)
    n_train_subjects: int = N_TRAIN_SUBJECTS,
    trainer: str = DEMO_TRAINER,
    seed: int = 0,  # phantoms and training
    overwrite: bool = False,
    say: Callable[[str], None] = print,
) -> LesionDemoResult:
    """Run the lesion demo in ``folder`` (created; must be empty unless ``overwrite``). See the module
    docstring. ``trainer``: the nnU-Net trainer of stage 5 (e.g. ``nnUNetTrainerLesion_debug`` for a
    quicker check). ``seed`` (0-999) picks the phantoms (training subjects ``TRAIN_SEED + seed``, test subject
    ``TEST_SEED + seed``) and seeds nnU-Net's training (Python's ``random``, numpy and torch; what that cannot
    make repeatable: :func:`unseeded`)."""
    if not 0 <= seed < TEST_SEED - TRAIN_SEED:
        raise ValueError(f"seed {seed}: must be in 0..{TEST_SEED - TRAIN_SEED - 1}")
    run = DemoRun.start(folder, overwrite, 6 if train else 3, say, command="nnspine demo --lesion")
    subjects = f" + {n_train_subjects} training subjects" if train else ""
    with run.stage(1, "phantoms", f"lesion phantoms (T2w + T1w, 10 lesions each): held-out test subject{subjects}"):
        test = write_lesion_dataset(run.folder / "phantom_test", n_subjects=1, seed=TEST_SEED + seed)
        if train:
            write_lesion_dataset(run.folder / "phantom_train", n_subjects=n_train_subjects, seed=TRAIN_SEED + seed)
    truth = test["subjects"]["sub-01"]
    test_dataset = _convert(run, train)
    evaluations = _yardstick(run, test_dataset, truth)
    if train:
        run.plan_and_train(DEMO_DATASET_ID, trainer, seed=seed, gpu_memory_target_gb=GPU_MEMORY_TARGET_GB)
        _predict(run, trainer, test_dataset, truth, evaluations)
    return _results(run, evaluations, trainer, trained=train)


def _results(run: DemoRun, evaluations: _Evaluations, trainer: str, trained: bool) -> LesionDemoResult:
    """The metrics table (and the stages' durations) written into the demo folder."""
    metrics = pd.DataFrame(evaluations.rows)
    front = ["prediction", "case", "match", "connectivity"]
    metrics = metrics[[c for c in front if c in metrics] + [c for c in metrics if c not in front]]
    metrics_csv = write_text(
        run.folder / "lesion_metrics.csv", metrics.to_csv(index=False, float_format="%.4f"), overwrite=True
    )
    run.write_timings()
    e = evaluations
    return LesionDemoResult(
        run.folder,
        metrics,
        metrics_csv,
        e.lesion_tables,
        e.qc,
        trained,
        e.counts_match,
        trainer,
        run.timings,
        e.missed,
        e.removed,
        run.commands,
    )


def verdict(result: LesionDemoResult) -> list[str]:
    """The demo's conclusion in plain sentences, from its own figures."""
    m = result.metrics.set_index("prediction")
    lines = []
    if result.counts_match_truth:
        e = m.loc[EXPECTED_ROW]
        lines.append(
            f"Yardstick: the phantom's known-error prediction gives exactly the expected counts (TP {int(e['tp'])}, "
            f"FP {int(e['fp'])}, FN {int(e['fn'])}), so the lesion-wise metrics can be trusted."
        )
    else:
        lines.append(
            "Yardstick FAILED: the phantom's known-error prediction does not give the truth's expected counts."
        )
    if result.trained:
        raw, post = m.loc[RAW_ROW], m.loc[POST_ROW]
        found = f"found {int(post['tp'])} of {int(post['ref_lesions'])} reference lesions"
        lines.append(
            f"nnU-Net after {result.trainer}: {found} with {int(post['fp'])} false positive(s) "
            f"(lesion F1 {post['lesion_f1']:.2f}, Dice {post['dice']:.2f})"
            + (f"; missed: {', '.join(result.missed)}" if result.missed else "")
            + "."
        )
        if int(raw["pred_lesions"]) == 0:
            lines.append(
                "The short CPU training did not converge this time (the network still predicts no lesion: it "
                "did not leave the all-background solution within its few iterations): rerun the demo, or train "
                "nnUNetTrainerLesion with nnU-Net's full budget."
            )
        gone = ", ".join(f"{n} {why}" for why, n in sorted(result.removed.items())) or "none"
        lines.append(
            f"nnspine lesions removed {gone} (of {int(raw['pred_lesions'])} predicted lesions): false "
            f"positives {int(raw['fp'])} -> {int(post['fp'])}, true positives {int(raw['tp'])} -> "
            f"{int(post['tp'])}."
        )
    return lines


def compact_metrics(metrics: pd.DataFrame) -> pd.DataFrame:
    """The metrics table for a terminal: the prediction kind and :data:`SHOWN_COLUMNS`, short headers."""
    short = {
        "ref_lesions": "ref",
        "pred_lesions": "pred",
        "lesion_sensitivity": "sens",
        "lesion_precision": "prec",
        "lesion_f1": "F1",
        "volume_error_mm3": "vol err mm³",
    }
    out = pd.DataFrame(
        {
            "prediction": metrics["prediction"]
            .astype(str)
            .str.ljust(int(metrics["prediction"].astype(str).str.len().max()))
        }
    )
    for col in SHOWN_COLUMNS:
        counts = col in ("ref_lesions", "pred_lesions", "tp", "fp", "fn")
        out[short.get(col, col)] = [
            ("-" if v != v else f"{int(v)}" if counts else f"{v:.3f}" if col != "volume_error_mm3" else f"{v:+.1f}")
            for v in metrics[col]
        ]
    return out


__all__ = [
    "LesionDemoResult",
    "PostprocessEvaluation",
    "run_lesion_demo",
    "compact_metrics",
    "postprocess_and_evaluate",
    "missed_lesions",
    "unseeded",
    "verdict",
]
