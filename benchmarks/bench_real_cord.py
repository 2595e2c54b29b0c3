"""The first model on real scans: stock binary nnU-Net vs the soft-segmentation trainer on the Grey Matter Challenge.

What: the real Grey Matter Challenge data (``../shared/data/gm_challenge``: axial T2*w, 2.5-5 mm slices, SCT's
manual cord masks ``_seg-manual`` on run-1 only, run-2 an unlabelled rescan in the same session; sessions written
into subject labels, so sub-9709Ses1 and sub-9709Ses2 are one person; 8 labelled sessions of 6 persons, each
person from a different site). Two arms trained with one budget (``--epochs`` x ``--iterations``):

  (a) binary: stock ``nnUNetTrainer_budget`` on the converter's binary labels   (the reference of every p)
  (b) soft:   ``nnUNetTrainerSoftSeg_budget`` on the converter's soft targets

in 3 folds grouped by person (4 persons train, 2 are held out, every person held out once). On each held-out
session: Dice of the prediction binarised at 0.5 vs the manual mask (run-1), the per-slice CSA error vs the manual
mask's CSA (run-1), and the scan-rescan agreement of the predicted CSA (run-1 vs run-2, no label needed). The two
arms are compared per person with a paired two-sided Wilcoxon signed-rank test (6 persons: smallest p 0.03125).

How: every step is the real console script, as ``tests/e2e/test_real_road.py`` runs them:
``nnspine convert softgt --group-by '^([0-9]+)'`` → our own ``splits_final.json`` (3 person folds) →
``nnUNetv2_plan_and_preprocess -c 2d`` (a small CPU plan: ``--inplane-mm`` in-plane, 1 GB planner target) →
``nnspine preprocess-soft`` → ``nnUNetv2_train`` per fold and arm → ``nnspine segment cord`` on the held-out run-1
and run-2 images → ``nnspine csa --perslice`` on predictions and manual masks. Outputs of nnU-Net and nnspine go to
``OUT/logs/``. Running the same command again on the same ``-o`` resumes: conversion and planning have done-markers,
a fold/arm with ``checkpoint_final.pth`` is not retrained (an interrupted one continues with nnU-Net's ``--c``),
existing predictions and CSA tables are kept. Each budget has its own folder (``OUT/budget_<E>x<I>/``), so several
budgets share one conversion and plan.

Printed: the folds (persons, sites), the plan beside nnU-Net's default 2d plan, one table (per arm Dice, CSA error,
scan-rescan difference, coefficient of variation, p vs the binary arm), the training seconds per iteration and the
wall time per step. Written: ``--results``/real_cord.csv (one row per held-out session and arm) and real_cord.png.

Usage::

    python benchmarks/bench_real_cord.py -o runs/real_cord --epochs 10 --iterations 50     # the CPU run
    python benchmarks/bench_real_cord.py -o /tmp/rc --epochs 1 --iterations 2 --results /tmp/rc/results  # smoke
    python benchmarks/bench_real_cord.py -o runs/real_cord --epochs 100 --iterations 250 --device cuda \\
        --inplane-mm 0.6 --gpu-memory-target 8 --tta                                       # on a GPU
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = (REPO / ".." / "shared" / "data" / "gm_challenge").resolve()
DEFAULT_RESULTS = REPO / "benchmarks" / "results" / "real_cord"
DATASET_ID, NAME = 612, "GMRealCord"
DATASET = f"Dataset{DATASET_ID}_{NAME}"
CONFIG = "2d"
CONTRAST = "T2starw"
MASK_SUFFIX = "_seg-manual"
#: The person is the first capture group in the subject label without ``sub-`` (sessions are written into labels).
GROUP_BY = "^([0-9]+)"
N_FOLDS = 3
#: nnU-Net's target spacing along S-I (mm); the 2d configuration does not resample along it.
SI_SPACING_MM = 3.0


@dataclass(frozen=True)
class Arm:
    """One trained model family of the comparison."""

    key: str
    name: str
    trainer: str
    suffix: str  # what ``nnspine segment cord`` writes for this trainer
    description: str


ARMS = (
    Arm("a", "binary", "nnUNetTrainer_budget", "_label-SC_seg", "stock nnUNetTrainer, binary labels (CE + Dice)"),
    Arm("b", "soft", "nnUNetTrainerSoftSeg_budget", "_label-SC_softseg", "nnUNetTrainerSoftSeg, soft targets"),
)


@dataclass(frozen=True)
class Session:
    """One labelled session: its run-1 (labelled) and run-2 (rescan) images and run-1's manual cord mask."""

    subject: str  # subject label with sub-, e.g. sub-9709Ses1
    person: str  # e.g. 9709
    site: str
    field_t: str  # field strength in tesla, as participants.tsv writes it
    run1: Path
    run2: Path
    mask: Path

    @property
    def case1(self) -> str:
        return f"{self.subject}_run-1_{CONTRAST}"

    @property
    def case2(self) -> str:
        return f"{self.subject}_run-2_{CONTRAST}"


# ------------------------------------------------------------------------------------------------ the data
def read_sessions(data: Path) -> list[Session]:
    """The labelled sessions of the dataset (run-1 mask and both runs present), with person, site and field."""
    from nnunet_spine.dataset_converters.splits import subject_groups

    participants = pd.read_csv(data / "participants.tsv", sep="\t", dtype=str).set_index("participant_id")
    sessions = []
    for sub_dir in sorted(data.glob("sub-*")):
        sub = sub_dir.name
        run1 = sub_dir / "anat" / f"{sub}_run-1_{CONTRAST}.nii.gz"
        run2 = sub_dir / "anat" / f"{sub}_run-2_{CONTRAST}.nii.gz"
        mask = data / "derivatives" / "labels" / sub / "anat" / f"{sub}_run-1_{CONTRAST}{MASK_SUFFIX}.nii.gz"
        if not (run1.is_file() and run2.is_file() and mask.is_file()):
            continue
        person = subject_groups([sub], GROUP_BY)[sub]
        row = participants.loc[sub] if sub in participants.index else {}
        sessions.append(
            Session(sub, person, str(row.get("Site", "n/a")), str(row.get("Field Strength [T]", "n/a")), run1, run2,
                    mask)
        )  # fmt: skip
    return sessions


def make_folds(sessions: Sequence[Session], n_folds: int = N_FOLDS) -> list[list[str]]:
    """Held-out persons per fold: persons sorted by (most sessions first, id) dealt round-robin, so that the
    persons scanned in several sessions fall in different folds; every person is held out exactly once."""
    counts: dict[str, int] = {}
    for s in sessions:
        counts[s.person] = counts.get(s.person, 0) + 1
    order = sorted(counts, key=lambda p: (-counts[p], int(p) if p.isdigit() else p))
    return [order[k::n_folds] for k in range(n_folds)]


def splits(sessions: Sequence[Session], folds: Sequence[Sequence[str]]) -> list[dict[str, list[str]]]:
    """nnU-Net's ``splits_final.json``: fold k trains on the run-1 cases of the persons not held out in k and
    validates on the held-out persons' run-1 cases."""
    out = []
    for held_out in folds:
        out.append(
            {
                "train": sorted(s.case1 for s in sessions if s.person not in held_out),
                "val": sorted(s.case1 for s in sessions if s.person in held_out),
            }
        )
    return out


def describe_person(person: str, sessions: Sequence[Session]) -> str:
    """``9709 (Milan, 1.5 T; Ses1, Ses2)``: a person, its site, field strength and sessions."""
    mine = [s for s in sessions if s.person == person]
    labels = [s.subject[len("sub-") + len(person) :] or s.subject for s in mine]
    tail = f"; {', '.join(labels)}" if len(mine) > 1 else ""
    return f"{person} ({mine[0].site}, {mine[0].field_t} T{tail})"


# ------------------------------------------------------------------------------------------------ running
class Steps:
    """Runs console scripts with their output appended to logs under ``folder/logs`` and keeps the wall time of
    each step (seconds): of this run (:attr:`timings_s`), and of every run in ``folder/timings.json`` (per scope:
    ``common`` or a budget folder's name; per step and log; a step run again, e.g. a continued training, adds up)."""

    def __init__(self, folder: Path, say=print):
        self.logs = folder / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.record_file = folder / "timings.json"
        self.timings_s: dict[str, float] = {}
        self.scope = "common"
        self.say = say

    def run(self, step: str, cmd: list[str], env: dict, log: str, ok: tuple[int, ...] = (0,)) -> int:
        """Run ``cmd`` (a console script next to this interpreter when there is one), its output appended to
        ``logs/<log>``; its wall time added to ``step``; raise with the log's tail unless the exit code is in ``ok``."""
        exe = Path(sys.executable).parent / cmd[0]
        full = [str(exe) if exe.exists() else cmd[0], *cmd[1:]]
        path = self.logs / log
        t0 = time.perf_counter()
        with open(path, "a") as f:
            f.write(f"\n$ {' '.join(cmd)}\n")
            f.flush()
            code = subprocess.run(full, env=env, stdout=f, stderr=subprocess.STDOUT).returncode
        seconds = time.perf_counter() - t0
        self.timings_s[step] = self.timings_s.get(step, 0.0) + seconds
        if code not in ok:
            tail = "".join(path.read_text().splitlines(keepends=True)[-25:])
            raise RuntimeError(f"'{' '.join(cmd[:3])} …' failed (exit {code}); see {path}:\n{tail}")
        record = self.recorded()
        mine = record.setdefault(self.scope, {})
        mine[f"{step} | {log}"] = mine.get(f"{step} | {log}", 0.0) + seconds
        self.record_file.write_text(json.dumps(record, indent=1) + "\n")
        return code

    def recorded(self) -> dict[str, dict[str, float]]:
        """``timings.json``: scope -> ``"<step> | <log>"`` -> seconds."""
        return json.loads(self.record_file.read_text()) if self.record_file.is_file() else {}

    def recorded_by_step(self, scopes: Sequence[str]) -> dict[str, float]:
        """Recorded seconds per step over ``scopes`` (all folds of a step added)."""
        out: dict[str, float] = {}
        for scope in scopes:
            for key, seconds in self.recorded().get(scope, {}).items():
                step = key.split(" | ")[0]
                out[step] = out.get(step, 0.0) + seconds
        return out


def base_environment(folder: Path) -> dict:
    """nnU-Net folders inside ``folder``, our trainers (``nnUNet_extTrainer``), small-machine settings
    (``nnUNet_n_proc_DA=0 nnUNet_def_n_proc=1 nnUNet_compile=f``)."""
    from nnunet_spine.apps.demo_steps import nnunet_environment

    env = nnunet_environment(folder)
    env.update(nnUNet_n_proc_DA="0", nnUNet_def_n_proc="1", nnUNet_compile="f")
    return env


def budget_environment(env: dict, folder: Path, epochs: int, iterations: int, val_iterations: int, tta: bool) -> dict:
    """The training budget read by :mod:`nnunet_spine.trainers.budget` and this budget's own ``nnUNet_results``
    (``folder/nnUNet_results``)."""
    results = folder / "nnUNet_results"
    results.mkdir(parents=True, exist_ok=True)
    return {
        **env,
        "NNSPINE_EPOCHS": str(epochs),
        "NNSPINE_ITERATIONS": str(iterations),
        "NNSPINE_VAL_ITERATIONS": str(val_iterations),
        "NNSPINE_NO_TTA": "0" if tta else "1",
        "nnUNet_results": str(results),
    }


def plans_name(inplane_mm: float) -> str:
    """Plans identifier of a CPU plan, e.g. ``nnUNetPlansCPU1mm`` for 1.0 mm, ``nnUNetPlansCPU1p5mm`` for 1.5 mm."""
    return f"nnUNetPlansCPU{inplane_mm:.2f}".rstrip("0").rstrip(".").replace(".", "p") + "mm"


def convert(steps: Steps, env: dict, data: Path, out: Path) -> Path:
    """``nnspine convert softgt`` of the whole dataset into the raw dataset (once: ``.convert.done``)."""
    raw = Path(env["nnUNet_raw"]) / DATASET
    marker = out / ".convert.done"
    if marker.is_file():
        steps.say("conversion: done earlier")
        return raw
    cmd = ["nnspine", "convert", "softgt", "-i", str(data), "--derivatives-out", str(out / "derivatives"),
           "--nnunet-dataset", str(DATASET_ID), "--name", NAME, "--group-by", GROUP_BY, "-q"]  # fmt: skip
    if raw.exists() or (out / "derivatives").exists():
        cmd.append("--overwrite")  # an interrupted conversion
    steps.run("convert", cmd, env, "convert.log")
    marker.write_text("done\n")
    return raw


def write_splits(env: dict, raw: Path, folds_json: list[dict]) -> None:
    """Our person folds as ``splits_final.json`` in the raw dataset (nnU-Net's planner copies it to the
    preprocessed folder) and, once that exists, in the preprocessed folder too (what the trainer reads)."""
    text = json.dumps(folds_json, indent=2) + "\n"
    (raw / "splits_final.json").write_text(text)
    pre = Path(env["nnUNet_preprocessed"]) / DATASET
    if pre.is_dir():
        (pre / "splits_final.json").write_text(text)


def plan(steps: Steps, env: dict, out: Path, plans: str, inplane_mm: float, gpu_memory_gb: float) -> dict:
    """``nnUNetv2_plan_and_preprocess -c 2d`` with the CPU plan, nnU-Net's own default plan for comparison
    (``nnUNetv2_plan_experiment``, plans only) and ``nnspine preprocess-soft`` (once per plan: a done-marker).
    Returns both plans' 2d configurations: ``{"cpu": ..., "default": ...}``."""
    marker = out / f".plan_{plans}.done"
    pre = Path(env["nnUNet_preprocessed"]) / DATASET
    plan_env = {**env, "nnUNet_n_proc_DA": "1"}  # 0 makes the planner call torch.set_num_threads(0)
    if marker.is_file():
        steps.say(f"planning {plans}: done earlier")
    else:
        steps.run(
            "plan",
            ["nnUNetv2_plan_and_preprocess", "-d", str(DATASET_ID), "-c", CONFIG, "-np", "1", "-npfp", "1",
             "--verify_dataset_integrity", "--no_pbar", "-gpu_memory_target", str(gpu_memory_gb),
             "-overwrite_plans_name", plans, "-overwrite_target_spacing", str(SI_SPACING_MM), str(inplane_mm),
             str(inplane_mm)],
            plan_env,
            "plan.log",
        )  # fmt: skip
        if not (pre / "nnUNetPlans.json").is_file():
            steps.run("plan", ["nnUNetv2_plan_experiment", "-d", str(DATASET_ID)], plan_env, "plan.log")
        steps.run(
            "preprocess-soft",
            ["nnspine", "preprocess-soft", "-d", str(DATASET_ID), "-c", CONFIG, "-p", plans, "--overwrite", "-q"],
            env,
            "plan.log",
        )
        marker.write_text("done\n")
    return {
        "cpu": json.loads((pre / f"{plans}.json").read_text())["configurations"][CONFIG],
        "default": json.loads((pre / "nnUNetPlans.json").read_text())["configurations"][CONFIG],
    }


def model_folder(env: dict, arm: Arm, plans: str) -> Path:
    """nnU-Net's results folder of an arm's model (all folds)."""
    from nnunet_spine.apps.demo_steps import results_folder

    return results_folder(env["nnUNet_results"], DATASET, arm.trainer, plans, CONFIG)


def train(steps: Steps, env: dict, arm: Arm, fold: int, plans: str, device: str) -> str:
    """``nnUNetv2_train`` of one fold and arm unless its ``checkpoint_final.pth`` exists; an interrupted
    training (a latest or best checkpoint) continues with ``--c``. Returns what was done."""
    fold_dir = model_folder(env, arm, plans) / f"fold_{fold}"
    if (fold_dir / "checkpoint_final.pth").is_file():
        return "trained earlier"
    cmd = ["nnUNetv2_train", str(DATASET_ID), CONFIG, str(fold), "-tr", arm.trainer, "-p", plans, "-device", device]
    resumed = any((fold_dir / f"checkpoint_{k}.pth").is_file() for k in ("latest", "best"))
    if resumed:
        cmd.append("--c")
    steps.run(f"train {arm.name}", cmd, env, f"train_{arm.name}_fold{fold}.log")
    return "continued (--c)" if resumed else "trained"


def link_inputs(out: Path, fold: int, sessions: Sequence[Session]) -> Path:
    """A folder of links to the held-out sessions' run-1 and run-2 images (the input of ``segment cord``)."""
    folder = out / "inputs" / f"fold_{fold}"
    folder.mkdir(parents=True, exist_ok=True)
    for s in sessions:
        for image in (s.run1, s.run2):
            link = folder / image.name
            if not link.exists():
                os.symlink(image.resolve(), link)
    return folder


def segment(
    steps: Steps, env: dict, arm: Arm, fold: int, plans: str, inputs: Path, out: Path, cases: Sequence[str], device: str
) -> dict[str, Path | None]:
    """``nnspine segment cord`` with fold ``fold`` of an arm's model on the images in ``inputs`` (skipped when
    every case has a prediction or an empty-mask record; ``--skip-existing`` resumes a partial run). Returns case ->
    predicted mask, None where the model predicted no cord.

    A model that predicts no cord in an image is a result, not a crash: ``segment`` records that case as failed at
    its CSA step (``mask is empty``), removes its outputs and exits 2, which is accepted here; any other failure
    (``failures.csv``) or a prediction neither written nor recorded empty raises."""
    expected = {c: out / f"{c}{arm.suffix}.nii.gz" for c in cases}
    if not all(p.is_file() or c in empty_cases(out) for c, p in expected.items()):
        steps.run(
            f"segment {arm.name}",
            ["nnspine", "segment", "cord", "-i", str(inputs), "-o", str(out), "--model",
             str(model_folder(env, arm, plans)), "-f", str(fold), "--device", device, "--skip-existing", "-q"],
            env,
            f"segment_{arm.name}_fold{fold}.log",
            ok=(0, 2),
        )  # fmt: skip
    failures = out / "failures.csv"
    if failures.is_file():
        other = [f"{r['case']}: {r['reason']}" for r in pd.read_csv(failures).to_dict("records")
                 if "mask is empty" not in str(r["reason"])]  # fmt: skip
        if other:
            raise RuntimeError(f"nnspine segment cord failed: {'; '.join(other)} (see {steps.logs})")
    empty = empty_cases(out)
    missing = [str(p) for c, p in expected.items() if not p.is_file() and c not in empty]
    if missing:
        raise RuntimeError(f"nnspine segment cord wrote no {', '.join(missing)} (see {steps.logs})")
    return {c: (None if c in empty else p) for c, p in expected.items()}


def empty_cases(out: Path) -> set[str]:
    """Cases of a ``segment cord`` output folder whose prediction had no cord (``failures.csv``: ``mask is empty``)."""
    failures = out / "failures.csv"
    if not failures.is_file():
        return set()
    return {str(r["case"]) for r in pd.read_csv(failures).to_dict("records") if "mask is empty" in str(r["reason"])}


def csa_table(steps: Steps, env: dict, step: str, masks: Iterable[Path], csv_path: Path) -> pd.DataFrame:
    """``nnspine csa --perslice`` of ``masks`` into ``csv_path`` (kept when it exists); an empty mask is skipped by
    the tool (exit 2) and has no rows. Returns the table: ``case`` (file name without suffix and ending),
    ``slice`` (index I->S), ``area_mm2``."""
    masks = list(masks)
    if masks and not csv_path.is_file():
        csv_path.parent.mkdir(parents=True, exist_ok=True)
        steps.run(step, ["nnspine", "csa", "-i", *map(str, masks), "--perslice", "-o", str(csv_path), "-q"], env,
                  "csa.log", ok=(0, 2))  # fmt: skip
    if not csv_path.is_file():  # every mask empty
        return pd.DataFrame({"file": [], "slice": [], "area_mm2": []})
    table = pd.read_csv(csv_path)
    return pd.DataFrame(
        {
            "file": [Path(f).name for f in table["Filename"]],
            "slice": table["Slice (I->S)"].astype(int),
            "area_mm2": pd.to_numeric(table["MEAN(area)"], errors="coerce").fillna(0.0),
        }
    )


def areas_of(table: pd.DataFrame, file_name: str) -> pd.Series:
    """CSA per slice (mm², index: slice I->S) of one file of a :func:`csa_table`; slices absent have no cord."""
    rows = table[table["file"] == file_name]
    return pd.Series(rows["area_mm2"].to_numpy(float), index=rows["slice"].to_numpy(int), dtype=float)


# ------------------------------------------------------------------------------------------------ measures
def dice(pred: Path | None, manual: Path) -> float:
    """Dice (0-1) of ``pred`` binarised at 0.5 (>= 0.5 is cord) vs the manual mask (> 0.5), on the same grid;
    ``pred`` None is a prediction without cord (:func:`empty_cases`)."""
    import nibabel as nib

    from nnunet_spine.core.lesion_matching import dice as voxel_dice

    m = np.asarray(nib.load(str(manual)).dataobj) > 0.5
    p = np.zeros_like(m) if pred is None else np.asarray(nib.load(str(pred)).dataobj) >= 0.5
    return voxel_dice(m, p)


def csa_error(pred: pd.Series, manual: pd.Series) -> tuple[float, float, int]:
    """Per-slice CSA error of the prediction vs the manual mask, (pred - manual) / manual x 100 (%), over the
    slices where the manual mask has cord (a slice without predicted cord counts as -100 %). Returns the mean
    signed and mean absolute error (%) and the number of slices."""
    manual = manual[manual > 0]
    err = (pred.reindex(manual.index).fillna(0.0) - manual) / manual * 100.0
    return float(err.mean()), float(err.abs().mean()), int(err.size)


def slice_world_z(image: Path) -> np.ndarray:
    """World S-I coordinate (mm) of each slice's centre (the in-plane centre of the image), slices numbered I->S
    along the voxel axis closest to S-I (as ``nnspine csa`` numbers them)."""
    import nibabel as nib

    from nnunet_spine.core.geometry import si_axis

    img = nib.load(str(image))
    a = img.affine
    axis = si_axis(a)
    centre = (np.array(img.shape[:3], float) - 1) / 2
    z = []
    for k in range(img.shape[axis]):
        v = centre.copy()
        v[axis] = k
        z.append(float(a[2, :3] @ v + a[2, 3]))
    return np.sort(np.asarray(z))


def align_slices(run1: Path, run2: Path) -> dict[int, tuple[int, float]]:
    """Run-1 slice -> (run-2 slice, |world z difference| mm): each run-1 slice paired with the run-2 slice of the
    nearest world S-I position, kept within half a slice thickness (both runs are in one session: one scanner
    frame). Identical affines give the identity."""
    z1, z2 = slice_world_z(run1), slice_world_z(run2)
    half = 0.5 * float(np.median(np.diff(z2))) if z2.size > 1 else np.inf
    pairs = {}
    for k, z in enumerate(z1):
        j = int(np.argmin(np.abs(z2 - z)))
        if abs(z2[j] - z) <= half:
            pairs[k] = (j, float(abs(z2[j] - z)))
    return pairs


def scan_rescan(csa1: pd.Series, csa2: pd.Series, pairs: dict[int, tuple[int, float]]) -> dict[str, float]:
    """Agreement of the predicted CSA of run-1 and run-2 over the common slices (paired by :func:`align_slices`,
    cord predicted in both):

    * ``rescan_absdiff_mm2``: mean over slices of |CSA1 - CSA2| (mm²);
    * ``rescan_absdiff_pct``: mean over slices of |CSA1 - CSA2| / ((CSA1 + CSA2) / 2) x 100 (%);
    * ``cov_pct``: SD / mean x 100 of the two runs' mean CSA over those slices (sample SD of two values,
      = |m1 - m2| / sqrt(2) / ((m1 + m2) / 2) x 100);
    * ``csa_run1_mm2``, ``csa_run2_mm2``: those two means; ``rescan_n_common``: the slices; ``rescan_n_one_run``:
      paired slices with cord predicted in one run only (left out); ``rescan_max_dz_mm``: largest world S-I
      distance of a used pair.
    """
    a, b, dz, one = [], [], [], 0
    for k, (j, d) in sorted(pairs.items()):
        x, y = float(csa1.get(k, 0.0)), float(csa2.get(j, 0.0))
        if x > 0 and y > 0:
            a.append(x)
            b.append(y)
            dz.append(d)
        elif x > 0 or y > 0:
            one += 1
    if not a:
        nan = np.nan
        return dict(rescan_absdiff_mm2=nan, rescan_absdiff_pct=nan, cov_pct=nan, csa_run1_mm2=nan, csa_run2_mm2=nan,
                    rescan_n_common=0, rescan_n_one_run=one, rescan_max_dz_mm=nan)  # fmt: skip
    a, b = np.array(a), np.array(b)
    m1, m2 = float(a.mean()), float(b.mean())
    return dict(
        rescan_absdiff_mm2=float(np.abs(a - b).mean()),
        rescan_absdiff_pct=float((np.abs(a - b) / ((a + b) / 2)).mean() * 100),
        cov_pct=float(np.std([m1, m2], ddof=1) / np.mean([m1, m2]) * 100),
        csa_run1_mm2=m1,
        csa_run2_mm2=m2,
        rescan_n_common=int(a.size),
        rescan_n_one_run=one,
        rescan_max_dz_mm=float(max(dz)),
    )


def per_person(rows: pd.DataFrame) -> pd.DataFrame:
    """Per arm and person: the mean over the person's sessions of each measure."""
    cols = ["dice", "csa_err_signed_pct", "csa_err_abs_pct", "rescan_absdiff_mm2", "rescan_absdiff_pct", "cov_pct"]
    return rows.groupby(["arm", "person"], sort=True)[cols].mean().reset_index()


def compare_arms(persons: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Table per arm (mean ± SD over persons) and the paired Wilcoxon p of each measure vs the binary arm
    (``p_<measure>``) with the persons it pairs (``n_<measure>``: a person without rescan figures in one arm, where
    that arm predicted no cord, is left out of the rescan tests); returns the table and the number of persons."""
    from nnunet_spine.core.stats import wilcoxon_signed_rank

    base = persons[persons["arm"] == ARMS[0].name].set_index("person")
    out = []
    for arm in ARMS:
        mine = persons[persons["arm"] == arm.name].set_index("person")
        row = {"arm": f"({arm.key}) {arm.name}"}
        for col in ("dice", "csa_err_signed_pct", "csa_err_abs_pct", "rescan_absdiff_mm2", "rescan_absdiff_pct",
                    "cov_pct"):  # fmt: skip
            row[col] = float(mine[col].mean())
            row[f"{col}_sd"] = float(mine[col].std(ddof=1)) if len(mine) > 1 else np.nan
        if arm is not ARMS[0]:
            common = base.index.intersection(mine.index)
            for col in ("dice", "csa_err_abs_pct", "rescan_absdiff_pct", "cov_pct"):
                x, y = mine.loc[common, col], base.loc[common, col]
                row[f"p_{col}"] = wilcoxon_signed_rank(x, y)[1]
                row[f"n_{col}"] = int((np.isfinite(x.to_numpy(float)) & np.isfinite(y.to_numpy(float))).sum())
        out.append(row)
    return pd.DataFrame(out), int(base.index.intersection(persons["person"]).size)


def format_table(table: pd.DataFrame, n: int) -> str:
    """The printed comparison: one line per arm, then the p-values (paired over ``n`` persons)."""

    def pm(row, col, fmt):
        sd = row[f"{col}_sd"]
        return f"{row[col]:{fmt}} ± {sd:{fmt}}" if np.isfinite(sd) else f"{row[col]:{fmt}}"

    head = (f"{'arm':<12} {'Dice':>15} {'CSA err signed %':>18} {'CSA err |%|':>15} {'rescan |diff| mm²':>18} "
            f"{'rescan |diff| %':>16} {'CoV %':>13}")  # fmt: skip
    lines = [head, "-" * len(head)]
    for _, r in table.iterrows():
        lines.append(
            f"{r['arm']:<12} {pm(r, 'dice', '.3f'):>15} {pm(r, 'csa_err_signed_pct', '+.1f'):>18} "
            f"{pm(r, 'csa_err_abs_pct', '.1f'):>15} {pm(r, 'rescan_absdiff_mm2', '.2f'):>18} "
            f"{pm(r, 'rescan_absdiff_pct', '.1f'):>16} {pm(r, 'cov_pct', '.2f'):>13}"
        )
    for _, r in table.iterrows():
        if "p_dice" in r and np.isfinite(r.get("p_dice", np.nan)):
            tests = []
            for col, label in (("dice", "Dice"), ("csa_err_abs_pct", "|CSA error|"),
                               ("rescan_absdiff_pct", "rescan |diff| %"), ("cov_pct", "CoV")):  # fmt: skip
                fewer = f" (n = {int(r[f'n_{col}'])})" if int(r[f"n_{col}"]) != n else ""
                tests.append(f"{label} {r[f'p_{col}']:.4g}{fewer}")
            lines.append(
                f"p {r['arm']} vs ({ARMS[0].key}) {ARMS[0].name} (two-sided Wilcoxon signed-rank, n = {n} persons): "
                + ", ".join(tests)
            )
    return "\n".join(lines)


def empty_predictions(frame: pd.DataFrame) -> list[str]:
    """One line per arm with predictions without cord (:func:`empty_cases`): how many of its run-1 and run-2 images,
    which sessions and folds. Their Dice is 0, their CSA error -100 % per slice, and they have no rescan figures."""
    lines = []
    for arm in ARMS:
        mine = frame[frame["arm"] == arm.name]
        hit = mine[mine["empty_run1"] | mine["empty_run2"]]
        if hit.empty:
            continue
        runs = {(True, True): "run-1 and run-2", (True, False): "run-1", (False, True): "run-2"}
        which = ", ".join(
            f"{r['subject']} (fold {r['fold']}, {runs[(bool(r['empty_run1']), bool(r['empty_run2']))]})"
            for _, r in hit.iterrows()
        )
        n_images = int(mine["empty_run1"].sum() + mine["empty_run2"].sum())
        lines.append(f"({arm.key}) {arm.name}: no cord predicted in {n_images} of {2 * len(mine)} images: {which}")
    return lines


def seconds_per_iteration(fold_dir: Path, iterations: int) -> float:
    """Median nnU-Net epoch time (from the fold's ``training_log_*.txt``, ``Epoch time: X s``; training and
    validation iterations and the epoch's end) divided by the training iterations per epoch (s)."""
    times = []
    for log in fold_dir.glob("training_log_*.txt"):
        times += [float(x) for x in re.findall(r"Epoch time: ([\d.]+) s", log.read_text())]
    return float(np.median(times)) / iterations if times else np.nan


def plot(rows: pd.DataFrame, persons: pd.DataFrame, path: Path, title: str) -> None:
    """Three panels per person and arm: Dice (run-1), signed CSA error (run-1, %), and mean predicted CSA of
    run-1 vs run-2 over the common slices (mm², identity line)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    names = [a.name for a in ARMS]
    ids = sorted(persons["person"].unique(), key=lambda p: int(p) if p.isdigit() else p)
    for ax, col, label in ((axes[0], "dice", "Dice (run-1, binarised at 0.5)"),
                           (axes[1], "csa_err_signed_pct", "CSA error vs manual (run-1, %)")):  # fmt: skip
        for person in ids:
            vals = [persons[(persons["arm"] == n) & (persons["person"] == person)][col].mean() for n in names]
            ax.plot(range(len(names)), vals, "o-", label=person)
        ax.set_xticks(range(len(names)), [f"({a.key}) {a.name}" for a in ARMS])
        ax.set_ylabel(label)
        ax.set_xlim(-0.4, len(names) - 0.6)
        ax.grid(alpha=0.3)
    axes[0].legend(title="person", fontsize=8)
    axes[1].axhline(0, color="k", lw=0.8)
    ax = axes[2]
    for arm, marker in zip(ARMS, ("s", "o")):
        mine = rows[rows["arm"] == arm.name]
        ax.scatter(mine["csa_run1_mm2"], mine["csa_run2_mm2"], marker=marker, label=f"({arm.key}) {arm.name}")
        for _, r in mine.iterrows():
            ax.annotate(r["subject"][len("sub-") :], (r["csa_run1_mm2"], r["csa_run2_mm2"]), fontsize=7)
    vals = pd.concat([rows["csa_run1_mm2"], rows["csa_run2_mm2"]]).dropna()
    if not vals.empty:
        lo, hi = float(vals.min()) * 0.95, float(vals.max()) * 1.05
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
    ax.set_xlabel("predicted CSA run-1 (mm², mean over common slices)")
    ax.set_ylabel("predicted CSA run-2 (mm²)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plan_summary(plans: dict, inplane_mm: float) -> str:
    """The CPU plan beside nnU-Net's default 2d plan: spacing, patch, batch, and pixels per batch."""
    cpu, default = plans["cpu"], plans["default"]

    def px(c):
        return int(np.prod(c["patch_size"])) * int(c["batch_size"])

    return (
        f"2d plan: {' x '.join(f'{v:.2f}' for v in cpu['spacing'])} mm, patch {' x '.join(map(str, cpu['patch_size']))}"
        f", batch {cpu['batch_size']} (--inplane-mm {inplane_mm}); nnU-Net's default 2d plan: "
        f"{' x '.join(f'{v:.2f}' for v in default['spacing'])} mm, patch "
        f"{' x '.join(map(str, default['patch_size']))}, batch {default['batch_size']} (about 9 s per iteration on 2 "
        f"CPU cores): {px(default) / px(cpu):.1f}x the pixels per batch of this plan, "
        f"with {inplane_mm / float(np.mean(default['spacing'])):.1f}x its in-plane spacing"
    )


# ------------------------------------------------------------------------------------------------ main
def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("-o", "--output", required=True, type=Path, help="working folder (new, or an earlier one: resumed)")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="gm_challenge BIDS folder (default %(default)s)")
    p.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="real_cord.csv|png go here (default "
                   "benchmarks/results/real_cord)")  # fmt: skip
    p.add_argument("--epochs", type=int, default=10, help="epochs, both arms (default 10)")
    p.add_argument("--iterations", type=int, default=50, help="training iterations per epoch (default 50)")
    p.add_argument("--val-iterations", type=int, default=2, help="validation iterations per epoch (default 2)")
    p.add_argument(
        "--inplane-mm",
        type=float,
        default=1.0,
        help="in-plane target spacing of the 2d CPU plan (mm; default 1.0; nnU-Net's own plan is about 0.59)",
    )
    p.add_argument("--gpu-memory-target", type=float, default=1.0, metavar="GB",
                   help="planner's GPU memory target (default 1: small patches for a CPU)")  # fmt: skip
    p.add_argument(
        "--folds", default="0,1,2", help="folds to run (default %(default)s: all; each person held out once)"
    )
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda", "mps"], help="nnU-Net device (default cpu)")
    p.add_argument("--tta", action="store_true", help="mirrored test-time augmentation (default off: faster)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    t_start = time.perf_counter()
    say = lambda line: print(line, flush=True)  # noqa: E731
    for name in ("epochs", "iterations", "val_iterations"):
        if getattr(args, name) < 1:
            print(f"bench_real_cord: error: --{name.replace('_', '-')} must be a positive integer", file=sys.stderr)
            return 2
    try:
        run_folds = sorted({int(f) for f in args.folds.split(",") if f.strip()})
    except ValueError:
        run_folds = []
    if not run_folds or not set(run_folds) <= set(range(N_FOLDS)):
        print(f"bench_real_cord: error: --folds {args.folds}: expected folds among 0..{N_FOLDS - 1}", file=sys.stderr)
        return 2
    if not (args.data / "participants.tsv").is_file():
        print(f"bench_real_cord: error: {args.data}: no gm_challenge dataset (participants.tsv)", file=sys.stderr)
        return 2

    out = args.output.resolve()
    out.mkdir(parents=True, exist_ok=True)
    say(f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())} on {os.cpu_count()} CPU(s)")
    sessions = read_sessions(args.data)
    folds = make_folds(sessions)
    n_persons = len({s.person for s in sessions})
    say(f"data: {args.data}: {len(sessions)} labelled sessions of {n_persons} persons (run-1 labelled, run-2 rescan)")
    for k, held_out in enumerate(folds):
        train_p = [p for f in folds for p in f if p not in held_out]
        say(
            f"  fold {k}{'' if k in run_folds else ' (not run)'}: held out "
            f"{'; '.join(describe_person(p, sessions) for p in held_out)} | trains on {', '.join(train_p)}"
        )

    budget = f"{args.epochs}x{args.iterations}"
    plans_id = plans_name(args.inplane_mm)
    steps = Steps(out, say)
    env = base_environment(out)

    # 1. conversion, our person folds, planning
    raw = convert(steps, env, args.data, out)
    write_splits(env, raw, splits(sessions, folds))
    plans = plan(steps, env, out, plans_id, args.inplane_mm, args.gpu_memory_target)
    write_splits(env, raw, splits(sessions, folds))
    say(plan_summary(plans, args.inplane_mm))

    # 2. per fold and arm: training, prediction of the held-out run-1 and run-2 images, CSA
    bdir = out / f"budget_{budget}"
    benv = budget_environment(env, bdir, args.epochs, args.iterations, args.val_iterations, args.tta)
    steps.scope = bdir.name
    say(
        f"budget: {args.epochs} epochs x {args.iterations} iterations ({args.epochs * args.iterations} training "
        f"iterations per fold and arm), {args.val_iterations} validation iterations per epoch, device {args.device}, "
        f"test-time mirroring {'on' if args.tta else 'off'}; nnU-Net's results in {bdir / 'nnUNet_results'}"
    )
    manual = csa_table(steps, env, "csa", [s.mask for s in sessions], out / "csa_manual.csv")
    rows = []
    for k in run_folds:
        held = [s for s in sessions if s.person in folds[k]]
        inputs = link_inputs(out, k, held)
        for arm in ARMS:
            t0 = time.perf_counter()
            what = train(steps, benv, arm, k, plans_id, args.device)
            say(f"fold {k} ({arm.key}) {arm.name}: {what} ({time.perf_counter() - t0:.0f} s)")
            pred_dir = bdir / "predictions" / arm.name / f"fold_{k}"
            cases = [c for s in held for c in (s.case1, s.case2)]
            preds = segment(steps, benv, arm, k, plans_id, inputs, pred_dir, cases, args.device)
            table = csa_table(steps, env, "csa", [p for p in preds.values() if p is not None],
                              bdir / "csa" / f"{arm.name}_fold{k}.csv")  # fmt: skip
            t0 = time.perf_counter()
            for s in held:
                p1, p2 = preds[s.case1], preds[s.case2]
                c1, c2 = (areas_of(table, p.name if p is not None else "") for p in (p1, p2))  # none: no rows
                cm = areas_of(manual, s.mask.name)
                signed, absolute, n_slices = csa_error(c1, cm)
                pairs = align_slices(s.run1, s.run2)
                rows.append(
                    dict(
                        fold=k, person=s.person, site=s.site, field_t=s.field_t, subject=s.subject, arm=arm.name,
                        trainer=arm.trainer, dice=dice(p1, s.mask), empty_run1=p1 is None,
                        empty_run2=p2 is None, csa_err_signed_pct=signed,
                        csa_err_abs_pct=absolute, n_slices_manual=n_slices,
                        csa_manual_mm2=float(cm[cm > 0].mean()),  # both over the manual mask's cord slices
                        csa_pred_run1_mm2=float(c1.reindex(cm[cm > 0].index).fillna(0.0).mean()),
                        **scan_rescan(c1, c2, pairs),
                        identical_affines=bool(len(pairs) == len(slice_world_z(s.run1))
                                               and all(d < 1e-3 for _, d in pairs.values())),
                    )
                )  # fmt: skip
            steps.timings_s["measures"] = steps.timings_s.get("measures", 0.0) + time.perf_counter() - t0

    # 3. the table, the per-session CSV and the picture
    frame = pd.DataFrame(rows)
    persons = per_person(frame)
    table, n = compare_arms(persons)
    say(
        f"\nReal cord (Grey Matter Challenge, T2*w): {len(frame) // len(ARMS)} held-out sessions of "
        f"{persons['person'].nunique()} persons in fold(s) {', '.join(map(str, run_folds))}; both arms trained with "
        f"{args.epochs} x {args.iterations} iterations, 2d, {args.inplane_mm} mm in-plane ({plans_id})"
    )
    for arm in ARMS:
        say(f"  ({arm.key}) {arm.name}: {arm.description}")
    say(format_table(table, n))
    for line in empty_predictions(frame):
        say(line)
    same = bool(frame["identical_affines"].all())
    say(
        "\nmean ± SD over persons (a person's sessions averaged first). Dice: run-1 prediction >= 0.5 vs the manual "
        "mask. CSA error: per slice (pred - manual) / manual x 100 over slices where the manual mask has cord (no "
        "predicted cord = -100 %), mean per session; CSA by 'nnspine csa --perslice' (soft predictions as fractions). "
        "Rescan: run-1 vs run-2 predictions, slices paired by world S-I position ("
        + ("the two runs' affines are identical in every session: slice k with slice k" if same
           else "nearest slice centre within half a slice")
        + "), over slices with predicted cord in both runs; |diff| % = mean |CSA1 - CSA2| / ((CSA1 + CSA2) / 2) x "
        "100; CoV = SD(m1, m2) / mean(m1, m2) x 100 with m1, m2 the runs' mean CSA over those slices (sample SD of "
        "two values), per session, then per person."
    )  # fmt: skip
    if args.epochs * args.iterations < 100:
        say("(a budget under 100 iterations: a smoke run, the figures mean nothing)")

    args.results.mkdir(parents=True, exist_ok=True)
    for folder in (bdir, args.results):
        frame.to_csv(folder / "real_cord.csv", index=False, quoting=csv.QUOTE_MINIMAL, float_format="%.5g")
    title = (f"Grey Matter Challenge T2*w, {args.epochs}x{args.iterations} iterations per arm, 2d "
             f"{args.inplane_mm} mm, folds {','.join(map(str, run_folds))}")  # fmt: skip
    for folder in (bdir, args.results):
        plot(frame, persons, folder / "real_cord.png", title)
    say(
        f"\nper session: {args.results / 'real_cord.csv'}, picture: {args.results / 'real_cord.png'} (copies in {bdir})"
    )

    # 4. speed and time
    for arm in ARMS:
        spi = [seconds_per_iteration(model_folder(benv, arm, plans_id) / f"fold_{k}", args.iterations)
               for k in run_folds]  # fmt: skip
        say(
            f"training ({arm.key}) {arm.name}: {np.nanmedian(spi):.2f} s per iteration (median epoch time / "
            f"{args.iterations} iterations, validation included; per fold {', '.join(f'{v:.2f}' for v in spi)})"
        )
    total = time.perf_counter() - t_start
    say(
        "time (this run; steps done earlier count 0): "
        + ", ".join(f"{k} {v:.0f} s" for k, v in steps.timings_s.items())
        + f"; total {total:.0f} s"
    )
    every = steps.recorded_by_step(["common", bdir.name])
    if every:
        say(
            f"time of every step when it ran (all runs in {out} with this budget): "
            + ", ".join(f"{k} {v:.0f} s" for k, v in every.items())
            + f"; sum {sum(every.values()):.0f} s"
        )
    say(f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())} on {os.cpu_count()} CPU(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
