"""Time per training iteration: ``nnUNetTrainerSoftSeg`` vs stock ``nnUNetTrainer`` on the same data (CPU).

One iteration = what ``nnUNetTrainer.run_training`` does per batch: ``next(dataloader_train)`` (loading,
cropping, augmentation; for the soft trainer also the soft target) + ``train_step`` (forward, loss, backward,
optimizer step). Both trainers are built from the same plans and preprocessed folder; data augmentation runs
in the main process (``nnUNet_n_proc_DA=0``) so that it is part of the measured time. Blocks of iterations of
the two trainers alternate, to spread machine load evenly over both, and the median per-iteration time is
reported. Target: the soft trainer costs at most 15% more per iteration.

Usage::

    python benchmarks/bench_trainer.py                 # builds the toy dataset in a temporary folder
    python benchmarks/bench_trainer.py -d 501 -c 3d_fullres   # an existing dataset (nnUNet_* variables set;
                                                              # 'nnspine preprocess-soft' must have run)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _prepare_toy(base: Path) -> str:
    sys.path.insert(0, str(REPO / "tests"))
    import nnunet_helpers as h

    env = h.nnunet_env(base)
    os.environ.update({k: env[k] for k in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")})
    h.make_toy_dataset(env["nnUNet_raw"])
    t0 = time.perf_counter()
    h.plan_and_preprocess(env)
    h.preprocess_soft(env)
    print(f"toy dataset planned and preprocessed in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return h.TOY_NAME


def _make_trainer(cls, dataset: str, configuration: str, plans_identifier: str):
    import torch
    from batchgenerators.utilities.file_and_folder_operations import load_json
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    name = maybe_convert_to_dataset_name(dataset)
    pre = Path(os.environ["nnUNet_preprocessed"]) / name
    plans = load_json(str(pre / f"{plans_identifier}.json"))
    plans["continue_training"] = False
    dataset_json = load_json(str(pre / "dataset.json"))
    trainer = cls(
        plans=plans, configuration=configuration, fold="all", dataset_json=dataset_json, device=torch.device("cpu")
    )
    trainer.on_train_start()
    trainer.on_train_epoch_start()
    return trainer


def _iterate(trainer, n: int) -> tuple[list[float], list[float]]:
    """Run ``n`` iterations; returns (wall-clock seconds, process CPU seconds) per iteration."""
    wall, cpu = [], []
    for _ in range(n):
        t0, c0 = time.perf_counter(), time.process_time()
        trainer.train_step(next(trainer.dataloader_train))
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return wall, cpu


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-d", "--dataset", help="dataset id/name (default: build the toy dataset in a temp folder)")
    ap.add_argument("-c", "--configuration", default="3d_fullres")
    ap.add_argument("-p", "--plans", default="nnUNetPlans")
    ap.add_argument("-n", "--iterations", type=int, default=30, help="measured iterations per trainer (default 30)")
    ap.add_argument("--block", type=int, default=1, help="iterations per alternating block (default 1)")
    ap.add_argument("--warmup", type=int, default=3, help="unmeasured iterations per trainer (default 3)")
    ap.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count(),
        help="torch threads (default: all cores, as nnUNetv2_train on CPU)",
    )
    ap.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = ap.parse_args(argv)

    os.environ.setdefault("nnUNet_compile", "f")
    os.environ["nnUNet_n_proc_DA"] = "0"
    tmp = None
    if args.dataset is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench_trainer_")
        dataset = _prepare_toy(Path(tmp.name))
    else:  # an existing dataset: checkpoints and logs go to a temporary folder, never the user's results
        dataset = args.dataset
        tmp = tempfile.TemporaryDirectory(prefix="bench_trainer_")
        os.environ["nnUNet_results"] = tmp.name

    import numpy as np
    import torch
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    from nnunet_spine.trainers.softseg import nnUNetTrainerSoftSeg

    torch.set_num_threads(max(1, args.threads))
    torch.manual_seed(0)
    np.random.seed(0)
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        stock = _make_trainer(nnUNetTrainer, dataset, args.configuration, args.plans)
        soft = _make_trainer(nnUNetTrainerSoftSeg, dataset, args.configuration, args.plans)
    cm = stock.configuration_manager
    print(
        f"dataset {dataset}, {args.configuration}: patch {cm.patch_size}, batch {stock.batch_size}, "
        f"torch threads {torch.get_num_threads()}, {args.iterations} iterations each after {args.warmup} warm-up"
    )

    _iterate(stock, args.warmup)
    _iterate(soft, args.warmup)
    names = ("nnUNetTrainer", "nnUNetTrainerSoftSeg")
    wall = {k: [] for k in names}
    cpu = {k: [] for k in names}
    done = 0
    while done < args.iterations:
        n = min(args.block, args.iterations - done)
        for k, t in zip(names, (stock, soft)):
            w, c = _iterate(t, n)
            wall[k] += w
            cpu[k] += c
        done += n

    med = {k: statistics.median(v) for k, v in wall.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    for k in names:
        v = wall[k]
        print(
            f"{k:<22} median {med[k] * 1000:8.1f} ms/iteration wall, {med_cpu[k] * 1000:8.1f} ms CPU  "
            f"(wall mean {statistics.mean(v) * 1000:.1f}, min {min(v) * 1000:.1f}, max {max(v) * 1000:.1f})"
        )
    ratio = med[names[1]] / med[names[0]]
    ratio_min = min(wall[names[1]]) / min(wall[names[0]])
    ratio_cpu = med_cpu[names[1]] / med_cpu[names[0]]
    verdict = "OK" if ratio <= 1.15 else "ABOVE TARGET"
    print(
        f"soft / stock: {ratio:.3f} median wall ({(ratio - 1) * 100:+.1f}%; target <= +15%: {verdict}); "
        f"{ratio_min:.3f} fastest iterations; {ratio_cpu:.3f} median CPU time"
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "median_wall_s": med,
                    "median_cpu_s": med_cpu,
                    "ratio": ratio,
                    "ratio_fastest": ratio_min,
                    "ratio_cpu": ratio_cpu,
                    "wall_s": wall,
                    "cpu_s": cpu,
                    "patch_size": list(cm.patch_size),
                    "batch_size": stock.batch_size,
                },
                indent=2,
            )
        )
    for t in (stock, soft):
        with contextlib.redirect_stdout(io.StringIO()):
            t.on_train_end()
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
