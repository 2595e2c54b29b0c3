"""What ``nnspine convert softgt`` (:func:`nnunet_spine.dataset_converters.softgt.convert`) reports: per contrast
(alignment shift in world mm, boundary mean, volumes in mm³), per subject (reference, contrasts used, boundary
shift in mm) and for the whole run (skipped subjects, unlabelled images, masks picked), as lines for the CLI and
as a dict for ``--json``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from nnunet_spine.core.bids import CORD_SEG
from nnunet_spine.dataset_converters.protocol import ConversionReport


@dataclass
class ContrastReport:
    """One contrast of one subject.

    ``offset_mm``: applied in-plane alignment shift (world RAS mm, mean along S-I) relative to the reference;
    ``aligned_slices``: averaging-space slices (``spacing_mm[s]`` apart) the offset was measured on (0: none);
    ``boundary_mean``: mean soft value on the in-plane boundary voxels (inner and outer 4-neighbour layer) of
    the input binary mask, ≈0.5 for a well-placed soft mask; ``soft_volume_mm3``: Σ soft × voxel volume.
    """

    entities: str
    image: str
    output: str
    offset_mm: list[float]
    aligned_slices: int
    boundary_mean: float
    boundary_voxels: int
    soft_volume_mm3: float
    binary_volume_mm3: float
    case: str | None = None
    mask: str = ""  #: the input mask, relative to the dataset root
    mask_suffix: str = CORD_SEG  #: its suffix (what was picked: ``_label-SC_seg``, ``_seg-manual``...)


@dataclass
class SubjectReport:
    """Per subject: the reference, the contrasts used (with their reports) and warnings."""

    subject: str
    reference: str
    contrasts: list[ContrastReport]
    warnings: list[str] = field(default_factory=list)
    #: Volume-preserving outward shift of the consensus surface (mm), see :func:`soft_ground_truth`.
    boundary_offset_mm: float = 0.0
    #: True when masks of several contrasts were averaged; False for one contrast (its own partial volume).
    averaged_across_contrasts: bool = True

    @property
    def used(self) -> list[str]:
        return [c.entities for c in self.contrasts]


@dataclass
class SoftGTReport(ConversionReport):
    """What :func:`convert` did: per-subject reports, skipped subjects (→ reason), the soft-mask folder, and with
    an nnU-Net dataset the protocol's dataset folder, cases and split."""

    bids_root: str
    derivatives: str
    reference: str | None
    align: bool
    subjects: list[SubjectReport]
    skipped: dict[str, str]
    #: Images without a cord mask (never training cases), relative to the dataset root.
    unlabelled: list[str] = field(default_factory=list)
    #: ``--mask-suffix`` (None: the order of preference of :data:`core.manual_masks.MASK_SUFFIXES`).
    mask_suffix: str | None = None
    #: ``--group-by`` (None: folds grouped by subject label).
    group_by: str | None = None

    def mask_counts(self) -> dict[str, int]:
        """Masks used per suffix (``{"_seg-manual": 8}``): what the lookup picked."""
        counts: dict[str, int] = {}
        for s in self.subjects:
            for c in s.contrasts:
                counts[c.mask_suffix] = counts.get(c.mask_suffix, 0) + 1
        return counts

    def lines(self) -> list[str]:
        """Human-readable summary: one line per subject and contrast, then masks picked and unlabelled images."""
        out = []
        for s in self.subjects:
            used = (
                f"{len(s.contrasts)} contrasts used: {', '.join(s.used)}"
                if s.averaged_across_contrasts
                else f"1 contrast: {s.used[0]} (no averaging across contrasts)"
            )
            out.append(
                f"{s.subject}: reference {s.reference}, {used}; "
                f"volume-preserving boundary shift {s.boundary_offset_mm:+.3f} mm"
            )
            for c in s.contrasts:
                if c.entities == s.reference:
                    shift = "reference"
                elif not self.align:
                    shift = "not aligned (--no-align)"
                elif c.aligned_slices == 0:
                    shift = "not aligned (no overlap with the reference)"
                else:
                    shift = f"shift ({', '.join(f'{v:+.2f}' for v in c.offset_mm)}) mm from {c.aligned_slices} slices"
                out.append(
                    f"  {c.entities:<20s} boundary mean soft {c.boundary_mean:.3f} ({c.boundary_voxels} voxels), "
                    f"{shift}, volume {c.soft_volume_mm3:.0f} mm3 (binary {c.binary_volume_mm3:.0f})"
                )
        for sub, why in self.skipped.items():
            out.append(f"{sub}: skipped ({why})")
        picked = ", ".join(f"{n} x {suffix}" for suffix, n in self.mask_counts().items())
        how = f"--mask-suffix {self.mask_suffix}" if self.mask_suffix else "order of preference"
        out.append(f"cord masks used: {picked} ({how})")
        if self.unlabelled:
            out.append(f"{len(self.unlabelled)} image(s) without a cord mask, not converted:")
            out += [f"  {u}" for u in self.unlabelled]
        out.append(f"soft masks: {self.derivatives}")
        if self.nnunet_dataset:
            out += self.dataset_lines()
        return out

    def to_dict(self) -> dict:
        return asdict(self)
