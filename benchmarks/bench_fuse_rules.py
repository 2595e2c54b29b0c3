"""Our fusion against SPINEPS' own code on the same flawed cutout predictions (Dice, in-process and command times).

Ours: ``fuse_arrays`` (``nnspine fuse``). SPINEPS: its own ``spineps.phase_instance.predict_instance_mask`` and
``spineps.phase_post.phase_postprocess_combined`` (pip package ``spineps``, imported, never copied), with only its
network replaced: the stand-in (:class:`CutoutNetwork`) answers each SPINEPS cutout with our cutout prediction
nearest to it, cut to SPINEPS' window. The stand-in keeps the semantic mask's grid (no resampling to the model's
resolution) and SPINEPS' default thresholds at that resolution (instance fragments below 250 voxels deleted).
Without ``spineps`` importable, only ours is measured (said on stdout). SPINEPS installs without its model
weights::

    python -m venv --system-site-packages /tmp/spvenv
    /tmp/spvenv/bin/pip install --no-deps spineps monai pytorch-lightning torchmetrics lightning-utilities \\
        TypeSaveArgParse configargparse
    /tmp/spvenv/bin/python benchmarks/bench_fuse_rules.py [--seeds 3] [--repeats 3]

Cases: spine phantoms T11-L5 (7 vertebrae) and T9-L5 (9), seed 5, and panoptica's lumbar case when ../shared/data
is there. Flaws, applied to "perfect" cutout predictions made from the reference instance mask: every cutout
shifted by its own 1-2 voxel vector (one draw per seed); one cutout's lower neighbour labelled as its centre; the
centre label grown by two voxels; speckles (30 random 2x2x2 blocks per cutout relabelled to another vertebra
label). Per case, flaw and side: lowest and mean vertebra Dice against the reference (shifts: averaged over the
seeds), and vertebra voxels dropped from the semantic mask. Times: median of --repeats, in-process (fusion +
postprocessing on arrays in memory) and whole commands (``nnspine fuse``, which also writes its sidecars and the QC
PNG, and ``nnspine fuse --no-qc``, vs a Python process that imports SPINEPS, reads the same files and writes its two
masks), wall seconds. Prints figures (Dice to 5 decimals), the SPINEPS version, and whether ours reaches SPINEPS'
lowest and mean Dice on every case and flaw.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_fuse import SHARED, perfect_predictions  # noqa: E402


def spineps_available() -> str | None:
    """None when SPINEPS' phases import, else why not."""
    try:
        import spineps.phase_instance  # noqa: F401
        import spineps.phase_post  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - any import failure means: not measurable here
        return f"{type(exc).__name__}: {exc}"
    return None


# --------------------------------------------------------------------------------------------- flaws
def shifted(pred: np.ndarray, d) -> np.ndarray:
    """A prediction moved by the integer voxel vector ``d`` (zeros move in)."""
    out = np.zeros_like(pred)
    src = tuple(slice(max(0, -x), n - max(0, x)) for x, n in zip(d, pred.shape))
    dst = tuple(slice(max(0, x), n - max(0, -x)) for x, n in zip(d, pred.shape))
    out[dst] = pred[src]
    return out


def shifted_set(preds: dict[str, np.ndarray], seed: int) -> dict[str, np.ndarray]:
    """Every cutout shifted by its own vector of -2, -1, 1 or 2 voxels per axis."""
    rng = np.random.default_rng(seed)
    return {n: shifted(p, rng.choice([-2, -1, 1, 2], size=3)) for n, p in preds.items()}


def other_flaws(preds: dict[str, np.ndarray], names: list[str]) -> dict[str, dict]:
    """The flawed prediction sets other than shifts (module docstring)."""
    from scipy import ndimage

    rng = np.random.default_rng(7)
    mid = names[len(names) // 2]
    wrong = preds[mid].copy()
    wrong[wrong == 3] = 2
    grown = preds[mid].copy()
    grown[ndimage.binary_dilation(grown == 2, iterations=2)] = 2
    speckled = {}
    for n, p in preds.items():
        q = p.copy()
        fg = np.argwhere(p > 0)
        for i, j, k in fg[rng.choice(len(fg), size=min(30, len(fg)), replace=False)]:
            v = int(p[i, j, k])
            q[i : i + 2, j : j + 2, k : k + 2] = [x for x in (1, 2, 3) if x != v][int(rng.integers(2))]
        speckled[n] = q
    return {
        "one cutout with a wrong label": {**preds, mid: wrong},
        "centre grown by two voxels": {**preds, mid: grown},
        "speckles (small wrong fragments)": speckled,
    }


# --------------------------------------------------------------------------------------------- SPINEPS
class CutoutNetwork:
    """Stands in for SPINEPS' instance model: each SPINEPS cutout is answered with our prediction of the cutout
    whose centre is nearest, brought onto SPINEPS' window (zeros where our cutout does not reach)."""

    def __init__(self, sem, record, predictions: dict[str, np.ndarray]):
        from spineps.utils.seg_modelconfig import (
            DEFAULT_CORPUS_BORDER_THRESHOLD,
            DEFAULT_CORPUS_SIZE_CLEANING,
            DEFAULT_CUTOUT_SIZE,
            DEFAULT_LABEL_MAPPING,
            DEFAULT_VERT_SIZE_THRESHOLD,
        )

        from nnunet_spine.core.cutouts import paste_back, to_pir
        from nnunet_spine.core.io import voxel_sizes

        sem_pir, self.aff_pir = to_pir(sem)
        self.inv = np.linalg.inv(self.aff_pir)
        scale = float(np.prod(voxel_sizes(self.aff_pir)))  # the model's resolution = this grid's
        self.inference_config = SimpleNamespace(
            cutout_size=DEFAULT_CUTOUT_SIZE,
            corpus_size_cleaning=DEFAULT_CORPUS_SIZE_CLEANING * scale,
            corpus_border_threshold=DEFAULT_CORPUS_BORDER_THRESHOLD,
            vert_size_threshold=DEFAULT_VERT_SIZE_THRESHOLD * scale,
            mapping=DEFAULT_LABEL_MAPPING,
        )
        self.pasted = []
        for c in record.cutouts:
            pred = predictions.get(c.name)
            got = None if pred is None else paste_back(pred, c.affine, self.aff_pir, sem_pir.shape)
            if got is not None:
                self.pasted.append((np.asarray(c.centre_mm, float), got))

    def calc_recommended_resampling_zoom(self, zoom):
        return zoom

    def _answer(self, cut_nii):
        from spineps.seg_enums import OutputType

        cut_nii = cut_nii.reorient(("P", "I", "R"))
        shape = np.asarray(cut_nii.shape)
        centre = cut_nii.affine[:3, :3] @ ((shape - 1) / 2) + cut_nii.affine[:3, 3]
        _, (box, values) = min(self.pasted, key=lambda cp: float(np.linalg.norm(cp[0] - centre)))
        o = np.rint(self.inv[:3, :3] @ cut_nii.affine[:3, 3] + self.inv[:3, 3]).astype(int)
        out = np.zeros(tuple(shape), np.uint8)
        lo = [max(s.start, int(a)) for s, a in zip(box, o)]
        hi = [min(s.stop, int(a + n)) for s, a, n in zip(box, o, shape)]
        if all(h > low for low, h in zip(lo, hi)):
            out[tuple(slice(low - a, h - a) for low, h, a in zip(lo, hi, o))] = values[
                tuple(slice(low - s.start, h - s.start) for low, h, s in zip(lo, hi, box))
            ]
        return {OutputType.seg: cut_nii.set_array(out)}

    def segment_scan_batch(self, cut_niis, **_):
        return [self._answer(c) for c in cut_niis]

    def segment_scan(self, cut_nii, **_):
        return self._answer(cut_nii)


def spineps_fuse(sem_path: Path, sem, record, predictions: dict[str, np.ndarray]):
    """SPINEPS' phase 2 and postprocessing on our predictions: (semantic NII, instance NII) on the mask's grid."""
    from spineps.phase_instance import predict_instance_mask
    from spineps.phase_post import phase_postprocess_combined
    from TPTBox import NII

    seg_nii = NII.load(str(sem_path), seg=True)
    net = CutoutNetwork(sem, record, predictions)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        vert, err = predict_instance_mask(seg_nii.copy(), net, debug_data={})
        if vert is None:
            raise RuntimeError(f"SPINEPS predict_instance_mask: {err}")
        vert = vert.reorient(seg_nii.orientation)
        seg_out, vert_out = phase_postprocess_combined(
            img_nii=seg_nii.copy(), seg_nii=seg_nii.copy(), vert_nii=vert, model_labeling=None, debug_data={},
            labeling_offset=1,
        )  # fmt: skip
    return seg_out, vert_out


def spineps_command(sem_path: str, cutouts: str, pred_dir: str, out_dir: str) -> None:
    """The SPINEPS side of the whole-command timing: read, fuse with SPINEPS' code, write its two masks."""
    from nnunet_spine.core.cutouts import load_semantic, read_description
    from nnunet_spine.core.io import load_image

    sem = load_semantic(sem_path)
    record = read_description(cutouts)[1][0]
    preds = {c.name: np.asarray(load_image(Path(pred_dir) / f"{c.name}.nii.gz", "labels").data) for c in record.cutouts}
    seg_out, vert_out = spineps_fuse(Path(sem_path), sem, record, preds)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    seg_out.save(str(out / "seg-spine_msk.nii.gz"), verbose=False)
    vert_out.save(str(out / "seg-vert_msk.nii.gz"), verbose=False)


# --------------------------------------------------------------------------------------------- measures
def dice(a: np.ndarray, b: np.ndarray) -> float:
    s = a.sum() + b.sum()
    return float(2 * (a & b).sum() / s) if s else 1.0


def vertebra_dice(inst: np.ndarray, r: np.ndarray, verts: list[int]) -> list[float]:
    """Per reference vertebra, the Dice of the output instance that overlaps it most (ids are not compared)."""
    from nnunet_spine.core.labels import SACRUM

    ids = {}
    for v in [int(x) for x in np.unique(inst) if 0 < x < 100 and x != SACRUM]:
        hits = np.bincount(r[inst == v].astype(np.int64), minlength=256)
        hits[[0, SACRUM]] = 0
        ids[v] = int(hits.argmax())
    return [max((dice(inst == v, r == t) for v, t in ids.items() if t == t0), default=0.0) for t0 in verts]


def median_wall(fn, repeats: int) -> float:
    walls = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        walls.append(time.perf_counter() - t0)
    return statistics.median(walls)


def measure(name: str, sem_path: Path, ref_path: Path, seeds: int, repeats: int, tmp: Path, why_not: str | None):
    from nnunet_spine.core.cutouts import case_name, cut_case, load_semantic, write_cutouts
    from nnunet_spine.core.io import load_image, save_image
    from nnunet_spine.core.labels import SACRUM, VERTEBRA_SUBREGIONS, is_vertebra
    from nnunet_spine.postprocessing.spine.fusion import fuse_arrays

    sem, ref = load_semantic(sem_path), load_image(ref_path, "labels")
    record = cut_case(sem, case_name(sem_path))[0]
    preds = perfect_predictions(sem, ref, record)
    r = np.asarray(ref.data)
    s = np.asarray(sem.data)
    verts = [int(v) for v in np.unique(r) if is_vertebra(v) and v != SACRUM]
    sets = [(f"shifted 1-2 voxels (seed {k})", shifted_set(preds, k)) for k in range(seeds)]
    sets += list(other_flaws(preds, [c.name for c in record.cutouts]).items())
    sides = ["ours"] + ([] if why_not else ["SPINEPS"])
    rows = []
    for flaw, flawed in sets:
        for side in sides:
            if side == "ours":
                f = fuse_arrays(sem, record, flawed, labelling="none")
                inst, clean = f.instance, f.semantic
            else:
                seg_out, vert_out = spineps_fuse(sem_path, sem, record, flawed)
                inst, clean = vert_out.get_seg_array(), seg_out.get_seg_array()
            d = vertebra_dice(inst, r, verts)
            lost = int((np.isin(s, VERTEBRA_SUBREGIONS) & ~np.isin(clean, VERTEBRA_SUBREGIONS)).sum())
            rows.append({"case": name, "flaw": flaw, "side": side, "min Dice": min(d), "mean Dice": float(np.mean(d)),
                         "vertebra voxels dropped": lost})  # fmt: skip
    # times, on the first shifted set
    flawed = sets[0][1]
    times = {"case": name, "ours in-process": median_wall(lambda: fuse_arrays(sem, record, flawed), repeats)}
    if not why_not:
        times["SPINEPS in-process"] = median_wall(lambda: spineps_fuse(sem_path, sem, record, flawed), repeats)
    exe = shutil.which("nnspine")
    if exe:
        cut_dir, pred_dir = tmp / f"{name}_cut", tmp / f"{name}_pred"
        write_cutouts(sem_path, cut_dir)
        pred_dir.mkdir()
        for c in record.cutouts:
            save_image(flawed[c.name], c.affine, pred_dir / f"{c.name}.nii.gz")
        n = iter(range(10**6))

        def run(cmd):
            subprocess.run(cmd, check=True, capture_output=True)

        ours = [exe, "fuse", "--semantic", str(sem_path), "--cutouts", str(cut_dir), "--predictions", str(pred_dir)]
        times["ours command"] = median_wall(
            lambda: run(ours + ["-o", str(tmp / f"{name}_ours{next(n)}"), "-q"]), repeats
        )
        times["ours --no-qc"] = median_wall(
            lambda: run(ours + ["-o", str(tmp / f"{name}_ours{next(n)}"), "-q", "--no-qc"]), repeats
        )
        if not why_not:
            times["SPINEPS command"] = median_wall(
                lambda: run([sys.executable, __file__, "--spineps-command", str(sem_path), str(cut_dir),
                             str(pred_dir), str(tmp / f"{name}_spineps{next(n)}")]),
                repeats,
            )  # fmt: skip
    return rows, times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3, help="draws of the 1-2 voxel shifts")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--spineps-command", nargs=4, metavar=("SEM", "CUTOUTS", "PRED", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.spineps_command:
        spineps_command(*args.spineps_command)
        return
    import pandas as pd

    from nnunet_spine.phantoms.spine_dataset import write_spine_dataset

    why_not = spineps_available()
    if why_not:
        print(f"SPINEPS not importable here ({why_not}): ours only")
    else:
        from importlib.metadata import version

        print(f"SPINEPS {version('spineps')} (TPTBox {version('TPTBox')})")
    rows, times = [], []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        cases = []
        for n, top in ((7, "T11"), (9, "T9")):
            root = tmp / f"bids{n}"
            write_spine_dataset(root, n_subjects=1, seed=5, n_vertebrae=n)
            lab = root / "derivatives" / "labels" / "sub-01" / "anat"
            cases.append(
                (f"phantom {top}-L5", lab / "sub-01_T2w_seg-spine_msk.nii.gz", lab / "sub-01_T2w_seg-vert_msk.nii.gz")
            )
        d = SHARED / "panoptica_spine_seg"
        if (d / "semantic" / "ref.nii.gz").exists() and (d / "matched_instance" / "ref.nii.gz").exists():
            cases.append(("panoptica lumbar", d / "semantic" / "ref.nii.gz", d / "matched_instance" / "ref.nii.gz"))
        else:
            print(f"({d} absent: phantoms only)")
        for name, sem_path, ref_path in cases:
            r, t = measure(name, sem_path, ref_path, args.seeds, args.repeats, tmp, why_not)
            rows += r
            times.append(t)
    table = pd.DataFrame(rows)
    fmt = {"float_format": lambda v: f"{v:.5f}"}
    print(table.to_string(index=False, **fmt))
    table["flaw"] = table["flaw"].str.replace(r" \(seed \d+\)", "", regex=True)
    by = table.groupby(["case", "flaw", "side"], sort=False)[["min Dice", "mean Dice", "vertebra voxels dropped"]]
    mean = by.mean()
    print("\nshifts averaged over the seeds:\n" + mean.to_string(**fmt))
    if not why_not:
        wide = mean[["min Dice", "mean Dice"]].unstack("side")
        at_least = (wide.xs("ours", axis=1, level="side") >= wide.xs("SPINEPS", axis=1, level="side")).all(axis=1)
        print("\nours at least SPINEPS' lowest and mean Dice: " + ("every case and flaw" if at_least.all() else
              "not on " + "; ".join(" / ".join(k) for k in at_least.index[~at_least])))  # fmt: skip
    t = pd.DataFrame(times).set_index("case")
    if "SPINEPS in-process" in t:
        t["in-process ratio"] = t["SPINEPS in-process"] / t["ours in-process"]
    if "SPINEPS command" in t:
        t["command ratio"] = t["SPINEPS command"] / t["ours command"]
        t["ratio, ours --no-qc"] = t["SPINEPS command"] / t["ours --no-qc"]
    print(
        f"\nwall seconds (median of {args.repeats}), SPINEPS / ours:\n" + t.to_string(float_format=lambda v: f"{v:.2f}")
    )


if __name__ == "__main__":
    main()
