"""How fast does the dashboard's flag page draw 7 days of 10 s measurements in Chromium?

Seeds a SQLite database with ``--days`` of measurements at every 10 s interval for a stable and
a canary variant (the rows the OTLP receiver writes: the duration histogram, fallbacks, one
output check, output tokens; the server's write also adds them into its 1 min and 10 min
rollups), starts the real vibe-server on it, signs in with headless Chromium (Debian's
``chromium``) and, for each step size, times from the click on "7d" until every chart is
drawn, plus the series request alone (server time) and its size. Rounds alternate the step
sizes. ``auto`` is the page's own step (a point per pixel of the charts' width: 10 min
multiples, read from the rollups); ``70`` is the page's step before the rollups (the finest
under 10,000 points, read from the 10 s rows, as every step that is not a whole number of
minutes still is). Then, in this process, it splits one series request's server time into
the database read and fold (``measurement_series``), the columns and the JSON encoding.

    python benchmarks/dashboard/run.py --out benchmarks/dashboard/results/run2.json
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import markdown_table, now_utc, result_header, summarize, write_json

INTERVAL_S = 10
BOUNDS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 3.0, 5.0, 10.0, 30.0)


def seed(db: str, days: float) -> int:
    """Write the measurements; how many intervals per variant."""
    import random

    from vibesdk_server._storage import open_store

    store = open_store(db)
    store.create_environment("bench", actor="bench", reason="benchmark")
    rng = random.Random(7)
    now = int(time.time()) // INTERVAL_S * INTERVAL_S
    n = int(days * 86_400 / INTERVAL_S)
    batch: list[Any] = []
    for i in range(n):
        batch += points_of(rng, now - (n - i) * INTERVAL_S)
        if len(batch) >= 20_000:
            store.add_points("bench", batch)
            batch = []
    store.add_points("bench", batch)
    store.close()
    return n


def points_of(rng: Any, t: int) -> list[Any]:
    """One 10 s interval's points, as one SDK export sends them: per variant, the duration
    histogram, fallbacks, one output check's failures and output tokens."""
    from vibesdk_server._domain._otlp import Point

    out = []
    for variant, calls, slow in (("stable", 90, 0.3), ("canary", 10, 0.5)):
        buckets = [0] * (len(BOUNDS) + 1)
        for _ in range(calls):
            seconds = rng.expovariate(1 / slow)
            buckets[sum(seconds > b for b in BOUNDS)] += 1
        point = {"flag_key": "vibethinker", "variant": variant, "interval_start": t}
        out += [
            Point(
                **point,
                metric="gen_ai.client.operation.duration",
                labels="",
                count=calls,
                total=calls * slow,
                bounds=BOUNDS,
                buckets=tuple(buckets),
            ),
            Point(
                **point,
                metric="vibesdk.fallbacks",
                labels="vibesdk.fallback.reason=error",
                count=1,
                total=rng.random() < 0.1,
            ),
            Point(
                **point,
                metric="vibesdk.quality.failures",
                labels="vibesdk.quality.check=repetition",
                count=1,
                total=rng.random() < 0.05,
            ),
            Point(
                **point,
                metric="gen_ai.client.token.usage",
                labels="gen_ai.token.type=output",
                count=calls,
                total=calls * rng.uniform(200, 400),
            ),
        ]
    return out


#: The charts' width as the page's script computes it (ui.js ``draw``).
WIDTH_JS = "Math.max(320, Math.min(document.getElementById('charts').clientWidth || 900, 1200))"


#: Before the click: note (in the page's clock) the click and the moment the charts are ready.
WATCH_JS = """() => {
  const root = document.getElementById('charts');
  window.benchTimes = {};
  document.addEventListener('click', () => { window.benchTimes.click = performance.now(); },
                            { capture: true, once: true });
  new MutationObserver((changes, observer) => {
    if (root.dataset.ready !== '1') return;
    window.benchTimes.ready = performance.now();
    observer.disconnect();
  }).observe(root, { attributes: true, attributeFilter: ['data-ready'] });
}"""
#: After: the browser's own split of click-to-ready (seconds): until the series' first byte
#: (the request and the server's work), its download, then parsing and drawing every chart.
SPLIT_JS = """() => {
  const t = window.benchTimes;
  const e = performance.getEntriesByType('resource')
    .filter((r) => r.name.includes('window=7d')).pop();
  return { in_page_s: (t.ready - t.click) / 1000,
           first_byte_s: (e.responseStart - t.click) / 1000,
           download_s: (e.responseEnd - e.responseStart) / 1000,
           draw_s: (t.ready - e.responseEnd) / 1000 };
}"""


def breakdown(db: str, steps: dict[str, int], rounds: int) -> dict[str, dict[str, list[float]]]:
    """Per step, in this process: the store's read and fold, the columns, the JSON encoding
    of a 7-day series (what the series route does, one part at a time)."""
    import json

    from vibesdk_server._storage import open_store
    from vibesdk_server._ui._routes import _columns

    store = open_store(db)
    out: dict[str, dict[str, list[float]]] = {}
    try:
        for _ in range(rounds):
            for name, step in steps.items():
                times = out.setdefault(name, {"read_s": [], "columns_s": [], "json_s": []})
                since = int(time.time()) - 7 * 86_400
                t0 = time.perf_counter()
                measured = store.measurement_series(
                    environment="bench", flag_key="vibethinker", since=since, step_s=step
                )
                t1 = time.perf_counter()
                columns = _columns(measured, step)
                t2 = time.perf_counter()
                json.dumps(columns, separators=(",", ":"))
                t3 = time.perf_counter()
                times["read_s"].append(t1 - t0)
                times["columns_s"].append(t2 - t1)
                times["json_s"].append(t3 - t2)
    finally:
        store.close()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=float, default=7.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--steps", default="70,auto,10", help="step sizes: auto (the page's) or seconds"
    )
    parser.add_argument("--out")
    args = parser.parse_args()

    import httpx
    from playwright.sync_api import sync_playwright
    from vibesdk_server.testing import FlagServerProcess

    from vibesdk.testing import make_flag

    chromium = shutil.which("chromium")
    if chromium is None:
        sys.exit("needs Debian's chromium on PATH (apt-get install -y chromium)")
    steps = [s.strip() for s in args.steps.split(",")]
    started_at, load_before = now_utc(), os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        db = f"{tmp}/bench.db"
        started = time.perf_counter()
        intervals = seed(db, args.days)
        seed_s = time.perf_counter() - started
        print(f"seeded {intervals:,} intervals per variant in {seed_s:.0f} s", flush=True)
        samples: dict[str, dict[str, list[float]]] = {
            s: {"page_s": [], "series_s": []} for s in steps
        }
        sizes: dict[str, Any] = {}
        with FlagServerProcess(db, environment="bench") as server:
            server.apply(make_flag())
            with sync_playwright() as pw:
                browser = pw.chromium.launch(
                    executable_path=chromium, headless=True, args=["--no-sandbox"]
                )
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.set_default_timeout(120_000)
                page.goto(server.url + "/ui/login")
                page.fill("#token", server.admin_token)
                page.click("button[type=submit]")
                page.wait_for_selector("text=Sign out")
                cookie = {c["name"]: c["value"] for c in page.context.cookies()}
                flag = "/ui/environments/bench/flags/vibethinker"
                page.goto(server.url + flag)
                page.wait_for_selector("#charts[data-ready='1']")
                width = page.evaluate(WIDTH_JS)
                for r in range(args.rounds):
                    for step in steps if r % 2 == 0 else steps[::-1]:
                        query = f"&width={width}" if step == "auto" else f"&step={step}"
                        with httpx.Client(base_url=server.url, cookies=cookie, timeout=120) as http:
                            t0 = time.perf_counter()
                            body = http.get(f"{flag}/series?window=7d{query}")
                            samples[step]["series_s"].append(time.perf_counter() - t0)
                            body.raise_for_status()
                            sizes[step] = {
                                "bytes": len(body.content),
                                "points": len(body.json()["t"]),
                                "step_s": body.json()["step_s"],
                            }
                        page.goto(server.url + flag + ("" if step == "auto" else f"?step={step}"))
                        page.wait_for_selector("#charts[data-ready='1']")
                        page.evaluate("document.querySelector('#charts').dataset.ready = ''")
                        page.evaluate(WATCH_JS)
                        t0 = time.perf_counter()
                        page.click("a[data-window='7d']")
                        page.wait_for_selector("#charts[data-ready='1']")
                        samples[step]["page_s"].append(time.perf_counter() - t0)
                        for name, value in page.evaluate(SPLIT_JS).items():
                            samples[step].setdefault(name, []).append(value)
                        print(
                            f"round {r + 1} step {step}: page {samples[step]['page_s'][-1]:.3f} s,"
                            f" series {samples[step]['series_s'][-1]:.3f} s",
                            flush=True,
                        )
                browser.close()
        parts = breakdown(db, {s: sizes[s]["step_s"] for s in steps}, args.rounds)
    summary = {
        s: {k: summarize(v) for k, v in samples[s].items()}
        | sizes[s]
        | {k: summarize(v) for k, v in parts[s].items()}
        for s in steps
    }
    rows = [
        [
            f"{s} ({sizes[s]['step_s']} s)",
            f"{sizes[s]['points']:,}",
            f"{sizes[s]['bytes'] / 1e6:.1f} MB",
            f"{summary[s]['series_s']['median']:.3f}",
            f"{summary[s]['page_s']['median']:.3f}",
            f"{max(samples[s]['page_s']):.3f}",
            f"{summary[s]['first_byte_s']['median']:.3f}",
            f"{summary[s]['download_s']['median']:.3f}",
            f"{summary[s]['draw_s']['median']:.3f}",
            f"{summary[s]['read_s']['median']:.3f}",
            f"{summary[s]['columns_s']['median']:.3f}",
            f"{summary[s]['json_s']['median']:.3f}",
        ]
        for s in steps
    ]
    header = ["step", "points per series", "series JSON", "series median s", "page median s"]
    parts_header = ["read + fold s", "columns s", "JSON s"]
    page_parts = ["first byte s", "download s", "parse + draw s"]
    print(markdown_table([*header, "page max s", *page_parts, *parts_header], rows))
    write_json(
        args.out,
        {
            **result_header(
                "dashboard",
                started=started_at,
                load_before=load_before,
                distributions=["vibesdk", "vibesdk-server", "playwright"],
                parameters=vars(args),
            ),
            "intervals_per_variant": intervals,
            "seed_s": seed_s,
            "chart_width_px": width,
            "samples": samples,
            "server_parts": parts,
            "summary": summary,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
