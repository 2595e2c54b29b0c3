"""Where stock nnU-Net finds this package's trainers: the ``nnUNet_extTrainer`` folder and its one shim module.

See ``docs/development/nnunet-hooks.md`` for why the shim only binds names (nnU-Net drops the modules it imports
from that folder, so the classes must live in the installed package).
"""

from __future__ import annotations

from pathlib import Path

#: The module in :func:`discovery_folder` that binds every registered trainer's name
#: (``nnunet_spine.trainers.registry``).
DISCOVERY_MODULE = "nnspine_trainers"


def discovery_folder() -> Path:
    """The folder to give nnU-Net as ``nnUNet_extTrainer`` (inside the installed package)."""
    return (Path(__file__).resolve().parent / "discovery").resolve()


def trainer_environment() -> dict[str, str]:
    """The environment entries that let ``nnUNetv2_train`` / ``nnUNetv2_predict`` find our trainers."""
    folder = discovery_folder()
    if not (folder / f"{DISCOVERY_MODULE}.py").is_file():
        raise RuntimeError(f"{folder}: discovery module {DISCOVERY_MODULE}.py missing from the installation")
    return {"nnUNet_extTrainer": str(folder)}
