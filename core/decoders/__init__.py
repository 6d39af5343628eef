# SPDX-License-Identifier: GPL-2.0-or-later
"""Turn raw model outputs into what the tools write (class maps, probabilities)."""
