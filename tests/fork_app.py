"""A tiny WSGI app for tests/test_fork_gunicorn.py, served by ``gunicorn --preload``.

Its ``vibesdk.Client`` is created at import time, so with ``--preload`` it is
made once in gunicorn's master and inherited by every forked worker, as in a
real app. The client follows the flag server named by the ``VIBESDK_*``
environment (``VIBESDK_SERVER_URL``, ``VIBESDK_SDK_KEY``, ...), with its
default delivery: a push stream plus polling.

``GET /?hold=SECONDS`` answers, after holding the worker that long (so that
concurrent requests spread over the workers), with the worker's pid, the
variant it assigns to the fixed user ``u42`` on flag ``vibethinker`` and the
version of the flag document it serves.
"""

from __future__ import annotations

import json
import os
import time
import urllib.parse
from collections.abc import Callable, Iterable
from typing import Any

import vibesdk

FLAG = "vibethinker"
USER = "u42"

client = vibesdk.Client()
# The master waits for the first document, so every worker starts with one.
if not client.wait_until_ready(30):
    raise RuntimeError("the flag server did not answer within 30 s")


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
    hold = float(query.get("hold", ["0"])[0])
    if hold > 0:
        time.sleep(hold)
    assignment = client.assign(FLAG, USER)
    body = json.dumps(
        {
            "pid": os.getpid(),
            "variant": assignment.variant,
            "version": client.flag_source.store.version,
        }
    ).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]
