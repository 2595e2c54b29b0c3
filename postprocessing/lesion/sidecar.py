"""JSON sidecars of lesion-instance masks: how ``nnspine lesions`` marks its output as scorable.

``nnspine lesions`` (and ``nnspine segment lesion``, which writes through it) numbers the kept lesions 1..N, so its
mask holds several values although every non-zero voxel is lesion. Beside each such mask it writes a BIDS-style
sidecar (same stem, ``.json``: ``sub-01_T2w.nii.gz`` → ``sub-01_T2w.json``) with ``"LesionInstances": true``.
Every reader of lesion masks (:func:`nnunet_spine.postprocessing.lesion.metrics.load_lesion_mask`) then takes such a
mask as binary foreground (all non-zero = lesion) without ``--label``; a multi-label mask without that sidecar (a region
prediction, cord 1 + lesion 2) is still refused without ``--label``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from nnunet_spine.core.io import InputError

#: Sidecar key whose value ``true`` says the mask holds lesion instances (every non-zero voxel is lesion).
INSTANCES_KEY = "LesionInstances"
#: ``GeneratedBy`` name written into the sidecar.
GENERATOR_NAME = "nnunet-spine lesions"


def sidecar_path(mask: str | os.PathLike) -> Path:
    """The sidecar of a mask: the same folder and stem, ending ``.json`` (``a/x.nii.gz`` → ``a/x.json``)."""
    from nnunet_spine.core.io import split_suffix

    p = Path(mask)
    return p.with_name(split_suffix(p)[0] + ".json")


def instances_sidecar(
    n_lesions: int,
    *,
    connectivity: int,
    min_volume_mm3: float,
    cord_dilation_mm: float | None,
) -> dict:
    """The sidecar content of a lesion-instance mask with ``n_lesions`` kept lesions (numbered 1..N, superior
    first), the connectivity that defined them, the minimum volume (mm³) and the cord dilation (mm; None when no
    cord mask was used) that removed others."""
    from nnunet_spine import __version__

    return {
        "Description": "Lesion instances: kept lesions numbered 1..N from superior to inferior, 0 elsewhere; "
        "every non-zero voxel is lesion.",
        INSTANCES_KEY: True,
        "LesionCount": int(n_lesions),
        "Connectivity": int(connectivity),
        "MinVolumeMM3": float(min_volume_mm3),
        "CordDilationMM": None if cord_dilation_mm is None else float(cord_dilation_mm),
        "GeneratedBy": [{"Name": GENERATOR_NAME, "Version": __version__}],
    }


def sidecar_text(content: dict) -> str:
    """The sidecar as written: indented JSON with a final newline."""
    return json.dumps(content, indent=2) + "\n"


def holds_lesion_instances(mask: str | os.PathLike | None) -> bool:
    """Whether the sidecar of ``mask`` (:func:`sidecar_path`) says ``"LesionInstances": true``. False when the mask
    has no path or no sidecar, or the sidecar does not carry the key. A sidecar that is not a JSON object, or whose
    key is not true/false, raises :class:`InputError` naming the sidecar."""
    if mask is None:
        return False
    side = sidecar_path(mask)
    if not side.is_file():
        return False
    try:
        content = json.loads(side.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{side}: cannot read the sidecar of {Path(mask).name} ({reason[:200]})") from None
    if not isinstance(content, dict):
        raise InputError(f"{side}: the sidecar of {Path(mask).name} is not a JSON object")
    value = content.get(INSTANCES_KEY, False)
    if not isinstance(value, bool):
        raise InputError(f"{side}: {INSTANCES_KEY} must be true or false, got {value!r}")
    return value
