"""Soak: 1,000 concurrent ``AsyncClient.chat()`` calls for minutes, the canary failing 10%.

Everything runs on loopback on this machine, in three processes:

* this one: the load -- one ``vibesdk.AsyncClient`` following the flag server
  (push stream + polling, disk cache), OpenTelemetry installed with
  ``vibesdk.configure_telemetry("otlp", ...)`` exporting to the fakes, and
  ``--concurrency`` asyncio tasks that each call ``client.chat()`` again as
  soon as their last call returned, every call for a new user id;
* fakes.py: the stable and the canary model backends and the OTLP sink, the
  canary failing ``--canary-failure-rate`` of its requests;
* the real flag server (``vibesdk_server.testing.FlagServerProcess``, SQLite),
  whose rollout of the flag is flipped between ``--rollout-percent`` and 10
  points less every ``--flip-every`` seconds.

Every ``--sample-every`` seconds this process's resident memory is read from
``/proc/self/statm``. Latencies go into a fixed-size log histogram (1% wide
buckets), so the measuring itself does not grow with the number of calls.

At the end it reports the calls done, the errors raised to callers (the
promise: 0), the fallbacks by reason, p50/p99 latency, the achieved call
rate, and the RSS slope after warm-up (least squares, MB/min, over the second
half of the run and over everything after ``--warmup`` seconds), and writes
JSON lines to ``--out``: a header (machine, date, commit, parameters), one
line per RSS sample, and the summary. Exit status 1 if any call raised.

Run from the repository root::

    .venv/bin/python benchmarks/soak/soak.py \\
        --out benchmarks/soak/results/DATE-MACHINE.jsonl
    .venv/bin/python benchmarks/soak/soak.py --duration 20   # the short mode
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from _common import now_utc, result_header  # noqa: E402
from vibesdk_server.testing import FlagServerProcess  # noqa: E402

import vibesdk  # noqa: E402
from vibesdk.testing import make_flag  # noqa: E402

FLAG = "vibethinker"
MESSAGES = [{"role": "user", "content": "What is the sum of the first n odd numbers?"}]
DISTRIBUTIONS = [
    "vibesdk",
    "vibesdk-server",
    "httpx",
    "httpcore",
    "tenacity",
    "pydantic",
    "opentelemetry-api",
    "opentelemetry-sdk",
    "opentelemetry-exporter-otlp-proto-http",
]
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mb(pid: int | str = "self") -> float:
    """Resident memory of a process, in MB (10^6 bytes)."""
    with open(f"/proc/{pid}/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * PAGE / 1e6


def ram_gb() -> float:
    with open("/proc/meminfo", encoding="ascii") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1e6, 1)
    return float("nan")


def slope_mb_per_min(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, MB) points, in MB per minute."""
    if len(points) < 3:
        return None
    n = len(points)
    mt = sum(t for t, _ in points) / n
    mm = sum(m for _, m in points) / n
    var = sum((t - mt) ** 2 for t, _ in points)
    if var == 0:
        return None
    return 60 * sum((t - mt) * (m - mm) for t, m in points) / var


class LogHistogram:
    """Latencies from 0.1 ms to ~1,000 s in buckets 1% wide: fixed memory, ~1% precision."""

    RATIO = 1.01
    LOW_S = 1e-4

    def __init__(self) -> None:
        self.counts = [0] * (math.ceil(math.log(1e7) / math.log(self.RATIO)) + 2)
        self.n = 0
        self.max_s = 0.0

    def add(self, seconds: float) -> None:
        i = 0 if seconds <= self.LOW_S else int(math.log(seconds / self.LOW_S, self.RATIO)) + 1
        self.counts[min(i, len(self.counts) - 1)] += 1
        self.n += 1
        self.max_s = max(self.max_s, seconds)

    def quantile(self, q: float) -> float:
        """Upper bound of the bucket holding the q-quantile (0..1), in seconds."""
        if not self.n:
            return float("nan")
        rank = max(1, math.ceil(q * self.n))
        seen = 0
        for i, count in enumerate(self.counts):
            seen += count
            if seen >= rank:
                return min(self.LOW_S * self.RATIO**i, self.max_s)
        return self.max_s


class Load:
    """The callers: counts of what they got back."""

    def __init__(self, client: vibesdk.AsyncClient, concurrency: int, stop_at: float) -> None:
        self.client = client
        self.concurrency = concurrency
        self.stop_at = stop_at
        self.calls = 0
        self.errors: Counter[str] = Counter()
        self.error_samples: list[str] = []
        self.fallbacks: Counter[str] = Counter()
        self.answered_by: Counter[str] = Counter()
        self.assigned: Counter[str] = Counter()
        self.latency = LogHistogram()
        self._next_user = 0

    async def caller(self) -> None:
        while time.monotonic() < self.stop_at:
            self._next_user += 1
            user = f"user-{self._next_user}"
            started = time.perf_counter()
            try:
                result = await self.client.chat(FLAG, user, MESSAGES)
            except Exception as exc:  # the promise is that none gets here
                self.errors[type(exc).__name__] += 1
                if len(self.error_samples) < 20:
                    self.error_samples.append(f"{type(exc).__name__}: {exc}"[:500])
            else:
                self.answered_by[result.variant] += 1
                self.assigned[result.assignment.variant] += 1
                if result.fallback:
                    self.fallbacks[result.fallback_reason or "unknown"] += 1
            self.latency.add(time.perf_counter() - started)
            self.calls += 1

    async def run(self) -> None:
        await asyncio.gather(*(self.caller() for _ in range(self.concurrency)))


class Fakes:
    """fakes.py in a child process; it exits when we close its stdin."""

    def __init__(self, latency_ms: float, failure_rate: float, seed: int) -> None:
        command = [
            sys.executable,
            str(HERE / "fakes.py"),
            "--latency-ms",
            str(latency_ms),
            "--canary-failure-rate",
            str(failure_rate),
            "--seed",
            str(seed),
        ]
        self.spawn(command)

    def spawn(self, command: list[str]) -> None:
        """Start ``command`` (a fakes process) and read the JSON line of its ports."""
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"{Path(command[1]).name} did not start; see its stderr above")
        self.ports: dict[str, int] = json.loads(line)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def stats(self) -> dict[str, Any]:
        import httpx

        return dict(httpx.get(self.url("stable") + "/stats", timeout=10).json())

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


async def soak(args: argparse.Namespace, fakes: Fakes, server: FlagServerProcess) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    high = args.rollout_percent * 100
    low = max(0, high - 1000)
    samples: list[dict[str, Any]] = []
    flips: list[int] = []
    with tempfile.TemporaryDirectory(prefix="vibesdk-soak-") as cache:
        async with vibesdk.AsyncClient(
            server_url=server.url, sdk_key=server.sdk_key, cache_dir=cache
        ) as client:
            if not await client.wait_until_ready(30):
                raise SystemExit("the client got no flag document within 30 s")
            started = time.monotonic()
            load = Load(client, args.concurrency, started + args.duration)
            cpu_start = time.process_time()

            def take_sample() -> dict[str, Any]:
                row = {
                    "t_s": round(time.monotonic() - started, 2),
                    "rss_mb": round(rss_mb(), 2),
                    "fakes_rss_mb": round(rss_mb(fakes.proc.pid), 2),
                    "calls": load.calls,
                    "errors": sum(load.errors.values()),
                    "fallbacks": sum(load.fallbacks.values()),
                    "flag_version": client.flag_source.store.version,
                }
                samples.append(row)
                print(f"soak {row['t_s']:6.1f} s: rss {row['rss_mb']:.1f} MB, "
                      f"{load.calls} calls, {row['errors']} errors, "
                      f"{row['fallbacks']} fallbacks", file=sys.stderr)  # fmt: skip
                return row

            async def sample() -> None:
                while True:
                    take_sample()
                    await asyncio.sleep(args.sample_every)

            async def flip() -> None:
                bps = high
                while True:
                    await asyncio.sleep(args.flip_every)
                    bps = low if bps == high else high
                    change = await loop.run_in_executor(None, server.rollout, FLAG, bps)
                    flips.append(int(change["version"]))

            background = [loop.create_task(sample()), loop.create_task(flip())]
            await load.run()
            elapsed = time.monotonic() - started
            cpu_s = time.process_time() - cpu_start
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            take_sample()
            # Let a flip made in the last moments arrive before comparing versions.
            await asyncio.sleep(1.0)
            client_version = client.flag_source.store.version
    server_version = server.document().version

    half = [(s["t_s"], s["rss_mb"]) for s in samples if s["t_s"] >= elapsed / 2]
    after_warmup = [(s["t_s"], s["rss_mb"]) for s in samples if s["t_s"] >= args.warmup]
    lat = load.latency
    return {
        "samples": samples,
        "summary": {
            "duration_s": round(elapsed, 1),
            "concurrency": args.concurrency,
            "calls": load.calls,
            "calls_per_s": round(load.calls / elapsed, 1),
            "errors_raised": sum(load.errors.values()),
            "errors_by_type": dict(load.errors),
            "error_samples": load.error_samples,
            "fallbacks": sum(load.fallbacks.values()),
            "fallbacks_by_reason": dict(load.fallbacks),
            "assigned": dict(load.assigned),
            "answered_by": dict(load.answered_by),
            "latency_s": {
                "p50": round(lat.quantile(0.50), 4),
                "p99": round(lat.quantile(0.99), 4),
                "max": round(lat.max_s, 4),
                "precision": "bucket upper bound, buckets 1% wide",
            },
            "load_process_cpu_s": round(cpu_s, 1),
            "rss_mb": {
                "first": samples[0]["rss_mb"],
                "at_warmup": next((s["rss_mb"] for s in samples if s["t_s"] >= args.warmup), None),
                "at_half": half[0][1] if half else None,
                "last": samples[-1]["rss_mb"],
                "max": max(s["rss_mb"] for s in samples),
            },
            "rss_slope_mb_per_min_second_half": _round(slope_mb_per_min(half)),
            "rss_slope_mb_per_min_after_warmup": _round(slope_mb_per_min(after_warmup)),
            "flag_flips": len(flips),
            "flag_version_client": client_version,
            "flag_version_server": server_version,
            "fakes": fakes.stats(),
        },
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def markdown(summary: dict[str, Any]) -> str:
    lat = summary["latency_s"]
    reasons = ", ".join(f"{k} {v:,}" for k, v in sorted(summary["fallbacks_by_reason"].items()))
    canary = summary["fakes"].get("canary", {})
    faults = sum(v for k, v in canary.items() if k not in ("requests", "ok"))
    rows = [
        ("duration", f"{summary['duration_s']} s, {summary['concurrency']:,} calls in flight"),
        ("calls done", f"{summary['calls']:,} ({summary['calls_per_s']:,} calls/s)"),
        ("errors raised to callers", f"**{summary['errors_raised']}**"),
        ("canary requests / failed by the fake", f"{canary.get('requests', 0):,} / {faults:,}"),
        ("fallbacks (answered by stable)", f"{summary['fallbacks']:,} ({reasons or 'none'})"),
        ("latency p50 / p99 / max", f"{lat['p50']} s / {lat['p99']} s / {lat['max']} s"),
        ("RSS first / last / max", "{first} / {last} / {max} MB".format(**summary["rss_mb"])),
        ("RSS slope, second half", f"**{summary['rss_slope_mb_per_min_second_half']} MB/min**"),
        ("RSS slope, after warm-up", f"{summary['rss_slope_mb_per_min_after_warmup']} MB/min"),
        (
            "flag flips / final version client, server",
            f"{summary['flag_flips']} / {summary['flag_version_client']}, "
            f"{summary['flag_version_server']}",
        ),
    ]
    return "\n".join(["| measure | value |", "|---|---|"] + [f"| {a} | {b} |" for a, b in rows])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--duration", type=float, default=300.0, help="seconds of load")
    parser.add_argument("--concurrency", type=int, default=1000, help="calls kept in flight")
    parser.add_argument("--canary-failure-rate", type=float, default=0.10)
    parser.add_argument("--rollout-percent", type=int, default=50, help="canary share of users")
    parser.add_argument("--latency-ms", type=float, default=100.0, help="the fake models' time")
    parser.add_argument("--sample-every", type=float, default=5.0, help="seconds between RSS reads")
    parser.add_argument("--flip-every", type=float, default=30.0, help="seconds between flips")
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds before the slope")
    parser.add_argument("--no-otel", action="store_true", help="no OpenTelemetry SDK installed")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", help="write JSON lines here")
    args = parser.parse_args()
    if not 0 <= args.canary_failure_rate <= 1:
        parser.error("--canary-failure-rate must be between 0 and 1, e.g. 0.1 for 10%")
    if not 10 <= args.rollout_percent <= 100:
        parser.error("--rollout-percent must be between 10 and 100 (flips go 10 points down)")
    if args.duration <= 0 or args.concurrency < 1:
        parser.error("--duration must be positive and --concurrency at least 1")

    started_at = now_utc()
    load_before = os.getloadavg()
    fakes = Fakes(args.latency_ms, args.canary_failure_rate, args.seed)
    try:
        telemetry = None
        if not args.no_otel:
            telemetry = vibesdk.configure_telemetry(
                "otlp", endpoint=fakes.url("otlp"), service_name="soak", metric_interval_s=10
            )
        with FlagServerProcess() as server:
            fallback = {"retries": 1, "retry_backoff_s": 0.1}
            server.apply(
                make_flag(
                    FLAG,
                    stable_url=fakes.url("stable") + "/v1",
                    canary_url=fakes.url("canary") + "/v1",
                    rollout_bps=args.rollout_percent * 100,
                    fallback=fallback,
                )
            )
            result = asyncio.run(soak(args, fakes, server))
        if telemetry is not None:
            telemetry.shutdown()
    finally:
        fakes.close()

    header = result_header(
        "soak",
        started=started_at,
        load_before=load_before,
        distributions=DISTRIBUTIONS,
        parameters=vars(args),
    )
    header["machine"]["ram_gb"] = ram_gb()
    header["processes"] = (
        "load (this process: AsyncClient, OTel SDK) | fakes.py (stable, canary, OTLP sink) | "
        "vibe-server (SQLite)"
    )
    summary = result["summary"]
    print(markdown(summary))
    if summary["error_samples"]:
        print("errors raised:", *summary["error_samples"], sep="\n  ", file=sys.stderr)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        lines = [{"kind": "header", **header}]
        lines += [{"kind": "sample", **s} for s in result["samples"]]
        lines += [{"kind": "summary", **summary}]
        out.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
        print(f"wrote {out}", file=sys.stderr)
    return 1 if summary["errors_raised"] else 0


if __name__ == "__main__":
    sys.exit(main())
