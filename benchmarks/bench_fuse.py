"""Benchmark the instance phase without the network: cutouts + fusion + postprocessing of a 17-vertebra spine.

Input: the spine phantom with 17 mobile vertebrae (T1-L5 + sacrum; 1 x 1 x 3 mm PIR, 148 x 578 x 35 voxels),
and panoptica's 7-vertebra lumbar case (512 x 512 x 17 at 0.59 x 0.59 x 3.3 mm) when ../shared/data is
there. "Perfect" cutout predictions are made from the reference instance mask beforehand (not timed).

Figures (median of --repeats runs, seconds):
  cutouts (in memory)   load the semantic mask, find the body centres, sample every cutout, one-hot channels
  cutouts (files)       the same through write_cutouts: 9 gzipped NIfTI channels per cutout + cutouts.json
  fusion + post         fuse_arrays: Dice couples, merging, semantic cleaning, numbering, discs/endplates
  CLI total             `nnspine cutouts` + `nnspine fuse` as subprocesses (imports, reading the 17
                        predictions, writing the four outputs with the QC PNG), wall and CPU time
Target: cutouts + fusion + postprocessing under 5 s (SPINEPS' own fusion: about 0.5 s on the panoptica case).
Wall time depends on what else runs on the machine: CPU time (all threads) and the load average are printed
too. Prints figures only; no assertions.

    python benchmarks/bench_fuse.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def perfect_predictions(sem, ref, record) -> dict[str, np.ndarray]:
    """Cutout predictions (1 above, 2 centre, 3 below) from a reference instance mask (scipy resampling)."""
    from nnunet_spine.core.geometry import resample_to_grid
    from nnunet_spine.core.labels import CORPUS, SACRUM, is_vertebra

    r, aff = np.asarray(ref.data), ref.affine
    ids = [int(v) for v in np.unique(r) if is_vertebra(v) and v != SACRUM]
    z = {v: float(aff[2, :3] @ np.argwhere((r == v) & (sem.data == CORPUS)).mean(0) + aff[2, 3]) for v in ids}
    order = sorted(ids, key=lambda v: -z[v])
    inv = np.linalg.inv(aff)
    out = {}
    for c in record.cutouts:
        centre = int(r[tuple(int(round(x)) for x in inv[:3, :3] @ c.centre_mm + inv[:3, 3])])
        k = order.index(centre)
        cut = resample_to_grid(r, aff, c.shape, c.affine, order=0)
        p = np.zeros(c.shape, np.uint8)
        if k:
            p[cut == order[k - 1]] = 1
        p[cut == centre] = 2
        if k + 1 < len(order):
            p[cut == order[k + 1]] = 3
        out[c.name] = p
    return out


def median_time(fn, repeats: int) -> tuple[float, float]:
    """Median wall and CPU seconds (this process, all threads) of ``fn()``."""
    walls, cpus = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return statistics.median(walls), statistics.median(cpus)


def timed(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system of the child) of one command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def bench_case(name: str, sem_path: Path, ref_path: Path, tmp: Path, repeats: int, cli: bool) -> None:
    from nnunet_spine.core.cutouts import (
        case_name,
        cut_case,
        iter_inputs,
        load_semantic,
        one_hot,
        voxel_sizes,
        write_cutouts,
    )
    from nnunet_spine.core.io import load_image, save_image
    from nnunet_spine.postprocessing.spine.fusion import fuse_arrays

    sem = load_semantic(sem_path)
    ref = load_image(ref_path, "labels")
    record = cut_case(sem, case_name(sem_path))[0]
    preds = perfect_predictions(sem, ref, record)

    def cut_in_memory():
        img = load_semantic(sem_path)
        rec, bodies, data = cut_case(img, "bench")
        for _, cut in iter_inputs(rec, data, bodies.affine_pir):
            one_hot(cut)

    n = [0]

    def cut_files():
        n[0] += 1
        write_cutouts(sem_path, tmp / f"{name}_cut{n[0]}")

    t_cut = median_time(cut_in_memory, repeats)
    t_files = median_time(cut_files, repeats)
    t_fuse = median_time(lambda: fuse_arrays(sem, record, preds), repeats)
    print(
        f"{name}: {sem.shape} voxels of {tuple(round(float(z), 3) for z in voxel_sizes(sem.affine))} mm, "
        f"{len(record.cutouts)} cutouts"
    )
    print(f"  {'':22s} {'wall':>7s} {'CPU':>7s}")
    for label, (w, c) in (("cutouts (in memory)", t_cut), ("cutouts (files)", t_files), ("fusion + post", t_fuse)):
        print(f"  {label:22s} {w:6.2f}s {c:6.2f}s")
    print(
        f"  {'cutouts + fusion':22s} {t_cut[0] + t_fuse[0]:6.2f}s {t_cut[1] + t_fuse[1]:6.2f}s in memory; "
        f"{t_files[0] + t_fuse[0]:.2f}s wall, {t_files[1] + t_fuse[1]:.2f}s CPU with cutout files (target < 5 s)"
    )
    if not cli:
        return
    exe = shutil.which("nnspine")
    if exe is None:
        print("  CLI total             (nnspine not on PATH)")
        return
    pred_dir = tmp / f"{name}_pred"
    pred_dir.mkdir()
    for c in record.cutouts:
        save_image(preds[c.name], c.affine, pred_dir / f"{c.name}.nii.gz")
    walls, cpus = [], []
    for k in range(repeats):
        cut_dir, out_dir = tmp / f"{name}_cli_cut{k}", tmp / f"{name}_cli_out{k}"
        w1, c1 = timed([exe, "cutouts", "--semantic", str(sem_path), "-o", str(cut_dir), "-q"])
        w2, c2 = timed(
            [
                exe,
                "fuse",
                "--semantic",
                str(sem_path),
                "--cutouts",
                str(cut_dir),
                "--predictions",
                str(pred_dir),
                "-o",
                str(out_dir),
                "-q",
            ]
        )
        walls.append((w1, w2))
        cpus.append(c1 + c2)
    w1 = statistics.median(w[0] for w in walls)
    w2 = statistics.median(w[1] for w in walls)
    print(
        f"  CLI total             {w1 + w2:6.2f} s wall (cutouts {w1:.2f} + fuse {w2:.2f}), "
        f"{statistics.median(cpus):.2f} s CPU"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-cli", dest="cli", action="store_false", help="skip the subprocess timings")
    args = parser.parse_args()
    from nnunet_spine.phantoms.spine_dataset import write_spine_dataset

    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPU(s)")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        write_spine_dataset(tmp / "spine17", n_vertebrae=17, seed=0)
        labels = tmp / "spine17" / "derivatives" / "labels" / "sub-01" / "anat"
        bench_case(
            "phantom T1-L5",
            labels / "sub-01_T2w_seg-spine_msk.nii.gz",
            labels / "sub-01_T2w_seg-vert_msk.nii.gz",
            tmp,
            args.repeats,
            args.cli,
        )
        pan = SHARED / "panoptica_spine_seg"
        if (pan / "semantic" / "ref.nii.gz").exists():
            bench_case(
                "panoptica lumbar",
                pan / "semantic" / "ref.nii.gz",
                pan / "matched_instance" / "ref.nii.gz",
                tmp,
                args.repeats,
                args.cli,
            )
        else:
            print(f"{pan} absent: panoptica figures skipped")


if __name__ == "__main__":
    main()
