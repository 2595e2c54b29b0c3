"""What ``nnspine convert lesion`` (:func:`nnunet_spine.dataset_converters.lesion.convert`) reports: per case
(channels resampled, lesion and cord masks, lesion counts and volumes in mm³ before and after resampling onto the
reference grid), for the whole run (lines for the CLI, a dict for ``--json``), and the rows of
``lesion_resampling.csv``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from nnunet_spine.dataset_converters.defaults import LESION_VOLUME_TOLERANCE
from nnunet_spine.dataset_converters.protocol import ConversionReport


@dataclass
class CaseReport:
    """One converted case.

    ``resampled``: channel specs resampled (linear) to the first channel's grid; ``lesion_mask`` and
    ``cord_mask``: source files relative to the dataset root ("" = none: empty lesion mask); ``*_resampled``:
    the mask was drawn on another channel's grid and resampled (nearest); volumes in mm³ on the reference grid.
    """

    case: str
    unit: str
    channels: list[str]
    resampled: list[str]
    lesion_mask: str
    lesion_resampled: bool
    lesion_voxels: int
    lesion_volume_mm3: float
    cord_mask: str = ""
    cord_resampled: bool = False
    lesion_voxels_outside_cord: int = 0
    #: Lesions (26-connected components) and volume (mm³) of the source mask, before resampling.
    source_lesions: int = 0
    source_volume_mm3: float = 0.0
    #: Lesions of the written mask.
    lesions: int = 0

    @property
    def lost_lesions(self) -> int:
        """Lesions that resampling made vanish or merge (source − written, ≥ 0)."""
        return max(0, self.source_lesions - self.lesions)

    @property
    def resampling_changed(self) -> bool:
        """Whether resampling the lesion mask changed its lesion count or its volume by more than
        :data:`~nnunet_spine.dataset_converters.defaults.LESION_VOLUME_TOLERANCE`."""
        if not self.lesion_resampled:
            return False
        tol = LESION_VOLUME_TOLERANCE * max(self.source_volume_mm3, 1e-9)
        return self.lesions != self.source_lesions or abs(self.lesion_volume_mm3 - self.source_volume_mm3) > tol


@dataclass
class LesionConversionReport(ConversionReport):
    """What :func:`convert` did: cases written, subjects skipped (→ reason), and the protocol's dataset folder,
    split and warnings."""

    bids_root: str
    channels: list[str]
    regions: bool
    cases: list[CaseReport]
    skipped: dict[str, str]

    @property
    def resampled(self) -> dict[str, int]:
        """Channel spec → number of cases in which it was resampled to the reference grid."""
        return {c: sum(c in r.resampled for r in self.cases) for c in self.channels[1:]}

    def lines(self) -> list[str]:
        """Human-readable summary: one line per case, then what was resampled and where the dataset is."""
        out = []
        for r in self.cases:
            chans = ", ".join(f"{c} (resampled)" if c in r.resampled else c for c in r.channels)
            mask = (
                f"{Path(r.lesion_mask).name}{' (resampled, nearest)' if r.lesion_resampled else ''}"
                if r.lesion_mask
                else "none: empty mask (--allow-missing)"
            )
            line = (
                f"{r.case}: channels {chans}; lesion mask {mask}, {r.lesion_voxels} voxels "
                f"({r.lesion_volume_mm3:.1f} mm3)"
            )
            if self.regions:
                line += f"; cord {Path(r.cord_mask).name}{' (resampled, nearest)' if r.cord_resampled else ''}"
                if r.lesion_voxels_outside_cord:
                    line += f", {r.lesion_voxels_outside_cord} lesion voxels outside the cord (kept as lesion)"
            if r.resampling_changed:
                line += (
                    f"; RESAMPLING CHANGED THE MASK: {r.source_lesions} -> {r.lesions} lesions, "
                    f"{r.source_volume_mm3:.1f} -> {r.lesion_volume_mm3:.1f} mm3 (see {RESAMPLING_CSV})"
                )
            out.append(line)
        for unit, why in self.skipped.items():
            out.append(f"{unit}: skipped ({why})")
        ref = self.channels[0]
        for c, n in self.resampled.items():
            out.append(
                f"{c}: resampled to the {ref} grid (linear, world coordinates) in {n} of {len(self.cases)} cases"
                if n
                else f"{c}: on the {ref} grid in every case (not resampled)"
            )
        out.append(f"channels {', '.join(self.channels)}{', region labels' if self.regions else ''}")
        return out + self.dataset_lines()

    def to_dict(self) -> dict:
        return asdict(self)


#: Columns of ``lesion_resampling.csv`` (one row per case whose lesion mask was resampled).
RESAMPLING_COLUMNS = [
    "case",
    "lesion_mask",
    "lesions_before",
    "lesions_after",
    "volume_before_mm3",
    "volume_after_mm3",
    "changed",
]
#: File written into the dataset folder when a lesion mask was resampled.
RESAMPLING_CSV = "lesion_resampling.csv"


def resampling_rows(cases: Sequence[CaseReport]) -> list[dict]:
    """:data:`RESAMPLING_COLUMNS` rows of the cases whose lesion mask was resampled onto the reference grid."""
    return [
        {
            "case": c.case,
            "lesion_mask": c.lesion_mask,
            "lesions_before": c.source_lesions,
            "lesions_after": c.lesions,
            "volume_before_mm3": c.source_volume_mm3,
            "volume_after_mm3": c.lesion_volume_mm3,
            "changed": c.resampling_changed,
        }
        for c in cases
        if c.lesion_resampled
    ]
