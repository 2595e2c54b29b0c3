"""``nnspine demo``: the whole soft-cord pipeline on built-in phantoms, with real nnU-Net.

Stages (each prints a header and its duration):

1. phantoms: training subjects and one held-out test subject, 5 contrasts each (exact truth);
2. CSA per vertebral level on the test subject's exact soft mask, binary mask and (with training) the soft
   ground truth the converter builds from its 5 binary masks, vs the true CSA;
3. soft ground truth of the training subjects → nnU-Net raw dataset (``nnspine convert softgt``);
4. ``nnUNetv2_plan_and_preprocess`` (small CPU plans) + ``nnspine preprocess-soft``;
5. ``nnUNetv2_train … -tr nnUNetTrainerSoftSeg_demo -p nnUNetPlansCPUDemo`` (150 iterations on CPU), run
   through nnU-Net's own entry point after seeding Python's ``random``, numpy and torch (:func:`seeded_train`);
6. ``nnUNetv2_predict --save_probabilities`` on the test subject → ``nnspine softmask`` → CSA per level,
   the CSA table and the QC plot, and the spread (SD) of C3 CSA across the 5 contrasts for the binary
   masks, the converter's soft GT and the predicted soft masks.

The folder, the stages, the nnU-Net commands and the seeded training are those of
:mod:`nnunet_spine.apps.demo_steps`, shared with ``nnspine demo --lesion``: nnU-Net runs through its real
console scripts with ``nnUNet_raw``/``_preprocessed``/``_results`` inside the demo folder, so a user's own nnU-Net
folders are never touched. Every command is printed as it is run (``$ …`` lines, also in ``nnunet.log``); the
trained model's results folder (:func:`model_folder`) is what ``nnspine segment cord --model`` takes. This module
is also that training's launcher: ``python -m nnunet_spine.apps.demo train --seed S <nnUNetv2_train
arguments>``.

What the seed does not fix (:data:`UNSEEDED`): the phantoms and the training's random draws (network
initialization, patch sampling, augmentation with ``nnUNet_n_proc_DA=0``, the demo's default) are the same on
every run, but PyTorch's multithreaded CPU kernels may sum in a different order from run to run, and with
``nnUNet_n_proc_DA`` > 0 nnU-Net's background data-loading workers are not seeded and batches arrive in the
order the workers finish; such small differences can grow over the short training.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from nnunet_spine.apps.demo_steps import (
    DEMO_CONFIG,
    DEMO_PLANS,
    DEMO_TRAIN_SEED,
    DemoRun,
    console_script,
    epoch_progress,
    existing,
    nnunet_environment,
    results_folder,
    seed_training,
    seeded_train,
    seeded_train_command,
    shell_line,
    unseeded_note,
)
from nnunet_spine.core.io import load_image, write_text
from nnunet_spine.core.labels import sct_level_name
from nnunet_spine.dataset_converters.softgt import convert
from nnunet_spine.phantoms.cord_dataset import DEFAULT_ACQUISITIONS, write_cord_dataset
from nnunet_spine.postprocessing.cord.csa import compute_csa, measure_file
from nnunet_spine.postprocessing.cord.csa_table import summarize
from nnunet_spine.postprocessing.cord.soft_metrics import csa_at_levels
from nnunet_spine.postprocessing.qc import plot_csa_profile

DEMO_DATASET_ID = 990
DEMO_DATASET_NAME = "nnspineDemoSoftCord"
DEMO_TRAINER = "nnUNetTrainerSoftSeg_demo"
DEMO_GPU_MEMORY_TARGET_GB = 1.0
#: Isotropic 3d_fullres spacing (mm) of the demo's plans: about 8x fewer voxels than nnU-Net's 0.8 mm choice, so
#: preprocessing, training and prediction fit the demo's time on 2 CPU cores (the cord is ~6 voxels wide).
DEMO_TARGET_SPACING_MM = 1.6
CONTRAST_REFERENCE = "T2w"
#: What benchmarks/bench_softseg_ablation.py's CPU learning curve showed (benchmarks/README.md), said with the verdict.
LEARNING_CURVE_FINDING = (
    "On CPU budgets of 80, 400 and 1600 iterations (the ablation benchmark's learning curve) the soft trainers' "
    "early CSA overestimate was undertraining (a halo of low values outside the cord, shrinking with training) "
    "and SoftSegDA5's spread across contrasts fell from 2.3x to 0.8x the stock trainer's, not significantly "
    "(p = 0.44); SoftSeg stayed more variable (p = 0.03). The paper's effect needs its budget."
)
#: What the demo's seed cannot make repeatable; printed with the demo's verdict (see the module docstring).
UNSEEDED = unseeded_note(
    DEMO_TRAIN_SEED, "the predicted CSA can differ between runs, most at the poorly trained levels"
)
#: The held-out test subject's files, relative to the demo folder.
TEST_ROOT = "phantom_test"
TEST_LABELS = f"{TEST_ROOT}/derivatives/labels/sub-01/anat"


@dataclass
class DemoResult:
    """Paths and tables produced by :func:`run_demo`."""

    folder: Path
    table: pd.DataFrame
    csv: Path
    plot: Path
    trained: bool
    timings_s: dict = field(default_factory=dict)
    spread: pd.DataFrame | None = None  # C3 CSA per contrast and mask kind
    spread_csv: Path | None = None
    model: Path | None = None  # the trained model's nnU-Net results folder (what ``segment --model`` takes)
    commands: list = field(default_factory=list)  # every command run, as printed (``shell_line``)

    def segment_command(self) -> str | None:
        """A ready ``nnspine segment cord`` line on the test subject's T2w with the demo's model (None untrained)."""
        if self.model is None:
            return None
        anat = self.folder / "phantom_test"
        image = anat / f"sub-01/anat/sub-01_{CONTRAST_REFERENCE}.nii.gz"
        discs = anat / f"derivatives/labels/sub-01/anat/sub-01_{CONTRAST_REFERENCE}_label-discs_dlabel.nii.gz"
        return shell_line(
            [
                "nnspine",
                "segment",
                "cord",
                "-i",
                str(image),
                "-o",
                str(self.folder / "segment_out"),
                "--model",
                str(self.model),
                "--discfiles",
                str(discs),
                "--device",
                "cpu",
            ]
        )

    def written(self) -> list[Path]:
        """The result files (beside the intermediate folders)."""
        return existing([self.csv, self.spread_csv, self.plot, self.folder / "nnunet.log"])


#: Decimals in the demo's CSVs (mm² and %: 0.001 is far below any difference the demo shows).
CSV_FLOAT_FORMAT = "%.3f"


def compact_table(table: pd.DataFrame) -> pd.DataFrame:
    """The per-level CSA table for a terminal: one column per mask, each cell ``CSA (error %)``."""
    out = pd.DataFrame({"level": table["level"], "true": table["true CSA"].map(lambda v: f"{v:.2f}")})
    for name in table.columns:
        if name in ("level", "true CSA") or name.endswith(" error %"):
            continue
        err = table[f"{name} error %"]
        out[name] = [f"{v:.2f} ({e:+.1f}%)" if v == v else "-" for v, e in zip(table[name], err)]
    return out


def _level_table(per_slice, truth: dict) -> dict[int, float]:
    rows = summarize(per_slice, per="level")
    out = {}
    for _, r in rows.iterrows():
        if r["VertLevel"] and str(r["VertLevel"]).isdigit() and str(r["VertLevel"]) in truth:
            out[int(r["VertLevel"])] = float(r["MEAN(area)"])
    return out


#: Masks of the test subject compared across contrasts: (column name, path pattern relative to the demo folder).
SPREAD_SOURCES = (
    ("binary mask", "phantom_test/derivatives/labels/sub-01/anat/sub-01_{c}_label-SC_seg.nii.gz"),
    ("soft GT (converter)", "phantom_test_derivatives/labels_softseg/sub-01/anat/sub-01_{c}_label-SC_softseg.nii.gz"),
    ("predicted soft mask", "prediction_soft/sub-01_{c}.nii.gz"),
)
SPREAD_LEVEL = 3  # C3: covered by every contrast of the phantom, axial slabs included


#: What the demo's model should reach to show the method's point (issue: SD below the binary masks', CSA ±3 %).
TARGET_LEVEL_ERROR_PCT = 3.0


def verdict(table: pd.DataFrame, spread: pd.DataFrame | None) -> list[str]:
    """The demo's conclusion in plain sentences, from its own figures: first the soft ground truth's effect on
    the C3 CSA spread across contrasts (vs the binary masks), then whether the trained model reduces that
    spread below the binary masks' and measures every level within :data:`TARGET_LEVEL_ERROR_PCT` of the
    truth. Says plainly when it does not."""
    lines: list[str] = []
    if spread is None:
        return lines
    sd = spread[spread["contrast"] == "SD across contrasts"].iloc[0]
    sd_bin, sd_gt = float(sd["binary mask"]), float(sd["soft GT (converter)"])
    change = 100.0 * (sd_gt - sd_bin) / sd_bin if sd_bin > 0 else float("nan")
    lines.append(
        f"Soft GT: C3 CSA SD across the 5 contrasts {sd_gt:.2f} mm² vs {sd_bin:.2f} mm² for the binary "
        f"masks ({change:+.0f} %): averaging the contrasts' masks "
        + ("reduces" if sd_gt < sd_bin else "does not reduce")
        + " the variability of the targets."
    )
    sd_pred = float(sd["predicted soft mask"])
    if "predicted soft mask error %" in table and np.isfinite(sd_pred):
        errors = table["predicted soft mask error %"].to_numpy(float)
        worst = float(np.nanmax(np.abs(errors))) if np.isfinite(errors).any() else float("nan")
        below = sd_pred < sd_bin
        within = bool(np.isfinite(worst) and worst <= TARGET_LEVEL_ERROR_PCT)
        lines.append(
            f"Trained model: C3 CSA SD across contrasts {sd_pred:.2f} mm² "
            + ("below" if below else "NOT below")
            + f" the binary masks' {sd_bin:.2f} mm²; per-level CSA "
            f"error up to {worst:.1f} % (" + ("within" if within else "NOT within") + f" {TARGET_LEVEL_ERROR_PCT:g} %)."
        )
        if not (below and within):
            lines.append(
                "This short CPU training does not show the method's claim; the soft GT's effect above is "
                "real. Train nnUNetTrainerSoftSeg (or ...DA5) with nnU-Net's full budget on a GPU, and "
                "compare models with 'nnspine evaluate compare-variability'. " + LEARNING_CURVE_FINDING
            )
    return lines


def _contrast_spread(folder: Path, trained: bool) -> pd.DataFrame | None:
    """CSA at C3 (mm²) of each contrast of the test subject, per mask kind, with the SD across contrasts."""
    if not trained:
        return None
    contrasts = [a.entities for a in DEFAULT_ACQUISITIONS]
    discs = "phantom_test/derivatives/labels/sub-01/anat/sub-01_{c}_label-discs_dlabel.nii.gz"
    data = {"contrast": contrasts}
    for name, pattern in SPREAD_SOURCES:
        values = []
        for c in contrasts:
            path = folder / pattern.format(c=c)
            per_slice = measure_file(path, discfile=folder / discs.format(c=c))
            values.append(csa_at_levels(per_slice, [SPREAD_LEVEL])[0])
        data[name] = values
    df = pd.DataFrame(data)
    sd = {"contrast": "SD across contrasts", **{n: float(np.nanstd(df[n])) for n, _ in SPREAD_SOURCES}}
    return pd.concat([df, pd.DataFrame([sd])], ignore_index=True)


def model_folder(
    results_root: str | os.PathLike, trainer: str, plans: str = DEMO_PLANS, configuration: str = DEMO_CONFIG
) -> Path:
    """nnU-Net's results folder of the demo's model:
    ``<nnUNet_results>/DatasetXXX_NAME/<trainer>__<plans>__<config>``."""
    dataset = f"Dataset{DEMO_DATASET_ID:03d}_{DEMO_DATASET_NAME}"
    return results_folder(results_root, dataset, trainer, plans, configuration)


@dataclass
class _Measures:
    """CSA per vertebral level of the test subject's masks (one column per mask, beside the true CSA) and their
    CSA profiles along S-I (for the QC plot)."""

    truth: dict
    columns: dict = field(default_factory=dict)
    profiles: list = field(default_factory=list)

    def __post_init__(self) -> None:
        self.columns["true CSA"] = {int(k): v for k, v in self.truth.items()}

    def add(self, name: str, per_slice: pd.DataFrame) -> None:
        """A mask's per-slice CSA (``measure_file``/``compute_csa``), as its per-level column and profile."""
        self.columns[name] = _level_table(per_slice, self.truth)
        self.profiles.append(per_slice.assign(Filename=name))

    def table(self) -> pd.DataFrame:
        """The CSA table: level, true CSA, each mask's CSA and its error (% of the true CSA)."""
        levels = sorted(self.columns["true CSA"])
        table = pd.DataFrame(
            {
                "level": [sct_level_name(int(k)) for k in levels],
                **{name: [values.get(int(k), float("nan")) for k in levels] for name, values in self.columns.items()},
            }
        )
        for name in self.columns:
            if name != "true CSA":
                table[f"{name} error %"] = 100.0 * (table[name] - table["true CSA"]) / table["true CSA"]
        return table


def _discs(folder: Path) -> Path:
    """The test subject's disc labels on the reference contrast."""
    return folder / TEST_LABELS / f"sub-01_{CONTRAST_REFERENCE}_label-discs_dlabel.nii.gz"


def _measure_test_masks(run: DemoRun, truth: dict, train: bool) -> _Measures:
    """Stage 2: CSA per level of the test subject's exact soft mask, binary mask and (``train``) the soft GT the
    converter builds from its 5 binary masks (how close to the truth?)."""
    ref, folder, measures = CONTRAST_REFERENCE, run.folder, _Measures(truth)
    text = (
        f"CSA per level of the test subject's {ref} masks"
        + (" and of its soft GT (nnspine convert softgt)" if train else "")
        + " vs the true CSA"
    )
    with run.stage(2, "csa", text):
        soft_truth = folder / TEST_ROOT / f"derivatives/truth/sub-01/anat/sub-01_{ref}_label-SC_softseg.nii.gz"
        measures.add("exact soft mask", measure_file(soft_truth, discfile=_discs(folder)))
        binary = folder / TEST_LABELS / f"sub-01_{ref}_label-SC_seg.nii.gz"
        measures.add("binary mask", measure_file(binary, discfile=_discs(folder)))
        if train:
            convert(folder / TEST_ROOT, derivatives_out=folder / "phantom_test_derivatives", reference=ref)
            soft_gt = (
                folder / f"phantom_test_derivatives/labels_softseg/sub-01/anat/sub-01_{ref}_label-SC_softseg.nii.gz"
            )
            measures.add("soft GT (converter)", measure_file(soft_gt, discfile=_discs(folder)))
    return measures


def _train(run: DemoRun, trainer: str) -> None:
    """Stages 3-5: the training subjects' soft GT → nnU-Net raw dataset, planned, preprocessed with the soft
    targets, and ``trainer`` trained (seeded with :data:`DEMO_TRAIN_SEED`)."""
    dataset = f"Dataset{DEMO_DATASET_ID}_{DEMO_DATASET_NAME}"
    with run.stage(3, "softgt", f"soft ground truth of the training subjects → nnU-Net raw dataset {dataset}"):
        convert(
            run.folder / "phantom_train",
            derivatives_out=run.folder / "phantom_train_derivatives",
            reference=CONTRAST_REFERENCE,
            nnunet_dataset=DEMO_DATASET_ID,
            name=DEMO_DATASET_NAME,
            raw_root=run.env["nnUNet_raw"],
        )
    preprocess_soft = ["preprocess-soft", "-d", str(DEMO_DATASET_ID), "-c", DEMO_CONFIG, "-p", DEMO_PLANS]
    run.plan_and_train(
        DEMO_DATASET_ID,
        trainer,
        seed=DEMO_TRAIN_SEED,
        gpu_memory_target_gb=DEMO_GPU_MEMORY_TARGET_GB,
        target_spacing_mm=DEMO_TARGET_SPACING_MM,
        then_preprocess={"nnspine preprocess-soft": [console_script("nnspine"), *preprocess_soft]},
    )


def _predict(run: DemoRun, trainer: str, measures: _Measures) -> None:
    """Stage 6: the trained model's soft prediction of the test subject's contrasts, and its CSA per level."""
    folder = run.folder
    with run.stage(6, "predict", "nnUNetv2_predict --save_probabilities on the test subject → nnspine softmask → CSA"):
        pred_in = folder / "predict_input"
        pred_in.mkdir()
        for image in sorted((folder / TEST_ROOT / "sub-01/anat").glob("sub-01_*.nii.gz")):
            shutil.copy(image, pred_in / image.name.replace(".nii.gz", "_0000.nii.gz"))
        run.predict(pred_in, folder / "prediction", DEMO_DATASET_ID, trainer, probabilities=True)
        softmask = ["softmask", "-i", str(folder / "prediction"), "-o", str(folder / "prediction_soft")]
        run.run([console_script("nnspine"), *softmask, "--threshold", "0.5", "-q"])
        pred = load_image(folder / "prediction_soft" / f"sub-01_{CONTRAST_REFERENCE}.nii.gz", "soft")
        if pred.data.max() >= 0.5:
            measures.add("predicted soft mask", compute_csa(pred, discs=load_image(_discs(folder), "labels")))
        else:
            measures.columns["predicted soft mask"] = {}
            run.say("      (the briefly trained model found no cord in the test image: no predicted CSA)")


def _results(run: DemoRun, measures: _Measures, trainer: str, trained: bool) -> DemoResult:
    """The demo's tables and plot, written into its folder."""
    folder, table, spread = run.folder, measures.table(), _contrast_spread(run.folder, trained)
    csv = write_text(
        folder / "csa_per_level.csv", table.to_csv(index=False, float_format=CSV_FLOAT_FORMAT), overwrite=True
    )
    plot = plot_csa_profile(
        pd.concat(measures.profiles, ignore_index=True),
        folder / "csa_profile.png",
        title=f"Test subject {CONTRAST_REFERENCE}: CSA along S-I",
        overwrite=True,
    )
    spread_csv = None
    if spread is not None:
        spread_text = spread.to_csv(index=False, float_format=CSV_FLOAT_FORMAT)
        spread_csv = write_text(folder / "csa_C3_across_contrasts.csv", spread_text, overwrite=True)
    model = model_folder(folder / "nnUNet_results", trainer) if trained else None
    return DemoResult(folder, table, csv, plot, trained, run.timings, spread, spread_csv, model, run.commands)


def run_demo(
    folder: str | os.PathLike,
    *,
    train: bool = True,
    trainer: str = DEMO_TRAINER,
    n_train_subjects: int = 2,
    overwrite: bool = False,
    say: Callable[[str], None] = print,
) -> DemoResult:
    """Run the demo in ``folder`` (created; must be empty unless ``overwrite``), training ``trainer`` (a soft
    trainer of this package). See the module docstring."""
    run = DemoRun.start(folder, overwrite, 6 if train else 2, say, command="nnspine demo")
    subjects = f" + {n_train_subjects} training subjects" if train else ""
    with run.stage(1, "phantoms", f"phantoms: held-out test subject{subjects}, 5 contrasts each"):
        test = write_cord_dataset(run.folder / TEST_ROOT, n_subjects=1, seed=1000)
        if train:
            write_cord_dataset(run.folder / "phantom_train", n_subjects=n_train_subjects, seed=0)
    measures = _measure_test_masks(run, test["subjects"]["sub-01"]["csa_per_level_mm2"], train)
    if train:
        _train(run, trainer)
        _predict(run, trainer, measures)
    return _results(run, measures, trainer, trained=train)


__all__ = [
    "DemoResult",
    "UNSEEDED",
    "compact_table",
    "epoch_progress",
    "model_folder",
    "nnunet_environment",
    "run_demo",
    "seed_training",
    "seeded_train",
    "seeded_train_command",
    "shell_line",
    "verdict",
]


if __name__ == "__main__":  # python -m nnunet_spine.apps.demo train --seed S <nnUNetv2_train arguments>
    seeded_train(sys.argv[1:])
