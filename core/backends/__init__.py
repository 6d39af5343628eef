# SPDX-License-Identifier: GPL-2.0-or-later
"""Inference backends behind one small interface (:class:`~.base.Backend`).

``open_backend`` picks ONNX Runtime or torch from the model definition; each
implementation imports its framework inside its constructor, so importing this
package costs nothing and a missing framework becomes a clear error at run time.
"""

from .base import Backend, DeviceRequest, TensorInfo, open_backend

__all__ = ["Backend", "DeviceRequest", "TensorInfo", "open_backend"]
