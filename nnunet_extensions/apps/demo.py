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

nnU-Net runs through its real console scripts with ``nnUNet_raw``/``_preprocessed``/``_results`` inside the
demo folder, so a user's own nnU-Net folders are never touched. Every command is printed as it is run (``$ …``
lines, also in ``nnunet.log``); the trained model's results folder (:func:`model_folder`) is what
``nnspine segment cord --model`` takes.

What the seed does not fix (:data:`UNSEEDED`): the phantoms and the training's random draws (network
initialization, patch sampling, augmentation with ``nnUNet_n_proc_DA=0``, the demo's default) are the same on
every run, but PyTorch's multithreaded CPU kernels may sum in a different order from run to run, and with
``nnUNet_n_proc_DA`` > 0 nnU-Net's background data-loading workers are not seeded and batches arrive in the
order the workers finish; such small differences can grow over the short training.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from nnunet_extensions.core.io import InputError, OutputExistsError

if TYPE_CHECKING:
    import pandas

DEMO_DATASET_ID = 990
DEMO_DATASET_NAME = "nnspineDemoSoftCord"
DEMO_TRAINER = "nnUNetTrainerSoftSeg_demo"
DEMO_CONFIG = "3d_fullres"
#: Plans planned for a small GPU-memory target: small patches, so CPU iterations take seconds.
DEMO_PLANS = "nnUNetPlansCPUDemo"
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
#: Seed of the demo's nnU-Net training (Python's ``random``, numpy's global generator, torch).
DEMO_TRAIN_SEED = 0
#: What the demo's seed cannot make repeatable; printed with the demo's verdict (see the module docstring).
UNSEEDED = (
    "The training is seeded (random, numpy, torch: seed 0), but PyTorch's multithreaded CPU kernels may sum in a "
    "different order on each run (and with nnUNet_n_proc_DA > 0, nnU-Net's data-loading workers are not seeded by "
    "it), so the predicted CSA can differ between runs, most at the poorly trained levels."
)
#: File marking a demo folder: only such a folder is cleared by ``--overwrite``.
DEMO_MARKER = ".nnspine_demo"


@dataclass
class DemoResult:
    """Paths and tables produced by :func:`run_demo`."""

    folder: Path
    table: pandas.DataFrame  # noqa: F821
    csv: Path
    plot: Path
    trained: bool
    timings_s: dict = field(default_factory=dict)
    spread: pandas.DataFrame | None = None  # noqa: F821  C3 CSA per contrast and mask kind
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
        return [p for p in (self.csv, self.spread_csv, self.plot, self.folder / "nnunet.log") if p and p.exists()]


#: Decimals in the demo's CSVs (mm² and %: 0.001 is far below any difference the demo shows).
CSV_FLOAT_FORMAT = "%.3f"


def compact_table(table: pandas.DataFrame) -> pandas.DataFrame:  # noqa: F821
    """The per-level CSA table for a terminal: one column per mask, each cell ``CSA (error %)``."""
    import pandas as pd

    out = pd.DataFrame({"level": table["level"], "true": table["true CSA"].map(lambda v: f"{v:.2f}")})
    for name in table.columns:
        if name in ("level", "true CSA") or name.endswith(" error %"):
            continue
        err = table[f"{name} error %"]
        out[name] = [f"{v:.2f} ({e:+.1f}%)" if v == v else "-" for v, e in zip(table[name], err)]
    return out


def nnunet_environment(folder: Path) -> dict:
    """Environment for nnU-Net console scripts: folders inside the demo folder, small-machine settings,
    and our trainers (``nnUNet_extTrainer``)."""
    from nnunet_extensions.integration.trainer_lookup import trainer_environment

    env = dict(os.environ)
    env.update(
        nnUNet_raw=str(folder / "nnUNet_raw"),
        nnUNet_preprocessed=str(folder / "nnUNet_preprocessed"),
        nnUNet_results=str(folder / "nnUNet_results"),
        nnUNet_n_proc_DA=env.get("nnUNet_n_proc_DA", "0"),
        nnUNet_def_n_proc=env.get("nnUNet_def_n_proc", "1"),
        nnUNet_compile=env.get("nnUNet_compile", "f"),
        MPLBACKEND="Agg",
        PYTHONUNBUFFERED="1",  # nnU-Net's epoch lines reach the progress line as they are printed
    )
    env.update(trainer_environment())
    for key in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        Path(env[key]).mkdir(parents=True, exist_ok=True)
    return env


#: nnU-Net log lines the demo turns into one progress line per epoch.
_EPOCH_RE = re.compile(r"Epoch (\d+)\s*$")
_VALUE_RE = re.compile(r"(train_loss|val_loss) (-?[\d.]+(?:e-?\d+)?)")
_TIME_RE = re.compile(r"Epoch time: ([\d.]+) s")
_DICE_RE = re.compile(r"Pseudo dice \[(.*)\]")
#: The lesion trainers' per-epoch line (``val lesion sensitivity S precision P F1 F (...)``).
_LESION_RE = re.compile(r"val lesion sensitivity (\S+) precision (\S+) F1 (\S+)")


def epoch_progress(total_epochs: int | None, say: Callable[[str], None]) -> Callable[[str], None]:
    """A line handler for nnU-Net's training log that calls ``say`` once per finished epoch with the epoch,
    train/val loss, pseudo Dice (and the lesion trainers' lesion F1 on the validation patches), seconds per
    epoch and the estimated time left (s; not when ``total_epochs`` is None, i.e. unknown)."""
    state: dict = {"times": []}

    def handle(line: str) -> None:
        if m := _EPOCH_RE.search(line):
            state.update(epoch=int(m.group(1)), values={}, dice="")
        elif m := _VALUE_RE.search(line):
            state.setdefault("values", {})[m.group(1)] = float(m.group(2))
        elif m := _DICE_RE.search(line):  # "Pseudo dice [np.float32(0.81)]" → "0.81"
            state["dice"] = re.sub(r"np\.float\d+\(([^)]*)\)", r"\1", m.group(1)).strip()
        elif m := _LESION_RE.search(line):
            state["lesion"] = f", lesion F1 {m.group(3)}"
        elif (m := _TIME_RE.search(line)) and "epoch" in state:
            state["times"].append(float(m.group(1)))
            epoch, values = state["epoch"] + 1, state.get("values", {})
            mean = sum(state["times"]) / len(state["times"])
            losses = ", ".join(f"{k} {v:.3f}" for k, v in values.items())
            dice = f", pseudo Dice {state['dice']}" if state.get("dice") else ""
            dice += state.pop("lesion", "")
            if total_epochs is None:
                say(f"      epoch {epoch}: {losses}{dice}; {float(m.group(1)):.0f} s/epoch")
                return
            say(
                f"      epoch {epoch}/{total_epochs}: {losses}{dice}; {float(m.group(1)):.0f} s/epoch, "
                f"about {mean * max(total_epochs - epoch, 0):.0f} s left"
            )

    return handle


def shell_line(cmd: list[str]) -> str:
    """A command as a shell line, console scripts beside this Python by name only (as a user types them)."""
    import shlex

    exe = Path(sys.executable).parent
    shown = [Path(c).name if Path(c).parent == exe and c != sys.executable else c for c in cmd]
    if shown and shown[0] == sys.executable:
        shown[0] = "python"
    return shlex.join(shown)


def model_folder(results_root: str | os.PathLike, trainer: str, plans: str = DEMO_PLANS, configuration: str = DEMO_CONFIG) -> Path:
    """nnU-Net's results folder of the demo's model: ``<nnUNet_results>/DatasetXXX_NAME/<trainer>__<plans>__<config>``."""
    return Path(results_root) / f"Dataset{DEMO_DATASET_ID:03d}_{DEMO_DATASET_NAME}" / f"{trainer}__{plans}__{configuration}"


def seed_training(seed: int) -> None:
    """Seed Python's ``random``, numpy's global generator and torch (network initialization, nnU-Net's data loader
    and augmentation in the main process draw from them)."""
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def seeded_train_command(nnunet_train_args: list[str], seed: int = DEMO_TRAIN_SEED) -> list[str]:
    """The command the demo trains with: ``nnUNetv2_train <args>`` through nnU-Net's own entry point, seeded
    (``python -m nnunet_extensions.apps.demo train --seed S <args>``; see :func:`seeded_train`)."""
    return [sys.executable, "-m", "nnunet_extensions.apps.demo", "train", "--seed", str(seed), *nnunet_train_args]


def seeded_train(argv: list[str]) -> None:
    """``python -m nnunet_extensions.apps.demo train --seed S ARGS...``: :func:`seed_training` (S), then nnU-Net's
    ``nnUNetv2_train ARGS...`` entry point (``nnunetv2.run.run_training.run_training_entry``) in this process."""
    if len(argv) < 3 or argv[0] != "train" or argv[1] != "--seed":
        raise ValueError("usage: python -m nnunet_extensions.apps.demo train --seed S <nnUNetv2_train arguments>")
    seed_training(int(argv[2]))
    from nnunetv2.run.run_training import run_training_entry

    sys.argv = ["nnUNetv2_train", *argv[3:]]
    run_training_entry()


def console(cmd: list[str], env: dict, log: Path, on_line: Callable[[str], None] | None = None) -> None:
    """Run a console script, its output appended to ``log`` (each line also given to ``on_line``);
    raise with the log's tail on failure."""
    with open(log, "a") as f:
        f.write(f"\n$ {' '.join(cmd)}\n")
        f.flush()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        assert proc.stdout is not None
        for line in proc.stdout:
            f.write(line)
            f.flush()
            if on_line is not None:
                on_line(line.rstrip("\n"))
        returncode = proc.wait()
    if returncode != 0:
        tail = "".join(log.read_text().splitlines(keepends=True)[-15:])
        raise RuntimeError(f"'{' '.join(cmd[:3])} …' failed (exit {returncode}); see {log}:\n{tail}")


def console_script(name: str) -> str:
    """Path of a console script (``nnUNetv2_train``, ``nnspine``) beside this Python, else its bare name."""
    exe = Path(sys.executable).parent
    return str(exe / name) if (exe / name).exists() else name


def prepare_demo_folder(folder: str | os.PathLike, overwrite: bool = False, command: str = "nnspine demo") -> Path:
    """Create the demo folder (absolute path returned) with its :data:`DEMO_MARKER`. An existing non-empty
    folder needs ``overwrite`` and is cleared only when an earlier demo wrote it (it holds the marker)."""
    folder = Path(folder).resolve()
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder}: is a file, expected a demo folder (new or empty)")
    if folder.exists() and any(folder.iterdir()):
        if not overwrite:
            raise OutputExistsError(f"{folder}: demo folder exists and is not empty (use --overwrite)")
        if not (folder / DEMO_MARKER).is_file():  # --overwrite clears only what an earlier demo wrote
            raise OutputExistsError(f"{folder}: not an nnspine demo folder (no {DEMO_MARKER}); refusing to delete it")
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    from nnunet_extensions.core.io import write_text

    write_text(
        folder / DEMO_MARKER, f"This folder was written by '{command}'; '{command} --overwrite' may delete it.\n"
    )
    return folder


def _level_table(per_slice, truth: dict) -> dict[int, float]:
    from postprocessing.cord.csa_table import summarize

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


def verdict(table: pandas.DataFrame, spread: pandas.DataFrame | None) -> list[str]:  # noqa: F821
    """The demo's conclusion in plain sentences, from its own figures: first the soft ground truth's effect on
    the C3 CSA spread across contrasts (vs the binary masks), then whether the trained model reduces that
    spread below the binary masks' and measures every level within :data:`TARGET_LEVEL_ERROR_PCT` of the
    truth. Says plainly when it does not."""
    import numpy as np

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


def _contrast_spread(folder: Path, trained: bool) -> pandas.DataFrame | None:  # noqa: F821
    """CSA at C3 (mm²) of each contrast of the test subject, per mask kind, with the SD across contrasts."""
    import numpy as np
    import pandas as pd

    from nnunet_extensions.phantoms.cord_dataset import DEFAULT_ACQUISITIONS
    from postprocessing.cord.csa import measure_file
    from postprocessing.cord.soft_metrics import csa_at_levels

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
    import pandas as pd

    from nnunet_extensions.core.io import load_image, write_text
    from nnunet_extensions.core.labels import sct_level_name
    from nnunet_extensions.phantoms.cord_dataset import write_cord_dataset
    from postprocessing.cord.csa import compute_csa, measure_file
    from postprocessing.qc import plot_csa_profile

    folder = prepare_demo_folder(folder, overwrite)
    log = folder / "nnunet.log"
    timings: dict[str, float] = {}
    commands: list[str] = []

    def run(cmd: list[str], env: dict, on_line: Callable[[str], None] | None = None) -> None:
        """Run a command with :func:`console`, said first as the shell line it is."""
        commands.append(shell_line(cmd))
        say(f"      $ {commands[-1]}")
        console(cmd, env, log, on_line=on_line)
    n_stages = 6 if train else 2

    def stage(n: int, text: str):
        say(f"[{n}/{n_stages}] {text}")
        return time.perf_counter()

    def done(name: str, t0: float):
        timings[name] = time.perf_counter() - t0
        say(f"      done in {timings[name]:.1f} s")

    # 1 ---------------------------------------------------------------------------------------------
    t0 = stage(
        1,
        "phantoms: held-out test subject"
        + (f" + {n_train_subjects} training subjects" if train else "")
        + ", 5 contrasts each",
    )
    test = write_cord_dataset(folder / "phantom_test", n_subjects=1, seed=1000)
    truth = test["subjects"]["sub-01"]["csa_per_level_mm2"]
    if train:
        write_cord_dataset(folder / "phantom_train", n_subjects=n_train_subjects, seed=0)
    done("phantoms", t0)

    test_root = folder / "phantom_test"
    anat_labels = test_root / "derivatives/labels/sub-01/anat"
    ref = CONTRAST_REFERENCE
    discs = anat_labels / f"sub-01_{ref}_label-discs_dlabel.nii.gz"

    # 2 ---------------------------------------------------------------------------------------------
    t0 = stage(
        2,
        f"CSA per level of the test subject's {ref} masks"
        + (" and of its soft GT (nnspine convert softgt)" if train else "")
        + " vs the true CSA",
    )
    soft_truth_path = test_root / f"derivatives/truth/sub-01/anat/sub-01_{ref}_label-SC_softseg.nii.gz"
    per_truth = measure_file(soft_truth_path, discfile=discs)
    per_binary = measure_file(anat_labels / f"sub-01_{ref}_label-SC_seg.nii.gz", discfile=discs)
    columns = {
        "true CSA": {int(k): v for k, v in truth.items()},
        "exact soft mask": _level_table(per_truth, truth),
        "binary mask": _level_table(per_binary, truth),
    }
    profiles = [per_truth.assign(Filename="exact soft mask"), per_binary.assign(Filename="binary mask")]
    if train:  # the converter's soft GT of the test subject, from its 5 binary masks: how close to the truth?
        from dataset_converters.softgt import convert

        convert(test_root, derivatives_out=folder / "phantom_test_derivatives", reference=ref)
        soft_gt = folder / f"phantom_test_derivatives/labels_softseg/sub-01/anat/sub-01_{ref}_label-SC_softseg.nii.gz"
        per_gt = measure_file(soft_gt, discfile=discs)
        columns["soft GT (converter)"] = _level_table(per_gt, truth)
        profiles.append(per_gt.assign(Filename="soft GT (converter)"))
    done("csa", t0)

    trained = False
    if train:
        env = nnunet_environment(folder)  # for the child processes only: this process's environment is untouched
        script = console_script

        # 3 -----------------------------------------------------------------------------------------
        t0 = stage(
            3,
            "soft ground truth of the training subjects → nnU-Net raw dataset "
            f"Dataset{DEMO_DATASET_ID}_{DEMO_DATASET_NAME}",
        )
        convert(
            folder / "phantom_train",
            derivatives_out=folder / "phantom_train_derivatives",
            reference=ref,
            nnunet_dataset=DEMO_DATASET_ID,
            name=DEMO_DATASET_NAME,
            raw_root=env["nnUNet_raw"],
        )
        done("softgt", t0)

        # 4 -----------------------------------------------------------------------------------------
        t0 = stage(4, "nnUNetv2_plan_and_preprocess (small CPU plans) + nnspine preprocess-soft")
        run(
            [
                script("nnUNetv2_plan_and_preprocess"),
                "-d",
                str(DEMO_DATASET_ID),
                "-c",
                DEMO_CONFIG,
                "-np",
                "1",
                "-npfp",
                "1",
                "--verify_dataset_integrity",
                "--no_pbar",
                "-gpu_memory_target",
                str(DEMO_GPU_MEMORY_TARGET_GB),
                "-overwrite_target_spacing",
                *[str(DEMO_TARGET_SPACING_MM)] * 3,
                "-overwrite_plans_name",
                DEMO_PLANS,
            ],
            {**env, "nnUNet_n_proc_DA": "1"},
        )
        run(
            [script("nnspine"), "preprocess-soft", "-d", str(DEMO_DATASET_ID), "-c", DEMO_CONFIG, "-p", DEMO_PLANS],
            env,
        )
        done("preprocess", t0)

        # 5 -----------------------------------------------------------------------------------------
        from trainers.registry import trainer_epochs

        epochs = trainer_epochs(trainer)
        train_args = [str(DEMO_DATASET_ID), DEMO_CONFIG, "all", "-tr", trainer, "-p", DEMO_PLANS, "-device", "cpu"]
        t0 = stage(
            5,
            f"nnUNetv2_train {shell_line(train_args)}, seeded with {DEMO_TRAIN_SEED} (CPU, {epochs} epochs; "
            f"nnU-Net's log: {log})",
        )
        run(seeded_train_command(train_args), env, on_line=epoch_progress(epochs, say))
        done("train", t0)

        # 6 -----------------------------------------------------------------------------------------
        t0 = stage(6, "nnUNetv2_predict --save_probabilities on the test subject → nnspine softmask → CSA")
        pred_in = folder / "predict_input"
        pred_in.mkdir()
        for image in sorted((test_root / "sub-01/anat").glob("sub-01_*.nii.gz")):
            shutil.copy(image, pred_in / image.name.replace(".nii.gz", "_0000.nii.gz"))
        run(
            [
                script("nnUNetv2_predict"),
                "-i",
                str(pred_in),
                "-o",
                str(folder / "prediction"),
                "-d",
                str(DEMO_DATASET_ID),
                "-c",
                DEMO_CONFIG,
                "-f",
                "all",
                "-tr",
                trainer,
                "-p",
                DEMO_PLANS,
                "--save_probabilities",
                "--disable_tta",
                "-device",
                "cpu",
                "-npp",
                "1",
                "-nps",
                "1",
            ],
            env,
        )
        run(
            [
                script("nnspine"),
                "softmask",
                "-i",
                str(folder / "prediction"),
                "-o",
                str(folder / "prediction_soft"),
                "--threshold",
                "0.5",
                "-q",
            ],
            env,
        )
        pred = load_image(folder / "prediction_soft" / f"sub-01_{ref}.nii.gz", "soft")
        if pred.data.max() >= 0.5:
            per_pred = compute_csa(pred, discs=load_image(discs, "labels"))
            columns["predicted soft mask"] = _level_table(per_pred, truth)
            profiles.append(per_pred.assign(Filename="predicted soft mask"))
        else:
            columns["predicted soft mask"] = {}
            say("      (the briefly trained model found no cord in the test image: no predicted CSA)")
        trained = True
        done("predict", t0)

    spread = _contrast_spread(folder, trained)
    table = pd.DataFrame(
        {
            "level": [sct_level_name(int(k)) for k in sorted(columns["true CSA"])],
            **{
                name: [values.get(int(k), float("nan")) for k in sorted(columns["true CSA"])]
                for name, values in columns.items()
            },
        }
    )
    for name in columns:
        if name != "true CSA":
            table[f"{name} error %"] = 100.0 * (table[name] - table["true CSA"]) / table["true CSA"]
    csv = write_text(
        folder / "csa_per_level.csv", table.to_csv(index=False, float_format=CSV_FLOAT_FORMAT), overwrite=True
    )
    plot = plot_csa_profile(
        pd.concat(profiles, ignore_index=True),
        folder / "csa_profile.png",
        title=f"Test subject {ref}: CSA along S-I",
        overwrite=True,
    )
    if spread is not None:
        spread_csv = write_text(
            folder / "csa_C3_across_contrasts.csv",
            spread.to_csv(index=False, float_format=CSV_FLOAT_FORMAT),
            overwrite=True,
        )
    else:
        spread_csv = None
    model = model_folder(folder / "nnUNet_results", trainer) if trained else None
    return DemoResult(folder, table, csv, plot, trained, timings, spread, spread_csv, model, commands)


__all__ = ["DemoResult", "model_folder", "run_demo", "seed_training", "seeded_train", "seeded_train_command"]


if __name__ == "__main__":  # python -m nnunet_extensions.apps.demo train --seed S <nnUNetv2_train arguments>
    seeded_train(sys.argv[1:])
