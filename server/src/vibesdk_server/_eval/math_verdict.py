"""Mathematical equivalence with math-verify, in worker processes with a per-item deadline.

:class:`MathVerifier` keeps up to ``workers`` processes of :mod:`._math_worker`, started on
demand. :meth:`MathVerifier.equivalent` hands one comparison to an idle worker and waits at most
``timeout_s`` for its verdict; a worker that misses the deadline (stuck in C code that
math-verify's own ``signal.alarm`` cannot interrupt) is killed and a fresh one takes its place
on the next call. math-verify's own timeouts are set to a third of the deadline (at least one
second) for parsing and for comparing, so an expression that is merely slow is usually stopped
by math-verify first and reported as ``timeout``, with the worker kept.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

__all__ = ["MathVerdict", "MathVerifier"]

_START_TIMEOUT_S = 120.0  # importing sympy on a busy two-core machine can take a while


@dataclass(frozen=True)
class MathVerdict:
    """``status``: ``ok``, ``timeout`` (math-verify gave up), ``killed`` (the deadline passed
    and the worker was killed) or ``unparsable`` (the answer gave math-verify nothing)."""

    equivalent: bool
    status: str


class _Worker:
    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "vibesdk_server._eval._math_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self._buffer = b""
        if self.read_line(_START_TIMEOUT_S) is None:
            self.kill()
            raise RuntimeError(
                "the math-verify worker did not start: install the eval extra "
                "(pip install 'vibesdk-server[eval]')"
            )

    def read_line(self, timeout_s: float) -> dict[str, object] | None:
        """The next JSON line, or None when the deadline passes or the worker died."""
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        deadline = time.monotonic() + timeout_s
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    return None
                self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        value = json.loads(line)
        return value if isinstance(value, dict) else None

    def send(self, job: dict[str, object]) -> bool:
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(json.dumps(job).encode() + b"\n")
            self.process.stdin.flush()
        except OSError:
            return False
        return True

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()


class MathVerifier:
    """Compares answers with references in worker processes. Thread-safe; blocks per call."""

    def __init__(
        self, *, workers: int = 2, timeout_s: float = 10.0, verify_timeout_s: int | None = None
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers!r}")
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s!r}")
        self.timeout_s = timeout_s
        # math-verify's own per-step timeouts (whole seconds: signal.alarm).
        self.verify_timeout_s = verify_timeout_s or max(1, int(timeout_s / 3))
        self._idle: list[_Worker] = []
        self._capacity = threading.Semaphore(workers)
        self._lock = threading.Lock()
        self._closed = False

    def equivalent(self, gold: str, answer: str) -> MathVerdict:
        """Whether ``answer`` equals ``gold`` mathematically (both LaTeX or plain text)."""
        with self._capacity:
            worker = self._take()
            job = {"gold": gold, "answer": answer, "timeout": self.verify_timeout_s}
            verdict = worker.read_line(self.timeout_s) if worker.send(job) else None
            if verdict is None:
                worker.kill()  # a fresh one starts on the next call
                return MathVerdict(False, "killed")
            self._give(worker)
        if verdict.get("timeout"):
            return MathVerdict(bool(verdict.get("equivalent")), "timeout")
        if not verdict.get("parsed"):
            return MathVerdict(False, "unparsable")
        return MathVerdict(bool(verdict.get("equivalent")), "ok")

    def close(self) -> None:
        """Stop every idle worker; calls after this raise."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.kill()

    def _take(self) -> _Worker:
        with self._lock:
            if self._closed:
                raise RuntimeError("the math verifier is closed")
            if self._idle:
                return self._idle.pop()
        return _Worker()

    def _give(self, worker: _Worker) -> None:
        with self._lock:
            if not self._closed:
                self._idle.append(worker)
                return
        worker.kill()
