"""Widen a canary step by step, watch its guardrails, roll back the moment one breaks.

    export VIBESDK_SERVER_URL=http://127.0.0.1:8700 VIBESDK_ADMIN_TOKEN=...
    python examples/ops_rollout.py --traces app-spans.jsonl --steps 1,5,10,25,50 --hold 300

Each step runs ``vibe rollout FLAG N%``, then watches the app's traces for ``--hold``
seconds: the canary's p95 latency (``--max-p95``, VibeThinker's guardrail is 3 s), its
fallback rate (``--max-fallback-rate``) and its output-check failure rate
(``--max-check-failure-rate``), computed from the ``chat`` spans that vibesdk writes
(``vibesdk.configure_telemetry(exporter="file", path=...)`` in the app; with a
Collector, point this at its file exporter). The first broken guardrail triggers
``vibe rollback FLAG --reason "..."``: canary to 0% and the last version marked good
restored. Exit code 0: every step held; 1: rolled back; 2: bad arguments.

Everything goes through the ``vibe`` CLI, so the audit log shows exactly what a person
would have typed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path


@dataclass(frozen=True)
class Guardrails:
    max_p95_s: float = 3.0
    max_fallback_rate: float = 0.05
    max_check_failure_rate: float = 0.25
    min_calls: int = 5


@dataclass(frozen=True)
class Health:
    """The canary's calls seen in one watch window."""

    calls: int
    p95_s: float | None
    fallback_rate: float
    check_failure_rate: float

    def broken(self, g: Guardrails) -> str | None:
        """The first guardrail this window breaks, as a rollback reason; None if healthy."""
        if self.calls < g.min_calls:
            return None
        if self.p95_s is not None and self.p95_s > g.max_p95_s:
            return f"canary p95 {self.p95_s:.2f} s over {g.max_p95_s:g} s"
        if self.fallback_rate > g.max_fallback_rate:
            return f"canary fallback rate {self.fallback_rate:.0%} over {g.max_fallback_rate:.0%}"
        if self.check_failure_rate > g.max_check_failure_rate:
            return (
                f"canary output-check failures {self.check_failure_rate:.0%} "
                f"over {g.max_check_failure_rate:.0%}"
            )
        return None


def _time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def canary_health(traces: Path, flag: str, since: float, variant: str = "canary") -> Health:
    """Read the ``chat`` spans of ``flag``'s ``variant`` cohort that ended after ``since``."""
    durations: list[float] = []
    fallbacks = failures = 0
    if traces.exists():
        with traces.open(encoding="utf-8") as f:
            for line in f:
                try:
                    span = json.loads(line)
                except ValueError:
                    continue  # a line still being written
                attrs = span.get("attributes", {})
                if not span.get("name", "").startswith("chat "):
                    continue
                if attrs.get("feature_flag.key") != flag:
                    continue
                if attrs.get("feature_flag.result.variant") != variant:
                    continue
                end = _time(span["end_time"])
                if end < since:
                    continue
                durations.append(end - _time(span["start_time"]))
                fallbacks += bool(attrs.get("vibesdk.fallback"))
                failures += attrs.get("vibesdk.quality.passed") is False
    n = len(durations)
    p95 = sorted(durations)[max(0, -(-95 * n // 100) - 1)] if n else None
    return Health(n, p95, fallbacks / n if n else 0.0, failures / n if n else 0.0)


def vibe(*args: str) -> str:
    """Run the ``vibe`` CLI (VIBESDK_SERVER_URL / VIBESDK_ADMIN_TOKEN from the environment)."""
    command = [
        sys.executable,
        "-c",
        "import sys; from vibesdk_server._vibe.main import main; sys.exit(main())",
    ]
    print("$ vibe " + " ".join(args), flush=True)
    done = subprocess.run([*command, *args], capture_output=True, text=True, check=False)  # noqa: S603
    print(done.stdout.rstrip(), flush=True)
    if done.returncode != 0:
        raise SystemExit(f"vibe {args[0]} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def run(
    flag: str,
    steps: Sequence[float],
    *,
    hold_s: float,
    watch: Callable[[float], Health],
    guardrails: Guardrails,
    check_every_s: float = 5.0,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
    cli: Callable[..., str] = vibe,
) -> int:
    """Roll ``flag`` out through ``steps`` (percent); 0 if all held, 1 after a rollback."""
    for pct in steps:
        cli("rollout", flag, f"{pct:g}%", "--reason", f"ops_rollout: step to {pct:g}%")
        started = clock()
        while True:
            health = watch(started)
            reason = health.broken(guardrails)
            print(
                f"  {pct:g}%: {health.calls} canary calls, p95 "
                f"{'-' if health.p95_s is None else f'{health.p95_s:.2f} s'}, fallbacks "
                f"{health.fallback_rate:.0%}, check failures {health.check_failure_rate:.0%}",
                flush=True,
            )
            if reason is not None:
                cli("rollback", flag, "--reason", f"ops_rollout at {pct:g}%: {reason}")
                return 1
            if clock() - started >= hold_s:
                break
            sleep(check_every_s)
        cli("mark-good", "--reason", f"ops_rollout: {pct:g}% held for {hold_s:g} s")
    print(f"{flag}: every step held; now at {steps[-1]:g}%")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flag", default="vibethinker")
    parser.add_argument(
        "--traces", type=Path, required=True, help="the app's span file (JSON lines)"
    )
    parser.add_argument("--steps", default="1,5,10,25,50", help="percentages, comma-separated")
    parser.add_argument("--hold", type=float, default=300, help="seconds to watch each step")
    parser.add_argument("--check-every", type=float, default=5)
    parser.add_argument("--max-p95", type=float, default=3.0)
    parser.add_argument("--max-fallback-rate", type=float, default=0.05)
    parser.add_argument("--max-check-failure-rate", type=float, default=0.25)
    parser.add_argument("--min-calls", type=int, default=5)
    args = parser.parse_args(argv)
    try:
        steps = [float(s) for s in args.steps.split(",") if s.strip()]
    except ValueError:
        parser.error("--steps takes percentages like 1,5,10")
    guardrails = Guardrails(
        args.max_p95, args.max_fallback_rate, args.max_check_failure_rate, args.min_calls
    )
    return run(
        args.flag,
        steps,
        hold_s=args.hold,
        watch=lambda since: canary_health(args.traces, args.flag, since),
        guardrails=guardrails,
        check_every_s=args.check_every,
    )


if __name__ == "__main__":
    sys.exit(main())
