"""nnunet-spine: nnU-Net v2 plugin and dataset-conversion suite for spinal MRI.

Top-level packages: ``nnunet_spine`` (I/O, geometry, phantoms, nnU-Net integration, CLI),
``dataset_converters``, ``trainers``, ``postprocessing``.
"""

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version

try:
    __version__ = _version("nnunet-spine")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"
