"""Score one model answer against one golden item.

Math (:mod:`.math_answer`, :mod:`.math_verdict`): the final answer is compared with the
reference by math-verify; ``score = correct * completeness``.
Code (:mod:`.code_answer`, :mod:`.sandbox`): the program runs with the item's tests in the
sandbox; ``score`` is 1.0 when they pass, else 0.0 (pass@1), with conciseness beside it.
docs/concepts/evaluation.md states every rule.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any

from vibesdk_server._eval.code_answer import conciseness, extract_code
from vibesdk_server._eval.golden import Item
from vibesdk_server._eval.math_answer import completeness, extract_answer
from vibesdk_server._eval.math_verdict import MathVerifier
from vibesdk_server._eval.sandbox import DEFAULT_UID_BASE, Limits, Sandbox

__all__ = ["ItemScore", "Scorer"]


@dataclass(frozen=True)
class ItemScore:
    """The score of one answer. Fields that do not apply to the item's kind are None.

    ``details`` (JSON-ready) holds what the score rests on: for math ``extracted``, ``how``
    (``boxed``, ``stated``, ``last_number``), ``verify`` (``ok``, ``timeout``, ``killed``,
    ``unparsable``) and the completeness facts; for code the sandbox's ``reason`` (None when
    passed: ``syntax``, ``assertion``, ``timeout``, ``memory``, ...), its message, output
    tails and setup, plus line counts and naming violations.
    """

    item_id: str
    kind: str
    score: float
    correct: bool | None
    completeness: float | None
    passed: bool | None
    conciseness: float | None
    details: dict[str, Any]


class Scorer:
    """Scores answers; owns the math-verify workers and the sandbox. Thread-safe.

    ``timeout_s`` bounds each item: one math-verify comparison, or one sandbox run (wall
    clock; its CPU limit is the same number of seconds, rounded up). ``workers`` (default: the
    CPU count, at most 4) is how many items of each kind are scored at once. ``limits``
    replaces the sandbox's other limits (its ``timeout_s`` is set from ``timeout_s``);
    ``verify_timeout_s`` math-verify's own per-step timeout (default a third of ``timeout_s``).
    ``uid_base``: the first uid the sandbox tries for a run (as root); each run takes one no
    other run on the machine holds.
    """

    def __init__(
        self,
        *,
        timeout_s: float = 10.0,
        workers: int | None = None,
        limits: Limits | None = None,
        verify_timeout_s: int | None = None,
        uid_base: int = DEFAULT_UID_BASE,
    ) -> None:
        count = workers if workers is not None else min(4, os.cpu_count() or 1)
        if count < 1:
            raise ValueError(f"workers must be at least 1, got {count!r}")
        self._math = MathVerifier(
            workers=count, timeout_s=timeout_s, verify_timeout_s=verify_timeout_s
        )
        self._sandbox = Sandbox(
            replace(limits or Limits(), timeout_s=timeout_s), slots=count, uid_base=uid_base
        )

    def score(self, item: Item, answer: str, finish_reason: str | None) -> ItemScore:
        """Score ``answer`` (the model's whole output) to ``item``; blocks until done."""
        if item.kind == "math":
            return self._score_math(item, answer, finish_reason)
        return self._score_code(item, answer)

    def close(self) -> None:
        """Stop the worker processes."""
        self._math.close()
        self._sandbox.close()

    def __enter__(self) -> Scorer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _score_math(self, item: Item, answer: str, finish_reason: str | None) -> ItemScore:
        extracted = extract_answer(answer)
        facts = completeness(answer, extracted, finish_reason)
        details: dict[str, Any] = {
            "extracted": extracted.answer,
            "how": extracted.how,
            "finish_reason": finish_reason,
            "finished": facts.finished,
            "reasoned": facts.reasoned,
            "explicit": facts.explicit,
            "no_loop": facts.no_loop,
        }
        correct = False
        if extracted.answer is None:
            details["verify"] = "no_answer"
        else:
            verdict = self._math.equivalent(item.answer or "", extracted.answer)
            correct = verdict.equivalent
            details["verify"] = verdict.status
        value = facts.value
        return ItemScore(
            item.id, "math", float(correct) * value, correct, value, None, None, details
        )

    def _score_code(self, item: Item, answer: str) -> ItemScore:
        code = extract_code(answer)
        if code is None:
            details: dict[str, Any] = {"reason": "no_code", "message": "no fenced code block"}
            return ItemScore(item.id, "code", 0.0, None, None, False, None, details)
        result = self._sandbox.run(code, item.tests or "")
        details = result.details()
        measured = conciseness(code, item.reference, item.entry_point)
        if measured is not None:
            details["answer_lines"] = measured.answer_lines
            details["reference_lines"] = measured.reference_lines
            details["naming_violations"] = list(measured.violations)
        score = 1.0 if result.passed else 0.0
        value = measured.value if measured is not None else None
        return ItemScore(item.id, "code", score, None, None, result.passed, value, details)
