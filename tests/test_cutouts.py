"""Instance-phase cutouts (``nnspine cutouts``) and the cutout training dataset (``convert cutouts``).

Truth comes from outside the code under test: the spine phantom's model (body centres in mm), scipy's
``affine_transform`` for resampling, world coordinates computed from the affines by hand, and the
reference instance masks.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from nnunet_spine.cli import main
from nnunet_spine.core.cutouts import (
    CUTOUTS_JSON,
    DEFAULT_SIZE,
    DEFAULT_SPACING_MM,
    MIN_BODY_MM3,
    Image,
    channel_paths,
    cut_case,
    find_bodies,
    load_semantic,
    paste_back,
    pir_affine,
    sample_labels,
    to_pir,
    write_cutouts,
)
from nnunet_spine.core.geometry import resample_to_grid
from nnunet_spine.core.io import InputError, voxel_sizes
from nnunet_spine.core.labels import ARCUS, CORPUS


@pytest.fixture(scope="module")
def spine5(tmp_path_factory) -> dict:
    """A 5-vertebra spine phantom (L1-L5 + sacrum) with its model truth."""
    from nnunet_spine.phantoms.spine_dataset import write_spine_dataset

    root = tmp_path_factory.mktemp("spine5") / "bids"
    truth = write_spine_dataset(root, n_subjects=1, seed=3)["subjects"]["sub-01"]
    labels = root / "derivatives" / "labels" / "sub-01" / "anat"
    return {
        "root": root,
        "truth": truth,
        "semantic": labels / "sub-01_T2w_seg-spine_msk.nii.gz",
        "instance": labels / "sub-01_T2w_seg-vert_msk.nii.gz",
    }


def world_of_voxels(affine: np.ndarray, shape) -> np.ndarray:
    """World coordinates (mm) of every voxel centre, shape (*shape, 3)."""
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1).astype(float)
    return ijk @ affine[:3, :3].T + affine[:3, 3]


# ------------------------------------------------------------------------------------------- centres
def test_body_centres_match_the_phantom_model(spine5):
    img = load_semantic(spine5["semantic"])
    record, bodies, _ = cut_case(img, "sub-01_T2w")
    true = np.array([v["body_centre_mm"] for v in spine5["truth"]["vertebrae"]])  # top to bottom
    assert len(record.cutouts) == len(true) == 5
    got = np.array([c.centre_mm for c in record.cutouts])
    # body 49 excludes the 2 mm endplates symmetrically, so its centroid is the model's body centre
    assert np.abs(got - true).max() < 1.0
    assert np.all(np.diff(got[:, 2]) < 0)  # superior to inferior
    assert [c.name for c in record.cutouts] == [f"sub-01_T2w_{i:03d}" for i in range(5)]


def test_erosion_separates_touching_bodies_and_drops_fragments():
    affine = np.eye(4)  # RAS, 1 mm voxels: world z = voxel k
    # two 10 x 10 x 9 mm bodies joined by a 2 x 2 mm neck one voxel long
    neck = np.zeros((20, 20, 40), np.uint8)
    neck[5:15, 5:15, 5:14] = CORPUS
    neck[5:15, 5:15, 15:24] = CORPUS
    neck[9:11, 9:11, 14] = CORPUS
    data, aff = to_pir(Image(neck, affine))
    assert len(find_bodies(data, aff, erosion_mm=0.0, min_volume_mm3=20)) == 1
    b = find_bodies(data, aff, erosion_mm=1.5, min_volume_mm3=20)
    assert len(b) == 2
    assert np.allclose(b.centres_mm[:, 2], [19.0, 9.0], atol=0.1)  # superior first; the neck shifts them a little
    # a 2 x 2 x 2 mm fragment (8 mm3) beside two bodies touching along a face (one 2000 mm3 component)
    sem = np.zeros((20, 20, 40), np.uint8)
    sem[5:15, 5:15, 5:25] = CORPUS
    sem[2:4, 2:4, 35:37] = CORPUS
    data, aff = to_pir(Image(sem, affine))
    assert len(find_bodies(data, aff, erosion_mm=0.0, min_volume_mm3=5)) == 2
    kept = find_bodies(data, aff, erosion_mm=0.0, min_volume_mm3=MIN_BODY_MM3)
    assert len(kept) == 1 and kept.volumes_mm3[0] == pytest.approx(2000.0)


# ------------------------------------------------------------------------------------------- geometry
def test_cutout_grid_is_placed_in_world_space_and_sampled_like_scipy(spine5):
    img = load_semantic(spine5["semantic"])
    record, _, sem_pir = cut_case(img, "s")
    aff_pir = pir_affine(img.affine, img.shape)
    for c in record.cutouts[::2]:
        assert nib.aff2axcodes(c.affine) == ("P", "I", "R")
        assert np.allclose(voxel_sizes(c.affine), DEFAULT_SPACING_MM)
        centre_voxel = (np.array(DEFAULT_SIZE) - 1) / 2
        assert np.allclose(c.affine[:3, :3] @ centre_voxel + c.affine[:3, 3], c.centre_mm)
        ours = sample_labels(sem_pir, aff_pir, c.affine, c.shape)
        theirs = resample_to_grid(np.asarray(img.data), img.affine, c.shape, c.affine, order=0)
        assert ours.shape == tuple(DEFAULT_SIZE)
        # nearest neighbour both: only voxels exactly halfway between two source voxels may round apart
        assert np.mean(ours == theirs) > 0.999
        assert set(np.unique(ours)) <= set(np.unique(img.data))


def test_paste_back_returns_cutout_labels_to_the_original_grid(spine5):
    img = load_semantic(spine5["semantic"])
    record, _, sem_pir = cut_case(img, "s")
    aff_pir = pir_affine(img.affine, img.shape)
    c = record.cutouts[2]
    cut = sample_labels(sem_pir, aff_pir, c.affine, c.shape)
    box, values = paste_back(cut, c.affine, aff_pir, sem_pir.shape)
    # the phantom's 1 x 1 x 3 mm voxels are coarser than the cutout's, so going there and back is exact
    # wherever the cutout covers the grid
    assert np.array_equal(values, sem_pir[box])
    assert values.size < sem_pir.size  # the 5-vertebra spine is taller than one cutout


def test_tptbox_sample_smaller_than_a_cutout_is_zero_padded(shared_data, tmp_path):
    sem_path = shared_data / "tptbox_sample_mri" / "sub-mri_seg-subreg_label-6_msk.nii.gz"
    if not sem_path.exists():
        pytest.skip(f"{sem_path} absent")
    report = write_cutouts(sem_path, tmp_path / "cut")
    (case,) = report.cases
    assert case.case == "sub-mri_label-6" and len(case.cutouts) == 3  # C5 (partial), C6, C7
    img = load_semantic(sem_path)
    inv = np.linalg.inv(img.affine)
    c = case.cutouts[1]
    channels = [nib.load(p) for p in channel_paths(tmp_path / "cut", c.name)]
    stack = np.stack([np.asarray(ch.dataobj) for ch in channels])
    assert stack.shape == (9, *DEFAULT_SIZE) and stack.dtype == np.uint8
    assert np.allclose(channels[0].affine, c.affine, atol=1e-4)
    # voxels of the cutout whose centre lies outside the semantic mask's field of view are all zero
    ijk = world_of_voxels(c.affine, c.shape) @ inv[:3, :3].T + inv[:3, 3]
    outside = np.any((np.rint(ijk) < 0) | (np.rint(ijk) > np.array(img.shape) - 1), axis=-1)
    assert outside.mean() > 0.3  # the 102 x 78 x 100 mm crop is smaller than the cutout
    assert not stack[:, outside].any()
    # inside, the one-hot channels hold exactly the vertebra subregions: every body voxel of the
    # sample shows up once (cutout voxels are smaller than the sample's 1.5 mm: the volume is kept)
    body_mm3 = np.count_nonzero(img.data == CORPUS) * np.prod(voxel_sizes(img.affine))
    cut_mm3 = stack[8].sum() * np.prod(DEFAULT_SPACING_MM)
    assert cut_mm3 == pytest.approx(body_mm3, rel=0.05)
    assert stack.sum(axis=0).max() == 1


def test_write_cutouts_files_and_json(spine5, tmp_path):
    out = tmp_path / "cut"
    report = write_cutouts(spine5["semantic"], out)
    content = json.loads((out / CUTOUTS_JSON).read_text())
    assert content["encoding"] == "one-hot"
    assert content["channels"] == {f"{i:04d}": 41 + i for i in range(9)}
    assert content["size"] == [248, 304, 64] and content["spacing_mm"] == [0.75, 0.75, 1.65]
    (case,) = content["cases"]
    assert case["case"] == "sub-01_T2w" and Path(case["semantic"]) == spine5["semantic"].resolve()
    assert len(case["cutouts"]) == 5 and report.files == 45
    names = sorted(p.name for p in out.iterdir())
    assert names[0] == "cutouts.json" and names[1] == "sub-01_T2w_000_0000.nii.gz" and len(names) == 46
    # refusing to overwrite, then allowed
    with pytest.raises(InputError, match="exists"):
        write_cutouts(spine5["semantic"], out)
    write_cutouts(spine5["semantic"], out, overwrite=True)


# ------------------------------------------------------------------------------------------- bad input
def test_cli_cutouts_bad_input_exit_2_nothing_written(spine5, shared_data, tmp_path, capsys):
    out = tmp_path / "cut"
    rc = main(["cutouts", "--semantic", str(spine5["instance"]), "-o", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "looks like an instance mask" in err and len(err.splitlines()) == 1
    assert not out.exists() or not any(out.iterdir())
    no_body = tmp_path / "nobody_seg-spine_msk.nii.gz"
    img = nib.load(spine5["semantic"])
    data = np.asarray(img.dataobj).copy()
    data[data == CORPUS] = ARCUS
    nib.save(nib.Nifti1Image(data, img.affine), no_body)
    rc = main(["cutouts", "--semantic", str(no_body), "-o", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "no vertebral body" in err and str(no_body) in err
    with pytest.raises(SystemExit) as exc:  # argparse: usage error, exit 2
        main(["cutouts", "--semantic", str(spine5["semantic"]), "-o", str(out), "--size", "248,304"])
    assert exc.value.code == 2 and "three positive" in capsys.readouterr().err
    rc = main(["cutouts", "--semantic", str(spine5["semantic"]), "-o", str(out), "-q"])
    assert rc == 0 and len(list(out.glob("*_0008.nii.gz"))) == 5


# ------------------------------------------------------------------------------------------- dataset
def test_convert_cutouts_targets_follow_the_instance_mask(spine5, tmp_path):
    from nnunet_spine.dataset_converters.cutouts import convert

    raw = tmp_path / "raw"
    report = convert(spine5["root"], nnunet_dataset=503, name="Cut", shifts=1, max_shift_mm=8.0, seed=1, raw_root=raw)
    folder = raw / "Dataset503_Cut"
    assert report.num_cases == 10 and report.vertebrae == {"sub-01_T2w": 5}
    ds = json.loads((folder / "dataset.json").read_text())
    assert ds["labels"] == {"background": 0, "above": 1, "centre": 2, "below": 3}
    assert set(ds["channel_names"].values()) == {"noNorm"} and len(ds["channel_names"]) == 9
    assert ds["numTraining"] == 10 and ds["channel_labels"]["8"] == 49
    ins = nib.load(spine5["instance"])
    ins_data = np.asarray(ins.dataobj)
    ids = spine5["truth"]["vertebra_ids"]  # top to bottom: 20 ... 24
    centres = [np.array(v["body_centre_mm"]) for v in spine5["truth"]["vertebrae"]]
    for i in range(5):
        for case in (f"sub-01_T2w_{i:03d}", f"sub-01_T2w_{i:03d}s1"):
            lab = nib.load(folder / "labelsTr" / f"{case}.nii.gz")
            target = np.asarray(lab.dataobj)
            centre_voxel = (np.array(DEFAULT_SIZE) - 1) / 2
            centre = lab.affine[:3, :3] @ centre_voxel + lab.affine[:3, 3]
            shift = np.linalg.norm(centre - centres[i])
            assert shift < (1.0 if case.endswith(f"{i:03d}") else 9.0)
            ref = resample_to_grid(ins_data, ins.affine, target.shape, lab.affine, order=0)
            expect = np.zeros_like(target)
            if i > 0:
                expect[ref == ids[i - 1]] = 1
            expect[ref == ids[i]] = 2
            if i < 4:
                expect[ref == ids[i + 1]] = 3
            assert np.mean(expect == target) > 0.999
            assert (target == 2).sum() > 1000
            img0 = nib.load(folder / "imagesTr" / f"{case}_0008.nii.gz")
            assert np.allclose(img0.affine, lab.affine, atol=1e-4)


def test_convert_cutouts_cli_and_bad_pairs(spine5, tmp_path, capsys, monkeypatch):
    from nnunet_spine.cli.convert_cutouts import register_cutouts

    parser = argparse.ArgumentParser()
    register_cutouts(parser.add_subparsers())
    monkeypatch.setenv("nnUNet_raw", str(tmp_path / "raw"))
    args = parser.parse_args(
        ["cutouts", "-i", str(spine5["root"]), "--nnunet-dataset", "504", "--name", "C", "--shifts", "0", "-q"]
    )
    assert args.func(args) == 0
    assert len(list((tmp_path / "raw" / "Dataset504_C" / "labelsTr").iterdir())) == 5
    # an instance mask whose partner is a semantic mask (swapped files) is refused before writing
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "sub-02_T2w_seg-spine_msk.nii.gz").write_bytes(spine5["instance"].read_bytes())
    (bad / "sub-02_T2w_seg-vert_msk.nii.gz").write_bytes(spine5["semantic"].read_bytes())
    from nnunet_spine.dataset_converters.cutouts import convert

    with pytest.raises(InputError, match="instance mask"):
        convert(bad, nnunet_dataset=505, name="Bad", raw_root=tmp_path / "raw")
    assert not (tmp_path / "raw" / "Dataset505_Bad").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no semantic masks"):
        convert(empty, nnunet_dataset=506, name="E", raw_root=tmp_path / "raw")
