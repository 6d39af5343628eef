"""Turn raw model outputs into what the tools write (class maps, probabilities)."""
