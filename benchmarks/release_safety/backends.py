"""The end-to-end run's model backends: stable and a canary whose fault is switched at run time.

One asyncio process, run by run_e2e.py as a child (so that it works on the other core), with
two loopback listeners speaking OpenAI-compatible HTTP/1.1 (the soak's hand-parsed server,
``benchmarks/soak/fakes.py``, which keeps up with hundreds of calls in flight on one core):

* **stable** answers every ``POST .../chat/completions`` after the model's time (uniform
  between half and 1.5 times ``--latency-ms``) with a short prose answer;
* **canary** does the same with a different answer (and ``reasoning_content``) until the
  parent switches its fault by writing ``FAULT\\n`` to this process's stdin (one of
  :data:`FAULTS`); it answers ``FAULT\\n`` on stdout once the fault is on, so the parent knows
  the moment of onset.

Both answers pass every output check of ``vibesdk.check_answer``. ``GET /stats`` on either
listener answers the counts so far. The first stdout line is a JSON object with both ports;
the process exits when its stdin closes.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "soak"))

import fakes as soak  # benchmarks/soak/fakes.py

#: The canary's faults. ``healthy``: none (the A/A run); ``errors``: 20% of attempts fail
#: (HTTP 503/500, a dropped connection, a malformed or truncated body, in turn); ``latency``:
#: every answer takes 3x as long; ``empty``: 30% of answers are empty; ``loop``: 20% of answers
#: end in a repetition loop.
FAULTS = ("healthy", "errors", "latency", "empty", "loop")
ERROR_SHARE = 0.20
LATENCY_FACTOR = 3.0
EMPTY_SHARE = 0.30
LOOP_SHARE = 0.20

STABLE_TEXT = (
    "The sum of the first n odd numbers is n squared: 1 + 3 + ... + (2n - 1) = n^2, "
    "because each odd number adds one more layer to a square."
)
CANARY_TEXT = (
    "It is n squared. Each odd number 2k - 1 adds an L-shaped layer of cells around a "
    "(k - 1)-by-(k - 1) square, which makes it a k-by-k square."
)
CANARY_REASONING = "The k-th odd number is 2k - 1; summing k from 1 to n gives n(n + 1) - n."
LOOP_TEXT = "It is n squared. " + "Let me check that again. " * 40

STABLE_OK = soak._response("200 OK", soak._completion("stable-model", STABLE_TEXT, None))
CANARY_OK = soak._response(
    "200 OK", soak._completion("vibethinker-1.5b", CANARY_TEXT, CANARY_REASONING)
)
CANARY_EMPTY = soak._response("200 OK", soak._completion("vibethinker-1.5b", "", None))
CANARY_LOOP = soak._response(
    "200 OK", soak._completion("vibethinker-1.5b", LOOP_TEXT, CANARY_REASONING)
)


class Backend(soak.Backend):
    """One listener; the canary's answers follow :attr:`fault`."""

    def __init__(self, name: str, *, latency_s: float, seed: int) -> None:
        super().__init__(name, latency_s=latency_s, failure_rate=0.0, seed=seed)
        self.fault = "healthy"
        self.errors = itertools.cycle(soak.FAULTS)

    def answer(self, transport: asyncio.Transport, path: str) -> None:
        if path == "/stats":
            transport.write(soak._response("200 OK", json.dumps(soak.stats()).encode()))
            return
        if not path.endswith("/chat/completions"):
            transport.write(soak._response("404 Not Found", b'{"error": "not found"}'))
            return
        loop = asyncio.get_running_loop()
        self.counts["requests"] += 1
        delay = self.latency_s * (0.5 + self.rng.random())
        if self.name == "stable":
            loop.call_later(delay, soak._write, transport, STABLE_OK)
            return
        self.counts[f"requests_{self.fault}"] += 1
        draw = self.rng.random()
        body = CANARY_OK
        if self.fault == "errors" and draw < ERROR_SHARE:
            kind = next(self.errors)
            self.counts[kind] += 1
            if kind in ("disconnect", "truncated"):
                loop.call_later(delay, soak._write_and_close, transport, soak.FAULT_BYTES[kind])
            else:
                loop.call_later(delay, soak._write, transport, soak.FAULT_BYTES[kind])
            return
        if self.fault == "latency":
            delay *= LATENCY_FACTOR
        elif self.fault == "empty" and draw < EMPTY_SHARE:
            body = CANARY_EMPTY
        elif self.fault == "loop" and draw < LOOP_SHARE:
            body = CANARY_LOOP
        self.counts["degraded" if body is not CANARY_OK else "ok"] += 1
        loop.call_later(delay, soak._write, transport, body)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--latency-ms", type=float, default=1000.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    stable, canary = (
        Backend(name, latency_s=args.latency_ms / 1000, seed=args.seed + i)
        for i, name in enumerate(("stable", "canary"))
    )
    reader = await soak.listen([stable, canary])
    while line := await reader.readline():
        fault = line.decode().strip()
        if fault not in FAULTS:
            print(f"unknown fault {fault!r}; use one of {', '.join(FAULTS)}", file=sys.stderr)
            continue
        canary.fault = fault
        print(fault, flush=True)


if __name__ == "__main__":
    asyncio.run(main())
