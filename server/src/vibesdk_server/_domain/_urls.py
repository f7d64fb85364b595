"""Checking the URLs an operator gives the server (Prometheus, an OTLP endpoint)."""

from __future__ import annotations

from urllib.parse import urlsplit

__all__ = ["check_http_url"]


def check_http_url(url: str, rule: str, example: str) -> str:
    """``url`` if it is an http(s) URL with a host (and a numeric port, if any); else
    ValueError ``"{rule}, e.g. {example}; got '{url}'"``."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError for a port that is not a number
    except ValueError:
        parts = urlsplit("")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{rule}, e.g. {example}; got {url!r}")
    return url
