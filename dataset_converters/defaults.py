"""Defaults of the converters' options: the one definition that the converters' signatures and the ``nnspine
convert`` commands both read (a light module: building the CLI's parser imports no converter).
``tests/test_converter_protocol.py`` checks every CLI default against the converter's signature.
"""

#: ``convert softgt``: the contrast whose S-I axis and slices define the averaging space when a subject has several
#: labelled contrasts and ``--reference`` is not given (with one labelled contrast, that one is the reference).
SOFTGT_REFERENCE = "T2w"
#: ``convert softgt``: in-plane spacing (mm) of the averaging space (``--reference-resolution``).
SOFTGT_RESOLUTION_MM = 0.4
#: ``convert lesion``: suffix of the binary lesion masks (``--label-suffix``); None: the first found in the order
#: of preference of :data:`nnunet_spine.core.manual_masks.MASK_SUFFIXES` ``["lesion"]`` (``_label-lesion_seg``, ...).
LESION_LABEL_SUFFIX: str | None = None
#: ``convert lesion --regions``: suffix of the binary cord masks (``--cord-suffix``); None: the order of preference of
#: :data:`nnunet_spine.core.manual_masks.MASK_SUFFIXES` ``["cord"]`` (``_label-SC_seg``, ``_seg-manual``...).
LESION_CORD_SUFFIX: str | None = None
#: ``convert lesion``: a resampled lesion mask whose volume changes by more than this fraction (or whose lesion
#: count changes) is reported in ``lesion_resampling.csv`` as changed.
LESION_VOLUME_TOLERANCE = 0.10
#: ``convert spineps``: image specs of the input channels, in order (``--channels``).
SPINEPS_CHANNELS = ("T2w",)
#: ``convert cutouts``: shifted copies per vertebra (``--shifts``), their largest shift (mm) and the seed.
CUTOUT_SHIFTS = 2
CUTOUT_MAX_SHIFT_MM = 10.0
CUTOUT_SEED = 0
#: Worker processes of every converter (``--jobs``).
JOBS = 1
