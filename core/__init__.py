# SPDX-License-Identifier: GPL-2.0-or-later
"""The plain-Python inference engine of Deep Learning Tools.

Nothing in this package imports ``qgis`` or PyQt: a notebook, a test or a
batch script can drive it with numpy, GDAL, ONNX Runtime and torch alone.
torch and onnxruntime are imported lazily, inside the backends, so that
importing ``core`` never fails because one of them is missing.
"""
