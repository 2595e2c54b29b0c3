"""The whole-spine semantic pipeline end to end with the real nnU-Net console scripts:

``nnspine phantom --kind spine`` → ``convert spineps`` → ``nnUNetv2_plan_and_preprocess`` → ``nnUNetv2_train -tr
nnUNetTrainerSpineSemantic_debug`` → ``nnUNetv2_predict`` (test-time mirroring on) → ``nnspine relabel`` →
``nnspine qc spine``.

Asserts what a few CPU iterations can show: the checkpoint tells the stock predictor to mirror every axis except
the left-right one (found here from where the phantom's left and right processes lie), predictions keep the
input's grid, and relabelling maps nnU-Net's labels back voxel for voxel. It does not assert learned quality.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from nnunet_helpers import console_script, nnunet_env, run  # noqa: E402

from nnunet_spine.core.io import load_image  # noqa: E402
from nnunet_spine.core.labels import SEMANTIC_LABELS

DATASET_ID, NAME = 993, "PipelineSpine"
DATASET = f"Dataset{DATASET_ID}_{NAME}"
PLANS = "nnUNetPlansCPU"
TRAINER = "nnUNetTrainerSpineSemantic_debug"


def nnspine(env: dict, *args: str):
    return run([console_script("nnspine"), *args], env)


@pytest.mark.slow
def test_spine_semantic_pipeline_with_real_console_scripts(tmp_path, trained_models):
    import blosc2
    import torch

    export = nnspine(nnunet_env(tmp_path), "trainers", "--export").stdout.strip()
    env = nnunet_env(tmp_path, nnUNet_extTrainer=export.split("=", 1)[1].strip("'"))
    nnspine(
        env,
        "phantom",
        "--kind",
        "spine",
        "-o",
        str(tmp_path / "train"),
        "--subjects",
        "2",
        "--vertebrae",
        "2",
        "--seed",
        "0",
    )
    nnspine(
        env,
        "phantom",
        "--kind",
        "spine",
        "-o",
        str(tmp_path / "test"),
        "--subjects",
        "1",
        "--vertebrae",
        "2",
        "--seed",
        "1",
    )

    nnspine(
        env,
        "convert",
        "spineps",
        "-i",
        str(tmp_path / "train"),
        "--nnunet-dataset",
        str(DATASET_ID),
        "--name",
        NAME,
        "-q",
    )
    raw = Path(env["nnUNet_raw"]) / DATASET
    dataset_json = json.loads((raw / "dataset.json").read_text())
    to_spineps = {int(k): v for k, v in dataset_json["nnspine_label_map"]["values"].items()}

    run(
        [
            console_script("nnUNetv2_plan_and_preprocess"),
            "-d",
            str(DATASET_ID),
            "-c",
            "3d_fullres",
            "-np",
            "1",
            "-npfp",
            "1",
            "--verify_dataset_integrity",
            "--no_pbar",
            "-gpu_memory_target",
            "1",
            "-overwrite_plans_name",
            PLANS,
        ],
        {**env, "nnUNet_n_proc_DA": "1"},
    )
    pre = Path(env["nnUNet_preprocessed"]) / DATASET
    cfg = json.loads((pre / f"{PLANS}.json").read_text())["configurations"]["3d_fullres"]
    # the left-right axis of the preprocessed arrays, from content: where left and right costal processes lie
    seg = blosc2.open(urlpath=str(pre / cfg["data_identifier"] / "sub-01_T2w_seg.b2nd"), mode="r")[:][0]
    left = np.argwhere(seg == dataset_json["labels"]["Costal_Process_Left"]).mean(0)
    right = np.argwhere(seg == dataset_json["labels"]["Costal_Process_Right"]).mean(0)
    lr_axis = int(np.argmax(np.abs(left - right)))

    run(
        [
            console_script("nnUNetv2_train"),
            str(DATASET_ID),
            "3d_fullres",
            "all",
            "-tr",
            TRAINER,
            "-p",
            PLANS,
            "-device",
            "cpu",
        ],
        env,
    )
    model = Path(env["nnUNet_results"]) / DATASET / f"{TRAINER}__{PLANS}__3d_fullres"
    ckpt = torch.load(model / "fold_all" / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    assert tuple(ckpt["inference_allowed_mirroring_axes"]) == tuple(a for a in (0, 1, 2) if a != lr_axis)
    assert ckpt["trainer_name"] == TRAINER

    pred_in = tmp_path / "pred_in"
    pred_in.mkdir()
    image = tmp_path / "test" / "sub-01" / "anat" / "sub-01_T2w.nii.gz"
    (pred_in / "sub-01_T2w_0000.nii.gz").write_bytes(image.read_bytes())
    run(
        [
            console_script("nnUNetv2_predict"),
            "-i",
            str(pred_in),
            "-o",
            str(tmp_path / "pred"),
            "-d",
            str(DATASET_ID),
            "-c",
            "3d_fullres",
            "-f",
            "all",
            "-tr",
            TRAINER,
            "-p",
            PLANS,
            "-device",
            "cpu",
            "-npp",
            "1",
            "-nps",
            "1",
        ],
        env,
    )
    pred = load_image(tmp_path / "pred" / "sub-01_T2w.nii.gz", "labels")
    src = load_image(image)
    assert pred.shape == src.shape
    np.testing.assert_allclose(pred.affine, src.affine, atol=1e-4)
    assert set(np.unique(pred.data).tolist()) <= set(to_spineps)

    # relabel by dataset id (nnUNet_raw), voxel for voxel
    nnspine(
        env,
        "relabel",
        "-i",
        str(tmp_path / "pred"),
        "-o",
        str(tmp_path / "spineps"),
        "--dataset",
        str(DATASET_ID),
        "-q",
    )
    back = load_image(tmp_path / "spineps" / "sub-01_T2w.nii.gz", "labels")
    lut = np.zeros(256, np.int64)
    for k, v in to_spineps.items():
        lut[k] = v
    assert np.array_equal(back.data, lut[pred.data.astype(np.int64)])
    assert set(np.unique(back.data).tolist()) <= set(SEMANTIC_LABELS) | {0}
    np.testing.assert_allclose(back.affine, pred.affine, atol=1e-6)
    # for `segment spine` (tests/e2e/test_vertebra_cutout_training.py): the model, its input and its SPINEPS mask
    trained_models["spine_semantic"] = {"model": model, "image": image, "semantic": tmp_path / "spineps"}
    # the prediction folder carries dataset.json (nnU-Net copies it): relabel works from it too
    nnspine(
        env,
        "relabel",
        "-i",
        str(tmp_path / "pred" / "sub-01_T2w.nii.gz"),
        "-o",
        str(tmp_path / "b.nii.gz"),
        "--dataset",
        str(tmp_path / "pred"),
        "-q",
    )
    assert np.array_equal(load_image(tmp_path / "b.nii.gz", "labels").data, back.data)

    if back.data.any():  # a QC picture of what the few iterations produced
        nnspine(
            env,
            "qc",
            "spine",
            "-i",
            str(tmp_path / "spineps" / "sub-01_T2w.nii.gz"),
            "--image",
            str(image),
            "-o",
            str(tmp_path / "qc.png"),
        )
        assert (tmp_path / "qc.png").stat().st_size > 1000


LANDMARK_ID, LANDMARK_NAME = 984, "LandmarkE2E"


@pytest.mark.slow
def test_landmark_model_and_labelling_a_cropped_phantom(tmp_path, trained_models):
    """``convert landmarks`` → plan → ``nnUNetv2_train -tr nnUNetTrainer_budget`` (stock nnU-Net, 8 iterations) →
    ``nnUNetv2_predict`` on a held-out phantom cropped above L5 (no sacrum: no anchor in its masks) → ``nnspine
    fuse --landmarks`` with perfect cutout predictions. Truth: the phantom's ids. A perfect landmark map (the crop's
    own T12-L1 disc) gives T11 … L4; the briefly trained model's map is taken or refused by the rule recomputed
    here with scipy (largest component ≥ 20 mm³, just below a body centre), and the sidecar says which."""
    import nibabel as nib
    from scipy import ndimage
    from test_fuse import perfect_predictions

    from nnunet_spine.core.cutouts import cut_case, load_semantic
    from nnunet_spine.core.geometry import si_axis

    export = nnspine(nnunet_env(tmp_path), "trainers", "--export").stdout.strip()
    env = nnunet_env(tmp_path, nnUNet_extTrainer=export.split("=", 1)[1].strip("'"))
    for out, subjects, seed in (("train", "2", "0"), ("test", "1", "1")):
        nnspine(env, "phantom", "--kind", "spine", "-o", str(tmp_path / out), "--subjects", subjects,
                "--vertebrae", "7", "--seed", seed, "-q")  # fmt: skip
    nnspine(env, "convert", "landmarks", "-i", str(tmp_path / "train"), "--nnunet-dataset", str(LANDMARK_ID),
            "--name", LANDMARK_NAME, "-q")  # fmt: skip
    run([console_script("nnUNetv2_plan_and_preprocess"), "-d", str(LANDMARK_ID), "-c", "3d_fullres", "-np", "1",
         "-npfp", "1", "--verify_dataset_integrity", "--no_pbar", "-gpu_memory_target", "1",
         "-overwrite_plans_name", PLANS], {**env, "nnUNet_n_proc_DA": "1"})  # fmt: skip
    budget = {"NNSPINE_EPOCHS": "2", "NNSPINE_ITERATIONS": "4", "NNSPINE_VAL_ITERATIONS": "2", "NNSPINE_NO_TTA": "1"}
    run([console_script("nnUNetv2_train"), str(LANDMARK_ID), "3d_fullres", "all", "-tr", "nnUNetTrainer_budget",
         "-p", PLANS, "-device", "cpu"], {**env, **budget})  # fmt: skip
    landmark_model = Path(env["nnUNet_results"]) / f"Dataset{LANDMARK_ID}_{LANDMARK_NAME}"
    trained_models["landmarks"] = landmark_model / f"nnUNetTrainer_budget__{PLANS}__3d_fullres"  # segment spine

    # the held-out phantom cropped just above L5's body (L4 = 23 is the lowest whole vertebra)
    anat = tmp_path / "test" / "sub-01" / "anat"
    labels = tmp_path / "test" / "derivatives" / "labels" / "sub-01" / "anat"
    img = nib.load(anat / "sub-01_T2w.nii.gz")
    sem = np.asarray(nib.load(labels / "sub-01_T2w_seg-spine_msk.nii.gz").dataobj)
    ref = np.asarray(nib.load(labels / "sub-01_T2w_seg-vert_msk.nii.gz").dataobj)
    ax = si_axis(img.affine)
    z_of = img.affine[2, ax] * np.arange(img.shape[ax]) + img.affine[2, 3]  # slice world z (axis-aligned S-I)
    z_cut = (img.affine[:3, :3] @ np.argwhere((ref == 23) & (sem == 49)).T)[2].min() + img.affine[2, 3] - 1.0
    keep = np.flatnonzero(z_of >= z_cut)
    box = [slice(None)] * 3
    box[ax] = slice(int(keep.min()), int(keep.max()) + 1)
    box = tuple(box)
    shift = img.affine.copy()
    shift[:3, 3] += img.affine[:3, :3] @ np.array([s.start or 0 for s in box])
    crop = tmp_path / "crop"
    crop.mkdir()
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj)[box].astype(np.float32), shift), crop / "sub-01_T2w.nii.gz")
    sem_c, ref_c = sem[box].astype(np.uint8), ref[box].astype(np.uint8)
    assert 26 not in sem_c and 24 not in ref_c[sem_c == 49]  # no sacrum, no L5 body: no anchor in the masks
    sem_path = crop / "sub-01_T2w_seg-spine_msk.nii.gz"
    nib.save(nib.Nifti1Image(sem_c, shift), sem_path)
    nib.save(nib.Nifti1Image(ref_c, shift), crop / "sub-01_T2w_seg-vert_msk.nii.gz")

    # the landmark model's prediction on the crop
    (tmp_path / "lm_in").mkdir()
    (tmp_path / "lm_in" / "sub-01_T2w_0000.nii.gz").write_bytes((crop / "sub-01_T2w.nii.gz").read_bytes())
    run([console_script("nnUNetv2_predict"), "-i", str(tmp_path / "lm_in"), "-o", str(tmp_path / "lm"), "-d",
         str(LANDMARK_ID), "-c", "3d_fullres", "-f", "all", "-tr", "nnUNetTrainer_budget", "-p", PLANS,
         "-device", "cpu", "-npp", "1", "-nps", "1"], env)  # fmt: skip
    predicted = nib.load(tmp_path / "lm" / "sub-01_T2w.nii.gz")
    assert predicted.shape == sem_c.shape and np.allclose(predicted.affine, shift, atol=1e-4)

    # cutouts of the crop and perfect cutout predictions from its instance mask
    nnspine(env, "cutouts", "--semantic", str(sem_path), "-o", str(tmp_path / "cut"), "-q")
    semantic = load_semantic(sem_path)
    record = cut_case(semantic, "sub-01_T2w")[0]
    (tmp_path / "pred").mkdir()
    perfect_cutouts = perfect_predictions(
        semantic, load_image(crop / "sub-01_T2w_seg-vert_msk.nii.gz", "labels"), record
    )
    for c in record.cutouts:
        nib.save(nib.Nifti1Image(perfect_cutouts[c.name], c.affine), tmp_path / "pred" / f"{c.name}.nii.gz")

    def fuse(out: str, *extra: str) -> dict:
        nnspine(env, "fuse", "--semantic", str(sem_path), "--cutouts", str(tmp_path / "cut"), "--predictions",
                str(tmp_path / "pred"), "-o", str(tmp_path / out), "--no-qc", "-q", *extra)  # fmt: skip
        return json.loads((tmp_path / out / "sub-01_T2w_seg-vert_msk.json").read_text())["labelling"]

    assert fuse("plain")["anatomical"] is False  # no anchor
    perfect = tmp_path / "perfect_landmarks.nii.gz"
    nib.save(nib.Nifti1Image((ref_c == 119).astype(np.uint8) * 3, shift), perfect)  # T12-L1 disc, class 3
    lab = fuse("perfect", "--landmarks", str(perfect))
    truth = json.loads((tmp_path / "test/derivatives/truth/sub-01/sub-01_truth.json").read_text())
    assert truth["vertebra_ids"][:6] == list(range(18, 24))
    assert lab["anatomical"] and lab["ids"] == list(range(18, 24)) and lab["method"].startswith("landmark T12-L1")
    inst = np.asarray(nib.load(tmp_path / "perfect" / "sub-01_T2w_seg-vert_msk.nii.gz").dataobj)
    for v in range(18, 24):  # each vertebra where the phantom has it
        a, b = inst == v, ref_c == v
        assert 2 * (a & b).sum() / (a.sum() + b.sum()) > 0.99

    # the trained model's landmarks: accepted or refused as the rule says, recomputed here
    lab = fuse("model", "--landmarks", str(tmp_path / "lm" / "sub-01_T2w.nii.gz"))
    pm = np.asarray(predicted.dataobj)
    vox_mm3 = abs(np.linalg.det(shift[:3, :3]))
    bodies = {v: (shift[:3, :3] @ np.argwhere((ref_c == v) & (sem_c == 49)).mean(0) + shift[:3, 3]) for v in
              range(18, 24)}  # fmt: skip
    zs = [bodies[v][2] for v in range(18, 24)]
    spacing = float(np.median(np.linalg.norm(np.diff([bodies[v] for v in range(18, 24)], axis=0), axis=1)[-3:]))
    accepted = []  # (index of the vertebra above, its VerSe id, name)
    for k, name, vid in ((1, "C2-C3", 2), (2, "C7-T1", 7), (3, "T12-L1", 19), (4, "L5-S1", 24)):
        comps, n = ndimage.label(pm == k, np.ones((3, 3, 3)))
        if n == 0:
            continue
        sizes = ndimage.sum(np.ones_like(comps), comps, range(1, n + 1))
        big = int(np.argmax(sizes)) + 1
        if (sizes == sizes[big - 1]).sum() > 1:  # two largest components: ambiguous, ignored
            continue
        z = (shift[:3, :3] @ np.argwhere(comps == big).mean(0) + shift[:3, 3])[2]
        above = [i for i, zc in enumerate(zs) if zc > z]
        if sizes[big - 1] * vox_mm3 >= 20 and above and zs[above[-1]] - z <= spacing:
            accepted.append((above[-1], vid, name))
    if accepted:  # C1 … L6 are positions 0 … 24 (id − 1); six vertebrae, no gap
        assert lab["gaps"] == []
        fitting = [t for t in accepted if 0 <= t[1] - 1 - t[0] and t[1] - 1 - t[0] + 5 <= 24]
        if not fitting:
            assert not lab["anatomical"] and "does not fit" in lab["method"], (accepted, lab)
        else:
            index, vid, name = max(fitting, key=lambda t: t[0])
            expected = list(range(vid - index, vid - index + 6))
            off = [abs(v - expected[i]) for i, v, _ in fitting]
            if max(off) > 1:
                assert not lab["anatomical"] and lab["method"].endswith("(landmarks disagree)"), (accepted, lab)
            else:
                assert lab["anatomical"] and lab["method"].startswith(f"landmark {name} "), (accepted, lab)
                assert lab["ids"] == expected, (accepted, lab)
        for t in set(accepted) - set(fitting):
            assert any(f"landmark {t[2]}" in a and "ignored" in a for a in lab["anomalies"]), (accepted, lab)
    else:
        assert lab["anatomical"] is False, (accepted, lab)
        assert all(f"landmark {n}" in str(lab["anomalies"]) for n in ("C2-C3", "C7-T1", "T12-L1", "L5-S1")
                   if (pm == ("C2-C3", "C7-T1", "T12-L1", "L5-S1").index(n) + 1).any())  # fmt: skip
