"""Soft (partial-volume) cord targets through stock nnU-Net v2.

nnU-Net only knows integer label maps: its preprocessing casts labels to int8/int16, so a soft mask given
as a label would silently be binarized. Soft targets therefore travel *beside* the integer labels:

1. **Raw data** (written by the dataset converter): ``$nnUNet_raw/DatasetXXX_NAME/labelsTr_soft/<case><ending>``
   (folder name :data:`nnunet_spine.core.dataset_json.LABELS_TR_SOFT`), float masks in [0, 1] on the grid of
   ``labelsTr/<case><ending>`` (which holds the mask binarized at 0.5).
2. **Preprocessing** (:mod:`.preprocess`, CLI ``nnspine preprocess-soft``, run after
   ``nnUNetv2_plan_and_preprocess``): every soft mask is transposed, cropped and resampled (linearly) exactly as
   nnU-Net did its case, and stored (:mod:`.layout`) as
   ``$nnUNet_preprocessed/DatasetXXX_NAME/<data_identifier>/soft_targets/<case>.b2nd`` with a
   ``soft_targets.json`` manifest.
3. **Data loading** (:mod:`.loader`): nnU-Net's own data loader, hooked so that the patch of the soft target is
   cut with the same bounding box as image and label and passed through batchgeneratorsv2's transforms as
   ``regression_target`` (spatial transforms apply to it exactly as to the image; intensity transforms leave it
   alone). :mod:`.deep_supervision` builds its deep-supervision pyramid by area averaging. Batches carry
   ``soft_target`` (list of float tensors, one per scale) beside nnU-Net's ``target``.
4. **Losses and per-epoch metrics** live with the trainers (:mod:`nnunet_spine.trainers.soft_losses`).

Submodules are imported explicitly
(``from nnunet_spine.integration.soft_targets.preprocess import preprocess_soft``); this package module imports
nothing, so the CLI starts without loading torch.
"""
