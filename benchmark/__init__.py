"""ood-bench: a reproducible harness comparing post-hoc OOD detectors across libraries."""

__version__ = "0.1.0"
