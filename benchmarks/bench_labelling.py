"""Vertebra labelling on flawed columns: how often ``fuse`` is exactly right, wrong but flagged, or silently wrong.

Columns (spine phantoms, :mod:`nnunet_spine.phantoms.spine`, rendered in memory at 1 x 1 x 3 mm, one model per
seed): cervical C2-C7, thoracic T3-T12, lumbar T11-L5 + sacrum, whole spine C1-L5 + sacrum, the transitional
columns L6 (T12-L6), 4-lumbar (T10-L4), T13 (T12, T13, L1-L5) and 11-thoracic (T10, T11, L1-L5) on a sacrum, and
the lumbar field of view cropped above the sacrum (T11-L5), as :data:`~nnunet_spine.phantoms.spine_dataset.
SPINE_VARIANTS` builds them.

The instance network is mocked as in ``bench_fuse.py``: each cutout's prediction is cut from the truth (1 = the
vertebra above the cutout's centre vertebra, 2 = the centre one, 3 = the one below). The anchors a ``fuse`` run
can have are given as perfect as well, so that two of them can verify the ids:

* the **sacrum** (26) of the semantic mask, when in view;
* the **dens** (SPINEPS 2.x label 51, ``Image.meta["dens"]`` as :func:`load_semantic` reads it): the top third of
  C2's body, when C2's body is in view;
* the **landmark discs** (``fuse --landmarks``; a perfect landmark network): each disc at an anatomical junction,
  where it is in view: C2-C3 below C2, C7-T1 between the last cervical and the first thoracic vertebra,
  T12-L1 between the last thoracic (T11, T12 or T13) and the first lumbar one, L5-S1 between the last lumbar
  vertebra (L4, L5 or L6) and the sacrum (also when the sacrum itself is cropped away). The network is taken to
  see junctions, not to count: in the transitional columns the junction disc keeps its usual name.

Flaws, one at a time (vertebrae picked by the seed):

* ``none``: everything perfect;
* ``merge``: two adjacent vertebrae predicted as one instance (every cutout sees them as one vertebra);
* ``split``: one vertebra predicted as two (its voxels above its body centre are another vertebra to the network);
* ``drop``: the cutout centred on one vertebra predicts nothing (an empty prediction);
* ``partial top``: the field of view cuts through the top vertebra: arch only (its body and everything above its
  body centre are out of view; the lower arch, inferior articular and spinous processes stay);
* ``partial bottom``: the field of view cuts through the bottom vertebra: the top quarter of its body stays
  (the sacrum, when there was one, is out of view);
* ``stray blob (front)`` / ``(below)``: a 12 x 12 x 4-voxel (576 voxels, 1728 mm3) vertebral-body blob (49) in
  the semantic mask, 3 voxels in front of the sacrum's upper part (of whatever lies most anterior at that level) /
  3 voxels below its tip (of the lowest
  body when there is no sacrum); its own cutout predicts the blob as its centre vertebra, no other cutout sees it;
* ``mislabelled sacrum``: the field of view cuts through the bottom (lumbar) vertebra at half its body and the
  semantic network calls that half-visible vertebra "sacrum" (26); lumbar-bottomed columns only;
* ``shifted``: every cutout prediction moved by its own 1-2 voxel vector (``bench_fuse_rules.shifted_set``).

Scoring, per column, against the phantom's true ids (the vertebrae in view, partial ones included):

* **right**: the ids are anatomical, every true vertebra's voxels carry its true id (the majority of its voxels,
  Dice of that id against it >= 0.9) and the instance mask holds no other vertebra id (a stray instance is not
  right);
* **flagged**: not right, but the labelling says so: ``verified`` false, ids not anatomical, or an anomaly
  reported (or ``fuse_arrays`` refused the case);
* **silent wrong**: not right, verified, no anomaly. This must become 0.

The table also gives the share **verified** (two anchors pin every id, no doubtful flaw: ``Labelling.verified``),
right or not.

Prints one table (flaw type x right / flagged / silent wrong / n, as shares with counts), then every silent-wrong
case with what went wrong; ``-o FILE.csv`` writes the table there and every case to ``FILE_cases.csv``. Prints
figures only; nothing asserted.

    python benchmarks/bench_labelling.py [--seeds 1] [--columns lumbar,whole] [--flaws merge,drop] [-o out.csv]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

#: Column name -> (phantom variant, number of mobile vertebrae).
COLUMNS: dict[str, tuple[str, int]] = {
    "cervical": ("cervical", 6),  # C2-C7, no sacrum
    "thoracic": ("thoracic", 10),  # T3-T12, no sacrum
    "lumbar": ("standard", 7),  # T11-L5 + sacrum
    "whole": ("standard", 24),  # C1-L5 + sacrum
    "L6": ("L6", 7),  # T12, L1-L6 + sacrum
    "4-lumbar": ("4-lumbar", 7),  # T10-T12, L1-L4 + sacrum
    "T13": ("T13", 7),  # T12, T13, L1-L5 + sacrum
    "11-thoracic": ("11-thoracic", 7),  # T10, T11, L1-L5 + sacrum
    "lumbar-no-sacrum": ("lumbar-no-sacrum", 7),  # T11-L5, cropped above the sacrum
}
FLAWS = (
    "none",
    "merge",
    "split",
    "drop",
    "partial top",
    "partial bottom",
    "stray blob (front)",
    "stray blob (below)",
    "mislabelled sacrum",
    "shifted",
)
#: Ids the mock network uses for things that are not true vertebrae (split halves, the stray blob).
SPLIT_ID, BLOB_ID = 250, 251
#: Stray blob size in voxels along (A-P, S-I, R-L) at 1 x 1 x 3 mm: 576 voxels.
BLOB_SHAPE = (12, 12, 4)
#: A true vertebra is right when its id's Dice against it reaches this.
RIGHT_DICE = 0.9


# --------------------------------------------------------------------------------------------- columns
@dataclass
class Column:
    """One phantom column on its PIR grid: semantic mask, true instance mask (vertebrae, discs 100+X, endplates
    200+X, sacrum 26), affine, the VerSe ids top to bottom and whether the sacrum belongs to the column."""

    name: str
    sem: np.ndarray
    inst: np.ndarray
    affine: np.ndarray
    numbers: list[int]
    with_sacrum: bool
    blob: np.ndarray | None = None  #: the stray blob's voxels (bool), when one was added
    detail: str = ""  #: what the flaw did (which vertebra)

    def copy(self) -> Column:
        return Column(self.name, self.sem.copy(), self.inst.copy(), self.affine.copy(), list(self.numbers),
                      self.with_sacrum, None if self.blob is None else self.blob.copy(), self.detail)  # fmt: skip

    def true_ids(self) -> list[int]:
        """Vertebra ids in view, top to bottom."""
        present = set(np.unique(self.inst).tolist())
        return [n for n in self.numbers if n in present]


def make_column(name: str, seed: int) -> Column:
    from nnunet_spine.phantoms.spine import build_spine_model, render_spine_labels, spine_grid
    from nnunet_spine.phantoms.spine_dataset import crop_above_sacrum, variant_numbers

    variant, n = COLUMNS[name]
    numbers, with_sacrum = variant_numbers(variant, n)
    model = build_spine_model(seed=seed, numbers=numbers)
    shape, affine = spine_grid(model)
    sem, inst = render_spine_labels(model, shape, affine)
    r = {"semantic": sem, "instance": inst, "affine": affine}
    if not with_sacrum:
        r = crop_above_sacrum(r)
    return Column(name, np.ascontiguousarray(r["semantic"]), np.ascontiguousarray(r["instance"]), r["affine"],
                  numbers, with_sacrum)  # fmt: skip


def crop_rows(col: Column, start: int, stop: int) -> None:
    """Keep S-I rows (PIR axis 1) ``start:stop`` (in place); the affine keeps world positions."""
    col.sem = np.ascontiguousarray(col.sem[:, start:stop])
    col.inst = np.ascontiguousarray(col.inst[:, start:stop])
    aff = col.affine.copy()
    aff[:3, 3] = col.affine[:3, :3] @ np.array([0.0, start, 0.0]) + col.affine[:3, 3]
    col.affine = aff


def pad(col: Column, axis: int, before: int, after: int) -> None:
    """Zero rows added along a PIR axis (in place)."""
    if before <= 0 and after <= 0:
        return
    width = [(0, 0)] * 3
    width[axis] = (max(before, 0), max(after, 0))
    col.sem = np.pad(col.sem, width)
    col.inst = np.pad(col.inst, width)
    shift = np.zeros(3)
    shift[axis] = -max(before, 0)
    aff = col.affine.copy()
    aff[:3, 3] = col.affine[:3, :3] @ shift + col.affine[:3, 3]
    col.affine = aff


def body_rows(col: Column, v: int) -> tuple[int, int]:
    """First and last S-I row of vertebra ``v``'s body (49 and its own endplates)."""
    from nnunet_spine.core.labels import CORPUS, ENDPLATE

    own = ((col.inst == v) & (col.sem == CORPUS)) | ((col.sem == ENDPLATE) & np.isin(col.inst, [200 + v]))
    rows = np.flatnonzero(own.any(axis=(0, 2)))
    return int(rows[0]), int(rows[-1])


def vertebra_voxels(inst: np.ndarray) -> np.ndarray:
    """The true instance mask with only vertebra ids (1-25, 28) kept."""
    from nnunet_spine.core.labels import SACRUM, is_vertebra

    lut = np.zeros(256, np.uint8)
    for v in range(1, 256):
        if is_vertebra(v) and v not in (SACRUM, 27):
            lut[v] = v
    return lut[inst]


# --------------------------------------------------------------------------------------------- anchors
def region(v: int) -> str:
    from nnunet_spine.phantoms.spine import region_of

    return region_of(v)


def landmark_map(col: Column) -> np.ndarray | None:
    """A perfect landmark network's prediction (classes of ``LANDMARK_NAMES``) on the column's grid: the junction
    discs in view (module docstring)."""
    out = np.zeros(col.sem.shape, np.uint8)
    nums = col.numbers
    for i, v in enumerate(nums):
        lower = nums[i + 1] if i + 1 < len(nums) else None
        if v == 2 and lower == 3:
            k = 1  # C2-C3
        elif lower is not None and region(v) == "C" and region(lower) == "T":
            k = 2  # C7-T1
        elif lower is not None and region(v) == "T" and region(lower) == "L":
            k = 3  # T12-L1 (the thoracolumbar junction)
        elif lower is None and region(v) == "L":
            k = 4  # L5-S1 (the lumbosacral junction, also when the sacrum is cropped away)
        elif lower is None and v == 7:
            k = 2  # a cervical column's last disc is C7-T1
        elif lower is None and v == 19:
            k = 3
        else:
            continue
        out[col.inst == 100 + v] = k
    return out if out.any() else None


def dens_mask(col: Column) -> np.ndarray | None:
    """The top third of C2's body (49), when in view."""
    from nnunet_spine.core.labels import CORPUS

    body = (col.inst == 2) & (col.sem == CORPUS)
    if not body.any():
        return None
    rows = np.flatnonzero(body.any(axis=(0, 2)))
    top = rows[0] + max(1, (rows[-1] - rows[0] + 1) // 3)
    m = body.copy()
    m[:, top:] = False
    return m


# --------------------------------------------------------------------------------------------- mock network
def predictions(col: Column, net: np.ndarray, record, bodies, blob_id: int | None = None) -> dict[str, np.ndarray]:
    """Cutout predictions cut from ``net`` (the network's truth: vertebra ids; ``blob_id`` a thing only its own
    cutout predicts). Each cutout's centre is the id holding most of its body component; above/below its
    neighbours in the S-I order of the ids' body centroids."""
    from nnunet_spine.core.cutouts import sample_labels
    from nnunet_spine.core.labels import CORPUS

    ids = [int(v) for v in np.unique(net) if v and v != blob_id]
    rows = {}
    for v in ids:
        m = (net == v) & (col.sem == CORPUS)
        if not m.any():
            m = net == v
        rows[v] = float(np.argwhere(m)[:, 1].mean())
    order = sorted(ids, key=lambda v: rows[v])  # top to bottom (row grows inferiorly)
    out = {}
    for c in record.cutouts:
        held = net[bodies.components == c.index + 1]
        held = held[held > 0]
        if held.size == 0:
            out[c.name] = np.zeros(c.shape, np.uint8)
            continue
        centre = int(np.bincount(held).argmax())
        cut = sample_labels(net, col.affine, c.affine, c.shape)
        p = np.zeros(c.shape, np.uint8)
        if centre in order:
            k = order.index(centre)
            if k:
                p[cut == order[k - 1]] = 1
            if k + 1 < len(order):
                p[cut == order[k + 1]] = 3
        p[cut == centre] = 2
        out[c.name] = p
    return out


# --------------------------------------------------------------------------------------------- flaws
def apply_flaw(col: Column, flaw: str, rng: np.random.Generator) -> tuple[Column, np.ndarray, int | None] | None:
    """The flawed column (semantic mask and truth as the flaw leaves them), the network's truth, and the id only
    its own cutout predicts; None when the flaw does not apply to this column."""
    from nnunet_spine.core.labels import CORPUS, SACRUM, vertebra_name

    col = col.copy()
    ids = col.true_ids()
    if flaw == "partial top":
        v = ids[0]
        r0, r1 = body_rows(col, v)
        centre = (r0 + r1) // 2
        crop_rows(col, centre, col.sem.shape[1])
        body = (col.inst == v) & (col.sem == CORPUS) | (col.inst == 200 + v)
        col.sem[body] = 0
        col.inst[body] = 0
        col.detail = f"{vertebra_name(v)}: arch only, {int((col.inst == v).sum())} voxels"
    elif flaw in ("partial bottom", "mislabelled sacrum"):
        v = ids[-1]
        if flaw == "mislabelled sacrum" and region(v) != "L":
            return None
        r0, r1 = body_rows(col, v)
        keep = (r1 - r0 + 1) // (4 if flaw == "partial bottom" else 2)
        crop_rows(col, 0, r0 + keep)
        col.detail = f"{vertebra_name(v)}: top {'quarter' if flaw == 'partial bottom' else 'half'} of its body"
        if flaw == "mislabelled sacrum":
            own = np.isin(col.inst, [v, 200 + v]) & (col.sem != 0)
            col.sem[own] = SACRUM
            col.detail += " called sacrum (26) by the semantic mask"
    elif flaw.startswith("stray blob"):
        add_blob(col, "front" if "front" in flaw else "below")
    net = vertebra_voxels(col.inst)
    blob_id = None
    if flaw == "merge":
        k = int(rng.integers(len(ids) - 1))
        a, b = ids[k], ids[k + 1]
        net[net == b] = a
        col.detail = f"{vertebra_name(a)}+{vertebra_name(b)} as one"
    elif flaw == "split":
        v = ids[int(rng.integers(len(ids)))]
        r0, r1 = body_rows(col, v)
        upper = net == v
        upper[:, (r0 + r1) // 2 + 1 :] = False
        net[upper] = SPLIT_ID
        col.detail = f"{vertebra_name(v)} split at its body centre"
    elif flaw.startswith("stray blob"):
        net[col.blob] = BLOB_ID
        blob_id = BLOB_ID
    elif flaw == "drop":
        col.detail = vertebra_name(ids[int(rng.integers(len(ids)))]) + "'s cutout predicts nothing"
    return col, net, blob_id


def add_blob(col: Column, where: str) -> None:
    """A 576-voxel body blob (in place; the grid grows when it would leave it): ``front``: 3 voxels in front of the
    sacrum's upper part (of whatever lies most anterior at that level; the lowest body when there is no sacrum);
    ``below``: 3 voxels below its tip."""
    from nnunet_spine.core.labels import CORPUS, SACRUM, vertebra_name

    bone = col.sem == SACRUM
    what = "sacrum"
    if not bone.any():
        low = col.true_ids()[-1]
        bone = (col.inst == low) & (col.sem == CORPUS)
        what = f"{vertebra_name(low)}'s body"
    rows = np.flatnonzero(bone.any(axis=(0, 2)))
    top, tip = int(rows[0]), int(rows[-1])
    da, ds, dr = BLOB_SHAPE
    r0 = col.sem.shape[2] // 2 - dr // 2
    if where == "front":  # at the level of the bone's top sixth, 3 voxels in front of whatever lies most anterior there
        s0 = top + max((tip - top + 1) // 6 - ds // 2, 0)
        level = col.sem[:, s0 : s0 + ds, r0 : r0 + dr] != 0
        a0 = int(np.flatnonzero(level.any(axis=(1, 2)))[0]) - 3 - da
    else:  # 3 voxels below the tip, centred on the tip's A-P extent
        band = bone[:, max(tip - 4, top) : tip + 1]
        ap = np.flatnonzero(band.any(axis=(1, 2)))
        a0, s0 = int((ap[0] + ap[-1]) // 2 - da // 2), tip + 4
    pad(col, 0, -a0 + 2, 0)
    a0 = max(a0, 2)
    pad(col, 1, 0, s0 + ds + 2 - col.sem.shape[1])
    box = (slice(a0, a0 + da), slice(s0, s0 + ds), slice(r0, r0 + dr))
    col.blob = np.zeros(col.sem.shape, bool)
    col.blob[box] = col.sem[box] == 0
    col.sem[col.blob] = CORPUS
    place = "in front of the upper part of" if where == "front" else "below the tip of"
    col.detail = f"{int(col.blob.sum())} body voxels {place} the {what}"


# --------------------------------------------------------------------------------------------- one case
@dataclass
class Result:
    column: str
    flaw: str
    seed: int
    detail: str
    outcome: str
    true_ids: str
    wrong: str
    extra: str
    anatomical: bool | None
    verified: bool | None
    method: str
    reason: str
    anomalies: list[str] = field(default_factory=list)
    seconds: float = 0.0


def run_case(base: Column, flaw: str, seed: int, rng: np.random.Generator, use_landmarks: bool) -> Result | None:
    from nnunet_spine.core.cutouts import cut_case
    from nnunet_spine.core.io import Image, InputError
    from nnunet_spine.core.labels import SACRUM, is_vertebra, vertebra_name
    from nnunet_spine.postprocessing.spine.fusion import fuse_arrays

    flawed = apply_flaw(base, flaw, rng)
    if flawed is None:
        return None
    col, net, blob_id = flawed
    t0 = time.perf_counter()
    dens = dens_mask(col)
    sem = Image(col.sem, col.affine, None, {"dens": dens})
    record, bodies, _ = cut_case(sem, f"{col.name}_{flaw}")
    preds = predictions(col, net, record, bodies, blob_id)
    if flaw == "drop":
        name = col.detail
        for c in record.cutouts:
            held = net[bodies.components == c.index + 1]
            held = held[held > 0]
            if held.size and name.startswith(vertebra_name(int(np.bincount(held).argmax())) + "'"):
                preds[c.name] = np.zeros(c.shape, np.uint8)
    elif flaw == "shifted":
        from bench_fuse_rules import shifted_set

        preds = shifted_set(preds, seed)
        col.detail = "every cutout by its own 1-2 voxel vector"
    true = col.true_ids()
    names = ", ".join(vertebra_name(v) for v in true)
    marks = landmark_map(col) if use_landmarks else None
    try:
        f = fuse_arrays(sem, record, preds, landmarks=marks)
    except InputError as exc:
        return Result(col.name, flaw, seed, col.detail, "flagged", names, "", "", None, None, "refused", str(exc),
                      [], time.perf_counter() - t0)  # fmt: skip
    out, truth = f.instance, vertebra_voxels(col.inst)
    wrong = []
    for v in true:
        t = truth == v
        got = out[t]
        major = int(np.bincount(got).argmax())
        d = 2.0 * np.count_nonzero(got == v) / (t.sum() + np.count_nonzero(out == v))
        if major != v or d < RIGHT_DICE or not f.named:  # ids 1..n from the top are no VerSe ids, even when equal
            shown = vertebra_name(major) if f.named and is_vertebra(major) else (f"#{major}" if major else "none")
            wrong.append(f"{vertebra_name(v)}->{shown} (Dice {d:.2f})")
    extra = [int(v) for v in np.unique(out) if is_vertebra(v) and v != SACRUM and v not in true]
    lab = f.labelling
    extra_s = ", ".join(vertebra_name(v) if f.named else f"#{v}" for v in extra)
    if not wrong and not extra:
        outcome = "right"
    elif not lab.verified or not lab.anatomical or lab.anomalies:
        outcome = "flagged"
    else:
        outcome = "silent wrong"
    return Result(col.name, flaw, seed, col.detail, outcome, names, "; ".join(wrong), extra_s, lab.anatomical,
                  lab.verified, lab.method, lab.reason, list(lab.anomalies), time.perf_counter() - t0)  # fmt: skip


# --------------------------------------------------------------------------------------------- main
def parse_list(text: str, known, what: str) -> list[str]:
    got = [x.strip() for x in text.split(",") if x.strip()]
    bad = [x for x in got if x not in known]
    if bad:
        raise SystemExit(f"unknown {what} {', '.join(bad)} (choose from {', '.join(known)})")
    return got


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=1, help="phantom seeds 0..N-1 (default 1)")
    parser.add_argument("--columns", default=",".join(COLUMNS), help=f"comma-separated subset of: {', '.join(COLUMNS)}")
    parser.add_argument("--flaws", default=",".join(FLAWS), help=f"comma-separated subset of: {', '.join(FLAWS)}")
    parser.add_argument("--no-landmarks", dest="landmarks", action="store_false",
                        help="no landmark discs (the sacrum and dens are then the only anchors)")  # fmt: skip
    parser.add_argument("-o", "--output", type=Path, help="CSV of the table (cases in <stem>_cases.csv)")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every case")
    args = parser.parse_args()
    columns = parse_list(args.columns, COLUMNS, "column")
    flaws = parse_list(args.flaws, FLAWS, "flaw")
    if args.seeds < 1:
        raise SystemExit("--seeds must be at least 1")
    import pandas as pd

    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPU(s)", flush=True)
    t_start = time.perf_counter()
    results: list[Result] = []
    for seed in range(args.seeds):
        for name in columns:
            base = make_column(name, seed)
            for k, flaw in enumerate(flaws):
                rng = np.random.default_rng([seed, k, 17])
                r = run_case(base, flaw, seed, rng, args.landmarks)
                if r is None:
                    continue
                results.append(r)
                if args.verbose:
                    print(f"  {r.column:17s} {r.flaw:18s} seed {seed}: {r.outcome:12s} {r.seconds:5.1f}s  {r.detail}"
                          f"  wrong [{r.wrong}] extra [{r.extra}] verified {r.verified}: {r.reason}"
                          f"{' | ' + ' | '.join(r.anomalies) if r.anomalies else ''}", flush=True)  # fmt: skip
    wall = time.perf_counter() - t_start
    cases = pd.DataFrame([r.__dict__ for r in results])
    cases["anomalies"] = cases["anomalies"].map(lambda a: " | ".join(a))
    rows = []
    for flaw in flaws + ["all"]:
        sel = cases if flaw == "all" else cases[cases["flaw"] == flaw]
        if sel.empty:
            continue
        n = len(sel)
        row = {"flaw": flaw}
        for what in ("right", "flagged", "silent wrong"):
            k = int((sel["outcome"] == what).sum())
            row[what] = k / n
            row[f"{what} (n)"] = k
        k = int((sel["verified"] == True).sum())  # noqa: E712 (None for refused cases)
        row["verified"], row["verified (n)"] = k / n, k
        row["n"] = n
        rows.append(row)
    table = pd.DataFrame(rows)
    outcomes = ("right", "flagged", "silent wrong", "verified")
    shown = pd.DataFrame(
        {
            "flaw": table["flaw"],
            **{w: [f"{s:.2f} ({k})" for s, k in zip(table[w], table[f"{w} (n)"])] for w in outcomes},
            "n": table["n"],
        }
    )
    print(f"\n{len(columns)} column(s) x {args.seeds} seed(s), landmarks {'on' if args.landmarks else 'off'}: share of "
          "columns (count)")  # fmt: skip
    print(shown.to_string(index=False))
    silent = cases[cases["outcome"] == "silent wrong"]
    if len(silent):
        print("\nsilent wrong:")
        for _, r in silent.iterrows():
            print(f"  {r['column']} / {r['flaw']} (seed {r['seed']}; {r['detail']}): true {r['true_ids']}; "
                  f"wrong [{r['wrong']}] extra [{r['extra']}]; {r['reason']}")  # fmt: skip
    per_column = cases.pivot_table(index="column", columns="flaw", values="outcome",
                                   aggfunc=lambda s: "".join(o[0].upper() for o in s))  # fmt: skip
    print("\nper column (R right, F flagged, S silent wrong; one letter per seed):")
    per_column = per_column.reindex(
        index=[c for c in columns if c in per_column.index], columns=[f for f in flaws if f in per_column.columns]
    )
    print(per_column.fillna("-").to_string())
    print(f"\n{len(cases)} fusions in {wall:.0f} s wall (median {cases['seconds'].median():.1f} s per fusion)")
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.output, index=False, float_format="%.4f")
        cpath = args.output.with_name(args.output.stem + "_cases.csv")
        cases.to_csv(cpath, index=False, float_format="%.2f")
        print(f"wrote {args.output} and {cpath}")


if __name__ == "__main__":
    main()
