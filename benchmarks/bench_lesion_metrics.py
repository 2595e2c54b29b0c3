"""Benchmark: ``nnspine evaluate lesions`` and ``nnspine lesions`` on a 512×512×100 pair with 200 lesions.

The issue's target: the whole ``nnspine evaluate lesions`` command (process start, reading both files,
components, matching, CSV) in under 2 s. Run: ``python benchmarks/bench_lesion_metrics.py``; prints the
wall-clock seconds of each command (best of ``--repeat`` runs) and the lesion counts it found.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SHAPE = (512, 512, 100)
VOXEL_MM = (0.5, 0.5, 1.5)
N_LESIONS = 200


def make_pair(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reference with ``N_LESIONS`` separated ellipsoids (radii 1–5 voxels in-plane, 1–3 slices), a prediction
    that misses 10 %, shifts the others by up to one voxel and adds 20 false positives; a cord-like
    cylinder covering most lesions."""
    ref = np.zeros(SHAPE, np.uint8)
    pred = np.zeros(SHAPE, np.uint8)
    centres: list[np.ndarray] = []
    while len(centres) < N_LESIONS + 20:
        c = rng.integers([20, 20, 6], [SHAPE[0] - 20, SHAPE[1] - 20, SHAPE[2] - 6])
        if all(np.abs(c - o).max() > 14 for o in centres):
            centres.append(c)
    for n, c in enumerate(centres):
        r = np.array([rng.uniform(1, 5), rng.uniform(1, 5), rng.uniform(1, 3)])
        lo, hi = np.floor(c - r).astype(int), np.ceil(c + r).astype(int) + 1
        g = np.ogrid[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
        inside = sum(((gi - ci) / ri) ** 2 for gi, ci, ri in zip(g, c, r)) <= 1
        box = tuple(slice(a, b) for a, b in zip(lo, hi))
        if n < N_LESIONS:
            ref[box] |= inside
            if n % 10:  # 10 % missed
                shift = tuple(slice(a + s, b + s) for a, b, s in zip(lo, hi, rng.integers(-1, 2, 3)))
                pred[shift] |= inside
        else:
            pred[box] |= inside  # false positives
    cord = np.zeros(SHAPE, np.uint8)
    yy, xx = np.ogrid[: SHAPE[0], : SHAPE[1]]
    cord[((yy - 256) ** 2 + (xx - 256) ** 2) <= 120**2] = 1
    return ref, pred, cord


def timed(cmd: list[str], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    import nibabel as nib

    ref, pred, cord = make_pair(np.random.default_rng(0))
    affine = np.diag([*VOXEL_MM, 1.0])
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        for name, arr in (("ref", ref), ("pred", pred), ("cord", cord)):
            nib.save(nib.Nifti1Image(arr, affine), str(d / f"{name}.nii.gz"))
        nnspine = [shutil.which("nnspine") or sys.exit("nnspine console script not found (pip install -e .)")]
        ev = nnspine + [
            "evaluate",
            "lesions",
            "--pred",
            str(d / "pred.nii.gz"),
            "--ref",
            str(d / "ref.nii.gz"),
            "-o",
            str(d / "m.csv"),
            "--per-lesion",
            str(d / "pl.csv"),
            "--overwrite",
            "-q",
        ]
        t_eval = timed(ev, args.repeat)
        import pandas as pd

        row = pd.read_csv(d / "m.csv").iloc[0]
        les = nnspine + [
            "lesions",
            "-i",
            str(d / "pred.nii.gz"),
            "--cord",
            str(d / "cord.nii.gz"),
            "--min-volume-mm3",
            "5",
            "-o",
            str(d / "out.nii.gz"),
            "--table",
            str(d / "t.csv"),
            "--overwrite",
            "-q",
        ]
        t_les = timed(les, args.repeat)
        t_qc = timed(les + ["--qc", str(d / "qc.png")], 1)
        table = pd.read_csv(d / "t.csv")
    print(
        f"pair {SHAPE[0]}x{SHAPE[1]}x{SHAPE[2]} ({VOXEL_MM} mm), {int(row['ref_lesions'])} reference / "
        f"{int(row['pred_lesions'])} predicted lesions: tp {int(row['tp'])}, fp {int(row['fp'])}, fn {int(row['fn'])}"
    )
    print(
        f"nnspine evaluate lesions (whole command, best of {args.repeat}): {t_eval:.2f} s "
        f"({'under' if t_eval < 2.0 else 'OVER'} the 2 s target)"
    )
    print(
        f"nnspine lesions --cord --min-volume-mm3 5 (whole command, best of {args.repeat}): {t_les:.2f} s "
        f"({int((table['lesion'] != 'total').sum())} lesions in the table); with --qc: {t_qc:.2f} s"
    )


if __name__ == "__main__":
    main()
