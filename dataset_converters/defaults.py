"""Defaults of the converters' options: the one definition that the converters' signatures and the ``nnspine
convert`` commands both read (a light module: building the CLI's parser imports no converter).
``tests/test_converter_protocol.py`` checks every CLI default against the converter's signature.
"""

from nnunet_spine.core import bids

#: ``convert softgt``: the contrast whose S-I axis and slices define the averaging space (``--reference``).
SOFTGT_REFERENCE = "T2w"
#: ``convert softgt``: in-plane spacing (mm) of the averaging space (``--reference-resolution``).
SOFTGT_RESOLUTION_MM = 0.4
#: ``convert lesion``: suffix of the binary lesion masks (``--label-suffix``; BIDS derivative naming).
LESION_LABEL_SUFFIX = bids.LESION_SEG
#: ``convert lesion --regions``: suffix of the binary cord masks (``--cord-suffix``; spine-generic naming).
LESION_CORD_SUFFIX = bids.CORD_SEG
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
