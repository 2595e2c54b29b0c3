"""Quality-control pictures (PNG), one function per picture, all with the same small look.

Shared look: white background, light grid, 10-pt text, the measured quantity in black/``tab:`` colours,
reference marks (level boundaries...) as thin grey dashed lines with their labels along the top edge.
Figures are built with matplotlib's object API (no pyplot, no global state, no display needed) and written
atomically through :func:`nnunet_spine.core.io.atomic_output`, so an existing picture is never replaced
unless ``overwrite=True``. matplotlib is imported only when a picture is drawn.

Pictures:

* :func:`plot_csa_profile`: cord cross-sectional area along the S-I axis with vertebral level boundaries.
* :func:`plot_csa_variability`: CSA per contrast for each subject, with the across-contrast spread.
* :func:`plot_paired_variability`: two methods' CSA SD across contrasts, paired by subject.
* :func:`plot_radial_profiles`: predicted value vs distance to the true cord edge (the ablation's halo).
* :func:`plot_learning_curve`: the ablation's figures per training budget.
* :func:`plot_lesions`: sagittal and axial views through the largest lesions, kept / removed outlined.
* :func:`plot_spine_semantic`: mid-sagittal and both parasagittal slices of a SPINEPS semantic mask, SPINEPS colours.
"""

from nnunet_spine.postprocessing.qc._style import COLOURS, DPI, FIGSIZE
from nnunet_spine.postprocessing.qc.cord import (
    plot_csa_profile,
    plot_csa_variability,
    plot_learning_curve,
    plot_paired_variability,
    plot_radial_profiles,
)
from nnunet_spine.postprocessing.qc.lesion import LESION_KEPT_COLOUR, LESION_REMOVED_COLOUR, plot_lesions
from nnunet_spine.postprocessing.qc.spine import SPINEPS_COLOURS, plot_spine_semantic, plot_vertebra_instances

__all__ = [
    "COLOURS",
    "DPI",
    "FIGSIZE",
    "LESION_KEPT_COLOUR",
    "LESION_REMOVED_COLOUR",
    "SPINEPS_COLOURS",
    "plot_csa_profile",
    "plot_csa_variability",
    "plot_learning_curve",
    "plot_lesions",
    "plot_paired_variability",
    "plot_radial_profiles",
    "plot_spine_semantic",
    "plot_vertebra_instances",
]
