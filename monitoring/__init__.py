"""Drift, data-quality and targeting-quality monitoring (Evidently) and review lists."""
