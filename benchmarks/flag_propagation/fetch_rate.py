"""Flag document fetches per second one vibe-server sustains: 304s (ETag match) and full 200s.

An SDK polls ``GET /v1/flags`` with ``If-None-Match: "<version>"``; while nothing
changes the answer is an empty 304, so that is what a fleet of pollers mostly
costs the server. This starts one real ``vibe-server`` (SQLite, as
``FlagServerProcess`` runs it), applies a realistic flag, and drives it from a
second process, ``wrk`` (Debian package ``wrk``), for ``--seconds`` per case
with ``--connections`` keep-alive connections on ``--threads`` threads:

* ``304``: every request carries the SDK key and the current ETag;
* ``200``: the same without ``If-None-Match`` (the whole document each time).

Both processes share this machine's cores, so the numbers are a floor for a
server with a machine of its own. Run from the repository root::

    .venv/bin/python benchmarks/flag_propagation/fetch_rate.py \
        --out benchmarks/flag_propagation/results/DATE-MACHINE-fetch.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import command_line, machine, now_utc, versions, write_json
from run import FLAG_FILE
from vibesdk_server.testing import FlagServerProcess

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([0-9.]+)(us|ms|s)", text)
    if match is None:
        raise ValueError(f"cannot read wrk latency {text!r}")
    return round(float(match.group(1)) * _UNITS[match.group(2)], 3)


def parse_wrk(output: str) -> dict[str, Any]:
    """Requests/s, totals, errors and latency percentiles from ``wrk --latency`` output."""
    out: dict[str, Any] = {}
    if m := re.search(r"Requests/sec:\s+([0-9.]+)", output):
        out["requests_per_s"] = float(m.group(1))
    if m := re.search(r"(\d+) requests in ([0-9.]+)(s|m)", output):
        out["requests"] = int(m.group(1))
    if m := re.search(r"Non-2xx or 3xx responses: (\d+)", output):
        out["non_2xx_3xx"] = int(m.group(1))
    else:
        out["non_2xx_3xx"] = 0
    if m := re.search(r"Socket errors: (.*)", output):
        out["socket_errors"] = m.group(1).strip()
    latency = {}
    for q in ("50", "75", "90", "99"):
        if m := re.search(rf"^\s+{q}%\s+([0-9.]+(?:us|ms|s))\s*$", output, re.MULTILINE):
            latency[f"p{q}_ms"] = _ms(m.group(1))
    out["latency"] = latency
    return out


def run_wrk(url: str, headers: dict[str, str], args: argparse.Namespace) -> dict[str, Any]:
    command = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{args.seconds}s",
               "--latency", "--timeout", "5s"]  # fmt: skip
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    command.append(url)
    done = subprocess.run(command, capture_output=True, text=True, check=True, timeout=120)
    shown = [c if not c.startswith("Authorization") else "Authorization: Bearer <sdk key>"
             for c in command]  # fmt: skip
    return {"wrk_command": shown, **parse_wrk(done.stdout), "wrk_output": done.stdout}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk")

    with tempfile.TemporaryDirectory() as tmp, FlagServerProcess(Path(tmp) / "flags.db") as server:
        server.apply(*FLAG_FILE["flags"])
        first = server.sdk_request("GET", "/v1/flags")
        etag = first.headers["etag"]
        again = server.sdk_request("GET", "/v1/flags", headers={"If-None-Match": etag})
        assert (first.status_code, again.status_code) == (200, 304), (first, again)
        url = f"{server.url}/v1/flags"
        auth = {"Authorization": f"Bearer {server.sdk_key}"}
        cases = {
            "304": run_wrk(url, {**auth, "If-None-Match": etag}, args),
            "200": run_wrk(url, auth, args),
        }
        document_bytes = len(first.content)

    report = {
        "benchmark": "flag_fetch_rate",
        "date": now_utc(),
        "command": command_line(),
        "machine": machine(),
        # Other work shared these 2 cores; the 1/5/15-minute load average at the end says how much.
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "versions": versions(["vibesdk", "vibesdk-server", "uvicorn", "fastapi"]),
        "server": "one vibe-server process (FlagServerProcess defaults), SQLite, loopback",
        "document_bytes": document_bytes,
        "load": {
            "tool": "wrk",
            "threads": args.threads,
            "connections": args.connections,
            "seconds": args.seconds,
        },
        "cases": cases,
    }
    for name, case in cases.items():
        lat = case["latency"]
        print(f"{name}: {case.get('requests_per_s')} req/s, p50 {lat.get('p50_ms')} ms, "
              f"p99 {lat.get('p99_ms')} ms, non-2xx/3xx {case['non_2xx_3xx']}")  # fmt: skip
    print(json.dumps({k: v["requests_per_s"] for k, v in cases.items()}))
    write_json(args.out, report)


if __name__ == "__main__":
    main()
