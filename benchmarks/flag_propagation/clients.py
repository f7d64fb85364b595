"""A process holding N SDK flag sources (vibesdk._sources.AsyncFlagSource) on one event loop.

Driven over stdin/stdout by run.py, one JSON object per line:

* prints ``{"ready": N}`` once every source has the server's document;
* on ``{"wait": V}``, waits until every source has applied version >= V and
  prints ``{"version": V, "applied": [t, ...]}``: for each source, the
  ``time.monotonic()`` at which its store listener saw the first document with
  version >= V (CLOCK_MONOTONIC is system-wide on Linux, so run.py compares it
  with its own clock), or ``null`` if it had not arrived within the timeout;
* on ``{"quit": true}``, closes every source and exits.

The listener is the SDK's own ``FlagStore.add_listener``, so the time is when
the document became what ``evaluate`` answers from.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from vibesdk import FlagDocument, Settings
from vibesdk._sources import AsyncFlagSource


class Recorder:
    """Per source: every (version, monotonic time) its store applied."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, float]] = []
        self.changed = asyncio.Event()

    def __call__(self, document: FlagDocument) -> None:
        self.seen.append((document.version, time.monotonic()))
        self.changed.set()

    def first_at_least(self, version: int) -> float | None:
        return next((t for v, t in self.seen if v >= version), None)


def say(data: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(data) + "\n")
    sys.stdout.flush()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--mode", choices=["push", "poll"], required=True)
    parser.add_argument("--poll-interval", type=float, default=1.0)
    parser.add_argument("--timeout", type=float, default=15.0)
    args = parser.parse_args()

    settings = Settings(
        server_url=args.url,
        sdk_key=args.key,
        cache_dir="",  # no disk cache: every source starts from the server
        streaming=args.mode == "push",
        # With push, polling is only the safety net (its default 30 s); with
        # polling alone, it is the only way a change arrives.
        poll_interval_s=30.0 if args.mode == "push" else args.poll_interval,
    )
    sources = [AsyncFlagSource(settings) for _ in range(args.clients)]
    recorders = [Recorder() for _ in sources]
    for source, recorder in zip(sources, recorders, strict=True):
        source.store.add_listener(recorder)
        await source.start()
    ready = await asyncio.gather(*(s.wait_until_ready(args.timeout) for s in sources))
    if not all(ready):
        say({"error": f"only {sum(ready)} of {len(sources)} sources became ready"})
        return
    if args.mode == "push":
        # Every stream must be up before the first flip, or a flip could be
        # measured through the initial poll instead of the push.
        deadline = time.monotonic() + args.timeout
        # The source has no event for "stream up", so look every 50 ms.
        while time.monotonic() < deadline:
            if all(s.core.stream_up for s in sources):
                break
            await asyncio.sleep(0.05)
    say({"ready": len(sources), "streams_up": sum(s.core.stream_up for s in sources)})

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    try:
        while line := await reader.readline():
            command = json.loads(line)
            if command.get("quit"):
                break
            version = int(command["wait"])
            deadline = time.monotonic() + args.timeout
            while time.monotonic() < deadline:
                if all(r.first_at_least(version) is not None for r in recorders):
                    break
                await asyncio.sleep(0.01)
            say({"version": version, "applied": [r.first_at_least(version) for r in recorders]})
    finally:
        await asyncio.gather(*(s.aclose() for s in sources))


if __name__ == "__main__":
    asyncio.run(main())
