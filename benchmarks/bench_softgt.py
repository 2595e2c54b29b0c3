"""Benchmark ``nnspine convert softgt``: time for one subject with 5 contrasts, and its accuracy.

Input: one default cord phantom subject (T2w 0.8 mm iso sagittal, T1w 1 mm iso, T2*w 0.5×0.5×3 mm slab,
two oblique MTS slabs 0.8×0.8×5 mm; shifts of 0.5–1.8 mm between scans), generated once (not timed).
Figures (median and minimum of ``--repeats`` runs, in this process, imports already done):

* ``convert()`` — the library call behind the CLI: reads the 5 masks and image headers, computes, writes
  5 soft masks + JSON sidecars (the converter's time for one subject);
* the same with the nnU-Net raw dataset (also reads the 5 images and writes images, labels, soft labels);
* ``soft_ground_truth()`` alone (arrays in, arrays out);
* the console script ``nnspine convert softgt`` once (interpreter start and imports included).

Then the accuracy: mean absolute error against the exact partial-volume truth in a 2-voxel band around
the true boundary, per contrast, for the soft GT, the soft GT without alignment, and the binary masks.
Wall time depends on what else runs on the machine: the CPU time and the load average are printed too.
Prints figures only; no assertions.

    python benchmarks/bench_softgt.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

CONTRASTS = ("T2w", "T1w", "T2starw", "flip-1_mt-on_MTS", "flip-2_mt-off_MTS")


def timed(fn, repeats: int) -> tuple[list[float], list[float]]:
    walls, cpus = [], []
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return walls, cpus


def show(label: str, walls: list[float], cpus: list[float]) -> None:
    print(
        f"  {label:<44s} median {statistics.median(walls):6.3f} s   min {min(walls):6.3f} s   "
        f"(CPU median {statistics.median(cpus):6.3f} s)"
    )


def band_mae(truth: np.ndarray, values: np.ndarray) -> float:
    inside = truth >= 0.5
    band = (inside & (ndimage.distance_transform_edt(inside) <= 2)) | (
        ~inside & (ndimage.distance_transform_edt(~inside) <= 2)
    )
    return float(np.abs(values - truth)[band].mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    from nnunet_spine.dataset_converters.softgt import convert
    from nnunet_spine.dataset_converters.softgt_algorithm import soft_ground_truth
    from nnunet_spine.phantoms.cord_dataset import write_cord_dataset

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        root = tmp / "bids"
        t0 = time.perf_counter()
        write_cord_dataset(root, n_subjects=1, seed=0)
        print(f"phantom: 1 subject, 5 contrasts, generated in {time.perf_counter() - t0:.1f} s (not timed below)")
        print(f"machine: {os.cpu_count()} CPUs, load average {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
        print(f"timings over {args.repeats} runs (one subject, 5 contrasts):")

        out = tmp / "deriv"
        show(
            "convert() -> BIDS derivative",
            *timed(lambda: convert(root, derivatives_out=out, overwrite=True), args.repeats),
        )
        raw = tmp / "raw"
        show(
            "convert() -> derivative + nnU-Net raw dataset",
            *timed(
                lambda: convert(
                    root, derivatives_out=tmp / "deriv_nn", overwrite=True, nnunet_dataset=1, name="Bench", raw_root=raw
                ),
                args.repeats,
            ),
        )
        labels = root / "derivatives/labels/sub-01/anat"
        masks = {}
        for c in CONTRASTS:
            img = nib.load(str(labels / f"sub-01_{c}_label-SC_seg.nii.gz"))
            masks[c] = (np.asanyarray(img.dataobj), img.affine)
        result = None

        def core():
            nonlocal result
            result = soft_ground_truth(masks, "T2w")

        show("soft_ground_truth() only (arrays)", *timed(core, args.repeats))
        exe = shutil.which("nnspine")
        if exe:
            t0 = time.perf_counter()
            proc = subprocess.run(
                [exe, "convert", "softgt", "-i", str(root), "--derivatives-out", str(tmp / "cli"), "-q"],
                capture_output=True,
                text=True,
            )
            status = "" if proc.returncode == 0 else f"  (failed: {proc.stderr.strip()})"
            print(f"  {'nnspine convert softgt (console script, once)':<44s} {time.perf_counter() - t0:6.3f} s{status}")
        print(
            f"  averaging space: {result.spacing_mm} mm; volume-preserving boundary shift "
            f"{result.boundary_offset_mm:+.3f} mm"
        )

        unaligned = soft_ground_truth(masks, "T2w", align=False)
        print("\nband MAE vs exact partial volume (2-voxel band around the true boundary, native grids):")
        print(f"  {'contrast':<20s} {'soft GT':>8s} {'no-align':>9s} {'binary':>8s}   shift found (mm)")
        rows = []
        truth_dir = root / "derivatives/truth/sub-01/anat"
        for c in CONTRASTS:
            truth = np.asanyarray(nib.load(str(truth_dir / f"sub-01_{c}_label-SC_softseg.nii.gz")).dataobj)
            row = (
                band_mae(truth, result.soft[c]),
                band_mae(truth, unaligned.soft[c]),
                band_mae(truth, masks[c][0].astype(np.float32)),
            )
            rows.append(row)
            print(f"  {c:<20s} {row[0]:8.4f} {row[1]:9.4f} {row[2]:8.4f}   {result.offsets_mm[c]}")
        mean = np.mean(rows, axis=0)
        print(f"  {'mean':<20s} {mean[0]:8.4f} {mean[1]:9.4f} {mean[2]:8.4f}")


if __name__ == "__main__":
    main()
