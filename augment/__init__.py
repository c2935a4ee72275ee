"""Augmentation: strategies, verification, dedup, decontamination, the Ray Data pipeline."""
