# SPDX-License-Identifier: GPL-2.0-or-later
"""The plugin's own inference libraries: find QGIS's Python, install with pip into a private folder, report.

A low floor (below the backends): the backends' "not installed" messages name the installer, and the Dask
local workers use the interpreter locator. Nothing here imports ``qgis`` or the inference libraries; pip runs in
a child process of the interpreter QGIS embeds.
"""
