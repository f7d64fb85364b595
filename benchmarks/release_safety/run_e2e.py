"""The guarded canary end to end: real vibe-server, an AsyncClient app, a fault at a known moment.

Everything runs on loopback, in three processes:

* this one, **the app**: one ``vibesdk.AsyncClient`` following the flag server (push stream),
  sending its per-variant measurements to the server with the SDK's own OTLP metrics export
  (``server_metrics_interval_s``: the SDK's default, 5 s, unless ``--export-interval-s``),
  and an open-loop load of ``--rate`` calls per second, each for one of ``--users`` user ids
  drawn at random;
* backends.py, **the models**: a stable and a canary OpenAI-compatible backend; the canary's
  fault is switched on at a known moment (see its :data:`~backends.FAULTS`);
* **vibe-server** (``vibesdk_server.testing.FlagServerProcess``, SQLite), its guard looking
  every ``--guard-interval-s``.

One run: a fresh server gets the flag at 0%; a guarded release starts with steps 10% -> 50% ->
100% and the run's short ``--dwell-s`` and ``--min-samples``; ``--onset-s`` later the canary's
fault is switched on. A probe in the app reads the client's own flag document every 10 ms: the
rollback counts as *applied* when the app's rollout of the flag is 0 (a user assigned the canary
at 10% is then assigned stable). A fault run ends ``--tail-s`` after the app saw the rollback or
``--timeout-s`` after onset; the healthy run (A/A) ends when the release advanced or at
``--dwell-s`` + ``--timeout-s``.

Per run: seconds from onset to the rollback applied in the app (and to the guard's incident on
the server), errors raised to callers (the promise: 0), degraded answers delivered before the
rollback (a canary answer that failed an output check or took over 3 s), fallbacks, and the
guard's reason. ``--out`` writes JSON lines: a header, one line per run, and the summary per
fault; ``--svg`` draws the onset-to-rollback times. Exit status 1 if any caller got an error,
a faulty canary was not rolled back, or the healthy one was.

Run from the repository root::

    .venv/bin/python benchmarks/release_safety/run_e2e.py \\
        --out benchmarks/release_safety/results/DATE-MACHINE-e2e.jsonl \\
        --svg benchmarks/release_safety/results/DATE-MACHINE-e2e.svg
    .venv/bin/python benchmarks/release_safety/run_e2e.py --quick   # one short run per fault
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from _common import markdown_table, now_utc, result_header  # noqa: E402
from soak.soak import Fakes  # noqa: E402
from vibesdk_server.testing import FlagServerProcess  # noqa: E402

import vibesdk  # noqa: E402
from vibesdk.testing import make_flag  # noqa: E402

FLAG = "vibethinker"
FAULTS = ("errors", "latency", "empty", "loop", "healthy")
STEPS = [1000, 5000, 10_000]
SLOW_S = 3.0
MESSAGES = [{"role": "user", "content": "What is the sum of the first n odd numbers?"}]
#: The fallback policy of the repository's examples/flags.yaml, as a user would write it.
FALLBACK = {
    "connect_timeout_s": 1.0,
    "first_token_timeout_s": 20.0,
    "total_timeout_s": 60.0,
    "retries": 1,
    "retry_backoff_s": 0.05,
    "breaker_failures": 3,
    "breaker_cooldown_s": 10.0,
}
DISTRIBUTIONS = ["vibesdk", "vibesdk-server", "httpx", "opentelemetry-sdk"]
SRM_FIELDS = ("unit", "canary_users", "stable_users", "canary_calls", "stable_calls", "p_value")


class Models(Fakes):
    """backends.py in a child process: switch the canary's fault, read its counts."""

    def __init__(self, latency_ms: float, seed: int) -> None:
        command = [sys.executable, str(HERE / "backends.py"), "--latency-ms", str(latency_ms)]
        self.spawn([*command, "--seed", str(seed)])

    def set_fault(self, fault: str) -> None:
        """Switch the canary's fault; returns once the backend has it on."""
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write(fault.encode() + b"\n")
        self.proc.stdin.flush()
        ack = self.proc.stdout.readline().decode().strip()
        if ack != fault:
            raise SystemExit(f"backends.py answered {ack!r} to fault {fault!r}")


class Load:
    """Open-loop callers: ``rate`` calls per second, each for a random user, until stopped."""

    def __init__(self, client: vibesdk.AsyncClient, users: list[str], rate: float, seed: int):
        self.client = client
        self.users = users
        self.rate = rate
        self.rng = random.Random(seed)
        self.calls: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self.error_kinds: Counter[tuple[str, str]] = Counter()  # (assigned variant, error)
        self.started = 0.0
        self.sent = 0
        self.stopping = False

    async def one(self, user: str) -> None:
        t0 = time.monotonic()
        # The variant the call starts with (the rollout may move while a queued call waits).
        assigned = self.client.assign(FLAG, user).variant
        try:
            result = await self.client.chat(FLAG, user, MESSAGES)
        except Exception as exc:  # the promise is that none gets here
            error = f"{type(exc).__name__}: {exc}"
            self.errors.append(error[:300])
            self.calls.append({"t0": t0, "t1": time.monotonic(), "error": True})
            self.error_kinds[(assigned, error)] += 1
            return
        self.calls.append(
            {
                "t0": t0,
                "t1": time.monotonic(),
                "assigned": result.assignment.variant,
                "answered": result.variant,
                "fallback": result.fallback,
                "reason": result.fallback_reason,
                "failures": result.quality.failures,
                "version": result.assignment.flag_version,
            }
        )

    async def run(self) -> None:
        tasks: set[asyncio.Task[None]] = set()
        self.started = time.monotonic()
        next_at = self.started
        while not self.stopping:
            task = asyncio.create_task(self.one(self.rng.choice(self.users)))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            self.sent += 1
            next_at += 1 / self.rate
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        await asyncio.gather(*tasks)


def _iso_to_unix(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


async def run_one(
    args: argparse.Namespace, models: Models, fault: str, seed: int
) -> dict[str, Any]:
    """One release with one fault; the measurements of the run as a JSON-able dict."""
    loop = asyncio.get_running_loop()
    cpu_started = time.process_time()  # the app's CPU (all its threads) over the run
    users = [f"user-{i:04d}" for i in range(args.users)]
    with FlagServerProcess(guard_interval_s=args.guard_interval_s) as server:
        env_path = f"/v1/admin/environments/{server.environment}"
        flag = make_flag(
            FLAG,
            stable_url=models.url("stable") + "/v1",
            canary_url=models.url("canary") + "/v1",
            rollout_bps=0,
            fallback=FALLBACK,
        )
        server.apply(flag)

        def release() -> dict[str, Any]:
            response = server.admin_request("GET", f"{env_path}/flags/{FLAG}/release")
            response.raise_for_status()
            return dict(response.json())

        async with vibesdk.AsyncClient(
            server_url=server.url,
            sdk_key=server.sdk_key,
            cache_dir="",
            server_metrics_interval_s=args.export_interval_s,
        ) as client:
            if not await client.wait_until_ready(30):
                raise SystemExit("the client got no flag document within 30 s")
            body = {
                "steps": STEPS,
                "min_dwell_s": args.dwell_s,
                "min_samples_per_arm": args.min_samples,
                "reason": f"e2e benchmark, fault {fault}",
            }
            started = server.admin_request("POST", f"{env_path}/flags/{FLAG}/release", json=body)
            if started.status_code != 201:
                raise SystemExit(f"could not start the release: {started.text}")
            t_release = time.monotonic()
            store = client.flag_source.store
            rollout: list[tuple[float, int]] = []  # (monotonic, bps) as the app saw it

            async def probe() -> None:
                last = None
                while True:
                    seen = store.flag(FLAG)
                    bps = None if seen is None else seen.rollout_bps
                    if bps != last and bps is not None:
                        rollout.append((time.monotonic(), bps))
                        last = bps
                    await asyncio.sleep(0.01)

            decisions: list[dict[str, Any]] = []  # the guard's decisions, as the server has them

            async def watch() -> None:
                seen = None
                while True:
                    r = await loop.run_in_executor(None, release)
                    key = (r["step"], r["state"], r.get("decision_at"))
                    if key != seen:
                        seen = key
                        decision = r.get("decision") or {}
                        reasons = decision.get("reasons") or []
                        srm = decision.get("srm") or {}
                        decisions.append(
                            {
                                "t_s": round(time.monotonic() - t_release, 2),
                                "step": r["step"],
                                "state": r["state"],
                                "why": "; ".join(x["message"] for x in reasons),
                                # The sample-ratio test as judged: its unit, counts and p.
                                "srm": {k: srm.get(k) for k in SRM_FIELDS} if srm else None,
                            }
                        )
                    await asyncio.sleep(0.5)

            probing = loop.create_task(probe())
            watching = loop.create_task(watch())
            while not rollout or rollout[-1][1] != STEPS[0]:  # noqa: ASYNC110 - a probe's list
                await asyncio.sleep(0.01)
            canary_user = next(u for u in users if client.assign(FLAG, u).variant == "canary")
            load = Load(client, users, args.rate, seed)
            loading = loop.create_task(load.run())

            await asyncio.sleep(max(0.0, t_release + args.onset_s - time.monotonic()))
            t_onset_wall = time.time()
            await loop.run_in_executor(None, models.set_fault, fault)
            t_onset = time.monotonic()

            def rolled_back() -> float | None:
                # The first 0% after the release's first step reached the app.
                seen = [bps for _, bps in rollout]
                first = seen.index(STEPS[0]) if STEPS[0] in seen else len(seen)
                return next((t for t, bps in rollout[first:] if bps == 0), None)

            def advanced() -> float | None:
                return next((t for t, bps in rollout if bps > STEPS[0]), None)

            deadline = t_onset + args.timeout_s + (args.dwell_s if fault == "healthy" else 0)
            while time.monotonic() < deadline:
                if fault != "healthy" and rolled_back() is not None:
                    break
                if fault == "healthy" and (advanced() is not None or rolled_back() is not None):
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(args.tail_s)
            load.stopping = True
            await loading
            t_end = time.monotonic()
            probing.cancel()
            watching.cancel()
            canary_user_after = client.assign(FLAG, canary_user).variant
        await loop.run_in_executor(None, models.set_fault, "healthy")
        final = await loop.run_in_executor(None, release)
        incidents = server.admin_request(
            "GET", "/v1/admin/incidents", params={"environment": server.environment}
        ).json()

    app_cpu_s = time.process_time() - cpu_started
    t_back = rolled_back()
    t_adv = advanced()
    incident = incidents[0] if incidents else None
    calls = load.calls
    before = [c for c in calls if not c.get("error") and (t_back is None or c["t1"] < t_back)]
    after_onset = [c for c in before if c["t1"] >= t_onset]

    def degraded(c: dict[str, Any]) -> bool:
        return c["answered"] != "stable" and (bool(c["failures"]) or c["t1"] - c["t0"] > SLOW_S)

    def names(text: str) -> str:
        for name in ("stable", "canary"):
            text = text.replace(models.url(name), name)
        return text

    window = (t_back if t_back is not None else t_end) - t_release
    return {
        "fault": fault,
        "seed": seed,
        "rolled_back": t_back is not None,
        "advanced": t_adv is not None and (t_back is None or t_adv < t_back),
        "onset_to_rollback_s": None if t_back is None else round(t_back - t_onset, 2),
        "onset_to_incident_s": None
        if incident is None
        else round(_iso_to_unix(incident["at"]) - t_onset_wall, 2),
        "release_to_advance_s": None if t_adv is None else round(t_adv - t_release, 2),
        "canary_user_after": canary_user_after,
        "calls": len(calls),
        "calls_per_s": round(len(calls) / max(1e-9, t_end - load.started), 1),
        "offered_per_s": round(load.sent / max(1e-9, t_end - load.started), 1),
        # The app process's CPU over the run (server start and stop included), per call.
        "app_cpu_s": round(app_cpu_s, 2),
        "app_cpu_ms_per_call": round(1000 * app_cpu_s / max(1, len(calls)), 2),
        "errors_raised": len(load.errors),
        "error_samples": load.errors[:5],
        # Every error by the variant its call started with and its text, the ports named.
        "error_kinds": [
            {"assigned": variant, "error": names(text), "count": n}
            for (variant, text), n in load.error_kinds.most_common()
        ],
        "canary_calls_after_onset": sum(1 for c in after_onset if c["assigned"] != "stable"),
        "degraded_before_rollback": sum(1 for c in after_onset if degraded(c)),
        "degraded_after_rollback": sum(
            1
            for c in calls
            if not c.get("error") and t_back is not None and c["t1"] >= t_back and degraded(c)
        ),
        "fallbacks_before_rollback": sum(1 for c in after_onset if c["fallback"]),
        "fallback_reasons": dict(Counter(c["reason"] for c in calls if c.get("fallback"))),
        "quality_failures": dict(
            Counter(f for c in calls if not c.get("error") for f in c["failures"])
        ),
        "canary_share_observed": round(
            sum(1 for c in before if c["assigned"] != "stable") / max(1, len(before)), 4
        ),
        "observed_s": round(window, 1),
        "onset_s": round(t_onset - t_release, 2),
        "rollout_seen": [(round(t - t_release, 2), bps) for t, bps in rollout],
        "decisions": decisions,
        "release_state": final["state"],
        "release_reason": final.get("state_reason"),
        "incident_canary_calls": None
        if incident is None
        else (incident["measurements"].get("canary") or {}).get("calls"),
        "incident_reason": None if incident is None else incident["reason"],
        "incident_srm": None
        if incident is None
        else {k: ((incident.get("decision") or {}).get("srm") or {}).get(k) for k in SRM_FIELDS},
    }


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for fault in FAULTS:
        mine = [r for r in runs if r["fault"] == fault]
        if not mine:
            continue
        times = [r["onset_to_rollback_s"] for r in mine if r["onset_to_rollback_s"] is not None]
        server_times = [
            r["onset_to_incident_s"] for r in mine if r["onset_to_incident_s"] is not None
        ]
        advances = [r["release_to_advance_s"] for r in mine if r["advanced"]]
        rows.append(
            {
                "fault": fault,
                "runs": len(mine),
                "rolled_back": sum(r["rolled_back"] for r in mine),
                "advanced_first": sum(r["advanced"] for r in mine),
                "rollback_s_median": round(statistics.median(times), 1) if times else None,
                "rollback_s_max": max(times) if times else None,
                "incident_s_median": round(statistics.median(server_times), 1)
                if server_times
                else None,
                "advance_s_median": round(statistics.median(advances), 1) if advances else None,
                "errors_raised": sum(r["errors_raised"] for r in mine),
                "degraded_before_rollback": [r["degraded_before_rollback"] for r in mine],
                "calls_per_s": round(statistics.median(r["calls_per_s"] for r in mine), 1),
            }
        )
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    def s(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}"

    return markdown_table(
        [
            "fault",
            "runs",
            "rolled back",
            "onset → rollback in app, median / max (s)",
            "onset → incident, median (s)",
            "errors raised",
            "degraded answers before rollback",
            "calls/s",
        ],
        [
            (
                r["fault"],
                r["runs"],
                f"{r['rolled_back']}"
                + (f" (advanced: {r['advanced_first']})" if r["advanced_first"] else ""),
                f"{s(r['rollback_s_median'])} / {s(r['rollback_s_max'])}",
                s(r["incident_s_median"]),
                r["errors_raised"],
                ", ".join(str(n) for n in r["degraded_before_rollback"]),
                r["calls_per_s"],
            )
            for r in rows
        ],
    )


def svg(runs: list[dict[str, Any]], target_s: float) -> str:
    """A strip chart of onset-to-rollback seconds per fault (hand-written SVG, no libraries)."""
    faults = [f for f in FAULTS if f != "healthy" and any(r["fault"] == f for r in runs)]
    width, height, left, top, row = 640, 60 + 40 * len(faults), 90, 30, 40
    top_s = max([target_s * 1.5] + [r["onset_to_rollback_s"] or 0 for r in runs])

    def x(seconds: float) -> float:
        return left + (width - left - 20) * seconds / top_s

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        'font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{left}" y="18">seconds from fault onset to the rollback applied in the app '
        "(each dot one run)</text>",
    ]
    bottom = top + row * len(faults)
    for tick in range(0, int(top_s) + 1, 10):
        parts.append(
            f'<line x1="{x(tick):.1f}" y1="{top}" x2="{x(tick):.1f}" y2="{bottom}" stroke="#ddd"/>'
        )
        parts.append(
            f'<text x="{x(tick):.1f}" y="{bottom + 16}" text-anchor="middle">{tick}</text>'
        )
    parts.append(
        f'<line x1="{x(target_s):.1f}" y1="{top}" x2="{x(target_s):.1f}" y2="{bottom}" '
        'stroke="#c00" stroke-dasharray="4 3"/>'
    )
    parts.append(f'<text x="{x(target_s) + 4:.1f}" y="{top + 12}" fill="#c00">target</text>')
    for i, fault in enumerate(faults):
        y = top + row * i + row / 2
        parts.append(f'<text x="{left - 8}" y="{y + 4:.1f}" text-anchor="end">{fault}</text>')
        for r in runs:
            if r["fault"] == fault and r["onset_to_rollback_s"] is not None:
                parts.append(
                    f'<circle cx="{x(r["onset_to_rollback_s"]):.1f}" cy="{y:.1f}" r="5" '
                    'fill="#1f77b4" fill-opacity="0.6"/>'
                )
            elif r["fault"] == fault:
                parts.append(f'<text x="{x(top_s) - 40:.1f}" y="{y + 4:.1f}">missed</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--faults", default=",".join(FAULTS), help="comma-separated, in order")
    parser.add_argument("--runs", type=int, default=5, help="runs per fault")
    parser.add_argument("--quick", action="store_true", help="one short run per fault")
    parser.add_argument(
        "--rate", type=float, default=None, help="calls per second (default 100, 40 with --quick)"
    )
    parser.add_argument("--users", type=int, default=1000, help="distinct user ids")
    parser.add_argument("--latency-ms", type=float, default=1000.0, help="the models' mean time")
    parser.add_argument("--onset-s", type=float, default=None, help="release start -> fault")
    parser.add_argument("--dwell-s", type=float, default=None, help="the release's min dwell")
    parser.add_argument("--min-samples", type=int, default=None, help="calls per arm per step")
    parser.add_argument("--guard-interval-s", type=float, default=2.0)
    parser.add_argument(
        "--export-interval-s",
        type=float,
        default=None,
        help="the SDK's server_metrics_interval_s (default: the SDK's own, 5 s)",
    )
    parser.add_argument("--timeout-s", type=float, default=None, help="give up after onset")
    parser.add_argument("--tail-s", type=float, default=2.0, help="load after the rollback")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", help="write JSON lines here")
    parser.add_argument("--svg", help="write the chart here")
    args = parser.parse_args()
    faults = [f.strip() for f in args.faults.split(",") if f.strip()]
    unknown = sorted(set(faults) - set(FAULTS))
    if unknown or not faults:
        parser.error(f"--faults: unknown {unknown}; use some of {','.join(FAULTS)}")
    quick = args.quick
    # Quick runs on small shared machines (CI): a rate they hold, or the app's own queueing makes
    # every call slow and the latency guardrail rolls back even a healthy canary.
    args.rate = args.rate if args.rate is not None else (40.0 if quick else 100.0)
    if args.rate <= 0 or args.users < 10 or args.runs < 1:
        parser.error("--rate must be positive, --users at least 10 and --runs at least 1")
    args.runs = 1 if quick else args.runs
    # Quick: shorter steps; the A/A run needs fewer samples and less dwell to advance.
    args.onset_s = args.onset_s if args.onset_s is not None else (3.0 if quick else 10.0)
    args.dwell_s = args.dwell_s if args.dwell_s is not None else (20.0 if quick else 45.0)
    args.min_samples = args.min_samples or (30 if quick else 100)
    args.timeout_s = args.timeout_s if args.timeout_s is not None else 60.0

    started_at = now_utc()
    load_before = os.getloadavg()
    # Rounds of every fault, each round in a fresh random order: the machine's noise hits all.
    shuffle = random.Random(args.seed)
    order = [f for _ in range(args.runs) for f in shuffle.sample(faults, k=len(faults))]
    models = Models(args.latency_ms, args.seed)
    runs: list[dict[str, Any]] = []
    try:
        for i, fault in enumerate(order):
            result = asyncio.run(run_one(args, models, fault, args.seed + i))
            runs.append(result)
            if args.out:  # each run as it ends, should a long session be cut short
                with open(args.out + ".partial", "a", encoding="utf-8") as partial:
                    partial.write(json.dumps({"kind": "run", **result}) + "\n")
            back = result["onset_to_rollback_s"]
            advance = result["release_to_advance_s"]
            print(
                f"run {i + 1}/{len(order)} {fault:8s}: "
                + (f"rolled back {back} s after onset" if back is not None else "not rolled back")
                + (f", advanced at {advance} s" if result["advanced"] else "")
                + f"; {result['calls']} calls ({result['calls_per_s']}/s), "
                f"{result['errors_raised']} errors raised, "
                f"{result['degraded_before_rollback']} degraded before rollback"
                + (f" ({result['incident_reason']})" if result["incident_reason"] else ""),
                file=sys.stderr,
                flush=True,
            )
        backend_stats = models.stats()
    finally:
        models.close()

    rows = summarize(runs)
    print(markdown(rows))
    header = result_header(
        "release_safety_e2e",
        started=started_at,
        load_before=load_before,
        distributions=DISTRIBUTIONS,
        parameters={**vars(args), "steps_bps": STEPS, "fallback": FALLBACK},
    )
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        lines = [{"kind": "header", **header}]
        lines += [{"kind": "run", **r} for r in runs]
        lines += [{"kind": "summary", "faults": rows, "backends": backend_stats}]
        out.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
        print(f"wrote {out}", file=sys.stderr)
    if args.svg:
        Path(args.svg).write_text(svg(runs, target_s=30.0), encoding="utf-8")
    bad = any(r["errors_raised"] for r in runs)
    bad |= any(r["rolled_back"] != (r["fault"] != "healthy") for r in runs)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
