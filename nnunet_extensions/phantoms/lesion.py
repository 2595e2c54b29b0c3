"""Cord lesion phantom: a T2w cord image with a known set of lesions and a "prediction" with known errors.

The cord is the cord phantom's (:mod:`nnunet_spine.phantoms.cord`, one seeded subject model,
rendered on a sagittal 0.8 mm isotropic ``PSR`` grid by
:func:`~nnunet_spine.phantoms.cord_dataset.render_acquisition`). Lesions are sets of voxels inside
the binary cord mask, so their volumes are exact: ``voxels × voxel volume`` (mm³). Each lesion sits in
its own stretch of slices along S-I, with at least :data:`MIN_GAP` empty slices between stretches, so
nothing touches unless designed to. The design (:data:`LESION_ROLES`, ids 1–10 in this order):

==========  =======================================================================================
role        what
==========  =======================================================================================
large       ellipsoid, semi-axes 2.5 × 3 × 5 voxels, following the cord slice by slice
medium      ellipsoid 1.6 × 2 × 3 voxels
tiny_1      a single voxel
tiny_3      three voxels in a line along S-I
face_a/b    two 2 × 2 × 3 voxel boxes sharing a face: **two lesions** in the truth (two ids), but
            **one** connected component under both 6- and 26-connectivity
corner_a/b  two 2 × 2 × 2 voxel boxes touching at one corner only: two components under
            6-connectivity, **one** under 26-connectivity
border_a/b  cord voxels within 2.2 voxels of a cord-boundary voxel (lateral / posterior edge): they
            reach the cord border (a voxel face-adjacent to non-cord)
==========  =======================================================================================

So the truth holds 10 lesions; connected components of the binary mask: 9 (6-connectivity), 8
(26-connectivity). Both are recorded.

The prediction differs from the truth in four known ways: ``medium`` is missed (FN), a false-positive
blob (ellipsoid 1.5 × 1.5 × 2 voxels) sits in a lesion-free stretch of cord, ``large`` is split in two
by removing its middle slice, and ``border_a`` has a boundary error (dilated by one voxel, 6-neighbour
structuring element, within the cord). Expected detection counts for both connectivities, derived from the
design (never from the metrics code they are meant to check), are in the truth JSON under
``prediction.expected_counts`` (``ref_lesions, pred_lesions, tp, fp, fn``) and, under older
names, ``prediction.expected``.

A second contrast, T1w-like (:data:`T1W_ACQUISITION`: axial ``RAS`` 1 mm isotropic, same coverage, cord
bright, CSF dark, lesions hypointense), is rendered from the same cord model on its own grid, so
multi-sequence conversion and resampling between grids can be tested. Its lesion mask is the T2w lesion
mask resampled to the T1w grid (nearest neighbour, world coordinates), as a rater drawing at 1 mm might;
the lesion truth above refers to the T2w grid only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnunet_spine.core.io import write_text
from nnunet_spine.phantoms.bids import anat_path, start_derivative, start_phantom_dataset, write_nifti

#: Lesion roles, in id order (id = position + 1).
LESION_ROLES: tuple[str, ...] = (
    "large",
    "medium",
    "tiny_1",
    "tiny_3",
    "face_a",
    "face_b",
    "corner_a",
    "corner_b",
    "border_a",
    "border_b",
)
#: Designed contacts: (role, role, contact kind).
DESIGNED_CONTACTS: tuple[tuple[str, str, str], ...] = (("face_a", "face_b", "face"), ("corner_a", "corner_b", "corner"))
#: Minimum number of lesion-free slices between two stretches.
MIN_GAP = 4
#: Signal (T2w-like) of the lesions; cord, CSF and tissue follow the cord phantom's T2w.
LESION_INTENSITY = 0.85
#: The second contrast (T1w-like): axial RAS, 1 mm isotropic; (cord, CSF, tissue) signal.
T1W_ACQUISITION = {"voxel_mm": (1.0, 1.0, 1.0), "axcodes": ("R", "A", "S"), "intensities": (0.75, 0.2, 0.5)}
#: T1w signal of the lesions (hypointense to the cord).
T1W_LESION_INTENSITY = 0.35


@dataclass(frozen=True)
class LesionGrid:
    """The acquisition the lesion phantom uses: sagittal PSR, 0.8 mm isotropic; S-I coverage and
    (R-L, A-P) field of view in world mm (the grid is centred on the cord)."""

    voxel_mm: tuple[float, float, float] = (0.8, 0.8, 0.8)
    axcodes: tuple[str, str, str] = ("P", "S", "R")
    z_range_mm: tuple[float, float] = (34.0, 104.0)
    fov_mm: tuple[float, float] = (28.0, 40.0)


# --------------------------------------------------------------------------------------------- design
def _stretch_heights() -> dict[str, int]:
    """Slices (S-I) each design element occupies; ``fp`` is the prediction's false positive."""
    return {
        "large": 11,
        "medium": 7,
        "tiny_1": 1,
        "tiny_3": 3,
        "face": 3,
        "corner": 4,
        "border_a": 5,
        "border_b": 5,
        "fp": 5,
    }


def _layout(n_slices: int, rng: np.random.Generator) -> dict[str, tuple[int, int]]:
    """Seeded order and positions of the stretches: ``name → (first slice, last slice)``."""
    heights = _stretch_heights()
    names = list(heights)
    rng.shuffle(names)
    margin = 3
    spare = n_slices - 2 * margin - sum(heights.values()) - MIN_GAP * (len(names) - 1)
    if spare < 0:
        raise ValueError(f"lesion phantom needs more slices along S-I than {n_slices}")
    extra = rng.multinomial(spare, np.ones(len(names) + 1) / (len(names) + 1))
    out, pos = {}, margin + int(extra[0])
    for i, name in enumerate(names):
        out[name] = (pos, pos + heights[name] - 1)
        pos += heights[name] + MIN_GAP + int(extra[i + 1])
    return out


def _centre(cord: np.ndarray, s: int) -> np.ndarray:
    """Rounded in-plane centroid (2 voxel indices) of the cord in slice ``s`` (S-I last axis)."""
    idx = np.argwhere(cord[:, :, s])
    if not len(idx):
        raise ValueError(f"no cord in slice {s}")
    return np.rint(idx.mean(0)).astype(int)


def _ellipsoid(
    cord: np.ndarray, first: int, last: int, semi: tuple[float, float, float], jitter: np.ndarray
) -> np.ndarray:
    """Voxel indices (N×3) of an ellipsoid centred on the cord slice by slice (sheared with the cord); when the
    rounded slice centres step so that two slices touch only at an edge (two 6-connected pieces), centred on the
    middle slice's cord centre instead, so that every lesion is one component under every connectivity."""
    pts = _ellipsoid_points(cord, first, last, semi, jitter, sheared=True)
    if not _one_piece(pts):
        pts = _ellipsoid_points(cord, first, last, semi, jitter, sheared=False)
    return pts


def _one_piece(pts: np.ndarray) -> bool:
    """The voxels form one 6-connected component."""
    from scipy import ndimage

    lo = pts.min(0)
    box = np.zeros(pts.max(0) - lo + 1, bool)
    box[tuple((pts - lo).T)] = True
    return ndimage.label(box)[1] == 1


def _ellipsoid_points(
    cord: np.ndarray, first: int, last: int, semi: tuple[float, float, float], jitter: np.ndarray, sheared: bool
) -> np.ndarray:
    mid = 0.5 * (first + last)
    pts = []
    for s in range(first, last + 1):
        dz = (s - mid) / semi[2]
        if abs(dz) > 1:
            continue
        c = _centre(cord, s if sheared else int(round(mid))) + jitter
        r = np.sqrt(1 - dz * dz)
        ra, rb = int(np.ceil(semi[0] * r)), int(np.ceil(semi[1] * r))
        for da in range(-ra, ra + 1):
            for db in range(-rb, rb + 1):
                if (da / semi[0]) ** 2 + (db / semi[1]) ** 2 <= r * r:
                    pts.append((c[0] + da, c[1] + db, s))
    return np.array(pts, int)


def _box(origin: np.ndarray, size: tuple[int, int, int]) -> np.ndarray:
    grid = np.indices(size).reshape(3, -1).T
    return grid + np.asarray(origin, int)


def _border_patch(cord: np.ndarray, first: int, last: int, axis: int, sign: int, radius: float = 2.2) -> np.ndarray:
    """Cord voxels within ``radius`` voxels of the outermost cord voxel (in-plane ``axis``, direction
    ``sign``) of the middle slice of the stretch."""
    mid = (first + last) // 2
    c = _centre(cord, mid)
    line = np.flatnonzero(cord[:, c[1], mid]) if axis == 0 else np.flatnonzero(cord[c[0], :, mid])
    edge = c.copy()
    edge[axis] = line.max() if sign > 0 else line.min()
    anchor = np.array([edge[0], edge[1], mid])
    lo = np.maximum(anchor - 3, 0)
    hi = np.minimum(anchor + 4, cord.shape)
    sub = np.argwhere(cord[lo[0] : hi[0], lo[1] : hi[1], max(lo[2], first) : min(hi[2], last + 1)])
    sub += np.array([lo[0], lo[1], max(lo[2], first)])
    keep = np.linalg.norm(sub - anchor, axis=1) <= radius
    return sub[keep]


def design_lesions(
    cord: np.ndarray, rng: np.random.Generator
) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, tuple[int, int]]]:
    """Place the lesions in a cord mask whose **last axis is S-I**.

    Returns ``(role → voxel indices N×3, false-positive voxel indices, layout)``.
    """
    layout = _layout(cord.shape[2], rng)
    jit = lambda: rng.integers(-1, 2, size=2)  # noqa: E731 (±1 voxel in-plane)
    les: dict[str, np.ndarray] = {}
    les["large"] = _ellipsoid(cord, *layout["large"], (2.5, 3.0, 5.0), np.zeros(2, int))
    les["medium"] = _ellipsoid(cord, *layout["medium"], (1.6, 2.0, 3.0), jit())
    f, _ = layout["tiny_1"]
    les["tiny_1"] = np.array([[*(_centre(cord, f) + jit()), f]])
    f, _ = layout["tiny_3"]
    c = _centre(cord, f + 1) + jit()
    les["tiny_3"] = np.array([[c[0], c[1], f + k] for k in range(3)])
    f, _ = layout["face"]
    c = _centre(cord, f + 1)
    les["face_a"] = _box([c[0] - 1, c[1] - 2, f], (2, 2, 3))
    les["face_b"] = _box([c[0] - 1, c[1], f], (2, 2, 3))
    f, _ = layout["corner"]
    c = _centre(cord, f + 2)
    les["corner_a"] = _box([c[0] - 2, c[1] - 2, f], (2, 2, 2))
    les["corner_b"] = _box([c[0], c[1], f + 2], (2, 2, 2))
    # the wider in-plane axis is R-L (lateral edge), the narrower A-P
    extent = [np.ptp(np.argwhere(cord)[:, a]) for a in (0, 1)]
    lateral = int(np.argmax(extent))
    les["border_a"] = _border_patch(cord, *layout["border_a"], axis=lateral, sign=int(rng.choice([-1, 1])))
    les["border_b"] = _border_patch(cord, *layout["border_b"], axis=1 - lateral, sign=int(rng.choice([-1, 1])))
    fp = _ellipsoid(cord, *layout["fp"], (1.5, 1.5, 2.0), jit())
    return {r: les[r] for r in LESION_ROLES}, fp, layout


# --------------------------------------------------------------------------------------------- masks
def _paint(shape, voxels: np.ndarray, value=1, out: np.ndarray | None = None) -> np.ndarray:
    out = np.zeros(shape, np.uint8) if out is None else out
    out[tuple(np.asarray(voxels).T)] = value
    return out


def contacts(instances: np.ndarray, ids: list[int]) -> dict[tuple[int, int], str]:
    """Which instance pairs touch: ``(i, j) → "face"`` (6-neighbours) or ``"edge/corner"`` (26 only)."""
    from scipy import ndimage

    six = ndimage.generate_binary_structure(3, 1)
    full = ndimage.generate_binary_structure(3, 3)
    out = {}
    for a in ids:
        m = instances == a
        d6, d26 = ndimage.binary_dilation(m, six), ndimage.binary_dilation(m, full)
        for b in ids:
            if b <= a:
                continue
            mb = instances == b
            if (d6 & mb).any():
                out[(a, b)] = "face"
            elif (d26 & mb).any():
                out[(a, b)] = "edge/corner"
    return out


def at_border(lesion: np.ndarray, cord: np.ndarray) -> bool:
    """True when a lesion voxel has a 6-neighbour outside the cord mask."""
    from scipy import ndimage

    outside = ndimage.binary_dilation(~cord.astype(bool), ndimage.generate_binary_structure(3, 1))
    return bool((lesion & outside).any())


def _expected_entry(counts: dict[str, int]) -> dict[str, int]:
    """Detection counts (``ref_lesions, pred_lesions, tp, fp, fn``) under the names of the truth's
    ``prediction.expected`` entry (``tp_ref`` = detected reference lesions, ``tp_pred`` = predicted lesions
    that are not false positives)."""
    return {
        "ref_components": counts["ref_lesions"],
        "pred_components": counts["pred_lesions"],
        "tp_ref": counts["tp"],
        "fn": counts["fn"],
        "tp_pred": counts["pred_lesions"] - counts["fp"],
        "fp": counts["fp"],
    }


def render_lesion_subject(model, grid: LesionGrid, rng: np.random.Generator) -> dict:
    """Image, cord mask, lesion instance map, predicted mask and the design of one subject."""
    from scipy import ndimage

    from nnunet_spine.core.geometry import si_axis
    from nnunet_spine.phantoms.cord_dataset import Acquisition, render_acquisition

    acq = Acquisition("T2w", grid.voxel_mm, grid.axcodes, grid.z_range_mm, grid.fov_mm, intensities=(0.45, 1.0, 0.3))
    r = render_acquisition(acq, model, rng)
    si = si_axis(r["affine"])
    cord = np.moveaxis(r["binary"].astype(bool), si, -1)  # work with S-I last
    lesions, fp, layout = design_lesions(cord, rng)
    inst = np.zeros(cord.shape, np.uint8)
    for i, role in enumerate(LESION_ROLES):
        if not cord[tuple(lesions[role].T)].all():
            raise AssertionError(f"lesion phantom: {role} leaves the cord (design error)")
        _paint(cord.shape, lesions[role], i + 1, inst)
    pred = inst > 0
    pred[inst == LESION_ROLES.index("medium") + 1] = False  # missed
    large = inst == LESION_ROLES.index("large") + 1
    first, last = layout["large"]
    split_slice = (first + last) // 2
    pred[:, :, split_slice] &= ~large[:, :, split_slice]  # split in two
    border = inst == LESION_ROLES.index("border_a") + 1
    grown = ndimage.binary_dilation(border, ndimage.generate_binary_structure(3, 1)) & cord
    pred |= grown  # boundary error (over-segmentation by one voxel)
    if not cord[tuple(fp.T)].all():
        raise AssertionError("lesion phantom: false positive leaves the cord (design error)")
    pred[tuple(fp.T)] = True
    back = lambda a: np.moveaxis(a, -1, si)  # noqa: E731
    image = r["image"] + back((inst > 0).astype(np.float32)) * np.float32(LESION_INTENSITY - acq.intensities[0])
    return {
        "affine": r["affine"],
        "image": image.astype(np.float32),
        "cord": r["binary"],
        "instances": back(inst),
        "lesion": back((inst > 0).astype(np.uint8)),
        "pred": back(pred.astype(np.uint8)),
        "fp": back(_paint(cord.shape, fp).astype(bool)),
        "split_slice": split_slice,
        "si_axis": si,
        "grown": back(grown),
    }


def render_t1w(model, grid: LesionGrid, t2w: dict, rng: np.random.Generator) -> dict:
    """The T1w-like contrast of a rendered subject (``t2w`` from :func:`render_lesion_subject`): image on its
    own grid (:data:`T1W_ACQUISITION`, the T2w's coverage), the cord mask rendered there, and the lesion
    mask resampled from the T2w grid (nearest neighbour); the lesions' signal is their linearly resampled
    fraction times the lesion-to-cord contrast."""
    from nnunet_spine.core.geometry import resample_to_grid
    from nnunet_spine.phantoms.cord_dataset import Acquisition, render_acquisition

    acq = Acquisition(
        "T1w",
        T1W_ACQUISITION["voxel_mm"],
        T1W_ACQUISITION["axcodes"],
        grid.z_range_mm,
        grid.fov_mm,
        intensities=T1W_ACQUISITION["intensities"],
    )
    r = render_acquisition(acq, model, rng)
    shape, affine = r["image"].shape, r["affine"]
    fraction = resample_to_grid(t2w["lesion"].astype(np.float32), t2w["affine"], shape, affine, order=1)
    image = r["image"] + fraction * np.float32(T1W_LESION_INTENSITY - acq.intensities[0])
    lesion = resample_to_grid(t2w["lesion"].astype(np.uint8), t2w["affine"], shape, affine, order=0)
    return {"affine": affine, "image": image.astype(np.float32), "cord": r["binary"], "lesion": lesion.astype(np.uint8)}


# --------------------------------------------------------------------------------------------- truth
def lesion_truth(r: dict) -> dict:
    """Truth dictionary of one rendered subject (see :func:`write_lesion_dataset`)."""
    import cc3d

    from nnunet_spine.core.io import voxel_sizes

    affine, inst, cord = r["affine"], r["instances"], r["cord"].astype(bool)
    vox_mm3 = float(np.prod(voxel_sizes(affine)))
    ids = list(range(1, len(LESION_ROLES) + 1))
    touch = contacts(inst, ids)
    lesions = []
    for i in ids:
        m = inst == i
        idx = np.argwhere(m)
        c_vox = idx.mean(0)
        lesions.append(
            {
                "id": i,
                "role": LESION_ROLES[i - 1],
                "voxels": int(m.sum()),
                "volume_mm3": int(m.sum()) * vox_mm3,
                "centroid_voxel": [round(float(x), 4) for x in c_vox],
                "centroid_mm": [round(float(x), 4) for x in affine[:3, :3] @ c_vox + affine[:3, 3]],
                "bbox_voxel": [[int(a) for a in idx.min(0)], [int(b) for b in idx.max(0)]],
                "at_cord_border": at_border(m, cord),
                "touches": sorted([b if a == i else a for (a, b), k in touch.items() if i in (a, b)]),
                "face_touches": sorted(
                    [b if a == i else a for (a, b), k in touch.items() if i in (a, b) and k == "face"]
                ),
            }
        )
    binary = inst > 0
    comps = {
        str(c): int(cc3d.connected_components(binary.astype(np.uint8), connectivity=c, return_N=True)[1])
        for c in (6, 18, 26)
    }
    pairs = [
        {
            "ids": [a, b],
            "roles": [LESION_ROLES[a - 1], LESION_ROLES[b - 1]],
            "contact": k,
            "separate_under_6": k != "face",
            "separate_under_26": False,
        }
        for (a, b), k in sorted(touch.items())
    ]
    pred = r["pred"].astype(bool)
    large, border = LESION_ROLES.index("large") + 1, LESION_ROLES.index("border_a") + 1
    bt, bp = inst == border, r["grown"]
    fp_idx = np.argwhere(r["fp"])
    n = len(ids)
    # The design, not the code under test, gives the counts: the face pair merges under 6-connectivity, the corner
    # pair too under 26; the prediction misses one lesion, splits one in two (still one TP) and adds one FP.
    design = {"6": n - 1, "26": n - 2}
    counts = {c: {"ref_lesions": d, "pred_lesions": d + 1, "tp": d - 1, "fp": 1, "fn": 1} for c, d in design.items()}
    if comps["6"] != design["6"] or comps["26"] != design["26"]:
        raise AssertionError(f"lesion phantom: connected components {comps} differ from the design {design}")
    expected = {c: _expected_entry(k) for c, k in counts.items()}
    return {
        "kind": "lesion",
        "voxel_mm": [float(z) for z in voxel_sizes(affine)],
        "voxel_volume_mm3": vox_mm3,
        "shape": [int(s) for s in inst.shape],
        "n_lesions": n,
        "count_rule": (
            "each id is one lesion as annotated (face_a/face_b and corner_a/corner_b are distinct "
            "lesions); connected components of the binary mask merge touching lesions"
        ),
        "connected_components": comps,
        "touching_pairs": pairs,
        "cord_voxels": int(cord.sum()),
        "cord_volume_mm3": int(cord.sum()) * vox_mm3,
        "lesions": lesions,
        "total_lesion_voxels": int(binary.sum()),
        "total_lesion_volume_mm3": int(binary.sum()) * vox_mm3,
        "prediction": {
            "missed": [LESION_ROLES.index("medium") + 1],
            "false_positive": {
                "voxels": int(len(fp_idx)),
                "volume_mm3": len(fp_idx) * vox_mm3,
                "centroid_mm": [round(float(x), 4) for x in affine[:3, :3] @ fp_idx.mean(0) + affine[:3, 3]],
            },
            "split": {
                "lesion": large,
                "parts": 2,
                "removed_slice": int(r["split_slice"]),
                "slice_axis": int(r["si_axis"]),
            },
            "boundary_error": {
                "lesion": border,
                "truth_voxels": int(bt.sum()),
                "pred_voxels": int(bp.sum()),
                "dice": round(2 * float((bt & bp).sum()) / float(bt.sum() + bp.sum()), 6),
                "change": "dilated by 1 voxel (6-neighbour structuring element) within the cord",
            },
            "pred_voxels": int(pred.sum()),
            "expected": expected,
            "expected_counts": {"match": "overlap", **counts},
            "matching_rule": (
                "rule 'overlap' (nnspine evaluate lesions): connected components of each "
                "binary mask; a reference component is a TP when >= 10 % of its voxels are "
                "predicted, else FN; a predicted component is an FP when it overlaps no reference "
                "voxel. The design also holds under '>= 1 voxel' detection"
            ),
        },
    }


# --------------------------------------------------------------------------------------------- dataset
def write_lesion_dataset(
    out_dir: str | Path,
    *,
    n_subjects: int = 1,
    seed: int = 0,
    grid: LesionGrid = LesionGrid(),
    overwrite: bool = False,
    progress: bool = False,
) -> dict:
    """Write a BIDS cord-lesion phantom dataset; returns ``{"root", "subjects": {sub: truth}}``.

    Per subject::

        sub-XX/anat/sub-XX_T2w.nii.gz                                           image (float32, PSR)
        derivatives/labels/sub-XX/anat/sub-XX_T2w_label-SC_seg.nii.gz           cord mask (binary)
        derivatives/labels/sub-XX/anat/sub-XX_T2w_label-lesion_seg.nii.gz       lesion mask (binary)
        derivatives/truth/sub-XX/anat/sub-XX_T2w_label-lesion_dseg.nii.gz       lesion ids 1–10 (uint8)
        derivatives/prediction/sub-XX/anat/sub-XX_T2w_label-lesion_seg.nii.gz   "predicted" lesion mask
        derivatives/truth/sub-XX/sub-XX_truth.json                              see :func:`lesion_truth`
        sub-XX/anat/sub-XX_T1w.nii.gz                                           T1w-like image (RAS, 1 mm)
        derivatives/labels/sub-XX/anat/sub-XX_T1w_label-SC_seg.nii.gz           its cord mask
        derivatives/labels/sub-XX/anat/sub-XX_T1w_label-lesion_seg.nii.gz       T2w lesions resampled (nearest)

    The truth's ``files`` lists the T2w files; ``contrasts["T1w"]`` the T1w files and grid.

    Deterministic for a given ``seed``.
    """
    from tqdm.auto import tqdm

    from nnunet_spine.phantoms.cord_dataset import subject_model

    folders = start_phantom_dataset(
        out_dir,
        n_subjects,
        "nnunet-spine cord lesion phantom",
        "Cord and lesion masks (phantom)",
        "Lesion instance maps and lesion truth (phantom)",
        overwrite,
        seed=seed,
    )
    root, subjects, labels_dir, truth_dir = folders.root, folders.subjects, folders.labels, folders.truth
    pred_dir = start_derivative(root, "prediction", "A lesion mask with known errors (phantom)")
    result = {"root": str(root), "subjects": {}}
    for i, sub in enumerate(tqdm(subjects, desc="phantom lesion", unit="subject", disable=not progress)):
        model = subject_model(i, seed)
        r = render_lesion_subject(model, grid, np.random.default_rng([seed, i, 17]))
        paths = {
            "image": anat_path(root, sub, "T2w"),
            "cord": anat_path(labels_dir, sub, "T2w", "_label-SC_seg"),
            "lesion": anat_path(labels_dir, sub, "T2w", "_label-lesion_seg"),
            "instances": anat_path(truth_dir, sub, "T2w", "_label-lesion_dseg"),
            "prediction": anat_path(pred_dir, sub, "T2w", "_label-lesion_seg"),
        }
        write_nifti(paths["image"], r["image"], r["affine"], np.float32, overwrite)
        write_nifti(paths["cord"], r["cord"], r["affine"], np.uint8, overwrite)
        write_nifti(paths["lesion"], r["lesion"], r["affine"], np.uint8, overwrite)
        write_nifti(paths["instances"], r["instances"], r["affine"], np.uint8, overwrite)
        write_nifti(paths["prediction"], r["pred"], r["affine"], np.uint8, overwrite)
        t1 = render_t1w(model, grid, r, np.random.default_rng([seed, i, 18]))
        t1_paths = {
            "image": anat_path(root, sub, "T1w"),
            "cord": anat_path(labels_dir, sub, "T1w", "_label-SC_seg"),
            "lesion": anat_path(labels_dir, sub, "T1w", "_label-lesion_seg"),
        }
        write_nifti(t1_paths["image"], t1["image"], t1["affine"], np.float32, overwrite)
        write_nifti(t1_paths["cord"], t1["cord"], t1["affine"], np.uint8, overwrite)
        write_nifti(t1_paths["lesion"], t1["lesion"], t1["affine"], np.uint8, overwrite)
        truth = {
            "subject": sub,
            "seed": seed,
            **lesion_truth(r),
            "axcodes": "".join(grid.axcodes),
            "files": {k: str(p.relative_to(root)) for k, p in paths.items()},
            "contrasts": {
                "T1w": {
                    "voxel_mm": list(T1W_ACQUISITION["voxel_mm"]),
                    "axcodes": "".join(T1W_ACQUISITION["axcodes"]),
                    "shape": [int(n) for n in t1["image"].shape],
                    "lesion_mask": "T2w lesion mask resampled to this grid (nearest neighbour, world coordinates)",
                    "files": {k: str(p.relative_to(root)) for k, p in t1_paths.items()},
                }
            },
        }
        write_text(truth_dir / sub / f"{sub}_truth.json", json.dumps(truth, indent=2) + "\n", overwrite=True)
        result["subjects"][sub] = truth
    return result
