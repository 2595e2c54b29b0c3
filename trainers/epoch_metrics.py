"""Extra per-epoch validation metrics beside nnU-Net's own, shared by the trainer families.

A family declares its curves (:class:`Curve`) on a subclass of :class:`ExtraMetricsLogger`; the logger keeps one
value per epoch for each (nnU-Net's logging contract), stores them in the checkpoint's ``logging`` with nnU-Net's
keys, and plots them to the family's own PNG next to nnU-Net's unchanged ``progress.png``.
:func:`sum_over_validation` adds up per-batch sums (``validation_step`` outputs), across DDP workers too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from batchgenerators.utilities.file_and_folder_operations import join
from nnunetv2.training.logging.nnunet_logger import LocalLogger
from torch import distributed as dist


@dataclass(frozen=True)
class Curve:
    """One logged value per epoch: its logging key, plot label, colour, line style and y axis (left/right)."""

    key: str
    label: str
    color: str
    linestyle: str = "-"
    axis: str = "left"


class ExtraMetricsLogger(LocalLogger):
    """nnU-Net's local logger plus :attr:`curves`, plotted to :attr:`png_name` (subclasses set the class attributes)."""

    curves: tuple[Curve, ...] = ()
    png_name: str = ""
    left_label: str = ""
    right_label: str = ""

    def __init__(self, verbose: bool = False):
        super().__init__(verbose)
        for c in self.curves:
            self.my_fantastic_logging[c.key] = list()

    def load_checkpoint(self, checkpoint: dict):
        # a checkpoint of a stock trainer (e.g. fine-tuning continued with --c) lacks our keys: pad with NaN
        n = len(checkpoint.get("train_losses", []))
        for c in self.curves:
            checkpoint.setdefault(c.key, [float("nan")] * n)
        super().load_checkpoint(checkpoint)

    def plot_progress_png(self, output_folder):
        super().plot_progress_png(output_folder)
        import matplotlib.pyplot as plt

        epoch = min(len(i) for i in self.my_fantastic_logging.values()) - 1
        x = list(range(epoch + 1))
        fig, ax = plt.subplots(1, 1, figsize=(30, 18))
        axes = {"left": ax}
        if any(c.axis == "right" for c in self.curves):
            axes["right"] = ax.twinx()
            axes["right"].set_ylabel(self.right_label)
        for c in self.curves:
            axes[c.axis].plot(
                x,
                self.my_fantastic_logging[c.key][: epoch + 1],
                color=c.color,
                ls=c.linestyle,
                linewidth=4,
                label=c.label,
            )
        ax.set_xlabel("epoch")
        ax.set_ylabel(self.left_label)
        for i, a in enumerate(axes.values()):
            a.legend(loc=(0.3 * i, 1))
        plt.tight_layout()
        fig.savefig(join(output_folder, self.png_name))
        plt.close(fig)


def sum_over_validation(trainer, val_outputs: list[dict], key: str) -> np.ndarray:
    """Pop ``key`` (an array of per-batch sums) from every validation output and add them up, over all DDP
    workers when training is distributed. Call before nnU-Net's ``on_validation_epoch_end`` (which collates
    every key of the outputs)."""
    total = np.sum([o.pop(key) for o in val_outputs], axis=0)
    if trainer.is_ddp:
        gathered = [None for _ in range(dist.get_world_size())]
        dist.all_gather_object(gathered, total)
        total = np.sum(gathered, axis=0)
    return total
