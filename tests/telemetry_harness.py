"""Shared by the telemetry tests: real loopback backends, and flags that send every user to the
canary with no retries, so each call's attempts are known in advance."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager

import vibesdk
from vibesdk.testing import FakeBackend, Reply, make_document, make_flag

ASK = [{"role": "user", "content": "What is 17 * 23?"}]
USER = "u42"  # rollout 10000: every user is in the canary

# Named backends: "good" answers "391", "bad" fails with 503, "empty" answers with only a
# <think> block (which fails the "empty" output check).
_REPLIES: Mapping[str, Reply | str] = {
    "good": "391",
    "bad": Reply(status=503),
    "empty": "<think>hmm</think>",
}


@contextmanager
def loopback_backends() -> Iterator[dict[str, str]]:
    """Serve every named backend on 127.0.0.1 for the block; their base URLs by name."""
    with ExitStack() as stack:
        urls = {}
        for name, reply in _REPLIES.items():
            fake = stack.enter_context(FakeBackend(default=reply))
            urls[name] = stack.enter_context(fake.serve())
        yield urls


def canary_document(
    urls: Mapping[str, str], flags: Mapping[str, tuple[str, str]]
) -> vibesdk.FlagDocument:
    """A document with one flag per key, ``(stable backend, canary backend)`` by name."""
    return make_document(
        *(
            make_flag(
                key,
                stable_url=urls[stable],
                canary_url=urls[canary],
                rollout_bps=10_000,
                fallback={"retries": 0, "breaker_failures": 1000},
            )
            for key, (stable, canary) in flags.items()
        )
    )
