"""The ablation's data: phantoms, the three training sets, one set of nnU-Net plans (prepared once per folder)."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

from nnunet_spine.apps.ablation.commands import run, run_together
from nnunet_spine.apps.ablation.config import ARMS, CONFIG, CONTRASTS, DATASETS, PLANS, AblationConfig
from nnunet_spine.core.io import InputError

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
    from nnunet_spine.core.dataset_json import IMAGES_TR, LABELS_TR

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

    from nnunet_spine.core.io import read_geometry, voxel_sizes

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


def dataset_folder(env: dict, key: str, kind: str) -> Path:
    dataset_id, name = DATASETS[key]
    return Path(env[kind]) / f"Dataset{dataset_id:03d}_{name}"


#: File written in the ablation folder once its data and plans are ready (resumed runs skip the preparation).
PREPARED = ".prepared"


def _phantom_command(out: Path, subjects: int, seed: int) -> list[str]:
    """``nnspine phantom`` making a cord phantom of ``subjects`` subjects in ``out``."""
    return [
        "nnspine",
        "phantom",
        "--kind",
        "cord",
        "-o",
        str(out),
        "--subjects",
        str(subjects),
        "--seed",
        str(seed),
        "-q",
    ]


def _softgt_command(phantom: Path, derivatives_out: Path, dataset: tuple[int, str] | None = None) -> list[str]:
    """``nnspine convert softgt`` of a phantom, with ``dataset`` (ID, name) also writing that nnU-Net raw dataset."""
    nnunet = ["--nnunet-dataset", str(dataset[0]), "--name", dataset[1]] if dataset is not None else []
    return [
        "nnspine",
        "convert",
        "softgt",
        "-i",
        str(phantom),
        "--derivatives-out",
        str(derivatives_out),
        *nnunet,
        "-q",
    ]


def _make_phantoms(folder: Path, config: AblationConfig, env: dict, log: Path) -> tuple[Path, Path]:
    """The training and held-out phantoms (``phantom_train``, ``phantom_test``), made side by side; returns them."""
    train, test = folder / "phantom_train", folder / "phantom_test"
    run_together(
        [
            _phantom_command(train, config.n_train, config.seed),
            _phantom_command(test, config.n_test, config.seed + 1000),
        ],
        env,
        log,
    )
    return train, test


def _make_training_sets(
    folder: Path, train: Path, config: AblationConfig, env: dict, datasets: list[str], sh: Callable[..., int]
) -> None:
    """The training sets' nnU-Net raw datasets: the soft GT of every contrast, and among ``datasets`` each contrast's
    binary masks (``binary``) and the soft GT of the seen contrasts only (``soft_seen``)."""
    sh(*_softgt_command(train, folder / "deriv_train", DATASETS["soft"]))
    soft_raw = dataset_folder(env, "soft", "nnUNet_raw")
    if "binary" in datasets:
        write_binary_dataset(soft_raw, train, dataset_folder(env, "binary", "nnUNet_raw"))
    if "soft_seen" in datasets:
        seen = copy_contrasts(train, folder / "phantom_train_seen", config.seen_contrasts)
        sh(*_softgt_command(seen, folder / "deriv_train_seen", DATASETS["soft_seen"]))


def _plan_command(config: AblationConfig) -> list[str]:
    """``nnUNetv2_plan_and_preprocess`` of the soft dataset, with the planner's GPU memory target (GB; 1 GB on CPU
    unless set) and the isotropic target spacing (mm) when set."""
    gpu_memory = config.gpu_memory_target_gb or (1.0 if config.device == "cpu" else None)
    plan = [
        "nnUNetv2_plan_and_preprocess",
        "-d",
        str(DATASETS["soft"][0]),
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
    return plan


def _preprocess_with_soft_plans(env: dict, datasets: list[str], others: list[str], sh: Callable[..., int]) -> None:
    """Every dataset but the soft one (``others``: their IDs): fingerprint, the soft dataset's plans moved to it
    (with the ``dataset.json`` nnU-Net's planner would have copied), then preprocessed with them."""
    soft_id = DATASETS["soft"][0]
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
                dataset_folder(env, key, "nnUNet_raw") / "dataset.json",
                dataset_folder(env, key, "nnUNet_preprocessed") / "dataset.json",
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


def _soft_targets_and_splits(env: dict, datasets: list[str], sh: Callable[..., int]) -> None:
    """Per dataset: the soft targets (``nnspine preprocess-soft``, soft datasets only) and a one-fold split that
    validates on the case of the smallest image volume (:func:`smallest_case`)."""
    for key in datasets:
        if key.startswith("soft"):
            sh("nnspine", "preprocess-soft", "-d", str(DATASETS[key][0]), "-c", CONFIG, "-p", PLANS, "-q")
        raw = dataset_folder(env, key, "nnUNet_raw")
        cases = sorted(p.name[: -len(".nii.gz")] for p in (raw / "labelsTr").glob("*.nii.gz"))
        write_split(dataset_folder(env, key, "nnUNet_preprocessed"), cases, smallest_case(raw))


def _plan_and_preprocess(config: AblationConfig, env: dict, datasets: list[str], sh: Callable[..., int]) -> None:
    """One set of nnU-Net plans (made on the soft dataset) for every dataset, each preprocessed with it, their soft
    targets and splits."""
    sh(*_plan_command(config), extra_env={"nnUNet_n_proc_DA": "1"})
    others = [str(DATASETS[key][0]) for key in datasets if key != "soft"]
    if others:  # one command each for all datasets planned with the soft dataset's plans
        _preprocess_with_soft_plans(env, datasets, others, sh)
    _soft_targets_and_splits(env, datasets, sh)


def prepare(folder: Path, config: AblationConfig, env: dict, log: Path, say: Callable[[str], None]) -> dict:
    """Phantoms (training and held-out subjects), the training sets (soft GT, per-contrast binary masks, soft GT
    of the seen contrasts), the held-out subjects' soft GT (for the radial profile), and one set of plans for
    every dataset; returns the seconds each step took. Nothing is redone once :data:`PREPARED` exists."""
    import time

    timings: dict[str, float] = {}
    if (folder / PREPARED).is_file():
        say("data and plans: prepared earlier (resumed)")
        return timings
    datasets = sorted({a.dataset for a in ARMS})  # every arm's data, so a resumed run can add arms

    def sh(*cmd: str, extra_env: dict | None = None, ok: tuple[int, ...] = (0,)) -> int:
        return run(list(cmd), {**env, **(extra_env or {})}, log, ok)

    def timed(name: str, text: str):
        say(text)
        return name, time.perf_counter()

    def done(started) -> None:
        name, t0 = started
        timings[name] = time.perf_counter() - t0
        say(f"      {timings[name]:.0f} s")

    t = timed(
        "phantoms",
        f"phantoms: {config.n_train} training and {config.n_test} held-out subjects, "
        f"{len(CONTRASTS)} contrasts each (nnspine phantom)",
    )
    train, test = _make_phantoms(folder, config, env, log)
    done(t)

    t = timed(
        "datasets",
        "training sets: soft GT (nnspine convert softgt), per-contrast binary masks"
        + (f", soft GT of {'+'.join(config.seen_contrasts)} only" if "soft_seen" in datasets else ""),
    )
    _make_training_sets(folder, train, config, env, datasets, sh)
    done(t)

    t = timed(
        "preprocess",
        "nnUNetv2_plan_and_preprocess (soft dataset) → plans moved to the others → "
        "nnUNetv2_preprocess; nnspine preprocess-soft",
    )
    _plan_and_preprocess(config, env, datasets, sh)
    done(t)

    t = timed("soft_gt_test", "soft GT of the held-out subjects (nnspine convert softgt; for the radial profile)")
    sh(*_softgt_command(test, folder / "deriv_test"))
    done(t)
    (folder / PREPARED).write_text("data and plans ready\n")
    return timings
