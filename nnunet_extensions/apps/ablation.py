"""The soft-segmentation ablation on cord phantoms, every step through the real console scripts.

What Bédard et al. claim, measured with this package's own tools on subjects the models never saw:

* arm **a**: stock ``nnUNetTrainer`` (CE + Dice) on each contrast's own binary cord mask;
* arm **b**: ``nnUNetTrainerSoftSeg`` (MSE + soft Dice) on the converter's soft GT (``nnspine convert softgt``);
* arm **c**: ``nnUNetTrainerSoftSegDA5``, as b with nnU-Net's aggressive (DA5) augmentation;
* arm **d** (generalisation): as c, trained on three contrasts only (soft GT from those three), tested on the
  two contrasts it never saw.

Every arm trains the ``_budget`` variant of its trainer (:mod:`trainers.budget`) with the same epochs and
iterations, on the same preprocessed images (one set of plans, planned on the soft dataset and moved to the
others with ``nnUNetv2_move_plans_between_datasets``), fold 0 of a split whose training set is every case (the
validation case, the smallest image, is one of them: nnU-Net's own validation only picks ``checkpoint_best``,
which is not used; the final checkpoint is evaluated).

Evaluation (held-out subjects, 5 contrasts each; arm d on its 2 unseen contrasts): predictions with
``nnUNetv2_predict`` (arm a: nnU-Net's binary output; soft arms: ``--save_probabilities`` → ``nnspine softmask``),
``nnspine evaluate csa-variability`` at one vertebral level (levels from the phantom's disc labels), and
``nnspine evaluate compare-variability`` of every row against arm a on the same contrasts (Wilcoxon signed-rank
on the per-subject SDs). Reference rows measure the held-out subjects' binary GT masks and exact
partial-volume truth the same way. CSA error is against the phantom's true CSA of that level (mm²). A held-out
mask with no cord at the level (an empty prediction) counts as CSA 0 mm², as its user would measure, and is
counted in the table's ``n_missing``.

Folder layout (``folder``): ``phantom_train*/``, ``phantom_test/``, ``deriv_*/``, ``nnUNet_raw|preprocessed|
results/``, ``predict_input*/``, ``pred/<arm>/``, ``soft/<arm>/``, ``csa/<row>.csv``, ``compare/<row>.csv``,
``ablation.csv`` (the table) and ``nnunet.log`` (every command with its output).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from nnunet_extensions.core.io import InputError, OutputExistsError

if TYPE_CHECKING:
    import pandas

#: The phantom's five contrasts (BIDS name after ``sub-XX_``), reference first.
CONTRASTS = ("T2w", "T1w", "T2starw", "flip-1_mt-on_MTS", "flip-2_mt-off_MTS")
#: Contrasts arm d trains on by default; it is tested on the others.
SEEN_CONTRASTS = ("T2w", "T1w", "T2starw")
CONFIG = "3d_fullres"
PLANS = "nnUNetPlansAblation"
#: nnU-Net dataset ids and names of the three training sets.
DATASETS = {"soft": (781, "AblationSoft"), "binary": (782, "AblationBinary"), "soft_seen": (783, "AblationSoftSeen")}
#: File marking an ablation folder: only such a folder is cleared by ``overwrite``.
MARKER = ".nnspine_ablation"


@dataclass(frozen=True)
class Arm:
    """One trained model of the ablation."""

    key: str  # a, b, c, d
    name: str  # short name used for folders and in compare-variability column names
    trainer: str
    dataset: str  # key of DATASETS
    soft: bool  # evaluate the soft output (probabilities) rather than nnU-Net's label map
    unseen_only: bool  # tested only on the contrasts it did not see
    description: str


ARMS = (
    Arm("a", "binary", "nnUNetTrainer_budget", "binary", False, False, "stock nnUNetTrainer, per-contrast binary GT"),
    Arm("b", "soft", "nnUNetTrainerSoftSeg_budget", "soft", True, False, "nnUNetTrainerSoftSeg, soft GT"),
    Arm("c", "softDA5", "nnUNetTrainerSoftSegDA5_budget", "soft", True, False, "nnUNetTrainerSoftSegDA5, soft GT"),
    Arm(
        "d",
        "softDA5_unseen",
        "nnUNetTrainerSoftSegDA5_budget",
        "soft_seen",
        True,
        True,
        "nnUNetTrainerSoftSegDA5, soft GT of 3 contrasts, tested on 2 unseen",
    ),
)


@dataclass
class AblationConfig:
    """The budget and the data of one ablation run (the same training budget for every arm)."""

    n_train: int = 2  # training subjects (5 contrasts = 5 cases each)
    n_test: int = 6  # held-out subjects (the Wilcoxon test pairs them; 6 are needed for p < 0.05)
    epochs: int = 4
    iterations: int = 25  # training iterations per epoch
    val_iterations: int = 2
    device: str = "cpu"
    level: int = 3  # vertebral level whose CSA is compared (C3: covered by every contrast)
    seen_contrasts: tuple[str, ...] = SEEN_CONTRASTS
    seed: int = 0
    tta: bool = False  # mirrored test-time augmentation (8x slower prediction on CPU)
    gpu_memory_target_gb: float | None = None  # planner's target; None: 1 GB on CPU (small patches), else nnU-Net's
    target_spacing_mm: float | None = None  # isotropic 3d_fullres spacing (planner's -overwrite_target_spacing)
    arms: tuple[str, ...] = ("a", "b", "c", "d")

    def check(self) -> None:
        """Raise :class:`InputError` for values that cannot run."""
        if self.n_train < 1 or self.n_test < 1:
            raise InputError(
                f"subjects: need at least one training and one held-out subject (got {self.n_train}, {self.n_test})"
            )
        for name in ("epochs", "iterations", "val_iterations"):
            if getattr(self, name) < 1:
                raise InputError(f"{name}: expected a positive integer, got {getattr(self, name)}")
        unknown = [c for c in self.seen_contrasts if c not in CONTRASTS]
        if (
            unknown
            or not 1 <= len(set(self.seen_contrasts)) <= len(CONTRASTS) - 2
            or CONTRASTS[0] not in self.seen_contrasts
        ):
            raise InputError(
                f"seen contrasts {list(self.seen_contrasts)}: need {CONTRASTS[0]} and leave at least two "
                f"of {list(CONTRASTS)} unseen"
            )
        bad = [a for a in self.arms if a not in {arm.key for arm in ARMS}]
        if bad or "a" not in self.arms:
            raise InputError(f"arms {list(self.arms)}: choose among a, b, c, d; a (the baseline) is required")

    @property
    def unseen_contrasts(self) -> tuple[str, ...]:
        return tuple(c for c in CONTRASTS if c not in self.seen_contrasts)


@dataclass
class AblationResult:
    """The table (one row per arm or reference) and where everything was written."""

    folder: Path
    table: pandas.DataFrame  # noqa: F821
    csv: Path
    timings_s: dict = field(default_factory=dict)


# ======================================================================================== running commands
def _script(name: str) -> str:
    exe = Path(sys.executable).parent
    return str(exe / name) if (exe / name).exists() else name


def _run(cmd: list[str], env: dict, log: Path, ok: tuple[int, ...] = (0,)) -> int:
    """Run a console script, its output appended to ``log``; raise with the log's tail unless its exit code is in
    ``ok`` (``nnspine evaluate csa-variability`` exits 2 when it skipped a mask, e.g. an empty prediction)."""
    import subprocess

    with open(log, "a") as f:
        f.write(f"\n$ {' '.join(cmd)}\n")
        f.flush()
        code = subprocess.run([_script(cmd[0]), *cmd[1:]], env=env, stdout=f, stderr=subprocess.STDOUT).returncode
    if code not in ok:
        tail = "".join(log.read_text().splitlines(keepends=True)[-15:])
        raise RuntimeError(f"'{' '.join(cmd[:3])} …' failed (exit {code}); see {log}:\n{tail}")
    return code


def _run_together(cmds: list[list[str]], env: dict, log: Path) -> None:
    """Run independent console scripts at the same time (e.g. the two phantoms on two cores); outputs appended to
    ``log`` one after the other; raise naming the first that failed."""
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        outs = [Path(tmp) / f"{i}.log" for i in range(len(cmds))]
        procs = []
        for cmd, out in zip(cmds, outs):
            with open(out, "w") as f:
                procs.append(subprocess.Popen([_script(cmd[0]), *cmd[1:]], env=env, stdout=f, stderr=subprocess.STDOUT))
        codes = [p.wait() for p in procs]
        with open(log, "a") as f:
            for cmd, out in zip(cmds, outs):
                f.write(f"\n$ {' '.join(cmd)}\n{out.read_text()}")
    for cmd, code in zip(cmds, codes):
        if code != 0:
            raise RuntimeError(f"'{' '.join(cmd[:3])} …' failed (exit {code}); see {log}")


def _environment(folder: Path, config: AblationConfig) -> dict:
    """nnU-Net folders inside ``folder``, our trainers, small-machine settings, and the training budget."""
    from nnunet_extensions.apps.demo import nnunet_environment

    env = nnunet_environment(folder)
    env.update(
        NNSPINE_EPOCHS=str(config.epochs),
        NNSPINE_ITERATIONS=str(config.iterations),
        NNSPINE_VAL_ITERATIONS=str(config.val_iterations),
        NNSPINE_NO_TTA="0" if config.tta else "1",
    )
    return env


# ============================================================================================ the datasets
_BIDS_FILE_RE = re.compile(r"^(sub-[A-Za-z0-9]+)_(.+?)(_label-.*)?$")


def contrast_of(path: Path) -> str | None:
    """The contrast of a phantom file (``sub-01_T2w_label-SC_seg.nii.gz`` → ``T2w``); None for other files."""
    name = path.name
    for ending in (".nii.gz", ".nii", ".json"):
        if name.endswith(ending):
            name = name[: -len(ending)]
            break
    m = _BIDS_FILE_RE.match(name)
    return m.group(2) if m else None


def copy_contrasts(src: Path, dst: Path, contrasts: tuple[str, ...]) -> Path:
    """Copy a BIDS phantom keeping only the files of ``contrasts`` (images, masks, sidecars) and the others that
    belong to no contrast (dataset descriptions, truth JSON)."""

    def ignore(folder: str, names: list[str]) -> list[str]:
        return [n for n in names if (Path(folder) / n).is_file() and contrast_of(Path(n)) not in (None, *contrasts)]

    shutil.copytree(src, dst, ignore=ignore)
    return dst


def write_binary_dataset(soft_raw: Path, phantom: Path, folder: Path) -> Path:
    """nnU-Net raw dataset with the images of ``soft_raw`` and, as labels, each contrast's own binary cord mask
    from the phantom (``derivatives/labels/sub-XX/anat/<case>_label-SC_seg.nii.gz``, on the image's grid)."""
    from nnunet_extensions.core.dataset_json import IMAGES_TR, LABELS_TR

    (folder / IMAGES_TR).mkdir(parents=True)
    (folder / LABELS_TR).mkdir()
    cases = sorted(p.name[: -len(".nii.gz")] for p in (soft_raw / LABELS_TR).glob("*.nii.gz"))
    for case in cases:
        subject = case.split("_", 1)[0]
        mask = phantom / "derivatives" / "labels" / subject / "anat" / f"{case}_label-SC_seg.nii.gz"
        if not mask.is_file():
            raise InputError(f"{mask}: binary mask of training case {case} not found")
        shutil.copy(soft_raw / IMAGES_TR / f"{case}_0000.nii.gz", folder / IMAGES_TR / f"{case}_0000.nii.gz")
        shutil.copy(mask, folder / LABELS_TR / f"{case}.nii.gz")
    dataset_json = json.loads((soft_raw / "dataset.json").read_text())
    dataset_json.update(
        name=folder.name.split("_", 1)[1],
        numTraining=len(cases),
        description="images of the soft dataset, labels = each contrast's binary cord mask",
    )
    (folder / "dataset.json").write_text(json.dumps(dataset_json, indent=2) + "\n")
    return folder


def smallest_case(raw: Path) -> str:
    """The training case whose image covers the smallest volume (mm³): the cheapest for nnU-Net's final validation."""
    import numpy as np

    from nnunet_extensions.core.io import read_geometry, voxel_sizes

    def volume_mm3(image: Path) -> float:
        geometry = read_geometry(image)
        return float(np.prod(geometry.shape) * np.prod(voxel_sizes(geometry.affine)))

    images = sorted((raw / "imagesTr").glob("*_0000.nii.gz"))
    return min(images, key=volume_mm3).name[: -len("_0000.nii.gz")]


def write_split(preprocessed: Path, cases: list[str], validation_case: str) -> Path:
    """``splits_final.json`` with one fold: train on every case, validate on one (see the module docstring)."""
    path = preprocessed / "splits_final.json"
    path.write_text(json.dumps([{"train": sorted(cases), "val": [validation_case]}], indent=2))
    return path


def _dataset_folder(env: dict, key: str, kind: str) -> Path:
    dataset_id, name = DATASETS[key]
    return Path(env[kind]) / f"Dataset{dataset_id:03d}_{name}"


# ============================================================================================ evaluation
def _truth(phantom: Path, level: int) -> dict[str, float]:
    """True CSA (mm²) of ``level`` per subject of a phantom."""
    out = {}
    for f in sorted((phantom / "derivatives" / "truth").glob("sub-*/sub-*_truth.json")):
        truth = json.loads(f.read_text())
        out[truth["subject"]] = float(truth["csa_per_level_mm2"][str(level)])
    return out


def read_rows(csa_csv: Path) -> pandas.DataFrame:  # noqa: F821
    """Per-contrast rows of a csa-variability table."""
    import pandas as pd

    df = pd.read_csv(csa_csv)
    df["subject"] = df["subject"].astype(str)
    df["contrast"] = df["contrast"].astype(str)
    return df[df["contrast"] != "ALL"]


def fill_missing(csa_csv: Path, subjects: list[str], contrasts: tuple[str, ...], out: Path) -> tuple[Path, int]:
    """The csa-variability table with a row for every (subject, contrast): a mask csa-variability skipped (empty:
    no cord predicted) or without cord at the level counts as CSA 0 mm² (the model missed the cord there).

    Each subject's ``ALL`` row (mean CSA, population SD in mm² and CV in % across contrasts) is recomputed.
    Returns the new table and the number of filled masks.
    """
    import numpy as np
    import pandas as pd

    from postprocessing.cord.soft_metrics import VARIABILITY_COLUMNS

    rows = read_rows(csa_csv)
    levels = str(rows["levels"].iloc[0]) if len(rows) else ""
    found = {(r.subject, r.contrast): r for r in rows.itertuples()}
    table, missing = [], 0
    for subject in subjects:
        per_subject = []
        for contrast in contrasts:
            r = found.get((subject, contrast))
            csa = float(r.csa_mm2) if r is not None else float("nan")
            if not np.isfinite(csa):
                missing += 1
                csa = 0.0
            per_subject.append(
                {
                    "subject": subject,
                    "contrast": contrast,
                    "levels": levels,
                    "csa_mm2": csa,
                    "filename": r.filename if r is not None else "",
                    "n_slices": int(r.n_slices) if r is not None else 0,
                }
            )
        values = np.array([r["csa_mm2"] for r in per_subject])
        sd, mean = float(np.std(values)), float(np.mean(values))
        cv = 100.0 * sd / mean if mean > 0 else float("nan")
        table += [{**r, "csa_std_across_contrasts_mm2": sd, "csa_cv_across_contrasts_pct": cv} for r in per_subject]
        table.append(
            {
                "subject": subject,
                "contrast": "ALL",
                "filename": "",
                "levels": levels,
                "n_slices": sum(r["n_slices"] for r in per_subject),
                "csa_mm2": mean,
                "csa_std_across_contrasts_mm2": sd,
                "csa_cv_across_contrasts_pct": cv,
            }
        )
    pd.DataFrame(table, columns=VARIABILITY_COLUMNS).to_csv(out, index=False)
    return out, missing


def summarize_row(csa_csv: Path, truth: dict[str, float], p: float = float("nan")) -> dict:
    """Mean CSA error vs truth (signed and absolute, % of the true CSA) and the mean over subjects of the SD of CSA
    across contrasts (population, mm², as csa-variability) of one (filled) csa-variability table."""
    import numpy as np

    rows = read_rows(csa_csv)
    error = np.array([100.0 * (r.csa_mm2 - truth[r.subject]) / truth[r.subject] for r in rows.itertuples()], float)
    sds = [float(np.std(g["csa_mm2"])) for _, g in rows.groupby("subject")]
    return {
        "n_subjects": int(rows["subject"].nunique()),
        "n_contrasts": int(rows["contrast"].nunique()),
        "csa_error_pct": float(np.mean(error)),
        "abs_csa_error_pct": float(np.mean(np.abs(error))),
        "sd_across_contrasts_mm2": float(np.mean(sds)),
        "wilcoxon_p_vs_a": p,
    }


# ================================================================================================= the run
def run_ablation(
    folder: str | os.PathLike,
    config: AblationConfig | None = None,
    *,
    overwrite: bool = False,
    say: Callable[[str], None] = print,
) -> AblationResult:
    """Run the ablation in ``folder`` (new or empty; an earlier ablation folder with ``overwrite``).

    Returns the table: one row per arm and reference with ``row, method, train_contrasts, test_contrasts,
    n_subjects, n_contrasts, n_missing, csa_error_pct, abs_csa_error_pct, sd_across_contrasts_mm2,
    wilcoxon_p_vs_a`` (CSA errors in % of the true CSA, signed and absolute, mean over every held-out mask; SD
    across contrasts in mm², mean over subjects; p of the two-sided Wilcoxon signed-rank test of the per-subject
    SDs against arm a on the same contrasts). ``n_missing`` masks had no cord at the level (e.g. an empty
    prediction): they count as CSA 0 mm² in every figure, as a user of that model would measure.
    """
    import pandas as pd

    from nnunet_extensions.core.io import write_text

    config = config or AblationConfig()
    config.check()
    folder = Path(folder).resolve()
    if folder.exists() and any(folder.iterdir()):
        if not overwrite:
            raise OutputExistsError(f"{folder}: folder exists and is not empty (use --overwrite)")
        if not (folder / MARKER).is_file():
            raise OutputExistsError(f"{folder}: not an ablation folder (no {MARKER}); refusing to delete it")
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MARKER).write_text("written by nnunet_extensions.apps.ablation (benchmarks/bench_softseg_ablation.py)\n")
    log = folder / "nnunet.log"
    env = _environment(folder, config)
    timings: dict[str, float] = {}
    arms = [a for a in ARMS if a.key in config.arms]
    datasets = sorted({a.dataset for a in arms} | {"soft"})

    def sh(*cmd: str, extra_env: dict | None = None, ok: tuple[int, ...] = (0,)) -> int:
        return _run(list(cmd), {**env, **(extra_env or {})}, log, ok)

    def timed(name: str, text: str):
        say(text)
        return name, time.perf_counter()

    def done(started) -> None:
        name, t0 = started
        timings[name] = time.perf_counter() - t0
        say(f"      {timings[name]:.0f} s")

    # phantoms ----------------------------------------------------------------------------------------------
    t = timed(
        "phantoms",
        f"phantoms: {config.n_train} training and {config.n_test} held-out subjects, "
        f"{len(CONTRASTS)} contrasts each (nnspine phantom)",
    )
    train, test = folder / "phantom_train", folder / "phantom_test"
    _run_together(
        [
            [
                "nnspine",
                "phantom",
                "--kind",
                "cord",
                "-o",
                str(train),
                "--subjects",
                str(config.n_train),
                "--seed",
                str(config.seed),
                "-q",
            ],
            [
                "nnspine",
                "phantom",
                "--kind",
                "cord",
                "-o",
                str(test),
                "--subjects",
                str(config.n_test),
                "--seed",
                str(config.seed + 1000),
                "-q",
            ],
        ],
        env,
        log,
    )
    done(t)

    # training datasets ---------------------------------------------------------------------------------------
    t = timed(
        "datasets",
        "training sets: soft GT (nnspine convert softgt), per-contrast binary masks"
        + (f", soft GT of {'+'.join(config.seen_contrasts)} only" if "soft_seen" in datasets else ""),
    )
    soft_id, soft_name = DATASETS["soft"]
    sh(
        "nnspine",
        "convert",
        "softgt",
        "-i",
        str(train),
        "--derivatives-out",
        str(folder / "deriv_train"),
        "--nnunet-dataset",
        str(soft_id),
        "--name",
        soft_name,
        "-q",
    )
    soft_raw = _dataset_folder(env, "soft", "nnUNet_raw")
    if "binary" in datasets:
        write_binary_dataset(soft_raw, train, _dataset_folder(env, "binary", "nnUNet_raw"))
    if "soft_seen" in datasets:
        seen = copy_contrasts(train, folder / "phantom_train_seen", config.seen_contrasts)
        seen_id, seen_name = DATASETS["soft_seen"]
        sh(
            "nnspine",
            "convert",
            "softgt",
            "-i",
            str(seen),
            "--derivatives-out",
            str(folder / "deriv_train_seen"),
            "--nnunet-dataset",
            str(seen_id),
            "--name",
            seen_name,
            "-q",
        )
    done(t)

    # planning / preprocessing: one set of plans for every dataset ------------------------------------------------
    t = timed(
        "preprocess",
        "nnUNetv2_plan_and_preprocess (soft dataset) → plans moved to the others → "
        "nnUNetv2_preprocess; nnspine preprocess-soft",
    )
    gpu_memory = config.gpu_memory_target_gb or (1.0 if config.device == "cpu" else None)
    plan = [
        "nnUNetv2_plan_and_preprocess",
        "-d",
        str(soft_id),
        "-c",
        CONFIG,
        "-np",
        "1",
        "-npfp",
        "1",
        "--verify_dataset_integrity",
        "--no_pbar",
        "-overwrite_plans_name",
        PLANS,
    ]
    if gpu_memory:
        plan += ["-gpu_memory_target", str(gpu_memory)]
    if config.target_spacing_mm:
        plan += ["-overwrite_target_spacing", *[str(config.target_spacing_mm)] * 3]
    sh(*plan, extra_env={"nnUNet_n_proc_DA": "1"})
    others = [str(DATASETS[key][0]) for key in datasets if key != "soft"]
    if others:  # one command each for all datasets planned with the soft dataset's plans
        sh(
            "nnUNetv2_extract_fingerprint",
            "-d",
            *others,
            "-np",
            "1",
            "--verify_dataset_integrity",
            "--no_pbar",
            extra_env={"nnUNet_n_proc_DA": "1"},
        )
        for key in datasets:
            if key != "soft":
                sh(
                    "nnUNetv2_move_plans_between_datasets",
                    "-s",
                    str(soft_id),
                    "-t",
                    str(DATASETS[key][0]),
                    "-sp",
                    PLANS,
                    "-tp",
                    PLANS,
                )
                # nnU-Net's planner copies dataset.json beside the plans; moved plans come without it
                shutil.copy(
                    _dataset_folder(env, key, "nnUNet_raw") / "dataset.json",
                    _dataset_folder(env, key, "nnUNet_preprocessed") / "dataset.json",
                )
        sh(
            "nnUNetv2_preprocess",
            "-d",
            *others,
            "-plans_name",
            PLANS,
            "-c",
            CONFIG,
            "-np",
            "1",
            "--no_pbar",
            extra_env={"nnUNet_n_proc_DA": "1"},
        )
    for key in datasets:
        if key.startswith("soft"):
            sh("nnspine", "preprocess-soft", "-d", str(DATASETS[key][0]), "-c", CONFIG, "-p", PLANS, "-q")
        raw = _dataset_folder(env, key, "nnUNet_raw")
        cases = sorted(p.name[: -len(".nii.gz")] for p in (raw / "labelsTr").glob("*.nii.gz"))
        write_split(_dataset_folder(env, key, "nnUNet_preprocessed"), cases, smallest_case(raw))
    done(t)

    # training ----------------------------------------------------------------------------------------------------
    for arm in arms:
        t = timed(
            f"train_{arm.key}",
            f"train arm {arm.key} ({arm.description}): nnUNetv2_train "
            f"{DATASETS[arm.dataset][0]} {CONFIG} 0 -tr {arm.trainer}, {config.epochs} "
            f"epochs x {config.iterations} iterations, -device {config.device}",
        )
        sh(
            "nnUNetv2_train",
            str(DATASETS[arm.dataset][0]),
            CONFIG,
            "0",
            "-tr",
            arm.trainer,
            "-p",
            PLANS,
            "-device",
            config.device,
        )
        done(t)

    # prediction --------------------------------------------------------------------------------------------------
    inputs = {}
    for unseen in sorted({a.unseen_only for a in arms}):
        contrasts = config.unseen_contrasts if unseen else CONTRASTS
        inputs[unseen] = folder / ("predict_input_unseen" if unseen else "predict_input")
        inputs[unseen].mkdir()
        for image in sorted(test.glob("sub-*/anat/sub-*.nii.gz")):
            if contrast_of(image) in contrasts:
                shutil.copy(image, inputs[unseen] / image.name.replace(".nii.gz", "_0000.nii.gz"))
    masks: dict[str, Path] = {}
    for arm in arms:
        t = timed(
            f"predict_{arm.key}",
            f"predict arm {arm.key} on the held-out subjects"
            + (" (unseen contrasts)" if arm.unseen_only else "")
            + (": --save_probabilities → nnspine softmask" if arm.soft else ""),
        )
        pred = folder / "pred" / arm.name
        cmd = [
            "nnUNetv2_predict",
            "-i",
            str(inputs[arm.unseen_only]),
            "-o",
            str(pred),
            "-d",
            str(DATASETS[arm.dataset][0]),
            "-c",
            CONFIG,
            "-f",
            "0",
            "-tr",
            arm.trainer,
            "-p",
            PLANS,
            "-device",
            config.device,
            "-npp",
            "1",
            "-nps",
            "1",
        ]
        if not config.tta:
            cmd.append("--disable_tta")
        if arm.soft:
            cmd.append("--save_probabilities")
        sh(*cmd)
        if arm.soft:
            sh(
                "nnspine",
                "softmask",
                "-i",
                str(pred),
                "-o",
                str(folder / "soft" / arm.name),
                "--threshold",
                "0.5",
                "-q",
            )
            masks[arm.name] = folder / "soft" / arm.name
        else:
            masks[arm.name] = pred
        done(t)

    # evaluation ------------------------------------------------------------------------------------------------
    t = timed("evaluate", f"nnspine evaluate csa-variability (C{config.level}) and compare-variability vs arm a")
    (folder / "csa").mkdir()
    (folder / "compare").mkdir()
    labels = test / "derivatives" / "labels"

    truth = _truth(test, config.level)
    subjects = sorted(truth)

    def csa_table(name: str, files: list[Path], contrasts: tuple[str, ...]) -> tuple[Path, int]:
        """csa-variability of ``files``, then every missing mask filled with CSA 0 (see :func:`fill_missing`)."""
        out = folder / "csa" / f"{name}.csv"
        # exit 2: a mask was skipped (empty prediction); the table holds the others
        sh(
            "nnspine",
            "evaluate",
            "csa-variability",
            "-i",
            *map(str, files),
            "--discs",
            str(labels),
            "--vert",
            str(config.level),
            "-o",
            str(out),
            "-q",
            ok=(0, 2),
        )
        return fill_missing(out, subjects, contrasts, folder / "csa" / f"{name}_filled.csv")

    def p_vs_a(name: str, table: Path, baseline: Path) -> float:
        """Wilcoxon p of ``nnspine evaluate compare-variability`` against arm a on the same contrasts."""
        import pandas as pd

        out = folder / "compare" / f"{name}_vs_a.csv"
        sh(
            "nnspine",
            "evaluate",
            "compare-variability",
            str(table),
            str(baseline),
            "--names",
            f"{name},a",
            "-o",
            str(out),
            "-q",
        )
        cmp = pd.read_csv(out)
        return float(cmp.loc[cmp["subject"].astype(str) == "ALL", "wilcoxon_p"].iloc[0])

    def files(source: Path, contrasts: tuple[str, ...]) -> list[Path]:
        return sorted(p for p in source.glob("*.nii.gz") if contrast_of(p) in contrasts)

    all_c, seen_c = "+".join(CONTRASTS), "+".join(config.seen_contrasts)
    baselines = {CONTRASTS: csa_table("binary", files(masks["binary"], CONTRASTS), CONTRASTS)}
    rows = []

    def add(row: str, name: str, method: str, train_c: str, contrasts: tuple[str, ...], measured) -> None:
        table, missing = measured
        p = float("nan") if row.startswith("(a)") else p_vs_a(name, table, baselines[contrasts][0])
        summary = summarize_row(table, truth, p)
        rows.append(
            {
                "row": row,
                "method": method,
                "train_contrasts": train_c,
                "test_contrasts": "+".join(contrasts),
                "n_subjects": summary.pop("n_subjects"),
                "n_contrasts": summary.pop("n_contrasts"),
                "n_missing": missing,
                **summary,
            }
        )

    for arm in arms:
        if arm.unseen_only:
            unseen = config.unseen_contrasts
            baselines[unseen] = csa_table("binary_unseen", files(masks["binary"], unseen), unseen)
            add(
                "(a) binary, unseen pair",
                "binary_unseen",
                "arm a on the contrasts arm d did not see",
                all_c,
                unseen,
                baselines[unseen],
            )
            add(
                f"({arm.key}) {arm.name}",
                arm.name,
                arm.description,
                seen_c,
                unseen,
                csa_table(arm.name, files(masks[arm.name], unseen), unseen),
            )
        elif arm.key == "a":
            add(f"(a) {arm.name}", arm.name, arm.description, all_c, CONTRASTS, baselines[CONTRASTS])
        else:
            add(
                f"({arm.key}) {arm.name}",
                arm.name,
                arm.description,
                all_c,
                CONTRASTS,
                csa_table(arm.name, files(masks[arm.name], CONTRASTS), CONTRASTS),
            )
    references = {
        "gt_binary": (
            "GT binary masks of the held-out subjects",
            sorted(labels.glob("sub-*/anat/*_label-SC_seg.nii.gz")),
        ),
        "gt_truth": (
            "exact partial-volume truth of the held-out subjects",
            sorted((test / "derivatives" / "truth").glob("sub-*/anat/*_label-SC_softseg.nii.gz")),
        ),
    }
    for name, (description, paths) in references.items():
        add(f"ref: {name}", name, description, "", CONTRASTS, csa_table(name, paths, CONTRASTS))
    done(t)

    result = pd.DataFrame(rows)
    csv = write_text(folder / "ablation.csv", result.to_csv(index=False, float_format="%.4g"), overwrite=True)
    return AblationResult(folder, result, csv, timings)


def format_table(table: pandas.DataFrame) -> str:  # noqa: F821
    """The ablation table for a terminal: one line per row (CSA error in %, SD across contrasts in mm², p)."""

    def fmt(v, spec):
        return "-" if v != v else format(v, spec)

    lines = [
        f"{'row':<24} {'tested on':<10} {'subj':>4} {'missing':>7} {'CSA error %':>11} {'|error| %':>9} "
        f"{'SD mm²':>7} {'p vs (a)':>9}"
    ]
    for r in table.itertuples():
        tested = f"{r.n_contrasts} {'unseen' if r.test_contrasts != '+'.join(CONTRASTS) else 'all'}"
        lines.append(
            f"{r.row:<24} {tested:<10} {r.n_subjects:>4} {r.n_missing:>7} {fmt(r.csa_error_pct, '+.2f'):>11} "
            f"{fmt(r.abs_csa_error_pct, '.2f'):>9} {fmt(r.sd_across_contrasts_mm2, '.3f'):>7} "
            f"{fmt(r.wilcoxon_p_vs_a, '.3g'):>9}"
        )
    return "\n".join(lines)


__all__ = ["ARMS", "AblationConfig", "AblationResult", "Arm", "format_table", "run_ablation"]
