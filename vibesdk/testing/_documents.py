"""Builders for valid flag documents, for tests and examples."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vibesdk._flags.document import Flag, FlagDocument

VIBETHINKER_SYSTEM_PROMPT = (
    "You are a programming assistant specialized in solving competitive programming "
    "problems. Always think step by step and output clean code."
)
"""The reviewed system prompt of :func:`make_flag`'s canary variant."""


def make_flag(
    key: str = "vibethinker",
    *,
    stable_url: str = "http://127.0.0.1:9/v1",
    canary_url: str | list[str] = "http://127.0.0.1:9/v1",
    rollout_bps: int = 1000,
    stable_model: str = "stable-model",
    canary_model: str = "vibethinker-1.5b",
    notice: str | None = "You are trying the new assistant.",
    log_share: Mapping[str, float] | None = None,
    **fields: Any,
) -> Flag:
    """A two-variant flag (``stable`` and ``canary``) with a reviewed VibeThinker prompt.

    ``log_share`` sets variants' share of calls logged in full (the request log), e.g.
    ``{"canary": 1.0}``; by default none is logged. ``fields`` override any other
    :class:`~vibesdk.Flag` field (``rules``, ``fallback``, ``enabled``, ...), as mappings or
    models.
    """
    canary_urls = [canary_url] if isinstance(canary_url, str) else list(canary_url)
    data: dict[str, Any] = {
        "key": key,
        "rollout_bps": rollout_bps,
        "variants": {
            "stable": {
                "backend": {"urls": [stable_url], "provider": "llama.cpp"},
                "model": stable_model,
                "params": {"temperature": 0.0, "max_tokens": 64},
            },
            "canary": {
                "backend": {"urls": canary_urls, "provider": "llama.cpp"},
                "model": canary_model,
                "prompt": {
                    "id": "vibethinker-competition",
                    "version": 1,
                    "system": VIBETHINKER_SYSTEM_PROMPT,
                    "user_template": "{input}",
                    "model": canary_model,
                },
                # The params of the -topk launch profiles: VibeThinker's sampling with a top-k
                # cut of 64 instead of none, the same distribution whenever the 0.95 nucleus
                # holds at most 64 tokens (docs/deployment/gpu-serving.md).
                "params": {"temperature": 0.6, "top_p": 0.95, "top_k": 64, "max_tokens": 64},
                "notice": notice,
            },
        },
    }
    for variant, share in (log_share or {}).items():
        data["variants"][variant]["log_share"] = share
    data.update(fields)
    return Flag.model_validate(data)


def make_document(*flags: Flag, version: int = 1, environment: str = "default") -> FlagDocument:
    """A document holding ``flags`` (default: one :func:`make_flag`) at ``version``."""
    chosen = flags or (make_flag(),)
    return FlagDocument(version=version, environment=environment, flags={f.key: f for f in chosen})
