"""A math-verify worker process: one JSON job per line on stdin, one JSON verdict per line out.

Run by :class:`vibesdk_server._eval.math_verdict.MathVerifier` as
``python -m vibesdk_server._eval._math_worker``. math-verify bounds its own parsing and
comparison with ``signal.alarm``, which only works in a process's main thread -- hence a process
of its own, where this loop is the main thread. A timeout it reports is passed on as
``"timeout": true``; one it cannot interrupt (a long computation inside C code) is the parent's
to handle: it kills this process.

Job: ``{"gold": str, "answer": str, "timeout": int}``, both expressions as the inside of a
``\\boxed{}``. Verdict: ``{"equivalent": bool, "timeout": bool, "parsed": bool}``
(``parsed``: the answer gave math-verify something to compare).
"""

from __future__ import annotations

import importlib
import json
import logging
import sys
from typing import Any


class _Timeouts(logging.Handler):
    """Notices math-verify's "Timeout during ..." warnings (it returns False, not an error)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.seen = False

    def emit(self, record: logging.LogRecord) -> None:
        if "timeout" in record.getMessage().lower():
            self.seen = True


def _main() -> None:
    # Imported by name: math-verify (the eval extra) ships no type information.
    math_verify = importlib.import_module("math_verify")
    parse, verify = math_verify.parse, math_verify.verify

    timeouts = _Timeouts()
    logger = logging.getLogger("math_verify")
    logger.addHandler(timeouts)
    logger.propagate = False
    sys.stdout.write('{"ready": true}\n')
    sys.stdout.flush()
    for line in sys.stdin:
        job: dict[str, Any] = json.loads(line)
        seconds = int(job["timeout"])
        timeouts.seen = False
        gold = parse("\\boxed{" + job["gold"] + "}", parsing_timeout=seconds)
        answer = parse("\\boxed{" + job["answer"] + "}", parsing_timeout=seconds)
        equivalent = bool(gold and answer and verify(gold, answer, timeout_seconds=seconds))
        verdict = {"equivalent": equivalent, "timeout": timeouts.seen, "parsed": bool(answer)}
        sys.stdout.write(json.dumps(verdict) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    _main()
