"""Evaluation of models on golden sets: the set format, the scorers and the code sandbox.

Ops-side (vibesdk-server): math answers are checked with math-verify, which the ``eval`` extra
installs (``pip install 'vibesdk-server[eval]'``); code answers run in a sandboxed subprocess.
docs/concepts/evaluation.md describes the format, the scoring rules and the sandbox's limits.
"""

from __future__ import annotations

from vibesdk_server._eval.golden import SHIPPED_SET, GoldenSetError, Item, load_set
from vibesdk_server._eval.sandbox import Limits, RunResult, Sandbox
from vibesdk_server._eval.scoring import ItemScore, Scorer

__all__ = [
    "SHIPPED_SET",
    "GoldenSetError",
    "Item",
    "ItemScore",
    "Limits",
    "RunResult",
    "Sandbox",
    "Scorer",
    "load_set",
]
