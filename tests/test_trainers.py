"""Soft-segmentation trainers: discovery by stock nnU-Net, data loading/augmentation of soft targets, loss wiring,
validation metrics and logging.

Uses the session's preprocessed toy dataset (:func:`nnunet_helpers.prepared_toy`); trainers run in-process on
the CPU with temporary ``nnUNet_results``.
"""

from __future__ import annotations

import ast
import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from nnunet_helpers import TOY_NAME, console_script, crop_zero_padded, environ, prepared_toy, reference_soft_loss

import nnunet_spine
from nnunet_spine.integration.soft_targets import layout
from nnunet_spine.integration.soft_targets.loader import nnUNetDataLoaderSoft
from nnunet_spine.trainers.soft_losses import SoftTargetLoss

TRAINER_NAMES = [
    "nnUNetTrainerSoftSeg",
    "nnUNetTrainerSoftSegMSE",
    "nnUNetTrainerSoftSegAdapWing",
    "nnUNetTrainerSoftSeg_debug",
    "nnUNetTrainerSoftSeg_demo",
]


def _export_folder() -> str:
    out = subprocess.run(
        [console_script("nnspine"), "trainers", "--export"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out.startswith("export nnUNet_extTrainer=")
    return out.split("=", 1)[1].strip("'")


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return prepared_toy(tmp_path_factory)


@pytest.fixture(scope="module")
def env(toy, tmp_path_factory):
    """Process environment for in-process trainers (temporary results folder, no DA workers)."""
    return {
        "nnUNet_raw": toy["env"]["nnUNet_raw"],
        "nnUNet_preprocessed": toy["env"]["nnUNet_preprocessed"],
        "nnUNet_results": str(tmp_path_factory.mktemp("results")),
        "nnUNet_n_proc_DA": "0",
        "nnUNet_compile": "f",
        "nnUNet_extTrainer": _export_folder(),
    }


def _make(env, toy, name="nnUNetTrainerSoftSeg", dataset_json=None, start=True):
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    with environ(env):
        cls = recursive_find_trainer_class_by_name(name)
        plans = json.loads((toy["pre"] / "nnUNetPlans.json").read_text())
        plans["continue_training"] = False
        dj = dataset_json or json.loads((toy["pre"] / "dataset.json").read_text())
        trainer = cls(plans=plans, configuration="3d_fullres", fold="all", dataset_json=dj, device=torch.device("cpu"))
        if start:
            trainer.on_train_start()
    return trainer


@pytest.fixture(scope="module")
def trainer(env, toy):
    torch.manual_seed(0)
    np.random.seed(0)
    t = _make(env, toy)
    yield t
    with environ(env):
        t.on_train_end()


# ========================================================================================= discovery
def test_cli_lists_every_family_with_one_clean_sentence_and_exports_discovery_folder():
    from nnunet_spine.trainers.registry import all_trainers

    out = subprocess.run([console_script("nnspine"), "trainers"], capture_output=True, text=True, check=True).stdout
    lines = [ln for ln in out.splitlines() if ln.strip()]
    names = [ln.split()[0] for ln in lines]
    assert names == [t.__name__ for t in all_trainers()]
    assert names[: len(TRAINER_NAMES)] == TRAINER_NAMES
    for line in lines:
        description = line.split(None, 1)[1]
        # one whole sentence, no reST markup
        assert description.endswith(".") and description.count(". ") == 0, line
        assert "``" not in description and ":class:" not in description and ":func:" not in description, line
    soft = dict(ln.split(None, 1) for ln in lines)
    assert (
        soft["nnUNetTrainerSoftSeg_debug"] == "nnUNetTrainerSoftSeg cut short for tests: 8 iterations, no "
        "test-time mirroring."
    )
    folder = Path(_export_folder())
    assert folder.is_dir() and folder.is_relative_to(Path(nnunet_spine.__file__).parent)


def test_describe_joins_the_first_sentence_and_drops_rest_markup():
    from nnunet_spine.trainers.registry import describe

    class T:
        """Trainer for ``nnspine demo`` with :class:`~nnunet_spine.trainers.soft_losses.SoftTargetLoss` (Wang et al. 2019)
        and :func:`f`, on `CPU`. A second sentence.

        Details."""

    assert describe(T) == "Trainer for nnspine demo with SoftTargetLoss (Wang et al. 2019) and f, on CPU."

    class U:
        """No full stop"""

    assert describe(U) == "No full stop"


def test_discovery_folder_holds_one_shim_that_binds_every_registered_trainer():
    """The nnUNet_extTrainer folder holds one module; it defines no class or function of its own and, imported as
    nnU-Net imports it (a top-level module from that folder), binds exactly the registry's trainers by name."""
    import importlib.util

    from nnunet_spine.trainers.registry import all_trainers

    folder = Path(_export_folder())
    shims = sorted(folder.glob("*.py"))
    assert [p.name for p in shims] == ["nnspine_trainers.py"]
    tree = ast.parse(shims[0].read_text())
    assert not [n for n in ast.walk(tree) if isinstance(n, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))]
    spec = importlib.util.spec_from_file_location("nnspine_trainers", shims[0])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    registered = {t.__name__: t for t in all_trainers()}
    assert sorted(module.__all__) == sorted(registered)
    for name, cls in registered.items():
        assert getattr(module, name) is cls


def test_nnunet_train_lookup_finds_trainers_via_extTrainer(tmp_path):
    """Stock ``nnUNetv2_train``'s lookup (``recursive_find_trainer_class_by_name``) finds every registered trainer
    through ``nnUNet_extTrainer``; the classes come from the installed package, so they pickle into spawned
    workers."""
    from nnunet_spine.trainers.registry import all_trainers

    expected = {t.__name__: t.__module__ for t in all_trainers()}
    assert set(TRAINER_NAMES) <= set(expected)
    code = f"""
import pickle, sys
from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
for name, module in {expected!r}.items():
    cls = recursive_find_trainer_class_by_name(name)
    assert cls.__name__ == name and cls.__module__ == module, (name, cls.__module__)
    assert issubclass(cls, nnUNetTrainer)
    assert pickle.loads(pickle.dumps(cls)) is cls
assert 'nnspine_trainers' not in sys.modules  # nnU-Net dropped the shim module again
print('FOUND-ALL')
"""
    env = {**os.environ, "nnUNet_extTrainer": _export_folder(), "nnUNet_results": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0 and "FOUND-ALL" in proc.stdout, proc.stderr[-3000:]
    env.pop("nnUNet_extTrainer")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode != 0 and "Could not find requested nnunet trainer" in proc.stderr


# ============================================================================================= setup
def test_trainer_setup(trainer, env, toy):
    from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper

    assert isinstance(trainer.loss, DeepSupervisionWrapper)
    inner = trainer.loss.loss
    assert isinstance(inner, SoftTargetLoss) and (inner.weight_mse, inner.weight_dice) == (1.0, 1.0)
    w = trainer.loss.weight_factors
    assert w[0] > w[1] > 0 and w[-1] == 0 and sum(w) == pytest.approx(1.0)
    assert trainer.label_manager.num_segmentation_heads == 2  # stock 2-channel softmax head
    # nnU-Net's own get_dataloaders built our loader class for training and validation
    assert isinstance(trainer.dataloader_train.data_loader, nnUNetDataLoaderSoft)
    assert isinstance(trainer.dataloader_val.data_loader, nnUNetDataLoaderSoft)
    for k in ("val_soft_dice", "val_mse_soft", "val_mse_binary", "mean_fg_dice", "ema_fg_dice"):
        assert k in trainer.logger.local_logger.my_fantastic_logging
    # variants differ only in their loss / length
    variants = {n: _make(env, toy, n, start=False) for n in TRAINER_NAMES[1:]}
    for v in variants.values():
        v.initialize()
    assert (
        variants["nnUNetTrainerSoftSegMSE"].loss.loss.weight_mse,
        variants["nnUNetTrainerSoftSegMSE"].loss.loss.weight_dice,
    ) == (1.0, 0.0)
    assert variants["nnUNetTrainerSoftSegAdapWing"].loss.loss.weight_adapwing == 1.0
    dbg = variants["nnUNetTrainerSoftSeg_debug"]
    assert dbg.num_epochs <= 2 and dbg.num_iterations_per_epoch <= 5 and dbg.num_val_iterations_per_epoch <= 2
    demo = variants["nnUNetTrainerSoftSeg_demo"]
    assert demo.num_epochs * demo.num_iterations_per_epoch == 150
    # the short variants predict without mirrored test-time augmentation; the real trainer keeps it
    for v in (dbg, demo, trainer):
        v.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
    assert dbg.inference_allowed_mirroring_axes is None and demo.inference_allowed_mirroring_axes is None
    assert trainer.inference_allowed_mirroring_axes


@pytest.mark.parametrize(
    "labels, extra, problem",
    [
        ({"background": 0, "cord": 1, "csf": 2}, {}, "2 foreground labels"),
        ({"background": 0, "cord": [1, 2], "lesion": 2}, {"regions_class_order": [1, 2]}, "region-based labels"),
        ({"background": 0, "cord": [1, 2]}, {"regions_class_order": [1]}, "region-based labels"),
        ({"background": 0, "cord": 1, "ignore": 2}, {}, "ignore label"),
    ],
)
def test_refuses_datasets_it_cannot_train_with_a_clear_message(env, toy, labels, extra, problem):
    """Region labels (even a single region), several labels or an ignore label are refused when the trainer is
    built, naming the problem and the dataset's labels, rather than trained as one soft foreground."""
    dj = {**json.loads((toy["pre"] / "dataset.json").read_text()), "labels": labels, **extra}
    with pytest.raises(RuntimeError, match="one soft foreground") as exc:
        _make(env, toy, dataset_json=dj, start=False)
    assert problem in str(exc.value) and str(labels) in str(exc.value)


def test_missing_soft_targets_are_reported(env, toy, tmp_path):
    pre = tmp_path / "preprocessed"
    shutil.copytree(toy["pre"], pre / TOY_NAME)
    data = pre / TOY_NAME / toy["data"].name
    (data / layout.PREPROCESSED_SOFT_FOLDER / "toy_003.b2nd").unlink()
    e = {**env, "nnUNet_preprocessed": str(pre), "nnUNet_results": str(tmp_path / "res")}
    t = _make(e, toy, start=False)
    with environ(e), pytest.raises(RuntimeError, match="nnspine preprocess-soft"):
        t.initialize()
        t.get_tr_and_val_datasets()


# ========================================================================================== batches
def _dice(a, b):
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    return 2 * (a & b).sum() / max(a.sum() + b.sum(), 1)


def test_batch_soft_target_equals_preprocessed_soft_at_sampled_location(trainer, env, toy):
    """A batch (no spatial augmentation: the validation pipeline) holds, for every sample, exactly the
    preprocessed (transposed, cropped, resampled) soft mask at the patch nnU-Net's sampler chose; fractional
    values included. Oversampling forces the cord into every patch."""
    from acvl_utils.cropping_and_padding.bounding_boxes import crop_and_pad_nd

    with environ(env):
        ds_tr, _ = trainer.get_tr_and_val_datasets()
        transforms = trainer.get_validation_transforms(trainer._get_deep_supervision_scales())
        ps = trainer.configuration_manager.patch_size
        dl = nnUNetDataLoaderSoft(
            ds_tr, 4, ps, ps, trainer.label_manager, oversample_foreground_percent=1.0, transforms=transforms
        )
        for _ in range(3):
            batch = next(dl)
            soft, seg = batch["soft_target"], batch["target"]
            assert isinstance(soft, list) and [s.shape for s in soft] == [s.shape for s in seg]
            assert soft[0].dtype == torch.float32
            for j, (key, bbox) in enumerate(zip(batch["keys"], batch["bboxes"])):
                ref = crop_and_pad_nd(layout.load_soft_target(toy["data"], key), bbox, 0, cast_cropped_to=np.float32)
                got = soft[0][j].numpy()
                assert np.allclose(got, ref, atol=1e-6)
                frac = (got > 0.05) & (got < 0.95)
                assert frac.sum() > 20, key  # fractional soft values reach the batch
                assert _dice(got[0] > 0.5, seg[0][j, 0].numpy() == 1) > 0.9
                # coarser scales: area averages of the full-resolution target
                assert float(soft[1][j].mean()) == pytest.approx(float(soft[0][j].mean()), abs=0.02)


def test_training_batch_carries_soft_target_through_spatial_augmentation(trainer, env):
    """With rotation and scaling forced on, the soft target stays aligned with nnU-Net's label in every sample
    (it goes through the same spatial transforms as ``regression_target``) and keeps fractional values."""
    from batchgeneratorsv2.transforms.spatial.spatial import SpatialTransform

    with environ(env):
        ds_tr, _ = trainer.get_tr_and_val_datasets()
        rot, dummy2d, initial_ps, mirror = trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        ps = trainer.configuration_manager.patch_size
        transforms = trainer.get_training_transforms(ps, rot, trainer._get_deep_supervision_scales(), mirror, dummy2d)
        spatial = [t for t in transforms.transforms if isinstance(t, SpatialTransform)][0]
        spatial.p_rotation = spatial.p_scaling = 1.0
        dl = nnUNetDataLoaderSoft(
            ds_tr, 4, initial_ps, ps, trainer.label_manager, oversample_foreground_percent=1.0, transforms=transforms
        )
        torch.manual_seed(1)
        np.random.seed(1)
        for _ in range(2):
            batch = next(dl)
            soft, seg = batch["soft_target"], batch["target"]
            assert [tuple(s.shape) for s in soft] == [tuple(s.shape) for s in seg]
            assert tuple(soft[0].shape[2:]) == tuple(ps)
            for j in range(soft[0].shape[0]):
                s, lab = soft[0][j, 0].numpy(), seg[0][j, 0].numpy()
                assert s.min() >= -1e-6 and s.max() <= 1 + 1e-6
                if (lab == 1).sum() > 50:
                    assert _dice(s > 0.5, lab == 1) > 0.85
                    assert ((s > 0.05) & (s < 0.95)).sum() > 20


# ================================================================================ loss and metrics
def _reference_loss(trainer, logits, soft_full) -> float:
    cm = trainer.configuration_manager
    return reference_soft_loss(
        [o.detach().double().numpy() for o in logits], soft_full, cm.pool_op_kernel_sizes, cm.batch_dice
    )


def test_train_step_loss_is_the_soft_target_loss_computed_independently(trainer, env):
    """The loss nnU-Net's train step reports equals the MSE + soft Dice against the batch's (augmented) soft
    target, deep-supervised, computed from scratch in numpy; against the integer label it would differ."""
    with environ(env):
        batch = next(trainer.dataloader_train)
        trainer.network.train()
        with torch.no_grad():
            logits = trainer.network(batch["data"])  # the weights train_step's forward pass uses
        out = trainer.train_step(batch)
    soft = batch["soft_target"][0].double().numpy()
    assert ((soft > 0.05) & (soft < 0.95)).any()
    expected = _reference_loss(trainer, logits, soft)
    assert float(out["loss"]) == pytest.approx(expected, rel=1e-4)
    label = (batch["target"][0].numpy() > 0).astype(np.float64)
    assert abs(_reference_loss(trainer, logits, label) - expected) > 1e-3  # the check can tell them apart


def test_validation_logs_independently_computed_soft_metrics(trainer, env, toy):
    """One short epoch through nnU-Net's own hooks. The logged validation loss, soft Dice (2 Σps / (Σp + Σs)),
    MSE vs the soft target and MSE vs the binarized label equal values computed from scratch: the network's
    output on the same batches against the soft target read from its file at each sample's crop. Beside them
    nnU-Net's own logging goes on (pseudo Dice, EMA, progress.png, checkpoint_best)."""
    data_folder = toy["data"]
    with environ(env):
        trainer.on_epoch_start()
        trainer.on_train_epoch_start()
        trainer.on_train_epoch_end([trainer.train_step(next(trainer.dataloader_train))])
        with torch.no_grad():
            trainer.on_validation_epoch_start()
            batches = [next(trainer.dataloader_val) for _ in range(2)]
            logits = [trainer.network(b["data"]) for b in batches]
            outs = [trainer.validation_step(b) for b in batches]
            trainer.on_validation_epoch_end(outs)
        trainer.on_epoch_end()

    losses_ref, sums = [], np.zeros(5)
    for batch, z in zip(batches, logits):
        soft = np.stack(
            [
                crop_zero_padded(layout.load_soft_target(data_folder, key)[:], bbox)
                for key, bbox in zip(batch["keys"], batch["bboxes"])
            ]
        )
        losses_ref.append(_reference_loss(trainer, z, soft))
        z0 = z[0].double().numpy()
        p = 1.0 / (1.0 + np.exp(z0[:, :1] - z0[:, 1:2]))
        b = (batch["target"][0].numpy() > 0).astype(np.float64)
        sums += [(p * soft).sum(), p.sum() + soft.sum(), ((p - soft) ** 2).sum(), ((p - b) ** 2).sum(), p.size]
    log = trainer.logger.local_logger.my_fantastic_logging
    assert log["val_losses"][0] == pytest.approx(np.mean(losses_ref), rel=1e-4)
    assert log["val_soft_dice"][0] == pytest.approx(2 * sums[0] / sums[1], rel=1e-5)
    assert log["val_mse_soft"][0] == pytest.approx(sums[2] / sums[4], rel=1e-5)
    assert log["val_mse_binary"][0] == pytest.approx(sums[3] / sums[4], rel=1e-5)

    for k in ("mean_fg_dice", "ema_fg_dice"):  # nnU-Net's own per-epoch values are still logged
        assert len(log[k]) == 1 and np.isfinite(log[k][0]), k
    out = Path(trainer.output_folder)
    assert (out / "progress.png").is_file() and (out / "progress_soft.png").is_file()
    ckpt = torch.load(out / "checkpoint_best.pth", map_location="cpu", weights_only=False)
    assert ckpt["trainer_name"] == "nnUNetTrainerSoftSeg"
    assert ckpt["logging"]["val_mse_soft"] == log["val_mse_soft"]
    text = "".join(p.read_text() for p in out.glob("training_log_*.txt"))
    assert f"val soft Dice {np.round(log['val_soft_dice'][0], 4)}" in text


def test_logger_accepts_checkpoints_of_stock_trainers():
    from nnunet_spine.trainers.softseg import SoftLocalLogger

    lg = SoftLocalLogger()
    stock = {
        k: [0.1, 0.2]
        for k in (
            "mean_fg_dice",
            "ema_fg_dice",
            "dice_per_class_or_region",
            "train_losses",
            "val_losses",
            "lrs",
            "epoch_start_timestamps",
            "epoch_end_timestamps",
        )
    }
    lg.load_checkpoint(stock)
    assert len(lg.get_value("val_mse_soft", None)) == 2
    lg.log("val_mse_soft", 0.5, 2)
    assert lg.get_value("val_mse_soft", 2) == 0.5


def test_trainer_classes_pickle_by_reference():
    from nnunet_spine.trainers import softseg

    for name in TRAINER_NAMES:
        cls = getattr(softseg, name)
        assert pickle.loads(pickle.dumps(cls)) is cls
