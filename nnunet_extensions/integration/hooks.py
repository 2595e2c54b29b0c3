"""Small, explicit ways into nnU-Net's trainer that avoid copying its code.

Each helper changes one thing nnU-Net's own method uses and leaves the method itself as nnU-Net wrote it.
``tests/test_nnunet_guards.py`` pins the nnU-Net sources these rely on and names what to re-check when they change.
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Callable, Iterator

from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper


def with_global(func: Callable, name: str, value) -> Callable:
    """A copy of function ``func`` (same code object) that sees ``value`` for the module-level name ``name``.

    nnU-Net's module is not modified (no monkeypatching): only the returned function sees the substitute.
    Raises ``RuntimeError`` if ``func`` does not use ``name`` (the substitution would silently do nothing).
    """
    if name not in func.__code__.co_names:
        raise RuntimeError(
            f"{func.__module__}.{func.__qualname__} no longer uses the global {name!r}: "
            f"nnU-Net changed, see tests/test_nnunet_guards.py"
        )
    namespace = dict(func.__globals__)
    namespace[name] = value
    copy = types.FunctionType(func.__code__, namespace, func.__name__, func.__defaults__, func.__closure__)
    copy.__kwdefaults__ = func.__kwdefaults__
    copy.__qualname__ = func.__qualname__
    return copy


def replace_inner_loss(loss, inner):
    """nnU-Net's loss with its per-scale loss replaced by ``inner``.

    nnU-Net's ``_build_loss`` wraps the loss in a :class:`DeepSupervisionWrapper` (weights halved per scale,
    lowest resolution unused, normalised) when deep supervision is on; that wrapper and its weights are kept.
    """
    if isinstance(loss, DeepSupervisionWrapper):
        loss.loss = inner
        return loss
    return inner


@contextlib.contextmanager
def loss_replaced(trainer, loss: Callable) -> Iterator[None]:
    """Within the block, ``trainer.loss`` is ``loss`` (nnU-Net's train/validation steps call ``self.loss``)."""
    original = trainer.loss
    trainer.loss = loss
    try:
        yield
    finally:
        trainer.loss = original


def validation_step_with_output(
    step: Callable[[dict], dict], trainer, batch: dict, loss: Callable | None = None
) -> tuple[dict, object]:
    """Run nnU-Net's validation step ``step`` (e.g. ``super().validation_step``) on ``batch`` and return its result
    with the network output it computed (a list per deep-supervision scale, or a tensor).

    nnU-Net's step calls ``self.loss(output, target)`` once with the full output: the output is recorded there.
    With ``loss``, that callable computes the step's loss instead of ``trainer.loss`` (it receives the same
    ``(output, target)`` arguments).
    """
    outputs = []
    compute = loss if loss is not None else trainer.loss

    def recording_loss(output, target):
        outputs.append(output)
        return compute(output, target)

    with loss_replaced(trainer, recording_loss):
        result = step(batch)
    return result, outputs[0]


class WrappedTrainingTransforms:
    """Mixin for trainers that keep nnU-Net's training pipeline and change it in one place: nnU-Net's (static)
    ``get_training_transforms`` builds the pipeline, then :meth:`wrap_training_transforms` — an instance method, so
    it can use what the trainer learnt about its dataset (mirror axis, label pairs, channel order) — adapts it."""

    def wrap_training_transforms(self, transforms, mirror_axes):
        """The pipeline to train with, from nnU-Net's ``transforms`` (default: unchanged)."""
        return transforms

    def get_training_transforms(
        self,
        patch_size,
        rotation_for_DA,
        deep_supervision_scales,
        mirror_axes,
        do_dummy_2d_data_aug,
        use_mask_for_norm=None,
        is_cascaded=False,
        foreground_labels=None,
        regions=None,
        ignore_label=None,
    ):
        from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

        transforms = nnUNetTrainer.get_training_transforms(
            patch_size,
            rotation_for_DA,
            deep_supervision_scales,
            mirror_axes,
            do_dummy_2d_data_aug,
            use_mask_for_norm,
            is_cascaded,
            foreground_labels,
            regions,
            ignore_label,
        )
        return self.wrap_training_transforms(transforms, mirror_axes)
