"""`make demo`: the whole pipeline on a local control plane (not shipped)."""
