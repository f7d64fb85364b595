"""Time from `vibe rollout` / `vibe rollback` returning to the change applied in 200 SDK clients.

Everything runs on loopback on this machine: one real ``vibe-server`` (SQLite,
started by ``vibesdk_server.testing.FlagServerProcess``), the ``vibe`` CLI
called in this process through ``vibesdk_server._vibe.main.main`` (argument parsing,
settings, one HTTP request: exactly what the console script does, minus
interpreter start-up), and ``--clients`` SDK flag sources
(``vibesdk._sources.AsyncFlagSource``) spread over ``--processes`` processes
(clients.py).

For each flip the CLI is run, the moment it returns is taken with
``time.monotonic()``, and each client's store listener stamps the moment it
applied the new version with the same system-wide clock. The latency is
``applied - returned``; it is negative when a push arrived before the CLI had
printed (the server pushes from its commit hook, before it answers). Two
modes: ``push`` (SSE stream, polling at its 30 s default as a safety net) and
``poll`` (no stream; ``--poll-interval`` seconds, jittered ±10%).

Run from the repository root::

    .venv/bin/python benchmarks/flag_propagation/run.py \
        --out benchmarks/flag_propagation/results/DATE-MACHINE.json
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import command_line, machine, now_utc, percentile, versions, write_json
from vibesdk_server._vibe.main import main as vibe
from vibesdk_server.testing import FlagServerProcess

HERE = Path(__file__).resolve().parent

FLAG_FILE = {
    "flags": [
        {
            "key": "vibethinker",
            "rollout_bps": 0,
            "variants": {
                "stable": {
                    "backend": {"urls": ["http://127.0.0.1:9/v1"], "provider": "llama.cpp"},
                    "model": "smollm2-135m",
                },
                "canary": {
                    "backend": {"urls": ["http://127.0.0.1:9/v1"], "provider": "llama.cpp"},
                    "model": "vibethinker-1.5b",
                    "params": {"temperature": 0.6, "top_p": 0.95, "max_tokens": 4096},
                    "notice": "You are trying the new assistant.",
                },
            },
        }
    ]
}


def run_vibe(*argv: str) -> tuple[dict[str, Any], float, float]:
    """Run the CLI with --json; return its answer and the monotonic times before and after."""
    out = io.StringIO()
    started = time.monotonic()
    with contextlib.redirect_stdout(out):
        code = vibe(["--json", *argv])
    returned = time.monotonic()
    if code != 0:
        raise SystemExit(f"vibe {' '.join(argv)} exited {code}")
    return json.loads(out.getvalue()), started, returned


class Clients:
    """The client processes of one mode."""

    def __init__(self, url: str, key: str, *, mode: str, total: int, processes: int,
                 poll_interval: float) -> None:  # fmt: skip
        per = [total // processes + (i < total % processes) for i in range(processes)]
        self.procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    str(HERE / "clients.py"),
                    "--url",
                    url,
                    "--key",
                    key,
                    "--clients",
                    str(n),
                    "--mode",
                    mode,
                    "--poll-interval",
                    str(poll_interval),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for n in per
        ]
        self.ready = [self._read(p) for p in self.procs]
        for answer in self.ready:
            if "error" in answer:
                raise SystemExit(f"clients: {answer['error']}")

    @staticmethod
    def _read(proc: subprocess.Popen[str]) -> dict[str, Any]:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise SystemExit("a client process died; see its stderr above")
        return dict(json.loads(line))

    def _send(self, command: dict[str, Any]) -> None:
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.write(json.dumps(command) + "\n")
            proc.stdin.flush()

    def wait(self, version: int) -> list[float | None]:
        self._send({"wait": version})
        applied: list[float | None] = []
        for proc in self.procs:
            applied += self._read(proc)["applied"]
        return applied

    def close(self) -> None:
        with contextlib.suppress(BrokenPipeError):
            self._send({"quit": True})
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def stats_ms(values: list[float]) -> dict[str, float]:
    s = sorted(values)
    return {
        "p50": round(percentile(s, 50), 1),
        "p95": round(percentile(s, 95), 1),
        "p99": round(percentile(s, 99), 1),
        "max": round(s[-1], 1),
        "min": round(s[0], 1),
        "samples": len(s),
    }


def measure(mode: str, server: Any, args: argparse.Namespace, rng: random.Random) -> dict[str, Any]:
    clients = Clients(server.url, server.sdk_key, mode=mode, total=args.clients,
                      processes=args.processes, poll_interval=args.poll_interval)  # fmt: skip
    flips: list[dict[str, Any]] = []
    after_return: list[float] = []
    after_start: list[float] = []
    missing = 0
    try:
        for i in range(args.flips):
            # Let the previous flip settle; in poll mode, a random phase against the polls.
            time.sleep(rng.uniform(0, args.poll_interval) if mode == "poll" else 0.3)
            if i % 5 == 4:
                action = "rollback"
                change, started, returned = run_vibe(
                    "rollback", "vibethinker", "--reason", f"benchmark flip {i}"
                )
            else:
                action = f"rollout {(i % 5 + 1) * 5}%"
                change, started, returned = run_vibe(
                    "rollout", "vibethinker", f"{(i % 5 + 1) * 5}%"
                )
            applied = clients.wait(int(change["version"]))
            got = [t for t in applied if t is not None]
            missing += len(applied) - len(got)
            lat = [(t - returned) * 1000 for t in got]
            after_return += lat
            after_start += [(t - started) * 1000 for t in got]
            flips.append(
                {
                    "action": action,
                    "version": change["version"],
                    "cli_ms": round((returned - started) * 1000, 1),
                    "applied_ms_after_return": stats_ms(lat) if lat else None,
                    "applied_before_return": sum(1 for x in lat if x < 0),
                    "missing": len(applied) - len(got),
                }
            )
            worst = max(lat) if lat else float("nan")
            print(f"{mode}: {action:<12} v{change['version']}: cli {flips[-1]['cli_ms']} ms, "
                  f"all {len(got)}/{len(applied)} clients within {worst:.1f} ms after it returned",
                  file=sys.stderr)  # fmt: skip
    finally:
        clients.close()
    return {
        "mode": mode,
        "clients": args.clients,
        "processes": args.processes,
        "poll_interval_s": args.poll_interval if mode == "poll" else 30.0,
        "streaming": mode == "push",
        "streams_up_at_start": sum(r.get("streams_up", 0) for r in clients.ready),
        "flips": len(flips),
        "missing_applies": missing,
        "applied_ms_after_cli_returned": stats_ms(after_return),
        "applied_ms_after_cli_started": stats_ms(after_start),
        "per_flip": flips,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--processes", type=int, default=2, help="client processes")
    parser.add_argument("--flips", type=int, default=10, help="flips per mode")
    parser.add_argument("--poll-interval", type=float, default=1.0)
    parser.add_argument("--modes", nargs="+", default=["push", "poll"], choices=["push", "poll"])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", help="write the results here (JSON)")
    args = parser.parse_args()
    rng = random.Random(args.seed)

    with (
        tempfile.TemporaryDirectory() as tmp,
        FlagServerProcess(db=Path(tmp) / "flags.db") as server,
    ):
        os.environ.update(
            VIBESDK_SERVER_URL=server.url,
            VIBESDK_ADMIN_TOKEN=server.admin_token,
            VIBESDK_ENVIRONMENT=server.environment,
        )
        flag_file = Path(tmp) / "flags.json"
        flag_file.write_text(json.dumps(FLAG_FILE))
        run_vibe("apply", str(flag_file), "--yes")
        run_vibe("mark-good")
        results = [measure(mode, server, args, rng) for mode in args.modes]

    report = {
        "benchmark": "flag_propagation",
        "date": now_utc(),
        "command": command_line(),
        "machine": machine(),
        # Other work shared these 2 cores; the 1/5/15-minute load average at the end says how much.
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "versions": versions(["vibesdk", "vibesdk-server", "httpx", "uvicorn", "fastapi"]),
        "targets": {
            "push_p99_ms": 250,
            "poll_max_ms": f"poll interval + 1000 ({args.poll_interval * 1000 + 1000:.0f})",
        },
        "results": results,
    }
    for r in results:
        a = r["applied_ms_after_cli_returned"]
        print(f"{r['mode']}: {r['clients']} clients x {r['flips']} flips: p50 {a['p50']} ms, "
              f"p95 {a['p95']} ms, p99 {a['p99']} ms, max {a['max']} ms, "
              f"missing {r['missing_applies']}")  # fmt: skip
    write_json(args.out, report)


if __name__ == "__main__":
    main()
