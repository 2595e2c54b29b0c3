"""Benchmark: ``nnspine evaluate instances`` on panoptica's 512×512×17 spine pair (22 instances), all
structure groups, the whole command (process start, reading both files, checks, matching, surface distances,
CSV), and the library call alone. Prints figures only (best of ``--repeat`` runs); no assertions.

    python benchmarks/bench_instance_metrics.py [--repeat 3]

Reads ``../shared/data/panoptica_spine_seg/matched_instance/{pred,ref}.nii.gz`` beside the checkout.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAIR = ROOT.parent / "shared" / "data" / "panoptica_spine_seg" / "matched_instance"

#: Runs the command through its own parser when ``nnspine evaluate instances`` is not wired in yet.
_FALLBACK = (
    "import argparse, sys\n"
    "from nnunet_spine.cli.evaluate_instances import register_instances\n"
    "p = argparse.ArgumentParser(); register_instances(p.add_subparsers(dest='what'))\n"
    "a = p.parse_args(sys.argv[1:]); sys.exit(a.func(a))\n"
)


def command() -> list[str]:
    """``nnspine evaluate instances`` when the CLI has it, else the same parser in a fresh interpreter."""
    exe = shutil.which("nnspine")
    if exe and subprocess.run([exe, "evaluate", "instances", "--help"], capture_output=True).returncode == 0:
        return [exe, "evaluate"]
    return [sys.executable, "-c", _FALLBACK]


def timed(cmd: list[str], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    if not PAIR.exists():
        sys.exit(f"{PAIR}: panoptica spine pair not found")
    sys.path.insert(0, str(ROOT))
    from nnunet_spine.postprocessing.spine.panoptic import evaluate_instances

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "m.csv"
        cmd = command() + [
            "instances",
            "--pred",
            str(PAIR / "pred.nii.gz"),
            "--ref",
            str(PAIR / "ref.nii.gz"),
            "-o",
            str(out),
            "--overwrite",
            "-q",
        ]
        t_cmd = timed(cmd, args.repeat)
    best = float("inf")
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        rows = evaluate_instances(PAIR / "pred.nii.gz", PAIR / "ref.nii.gz")
        best = min(best, time.perf_counter() - t0)
    everything = next(r for r in rows if r["structure"] == "all")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"input: panoptica spine pair 512x512x17, {everything['ref_instances']} reference instances; "
        f"{os.cpu_count()} CPU(s); load average {load:.2f}"
    )
    print(f"whole command ({' '.join(Path(c).name for c in cmd[:2])} ... instances), all groups: {t_cmd:.2f} s")
    print(f"library call evaluate_instances (read, check, 5 groups, ASSD):     {best:.2f} s")


if __name__ == "__main__":
    main()
