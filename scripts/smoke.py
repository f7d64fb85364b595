"""Install-and-smoke check of an installed vibesdk (scripts/test-pythons runs it on 3.12).

Run it with the interpreter of a venv that has ``pip install .`` and nothing else, from a
directory outside the source tree. It imports vibesdk, checks that the installed copy (not
the checkout's ``vibesdk/``) was imported, and runs a short offline chat, sync and async,
against two fake model servers on loopback: the canary answers 503, so stable answers instead.
Exit status 0 means it all worked; anything else prints what did not.
"""

from __future__ import annotations

import asyncio
import sys
import sysconfig
from pathlib import Path

import vibesdk
from vibesdk.testing import FakeBackend, InMemoryFlagSource, Reply, make_document, make_flag

QUESTION = [{"role": "user", "content": "17 * 23?"}]


def main() -> int:
    installed = Path(sysconfig.get_paths()["purelib"])
    where = Path(vibesdk.__file__).resolve()
    if installed not in where.parents:
        print(f"smoke: imported vibesdk from {where}, not from {installed}", file=sys.stderr)
        return 1
    with (
        FakeBackend(default="391") as stable,
        FakeBackend(default=Reply(status=503)) as canary,
    ):
        flag = make_flag(
            stable_url=stable.url,
            canary_url=canary.url,
            rollout_bps=10_000,
            fallback={"retries": 0},
        )
        flags = InMemoryFlagSource(make_document(flag))
        with vibesdk.Client(flag_source=flags) as client:
            result = client.chat("vibethinker", "u42", QUESTION)
        got = (result.text, result.variant, result.fallback, result.fallback_reason)
        if got != ("391", "stable", True, "http_503"):
            print(f"smoke: sync chat gave {got}", file=sys.stderr)
            return 1

        async def chat_async() -> vibesdk.ChatResult:
            async with vibesdk.AsyncClient(flag_source=flags) as client:
                return await client.chat("vibethinker", "u7", QUESTION)

        result = asyncio.run(chat_async())
        if (result.text, result.fallback) != ("391", True):
            print(f"smoke: async chat gave {(result.text, result.fallback)}", file=sys.stderr)
            return 1
    print(f"smoke: vibesdk {vibesdk.__version__} on Python {sys.version.split()[0]}: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
