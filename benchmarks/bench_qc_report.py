"""Benchmark the offline QC report at cohort scale: 10,000 entries, built, then opened and driven in Chromium.

Input: synthetic entries (small 64 × 64 PNG pictures, BIDS-like names over 4 commands, two key values each).

Figures:
  build                 add_entries of every entry in one call (pictures, JSON files, one page rebuild), seconds
  one more entry        add_entry into the full report (what each case of a cohort run costs: a rebuild
                        reading every entry's JSON), seconds
  size on disk          the folder (all files), index.html alone, the pictures
  open → first key      Chromium (Debian's, driven by playwright): from navigation start until the page has
                        answered ↓ (the second entry selected), seconds; goal ≤ 2 s
  key answer            median / max over 20 ↓ presses of the round trip press → selection changed, ms
  search answer         typing one more character in the search box (10,000 entries ANDed) until the count
                        line changes, ms
Prints figures only; no assertions. Wall time depends on the machine's load (printed).

    python benchmarks/bench_qc_report.py [--entries 10000] [--chromium /usr/bin/chromium] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from nnunet_spine.postprocessing.qc.report import Entry, add_entries, add_entry

COMMANDS = [
    ("csa", "FILES_SEG"),
    ("lesions", "FILES_LESION"),
    ("evaluate lesions", "FILES_LESION"),
    ("fuse", "FILES_LABEL"),
]
CONTRASTS = ["T2w", "T1w", "acq-sag_T2w", "T2starw"]


def synthetic_entries(n: int, seed: int = 0) -> list[Entry]:
    """``n`` entries with 64 × 64 pictures (a grey disc, a coloured spot in the overlay) and BIDS-like names."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:64, :64]
    out = []
    for k in range(n):
        command, key = COMMANDS[k % len(COMMANDS)]
        subject, contrast = f"sub-{k // 4:04d}", CONTRASTS[k % len(CONTRASTS)]
        cy, cx = rng.integers(20, 44, 2)
        disc = ((yy - 32) ** 2 + (xx - 32) ** 2 < 400).astype(np.uint8) * 120
        bg = np.repeat(disc[..., None], 3, axis=-1)
        ov = bg.copy()
        ov[(yy - cy) ** 2 + (xx - cx) ** 2 < 16] = (40, 200, 40)
        out.append(
            Entry(
                command=command,
                file=f"{subject}/anat/{subject}_{contrast}.nii.gz",
                yml_key=key,
                background=bg,
                overlay=ov,
                cmdline=f"nnspine {command} -i {subject}_{contrast}.nii.gz --qc-report qc",
                dataset="bench",
                subject=subject,
                contrast=contrast,
                values={"mean CSA (mm²)": f"{rng.normal(75, 5):.2f}", "lesions": f"{rng.integers(0, 9)} kept"},
            )
        )
    return out


def folder_size(folder: Path) -> int:
    """Bytes of every file under ``folder``."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def browser_figures(index: Path, chromium: str) -> dict[str, float]:
    """Open the page in Chromium and time the first answered key, 20 more ↓ presses and one search keystroke."""
    from playwright.sync_api import sync_playwright

    selected = "document.body.getAttribute('data-selected')"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 800})
        t0 = time.perf_counter()
        page.goto(index.resolve().as_uri(), wait_until="commit")
        page.wait_for_selector("body[data-ready='1']", timeout=120_000)
        first = page.evaluate(selected)
        page.keyboard.press("ArrowDown")
        page.wait_for_function(f"{selected} !== {first!r}")
        open_to_key = time.perf_counter() - t0
        keys = []
        for _ in range(20):
            before = page.evaluate(selected)
            t = time.perf_counter()
            page.keyboard.press("ArrowDown")
            page.wait_for_function(f"{selected} !== {before!r}")
            keys.append((time.perf_counter() - t) * 1000)
        page.keyboard.press("/")
        page.keyboard.type("sub-00")
        before = page.evaluate("document.getElementById('count').textContent")
        t = time.perf_counter()
        page.keyboard.type("1")
        page.wait_for_function(f"document.getElementById('count').textContent !== {before!r}")
        search_ms = (time.perf_counter() - t) * 1000
        browser.close()
    return {
        "open_to_key_s": open_to_key,
        "key_median_ms": statistics.median(keys),
        "key_max_ms": max(keys),
        "search_ms": search_ms,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--keep", type=Path, help="build the report here and keep it (default: a temporary folder)")
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="bench-qc-report-"))
    try:
        entries = synthetic_entries(args.entries)
        t = time.perf_counter()
        add_entries(folder, entries)
        build = time.perf_counter() - t
        t = time.perf_counter()
        add_entry(folder, synthetic_entries(1, seed=1)[0])
        one_more = time.perf_counter() - t
        total, index = folder_size(folder), (folder / "index.html").stat().st_size
        pictures = sum(p.stat().st_size for p in (folder / "entries").glob("*.png"))
        print(f"entries: {args.entries + 1}; load average: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
        print(f"build: {build:.1f} s ({1000 * build / args.entries:.2f} ms per entry)")
        print(f"one more entry into the full report: {one_more:.2f} s")
        print(
            f"size on disk: {total / 2**20:.1f} MiB "
            f"(index.html {index / 2**20:.1f} MiB, pictures {pictures / 2**20:.1f} MiB)"
        )
        if not Path(args.chromium).is_file():
            print(f"browser figures: skipped ({args.chromium} not found)")
            return
        f = browser_figures(folder / "index.html", args.chromium)
        print(f"open → first key answered: {f['open_to_key_s']:.2f} s (goal ≤ 2 s)")
        print(f"key answer: median {f['key_median_ms']:.0f} ms, max {f['key_max_ms']:.0f} ms over 20 ↓")
        print(f"search keystroke answered: {f['search_ms']:.0f} ms")
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
