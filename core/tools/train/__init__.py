# SPDX-License-Identifier: GPL-2.0-or-later
"""Train Deep Learning Model: train an arcgis.learn family on a training-data folder, write an arcgis.learn folder.

Reading order: :mod:`.layouts` (the training-data folder: Classified_Tiles, Labeled_Tiles), :mod:`.chips` (chips
streamed from it, normalised and augmented), :mod:`.networks` (the very networks the inference side rebuilds, so the
saved ``.pth`` loads strictly there and in arcgis.learn), :mod:`.schedule` and :mod:`.lr_finder` (learning rates),
:mod:`.metrics`, :mod:`.loop` (epochs, checkpoints, resume, cancel), :mod:`.model_folder` (the ``.emd``, ``.pth``,
``model_metrics.html``, pictures, ``.dlpk``) and :mod:`.pipeline` (one run).  torch is imported inside functions.
"""
