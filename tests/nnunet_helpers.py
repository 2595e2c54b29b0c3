"""Test helpers for the nnU-Net soft-target tests: a tiny toy dataset and runs of the real console scripts.

The toy dataset follows the converter's contract (see :mod:`nnunet_spine.integration.soft_targets`): single-channel
images, integer labels = soft mask binarized at 0.5, and float soft masks in ``labelsTr_soft``.

It is built so that nnU-Net's preprocessing has real work to do, which the soft preprocessing must copy:

* voxel sizes differ between cases, so every case is resampled to the median spacing;
* the coarse axis is the first NIfTI axis, so nnU-Net transposes it to the front (``transpose_forward``);
* the images have zero borders of varying widths, so nnU-Net crops each case to a different bounding box.

Import from test modules with ``from nnunet_helpers import ...`` (``tests/`` is on ``sys.path`` for modules
in that folder; modules in sub-folders add it themselves).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

#: Dataset id of the toy dataset (tests always use temporary nnU-Net folders).
TOY_ID = 987
TOY_NAME = f"Dataset{TOY_ID:03d}_ToyCord"


def _soft_tube(shape, spacing, centre_mm, radius_mm, curvature_mm, ramp_mm=1.5):
    """Partial-volume-like soft mask of a tube along the last voxel axis (values in [0, 1])."""
    idx = np.indices(shape, dtype=np.float64)
    x = idx[0] * spacing[0]
    y = idx[1] * spacing[1]
    z = idx[2] * spacing[2]
    zc = z / max(z.max(), 1e-6)
    cx = centre_mm[0] + curvature_mm * np.sin(np.pi * zc)
    cy = centre_mm[1] + 0.5 * curvature_mm * np.cos(np.pi * zc)
    dist = np.sqrt((x - cx) ** 2 + ((y - cy) * 1.3) ** 2)
    # linear ramp of width ramp_mm centred on the boundary: 1 inside, 0 outside
    soft = np.clip((radius_mm - dist) / ramp_mm + 0.5, 0.0, 1.0)
    return soft.astype(np.float32)


def make_toy_dataset(
    raw_root: str | os.PathLike,
    n_cases: int = 6,
    shape=(26, 40, 40),
    seed: int = 0,
    dataset_name: str = TOY_NAME,
    spacing_jitter: float = 0.15,
) -> Path:
    """Write a tiny nnU-Net raw dataset with soft masks; returns the dataset folder.

    ``shape`` is in NIfTI voxel order; axis 0 is the coarse one (about 1.5 mm, the others about 1 mm); voxel
    sizes vary by up to ``spacing_jitter`` (relative) between cases.
    """
    import nibabel as nib

    rng = np.random.default_rng(seed)
    root = Path(raw_root) / dataset_name
    for sub in ("imagesTr", "labelsTr", "labelsTr_soft", "imagesTs"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i in range(n_cases):
        case = f"toy_{i:03d}"
        spacing = np.array([1.5, 1.0, 1.0]) * rng.uniform(1 - spacing_jitter, 1 + spacing_jitter, size=3)
        extent = np.array(shape) * spacing
        centre = extent[:2] / 2 + rng.uniform(-2, 2, size=2)
        soft = _soft_tube(
            shape, spacing, centre, radius_mm=rng.uniform(0.1, 0.14) * extent[1], curvature_mm=rng.uniform(1, 4)
        )
        label = (soft > 0.5).astype(np.uint8)
        img = 100.0 + 80.0 * soft + rng.normal(0, 8, size=shape)
        # zero border of varying width: nnU-Net crops it away (nonzero bounding box)
        b = rng.integers(1, 4, size=3)
        img[: b[0]] = 0
        img[-1:] = 0
        img[:, : b[1]] = 0
        img[:, :, -b[2] :] = 0
        affine = np.diag([*spacing, 1.0])
        affine[:3, 3] = rng.uniform(-20, 20, size=3)
        nib.save(nib.Nifti1Image(img.astype(np.float32), affine), str(root / "imagesTr" / f"{case}_0000.nii.gz"))
        nib.save(nib.Nifti1Image(label, affine), str(root / "labelsTr" / f"{case}.nii.gz"))
        nib.save(nib.Nifti1Image(soft, affine), str(root / "labelsTr_soft" / f"{case}.nii.gz"))
        if i == 0:  # one test image for prediction
            nib.save(nib.Nifti1Image(img.astype(np.float32), affine), str(root / "imagesTs" / f"{case}_0000.nii.gz"))
    dataset_json = {
        "channel_names": {"0": "T2w"},
        "labels": {"background": 0, "cord": 1},
        "numTraining": n_cases,
        "file_ending": ".nii.gz",
        "name": dataset_name,
    }
    (root / "dataset.json").write_text(json.dumps(dataset_json, indent=2))
    return root


def soft_blob(shape=(2, 1, 12, 16, 16), seed=0):
    """A soft sphere ``(B, 1, *spatial)`` torch tensor in [0, 1]: linear partial-volume ramp, a little noise."""
    import torch

    g = torch.Generator().manual_seed(seed)
    z, y, x = torch.meshgrid(*[torch.linspace(-1, 1, n) for n in shape[2:]], indexing="ij")
    r = torch.sqrt(z**2 + y**2 + x**2)
    s = torch.clamp((0.6 - r) / 0.25 + 0.5, 0, 1)
    s = s[None, None].repeat(shape[0], 1, 1, 1, 1)
    return torch.clamp(s + 0.02 * torch.rand(s.shape, generator=g), 0, 1)


#: Toy lesion dataset (cord 1, lesion 2 in labelsTr; see :func:`make_lesion_toy_dataset`).
LESION_TOY_ID = 986
LESION_TOY_NAME = f"Dataset{LESION_TOY_ID:03d}_ToyLesion"
#: ``dataset.json`` labels of the toy lesion dataset: plain, and region-based as ``convert lesion --regions``.
LESION_LABELS_PLAIN = {"background": 0, "cord": 1, "lesion": 2}
LESION_LABELS_REGIONS = {"labels": {"background": 0, "cord": [1, 2], "lesion": 2}, "regions_class_order": [1, 2]}


def make_lesion_toy_dataset(
    raw_root: str | os.PathLike,
    n_cases: int = 4,
    shape=(40, 32, 32),
    seed: int = 0,
    dataset_name: str = LESION_TOY_NAME,
) -> Path:
    """A tiny raw dataset of a cord (label 1) holding 2-4 small lesions (label 2, spheres of 1-2.5 voxels
    radius) per case, 1 mm isotropic; the image is brighter in the cord and brighter still in lesions.
    ``dataset.json`` has the plain labels :data:`LESION_LABELS_PLAIN` (region runs pass their own)."""
    import nibabel as nib

    rng = np.random.default_rng(seed)
    root = Path(raw_root) / dataset_name
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    idx = np.indices(shape).astype(np.float64)
    for i in range(n_cases):
        case = f"lesion_{i:03d}"
        cy, cz = shape[1] / 2 + rng.uniform(-2, 2), shape[2] / 2 + rng.uniform(-2, 2)
        cord = (idx[1] - cy) ** 2 + (idx[2] - cz) ** 2 <= 5.5**2
        label = cord.astype(np.uint8)
        for k in range(rng.integers(2, 5)):
            x = 5 + k * 9 + rng.integers(0, 4)
            c = np.array([x, cy + rng.uniform(-2, 2), cz + rng.uniform(-2, 2)])
            r = rng.uniform(1.0, 2.5)
            label[(((idx - c[:, None, None, None]) ** 2).sum(0) <= r**2) & cord] = 2
        img = 100.0 + 60.0 * (label >= 1) + 80.0 * (label == 2) + rng.normal(0, 6, size=shape)
        affine = np.diag([1.0, 1.0, 1.0, 1.0])
        nib.save(nib.Nifti1Image(img.astype(np.float32), affine), str(root / "imagesTr" / f"{case}_0000.nii.gz"))
        nib.save(nib.Nifti1Image(label, affine), str(root / "labelsTr" / f"{case}.nii.gz"))
        if i == 0:
            nib.save(nib.Nifti1Image(img.astype(np.float32), affine), str(root / "imagesTs" / f"{case}_0000.nii.gz"))
    dataset_json = {
        "channel_names": {"0": "T2w"},
        "labels": LESION_LABELS_PLAIN,
        "numTraining": n_cases,
        "file_ending": ".nii.gz",
        "name": dataset_name,
    }
    (root / "dataset.json").write_text(json.dumps(dataset_json, indent=2))
    return root


def nnunet_env(base: str | os.PathLike, **extra: str) -> dict:
    """Environment for running nnU-Net console scripts on this machine, with temporary nnU-Net folders."""
    base = Path(base)
    env = dict(os.environ)
    env.update(
        nnUNet_raw=str(base / "raw"),
        nnUNet_preprocessed=str(base / "preprocessed"),
        nnUNet_results=str(base / "results"),
        nnUNet_n_proc_DA="0",
        nnUNet_def_n_proc="1",
        nnUNet_compile="f",
        OMP_NUM_THREADS=env.get("OMP_NUM_THREADS", "2"),
        MPLBACKEND="Agg",
    )
    env.update(extra)
    for k in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        Path(env[k]).mkdir(parents=True, exist_ok=True)
    return env


def console_script(name: str) -> str:
    """Path of an installed console script (next to this interpreter when possible)."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"console script {name} not found")
    return found


def run(cmd: list[str], env: dict, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run a command; on failure raise with its output (so test failures show nnU-Net's message)."""
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(
            f"command failed ({proc.returncode}): {' '.join(cmd)}\n--- stdout ---\n{proc.stdout[-6000:]}"
            f"\n--- stderr ---\n{proc.stderr[-6000:]}"
        )
    return proc


def plan_and_preprocess(env: dict, dataset_id: int = TOY_ID, configuration: str = "3d_fullres") -> None:
    """Run the real ``nnUNetv2_plan_and_preprocess`` (with dataset integrity check) for one configuration.

    ``nnUNet_n_proc_DA=0`` (no augmentation workers, right for training here) makes the planner call
    ``torch.set_num_threads(0)`` and fail, so planning runs with 1.
    """
    env = {**env, "nnUNet_n_proc_DA": "1"}
    run(
        [
            console_script("nnUNetv2_plan_and_preprocess"),
            "-d",
            str(dataset_id),
            "-c",
            configuration,
            "-np",
            "1",
            "-npfp",
            "1",
            "--verify_dataset_integrity",
            "--no_pbar",
        ],
        env,
    )


def preprocess_soft(env: dict, dataset_id: int = TOY_ID, configuration: str = "3d_fullres", *extra: str):
    """Run ``nnspine preprocess-soft`` through the console script."""
    return run([console_script("nnspine"), "preprocess-soft", "-d", str(dataset_id), "-c", configuration, *extra], env)


_PREPARED: dict = {}
_PREPARED_LESION: dict = {}


def prepared_lesion_toy(tmp_path_factory) -> dict:
    """Toy lesion dataset planned and preprocessed by nnU-Net (3d_fullres), once per session.

    Returns ``env``, ``raw``, ``pre`` (preprocessed dataset folder) and ``plans``. Tests must not modify them.
    """
    if "env" not in _PREPARED_LESION:
        base = tmp_path_factory.mktemp("nnunet_lesion_toy")
        env = nnunet_env(base)
        raw = make_lesion_toy_dataset(env["nnUNet_raw"])
        plan_and_preprocess(env, LESION_TOY_ID)
        pre = Path(env["nnUNet_preprocessed"]) / LESION_TOY_NAME
        plans = json.loads((pre / "nnUNetPlans.json").read_text())
        _PREPARED_LESION.update(env=env, raw=raw, pre=pre, plans=plans)
    return dict(_PREPARED_LESION)


def prepared_toy(tmp_path_factory) -> dict:
    """Toy dataset, planned + preprocessed by nnU-Net and by ``preprocess-soft``; built once per session.

    Returns the environment (``env``), the raw dataset folder (``raw``), the preprocessed dataset folder
    (``pre``) and the 3d_fullres data folder (``data``). Tests must not modify these folders.
    """
    if "env" not in _PREPARED:
        base = tmp_path_factory.mktemp("nnunet_toy")
        env = nnunet_env(base)
        raw = make_toy_dataset(env["nnUNet_raw"])
        plan_and_preprocess(env)
        preprocess_soft(env)
        pre = Path(env["nnUNet_preprocessed"]) / TOY_NAME
        plans = json.loads((pre / "nnUNetPlans.json").read_text())
        data = pre / plans["configurations"]["3d_fullres"]["data_identifier"]
        _PREPARED.update(env=env, raw=raw, pre=pre, data=data, plans=plans)
    return dict(_PREPARED)


class environ:
    """Context manager setting environment variables in this process (restored on exit)."""

    def __init__(self, values: dict):
        self.values = values
        self.saved: dict = {}

    def __enter__(self):
        for k, v in self.values.items():
            self.saved[k] = os.environ.get(k)
            os.environ[k] = v
        return self

    def __exit__(self, *exc):
        for k, v in self.saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        return False


# ============================================================ independent reference of the soft trainers' loss
def crop_zero_padded(array: np.ndarray, bbox) -> np.ndarray:
    """``array[:, bbox]`` (half-open ``[[lo, hi], ...]`` over the last axes), zero outside the array (plain numpy)."""
    out = np.zeros((array.shape[0], *[hi - lo for lo, hi in bbox]), dtype=np.float64)
    src, dst = [slice(None)], [slice(None)]
    for (lo, hi), n in zip(bbox, array.shape[1:]):
        a, b = max(lo, 0), min(hi, n)
        src.append(slice(a, b))
        dst.append(slice(a - lo, b - lo))
    out[tuple(dst)] = np.asarray(array[tuple(src)], dtype=np.float64)
    return out


def block_mean(x: np.ndarray, factors) -> np.ndarray:
    """Mean over non-overlapping blocks of ``factors`` voxels along the last axes (each axis must divide)."""
    for axis, f in zip(range(x.ndim - len(factors), x.ndim), factors):
        f = int(f)
        assert x.shape[axis] % f == 0, (x.shape, factors)
        shape = list(x.shape)
        shape[axis : axis + 1] = [x.shape[axis] // f, f]
        x = x.reshape(shape).mean(axis=axis + 1)
    return x


def reference_soft_loss(
    logits: list,
    soft_full: np.ndarray,
    pool_op_kernel_sizes,
    batch_dice: bool,
    weight_mse: float = 1.0,
    weight_dice: float = 1.0,
    smooth: float = 1e-5,
) -> float:
    """The soft trainers' deep-supervised loss computed from scratch, in float64 numpy.

    ``logits``: the network's outputs, one ``(B, 2, *spatial)`` array per deep-supervision scale (full resolution
    first); ``soft_full``: the soft target ``(B, 1, *patch)`` at full resolution. Scale ``i`` compares with the
    soft target block-averaged by the product of the first ``i + 1`` pooling kernels; scale weights ``1/2^i``, the
    coarsest 0, normalised to sum 1 (nnU-Net's rule); per scale ``weight_mse * mean((p - s)²) + weight_dice *
    (1 - mean((2 Σps + smooth) / (Σp² + Σs² + smooth)))`` with sums per sample (or over the batch).
    """
    factors = np.cumprod(np.vstack(pool_op_kernel_sizes), axis=0)
    weights = np.array([1 / 2**i for i in range(len(logits))])
    weights[-1] = 0
    weights /= weights.sum()
    total = 0.0
    for i, (z, w) in enumerate(zip(logits, weights)):
        z = np.asarray(z, dtype=np.float64)
        p = 1.0 / (1.0 + np.exp(z[:, 0:1] - z[:, 1:2]))  # softmax probability of channel 1
        s = block_mean(soft_full, factors[i])
        assert s.shape == p.shape, (s.shape, p.shape)
        axes = tuple(range(2, p.ndim)) if not batch_dice else (0, *range(2, p.ndim))
        dice = (2 * (p * s).sum(axes) + smooth) / ((p * p).sum(axes) + (s * s).sum(axes) + smooth)
        total += w * (weight_mse * np.mean((p - s) ** 2) + weight_dice * (1 - dice.mean()))
    return float(total)


def assert_validation_loss_is_soft_target_loss(
    env: dict, dataset_id: int, plans: str, checkpoint: Path, configuration: str = "3d_fullres"
) -> None:
    """Check that a trained model's loss is the soft-target loss (fails for a stock nnU-Net trainer).

    Rebuilds the trainer named in ``checkpoint`` in this process (nnU-Net's ``get_trainer_from_args``), takes one
    batch from its own validation loader and compares its ``validation_step`` loss with :func:`reference_soft_loss`
    of the network's output against the soft target read from preprocess-soft's file at each sample's crop.
    """
    import pytest
    import torch
    from nnunetv2.run.run_training import get_trainer_from_args

    from nnunet_spine.integration.soft_targets.layout import load_soft_target

    trainer_name = torch.load(checkpoint, map_location="cpu", weights_only=False)["trainer_name"]
    with environ({**env, "nnUNet_n_proc_DA": "0"}):
        trainer = get_trainer_from_args(
            str(dataset_id), configuration, "all", trainer_name, plans, device=torch.device("cpu")
        )
        trainer.initialize()
        trainer.load_checkpoint(str(checkpoint))
        _, val_loader = trainer.get_dataloaders()
        batch = next(val_loader)
        trainer.network.eval()
        with torch.no_grad():
            logits = trainer.network(batch["data"])
            loss = float(trainer.validation_step(batch)["loss"])
    assert "bboxes" in batch, f"{trainer_name}: batches carry no soft target crops (not a soft trainer)"
    data_folder = Path(trainer.preprocessed_dataset_folder)
    soft = np.stack(
        [
            crop_zero_padded(load_soft_target(data_folder, key)[:], bbox)
            for key, bbox in zip(batch["keys"], batch["bboxes"])
        ]
    )
    assert ((soft > 0.05) & (soft < 0.95)).any()  # partial volume in the compared patches
    cm = trainer.configuration_manager
    expected = reference_soft_loss([o.double().numpy() for o in logits], soft, cm.pool_op_kernel_sizes, cm.batch_dice)
    assert loss == pytest.approx(expected, rel=1e-4)
