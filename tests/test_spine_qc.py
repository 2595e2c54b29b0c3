"""``nnspine qc spine``: the three sagittal panels show the subject's right, the midline and the left (checked on
the picture's pixels), in SPINEPS' colours; bad masks and grids are refused."""

from __future__ import annotations

import matplotlib.image as mpimg
import nibabel as nib
import numpy as np
import pytest

from nnunet_spine.core.io import InputError, OutputExistsError
from nnunet_spine.core.labels import CORPUS, SUP_ARTICULAR_LEFT, SUP_ARTICULAR_RIGHT
from nnunet_spine.postprocessing.qc import SPINEPS_COLOURS, plot_spine_semantic


def _mask(path, codes_affine: np.ndarray) -> np.ndarray:
    """RAS 1 mm grid, x = 0..39: body (49) at the midline x = 20, superior articular left (45) at x = 10 (the
    subject's left is -x in RAS), right (46) at x = 30; saved with ``codes_affine`` applied to the array."""
    data = np.zeros((40, 30, 50), np.uint8)
    data[17:24, 10:25, 5:45] = CORPUS
    data[8:13, 3:8, 10:40] = SUP_ARTICULAR_LEFT
    data[28:33, 3:8, 10:40] = SUP_ARTICULAR_RIGHT
    nib.save(nib.Nifti1Image(data, codes_affine), str(path))
    return data


def _thirds_with(png, value: int) -> list[int]:
    """Pixels of label ``value``'s colour in the left, middle and right third of the picture (legend excluded)."""
    rgb = mpimg.imread(str(png))[..., :3]
    rgb = rgb[: int(rgb.shape[0] * 0.8)]  # the legend sits below the panels
    colour = np.array(SPINEPS_COLOURS[value]) / 255.0
    hit = np.all(np.abs(rgb - colour) < 2.5 / 255, axis=-1)
    w = rgb.shape[1]
    return [int(hit[:, i * w // 3 : (i + 1) * w // 3].sum()) for i in range(3)]


@pytest.mark.parametrize("flip_x", [False, True])
def test_panels_are_right_mid_left(tmp_path, flip_x):
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    if flip_x:  # the same subject stored with x running towards the left (LAS): voxel index reversed
        affine = np.diag([-1.0, 1.0, 1.0, 1.0])
        affine[0, 3] = 39.0
    data = _mask(tmp_path / "seg.nii.gz", affine)
    if flip_x:
        nib.save(nib.Nifti1Image(data[::-1], affine), str(tmp_path / "seg.nii.gz"))
    out = plot_spine_semantic(tmp_path / "seg.nii.gz", tmp_path / "qc.png")
    right, left, body = (_thirds_with(out, v) for v in (SUP_ARTICULAR_RIGHT, SUP_ARTICULAR_LEFT, CORPUS))
    assert right[0] > 50 and right[1] == 0 and right[2] == 0  # subject's right: first panel only
    assert left[2] > 50 and left[0] == 0 and left[1] == 0  # subject's left: last panel only
    assert body[1] > 50 and body[0] == 0 and body[2] == 0  # midline: middle panel


def test_refusals(tmp_path):
    from nnunet_spine.cli import main

    _mask(tmp_path / "seg.nii.gz", np.eye(4))
    plot_spine_semantic(tmp_path / "seg.nii.gz", tmp_path / "qc.png")
    with pytest.raises(OutputExistsError):
        plot_spine_semantic(tmp_path / "seg.nii.gz", tmp_path / "qc.png")
    nib.save(nib.Nifti1Image(np.zeros((40, 30, 49), np.float32), np.eye(4)), str(tmp_path / "img.nii.gz"))
    with pytest.raises(InputError, match="grid"):
        plot_spine_semantic(tmp_path / "seg.nii.gz", tmp_path / "qc2.png", image=tmp_path / "img.nii.gz")
    inst = np.zeros((10, 10, 10), np.uint8)
    inst[2:5, 2:5, 2:5], inst[5:8, 2:5, 2:5] = 20, 120
    nib.save(nib.Nifti1Image(inst, np.eye(4)), str(tmp_path / "vert.nii.gz"))
    with pytest.raises(InputError, match="looks like an instance mask"):
        plot_spine_semantic(tmp_path / "vert.nii.gz", tmp_path / "qc3.png")
    assert main(["qc", "spine", "-i", str(tmp_path / "vert.nii.gz"), "-o", str(tmp_path / "qc3.png")]) == 2
    assert not (tmp_path / "qc2.png").exists() and not (tmp_path / "qc3.png").exists()
    assert main(["qc", "spine", "-i", str(tmp_path / "seg.nii.gz"), "-o", str(tmp_path / "qc4.png")]) == 0
    assert (tmp_path / "qc4.png").stat().st_size > 1000


def test_legend_names_spineps2_labels_as_the_mask_holds_them(tmp_path, monkeypatch):
    """A midline body with a core (50), a dens (51) and split endplates (52 above, 53 below): the legend lists the
    labels the drawn slices hold, named with TPTBox's names in the colours they are drawn in (body, endplate)."""
    from nnunet_spine.postprocessing.qc import spine as qc_spine

    data = np.zeros((40, 30, 50), np.uint8)
    data[17:24, 10:25, 8:42] = CORPUS
    data[19:22, 13:22, 12:38] = 50  # body core
    data[17:24, 10:25, 42:45] = 52  # superior endplate
    data[17:24, 10:25, 5:8] = 53  # inferior endplate
    data[18:23, 12:20, 45:49] = 51  # dens above
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(tmp_path / "seg.nii.gz"))
    seen: list[set[int]] = []
    real = qc_spine._add_legend
    monkeypatch.setattr(qc_spine, "_add_legend", lambda fig, shown: (seen.append(set(shown)), real(fig, shown)))
    out = plot_spine_semantic(tmp_path / "seg.nii.gz", tmp_path / "qc.png")
    assert seen == [{CORPUS, 50, 51, 52, 53}]
    entries = dict(qc_spine.legend_entries(seen[0]))
    assert entries == {
        "49 Vertebra Corpus border": SPINEPS_COLOURS[CORPUS],
        "50 Vertebra Corpus": SPINEPS_COLOURS[CORPUS],
        "51 Dens axis": SPINEPS_COLOURS[CORPUS],
        "52 Vertebral Body Endplate Superior": SPINEPS_COLOURS[62],
        "53 Vertebral Body Endplate Inferior": SPINEPS_COLOURS[62],
    }
    assert _thirds_with(out, 62)[1] > 50  # the endplates are drawn in the endplate colour, midline panel
    from TPTBox.core.vert_constants import Location  # the names are TPTBox's own

    assert [f"{v} {Location(v).name.replace('_', ' ')}" for v in (50, 51, 52, 53)] == list(entries)[1:]
