"""The steps both demos share (``nnspine demo`` and ``nnspine demo --lesion``): the demo folder, the stages and
their timings, and nnU-Net run through its real console scripts.

A :class:`DemoRun` is one demo run in its folder. It says each stage's header (``[n/N] …``) and duration, and runs
every command as a child process whose output goes to ``nnunet.log``, said first as the shell line it is (``$ …``,
kept in :attr:`DemoRun.commands`). nnU-Net's folders (``nnUNet_raw``/``_preprocessed``/``_results``) are inside the
demo folder (:func:`nnunet_environment`), so a user's own nnU-Net folders are never touched. The nnU-Net half of a
demo is :meth:`DemoRun.plan_and_train` (small CPU plans, then the seeded training) and
:meth:`DemoRun.predict`; each demo adds its own data, conversion, postprocessing and measures.

The training runs nnU-Net's ``nnUNetv2_train`` entry point in ``python -m nnunet_spine.apps.demo train --seed S
…`` (:func:`seeded_train`), after seeding Python's ``random``, numpy and torch. What the seed cannot fix is said
with each demo's verdict (:func:`unseeded_note`). Library functions here never print: progress goes through
``say``.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from nnunet_spine.core.io import InputError, OutputExistsError, write_text
from nnunet_spine.integration.trainer_lookup import trainer_environment
from nnunet_spine.trainers.registry import trainer_epochs

DEMO_CONFIG = "3d_fullres"
#: Plans planned for a small GPU-memory target: small patches, so CPU iterations take seconds.
DEMO_PLANS = "nnUNetPlansCPUDemo"
#: Seed of the demos' nnU-Net training by default (Python's ``random``, numpy's global generator, torch).
DEMO_TRAIN_SEED = 0
#: File marking a demo folder: only such a folder is cleared by ``--overwrite``.
DEMO_MARKER = ".nnspine_demo"
#: The module whose ``python -m … train --seed S`` runs :func:`seeded_train` (the command the demos print).
TRAIN_LAUNCHER = "nnunet_spine.apps.demo"
NNUNET_FOLDERS = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")


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
    write_text(
        folder / DEMO_MARKER, f"This folder was written by '{command}'; '{command} --overwrite' may delete it.\n"
    )
    return folder


def nnunet_environment(folder: Path) -> dict:
    """Environment for nnU-Net console scripts: folders inside the demo folder, small-machine settings,
    and our trainers (``nnUNet_extTrainer``)."""
    env = dict(os.environ)
    env.update({key: str(folder / key) for key in NNUNET_FOLDERS})
    env.update(
        nnUNet_n_proc_DA=env.get("nnUNet_n_proc_DA", "0"),
        nnUNet_def_n_proc=env.get("nnUNet_def_n_proc", "1"),
        nnUNet_compile=env.get("nnUNet_compile", "f"),
        MPLBACKEND="Agg",
        PYTHONUNBUFFERED="1",  # nnU-Net's epoch lines reach the progress line as they are printed
    )
    env.update(trainer_environment())
    for key in NNUNET_FOLDERS:
        Path(env[key]).mkdir(parents=True, exist_ok=True)
    return env


def results_folder(results_root: str | os.PathLike, dataset: str, trainer: str, plans: str, configuration: str) -> Path:
    """nnU-Net's results folder of a model: ``<nnUNet_results>/<dataset>/<trainer>__<plans>__<configuration>``."""
    return Path(results_root) / dataset / f"{trainer}__{plans}__{configuration}"


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
    exe = Path(sys.executable).parent
    shown = [Path(c).name if Path(c).parent == exe and c != sys.executable else c for c in cmd]
    if shown and shown[0] == sys.executable:
        shown[0] = "python"
    return shlex.join(shown)


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
    """The command the demos train with: ``nnUNetv2_train <args>`` through nnU-Net's own entry point, seeded
    (``python -m nnunet_spine.apps.demo train --seed S <args>``; see :func:`seeded_train`)."""
    return [sys.executable, "-m", TRAIN_LAUNCHER, "train", "--seed", str(seed), *nnunet_train_args]


def seeded_train(argv: list[str]) -> None:
    """``python -m nnunet_spine.apps.demo train --seed S ARGS...``: :func:`seed_training` (S), then nnU-Net's
    ``nnUNetv2_train ARGS...`` entry point (``nnunetv2.run.run_training.run_training_entry``) in this process."""
    if len(argv) < 3 or argv[0] != "train" or argv[1] != "--seed":
        raise ValueError(f"usage: python -m {TRAIN_LAUNCHER} train --seed S <nnUNetv2_train arguments>")
    seed_training(int(argv[2]))
    from nnunetv2.run.run_training import run_training_entry  # nnU-Net (and torch) only in the training process

    sys.argv = ["nnUNetv2_train", *argv[3:]]
    run_training_entry()


def unseeded_note(seed: int, consequence: str) -> str:
    """What a demo's seed cannot make repeatable (said with its verdict); ``consequence``: what then differs."""
    return (
        f"The training is seeded (random, numpy, torch: seed {seed}), but PyTorch's multithreaded CPU kernels may sum "
        "in a different order on each run (and with nnUNet_n_proc_DA > 0, nnU-Net's data-loading workers are not "
        f"seeded by it), so {consequence}."
    )


def plan_command(dataset_id: int, gpu_memory_target_gb: float, target_spacing_mm: float | None = None) -> list[str]:
    """``nnUNetv2_plan_and_preprocess`` of a demo dataset into the demo's small plans (:data:`DEMO_PLANS`): planned
    for ``gpu_memory_target_gb`` (small patches), with an isotropic target spacing (mm) when given."""
    spacing = ["-overwrite_target_spacing", *[str(target_spacing_mm)] * 3] if target_spacing_mm else []
    return [
        console_script("nnUNetv2_plan_and_preprocess"),
        *("-d", str(dataset_id), "-c", DEMO_CONFIG, "-np", "1", "-npfp", "1"),
        *("--verify_dataset_integrity", "--no_pbar", "-gpu_memory_target", str(gpu_memory_target_gb)),
        *spacing,
        *("-overwrite_plans_name", DEMO_PLANS),
    ]


def predict_command(
    images: Path, output: Path, dataset_id: int, trainer: str, probabilities: bool = False
) -> list[str]:
    """``nnUNetv2_predict`` of a demo model (fold ``all``, no test-time augmentation, CPU, one process) on the
    images in ``images``, with ``--save_probabilities`` when ``probabilities``."""
    model = ["-d", str(dataset_id), "-c", DEMO_CONFIG, "-f", "all", "-tr", trainer, "-p", DEMO_PLANS]
    return [
        console_script("nnUNetv2_predict"),
        *("-i", str(images), "-o", str(output), *model),
        *(["--save_probabilities"] if probabilities else []),
        *("--disable_tta", "-device", "cpu", "-npp", "1", "-nps", "1"),
    ]


@dataclass
class DemoRun:
    """One demo run in ``folder``: its ``n_stages`` stages said through ``say``, with their durations
    (:attr:`timings`, s) and the commands run (:attr:`commands`, as said). Start one with :meth:`start`."""

    folder: Path
    n_stages: int
    say: Callable[[str], None]
    timings: dict[str, float] = field(default_factory=dict)
    commands: list[str] = field(default_factory=list)

    @classmethod
    def start(
        cls, folder: str | os.PathLike, overwrite: bool, n_stages: int, say: Callable[[str], None], command: str
    ) -> DemoRun:
        """A run in a new demo folder (:func:`prepare_demo_folder`; ``command`` is the demo's command line)."""
        return cls(prepare_demo_folder(folder, overwrite, command=command), n_stages, say)

    @property
    def log(self) -> Path:
        """nnU-Net's output, every command's (``nnunet.log``)."""
        return self.folder / "nnunet.log"

    @cached_property
    def env(self) -> dict:
        """The child processes' environment (:func:`nnunet_environment`; creates nnU-Net's folders on first use;
        this process's environment is untouched)."""
        return nnunet_environment(self.folder)

    @contextmanager
    def stage(self, n: int, name: str, text: str) -> Iterator[None]:
        """Stage ``n``: says ``[n/N] text``, then, when the block has run, its duration (kept as ``name``)."""
        self.say(f"[{n}/{self.n_stages}] {text}")
        t0 = time.perf_counter()
        yield
        self.timings[name] = time.perf_counter() - t0
        self.say(f"      done in {self.timings[name]:.1f} s")

    def run(self, cmd: list[str], env: dict | None = None, on_line: Callable[[str], None] | None = None) -> None:
        """Run a command with :func:`console` (in :attr:`env` unless ``env``), said first as the shell line it is."""
        self.commands.append(shell_line(cmd))
        self.say(f"      $ {self.commands[-1]}")
        console(cmd, self.env if env is None else env, self.log, on_line=on_line)

    def plan_and_train(
        self,
        dataset_id: int,
        trainer: str,
        *,
        seed: int,
        gpu_memory_target_gb: float,
        target_spacing_mm: float | None = None,
        then_preprocess: dict[str, list[str]] | None = None,
    ) -> None:
        """Stages 4 and 5: :func:`plan_command` (and the commands of ``then_preprocess``, by the name its header
        gives them), then ``trainer`` trained on the dataset's fold ``all`` on CPU, seeded with ``seed``."""
        extra = then_preprocess or {}
        with self.stage(4, "preprocess", " + ".join(["nnUNetv2_plan_and_preprocess (small CPU plans)", *extra])):
            self.run(
                plan_command(dataset_id, gpu_memory_target_gb, target_spacing_mm), {**self.env, "nnUNet_n_proc_DA": "1"}
            )
            for cmd in extra.values():
                self.run(cmd)
        epochs = trainer_epochs(trainer)
        train_args = [str(dataset_id), DEMO_CONFIG, "all", "-tr", trainer, "-p", DEMO_PLANS, "-device", "cpu"]
        header = (
            f"nnUNetv2_train {shell_line(train_args)}, seeded with {seed} (CPU"
            + (f", {epochs} epochs" if epochs else "")
            + f"; nnU-Net's log: {self.log})"
        )
        with self.stage(5, "train", header):
            self.run(seeded_train_command(train_args, seed), on_line=epoch_progress(epochs, self.say))

    def predict(self, images: Path, output: Path, dataset_id: int, trainer: str, probabilities: bool = False) -> None:
        """:func:`predict_command` run (within the caller's stage)."""
        self.run(predict_command(images, output, dataset_id, trainer, probabilities))

    def write_timings(self, name: str = "timings_s.json") -> Path:
        """The stages' durations (s, 2 decimals) as JSON in the demo folder."""
        timings = {k: round(v, 2) for k, v in self.timings.items()}
        return write_text(self.folder / name, json.dumps(timings, indent=2) + "\n", overwrite=True)


def existing(paths: list[Path | None]) -> list[Path]:
    """The given files that exist (a result's ``written()``)."""
    return [p for p in paths if p and p.exists()]


__all__ = [
    "DEMO_CONFIG",
    "DEMO_PLANS",
    "DEMO_TRAIN_SEED",
    "DemoRun",
    "console",
    "console_script",
    "epoch_progress",
    "existing",
    "nnunet_environment",
    "plan_command",
    "predict_command",
    "prepare_demo_folder",
    "results_folder",
    "seed_training",
    "seeded_train",
    "seeded_train_command",
    "shell_line",
    "unseeded_note",
]
