"""Benchmark ``nnspine csa``: whole-process time for one file beside ``nnspine --version``, and per-file time for
twenty in one call.

Input: a 320-slice, 0.8 mm isotropic soft cord mask (64×64 in-plane, float32 partial-volume fractions of a
gently curved phantom cord), written once and copied. Each figure is the median of a few runs of the real
console script through ``subprocess`` (interpreter start and imports included). Wall time depends on what
else runs on the machine, so the children's CPU time (user + system) and the load average are printed too.
Prints figures only; no assertions.

    python benchmarks/bench_csa.py [--repeats 5] [--files 20]
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


def make_mask(path: Path) -> None:
    from nnunet_spine.core.io import save_image
    from nnunet_spine.phantoms.cord import CordModel, render_fraction

    model = CordModel(
        a0=6.0,
        b0=3.8,
        enl_a=0.9,
        enl_b=0.35,
        enl_z=150.0,
        enl_width=30.0,
        tilt_ap_deg=3.0,
        amp_rl=1.5,
        amp_ap=3.0,
        period_rl=160.0,
        period_ap=128.0,
    )
    shape, dx = (64, 64, 320), 0.8
    affine = np.diag([-dx, dx, dx, 1.0])  # nibabel LAS (SCT's RPI)
    affine[:3, 3] = [31.5 * dx, -40.0, 0.0]
    frac = render_fraction(model, shape, affine, supersample=5)
    save_image(frac, affine, path, dtype=np.float32)


def timed(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system of the child) of one command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--files", type=int, default=20)
    args = parser.parse_args()
    exe = shutil.which("nnspine")
    if exe is None:
        sys.exit("nnspine is not on PATH (pip install -e .)")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folder = tmp / "masks"
        folder.mkdir()
        first = folder / "mask_00.nii.gz"
        make_mask(first)
        for n in range(1, args.files):
            shutil.copy(first, folder / f"mask_{n:02d}.nii.gz")
        out = str(tmp / "csa.csv")
        subprocess.run([exe, "csa", "-i", str(first), "-o", out, "--overwrite"], capture_output=True)  # warm caches

        one, version = [], []
        for _ in range(args.repeats):  # alternate, so machine load weighs on both alike
            one.append(timed([exe, "csa", "-i", str(first), "-o", out, "--overwrite", "--perslice"]))
            version.append(timed([exe, "--version"]))
        many = [
            timed([exe, "csa", "-i", str(folder), "-o", out, "--overwrite", "--perslice"])
            for _ in range(max(1, args.repeats // 2))
        ]
        rows = sum(1 for _ in open(out)) - 1

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    w1, c1 = statistics.median(w for w, _ in one), statistics.median(c for _, c in one)
    wn, cn = statistics.median(w for w, _ in many), statistics.median(c for _, c in many)
    print(f"input: 64x64x320 soft mask, 0.8 mm isotropic; {os.cpu_count()} CPU(s); load average {load:.2f}")
    wv, cv = statistics.median(w for w, _ in version), statistics.median(c for _, c in version)
    print(f"nnspine --version       : {wv:.3f} s wall, {cv:.3f} s CPU   (interpreter start and the CLI's imports)")
    print(
        f"one file, whole process : {w1:.3f} s wall, {c1:.3f} s CPU = {c1 / cv:.1f}x --version (CPU)   "
        "(target <= 2x --version)"
    )
    print(
        f"{args.files} files, one call    : {wn:.3f} s wall = {wn / args.files:.3f} s/file; "
        f"CPU {cn:.3f} s = {cn / args.files:.3f} s/file   (target < 0.15 s/file)  [{rows} CSV rows]"
    )


if __name__ == "__main__":
    main()
