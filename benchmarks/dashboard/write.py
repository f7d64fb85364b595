"""What do the rollups cost an OTLP write?

Times ``add_points`` of one SDK export (one 10 s interval of a stable and a canary variant: the
8 points ``run.py`` seeds per interval) into a SQLite database, with the 1 min and 10 min
rollups (as the server writes) and without them (the 10 s rows alone, as before the rollups),
alternating one write of each, on one database that starts with ``--days`` of measurements.

    python benchmarks/dashboard/write.py --out benchmarks/dashboard/results/write1.json
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import markdown_table, now_utc, result_header, summarize, write_json
from run import INTERVAL_S, points_of, seed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=float, default=1.0)
    parser.add_argument("--writes", type=int, default=500, help="writes of each kind")
    parser.add_argument("--out")
    args = parser.parse_args()

    import random

    from vibesdk_server._storage import _measurements, open_store

    started_at, load_before = now_utc(), os.getloadavg()
    samples: dict[str, list[float]] = {"with_rollups_s": [], "without_rollups_s": []}
    with tempfile.TemporaryDirectory() as tmp:
        db = f"{tmp}/bench.db"
        seed(db, args.days)
        store = open_store(db)
        rng = random.Random(11)
        t = int(time.time()) // INTERVAL_S * INTERVAL_S
        try:
            for i in range(2 * args.writes):
                rolled = i % 2 == 0
                t += INTERVAL_S
                batch = points_of(rng, t)
                _measurements.ROLLUPS = (60, 600) if rolled else ()
                t0 = time.perf_counter()
                store.add_points("bench", batch)
                took = time.perf_counter() - t0
                samples["with_rollups_s" if rolled else "without_rollups_s"].append(took)
        finally:
            _measurements.ROLLUPS = (60, 600)
            store.close()
    summary = {k: summarize(v) for k, v in samples.items()}
    print(
        markdown_table(
            ["write", "median ms", "p90 ms"],
            [[k, f"{v['median'] * 1e3:.2f}", f"{v['p90'] * 1e3:.2f}"] for k, v in summary.items()],
        )
    )
    write_json(
        args.out,
        {
            **result_header(
                "dashboard-write",
                started=started_at,
                load_before=load_before,
                distributions=["vibesdk", "vibesdk-server"],
                parameters=vars(args),
            ),
            "samples": samples,
            "summary": summary,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
