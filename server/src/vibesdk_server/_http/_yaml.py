"""YAML request bodies for ``apply``: converted to JSON before FastAPI reads them.

``vibe apply flags.yaml`` may send the file as ``application/yaml``; the body
must have the same shape as the JSON one (``{"flags": [...], ...}``). A
malformed document, or one that gives a key twice, is a 400 naming the line and
column, and nothing is written.
"""

from __future__ import annotations

import json
from typing import Any

from vibesdk_server._domain._strict_yaml import YamlError, load

__all__ = ["YAML_TYPES", "YamlBodyMiddleware"]

YAML_TYPES = frozenset({"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"})
MAX_BODY = 5 * 1024 * 1024


class YamlBodyMiddleware:
    """Rewrites YAML bodies of ``POST .../apply`` into JSON; everything else passes through."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or not scope["path"].endswith("/apply")
            or _content_type(scope) not in YAML_TYPES
        ):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_BODY:
                await _reply(send, 413, f"body over {MAX_BODY} bytes; split the file")
                return
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        try:
            data = load(b"".join(chunks))
            body = json.dumps(data, default=str).encode()
        except YamlError as exc:
            await _reply(send, 400, f"{exc}; fix the file and retry")
            return
        except (TypeError, ValueError) as exc:
            await _reply(send, 400, f"YAML that has no JSON equivalent ({exc}); use plain values")
            return
        headers = [
            (k, v) for k, v in scope["headers"] if k not in (b"content-type", b"content-length")
        ]
        headers += [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        sent = False

        async def replay() -> Any:
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app({**scope, "headers": headers}, replay, send)


def _content_type(scope: Any) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            return str(bytes(value).decode("latin-1").split(";")[0].strip().lower())
    return ""


async def _reply(send: Any, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
