"""Statistics and decisions of the guarded canary: pure functions, no I/O.

``stats`` holds the math (one-sided always-valid confidence sequences, the sample ratio
mismatch test); ``decide`` turns guardrails and per-arm aggregates into one decision for a
release step: hold, advance, pause or roll back, with its evidence.
"""

from __future__ import annotations

from vibesdk_server._guard.decide import (
    ArmAggregates,
    Count,
    Decision,
    Guardrail,
    GuardrailEvidence,
    Reason,
    decide,
)
from vibesdk_server._guard.stats import Moments, SrmResult

__all__ = [
    "ArmAggregates",
    "Count",
    "Decision",
    "Guardrail",
    "GuardrailEvidence",
    "Moments",
    "Reason",
    "SrmResult",
    "decide",
]
