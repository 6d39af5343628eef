# SPDX-License-Identifier: GPL-2.0-or-later
"""Models trained with arcgis.learn, run without ArcGIS.

An arcgis.learn model folder or ``.dlpk`` holds an ``.emd``, a ``.pth`` state_dict and an
``ArcGIS*.py`` raster function that needs arcpy.  We never run that Python (nor a
``ModelConfiguration.py``): the ``.emd``'s ``ModelName`` and ``ModelParameters.backbone``
pick a *family* (:mod:`.families`), whose network is rebuilt here from torchvision and our
own implementation of the few fastai-v1 modules arcgis.learn builds on, and the ``.pth`` is
loaded into it with ``torch.load(weights_only=True)`` and ``strict=True``.

Layers: :mod:`.families` (pure data, no torch) is read by the model definition loader;
the network modules (:mod:`.fastai_layers`, with the FeatureClassifier head, :mod:`.unet`,
:mod:`.torchvision_nets`, :mod:`.ssd`, :mod:`.retinanet`) and :mod:`.weights` import torch;
:mod:`.network` ties a family to its builder and its outputs (detectors: R-CNN's detections, SSD's and
RetinaNet's raw anchor outputs, which :mod:`core.detection.decode` decodes).  The backend that the
tools open lives in ``core/backends/arcgis_learn_backend.py``.
"""

from .families import Family, resolve_family

__all__ = ["Family", "resolve_family"]
