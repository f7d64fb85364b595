"""An asyncio service that answers a batch of questions through ``vibesdk.AsyncClient``.

    VIBESDK_SERVER_URL=http://127.0.0.1:8700 VIBESDK_SDK_KEY=... \\
        python examples/async_service.py --concurrency 8 questions.jsonl

Each input line is ``{"user_id": "...", "question": "..."}`` (standard input when no
file is given); each output line adds the answer, the variant that answered, whether
it fell back, the output checks and the trace id. The first answer is streamed to
the terminal to show ``stream_chat``. Same surface as ``vibesdk.Client``, with
``await``: sticky cohorts, reviewed prompts, fallback to stable, telemetry.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import vibesdk

FLAG = "vibethinker"


async def answer(client: vibesdk.AsyncClient, user_id: str, question: str) -> dict[str, Any]:
    """One question; never raises for a model failure (reports it instead)."""
    messages = [{"role": "user", "content": question}]
    try:
        r = await client.chat(FLAG, user_id=user_id, messages=messages)
    except (vibesdk.AllBackendsFailedError, vibesdk.FlagsNotReadyError) as exc:
        # FlagsNotReadyError: no flag document yet (no bootstrap, and the server did not answer).
        return {"user_id": user_id, "question": question, "error": str(exc)}
    return {
        "user_id": user_id,
        "question": question,
        "answer": r.text,
        "variant": r.variant,
        "assigned_variant": r.assignment.variant,
        "fallback": r.fallback,
        "quality_failures": list(r.quality.failures),
        "latency_s": round(r.latency_s, 3),
        "trace_id": r.trace_id,
    }


async def answer_all(
    client: vibesdk.AsyncClient, items: Iterable[tuple[str, str]], *, concurrency: int = 8
) -> list[dict[str, Any]]:
    """Answer every ``(user_id, question)``, at most ``concurrency`` at a time, in input order."""
    limit = asyncio.Semaphore(concurrency)

    async def bounded(user_id: str, question: str) -> dict[str, Any]:
        async with limit:
            return await answer(client, user_id, question)

    return list(await asyncio.gather(*(bounded(u, q) for u, q in items)))


async def stream_one(client: vibesdk.AsyncClient, user_id: str, question: str) -> str:
    """Stream one answer to stderr as it is generated; return the whole text."""
    parts = []
    async for chunk in client.stream_chat(
        FLAG, user_id=user_id, messages=[{"role": "user", "content": question}]
    ):
        parts.append(chunk.text)
        print(chunk.text, end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return "".join(parts)


async def run(items: list[tuple[str, str]], *, concurrency: int, **client_args: Any) -> int:
    async with vibesdk.AsyncClient(**client_args) as client:
        await client.wait_until_ready(timeout=5)
        if items:
            await stream_one(client, *items[0])
        for row in await answer_all(client, items, concurrency=concurrency):
            print(json.dumps(row, ensure_ascii=False))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("questions", nargs="?", type=Path, help="JSON lines; default stdin")
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args(argv)
    text = args.questions.read_text(encoding="utf-8") if args.questions else sys.stdin.read()
    items = []
    for line in text.splitlines():
        if line.strip():
            row = json.loads(line)
            items.append((str(row["user_id"]), str(row["question"])))
    return asyncio.run(run(items, concurrency=args.concurrency))


if __name__ == "__main__":
    sys.exit(main())
