# SPDX-License-Identifier: GPL-2.0-or-later
"""Running a tool in a child Python process that QGIS can lose.

A model file can crash its runtime (a segfault), loop forever or take all the memory; in QGIS's own process
that takes the user's unsaved work with it. ``core`` has no QGIS, so the algorithm can hand the job to a child
Python (:mod:`.parent`), which runs the same tool function (:mod:`.jobs`, by name), reads the inputs and writes
the outputs itself and sends back only progress, log lines and the small result (:mod:`.protocol`). The parent
watches it: a crash becomes a clear error, cancel stops it within 2 s (killing it if need be), a memory
watchdog and an optional time limit per model call stop it with a message. This package sits above the tools
because it dispatches to them.
"""
