"""Flags: the document model, the bucketing function and evaluation (all pure)."""
