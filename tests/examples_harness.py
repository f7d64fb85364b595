"""Helpers for the tests that run examples/: load a script as a module, pick canary users,
serve an app, and skip (saying why) when the real models are missing."""

from __future__ import annotations

import contextlib
import importlib.util
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from vibesdk import ConfigError, bucket

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load_example(relative: str) -> ModuleType:
    """Import ``examples/<relative>`` as a fresh module (examples are scripts, not a package)."""
    path = EXAMPLES / relative
    name = "example_" + path.stem
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def users_in(flag: str, rollout_bps: int, *, canary: bool, count: int = 1) -> list[str]:
    """``count`` user ids that the published bucketing puts in (or out of) the canary."""
    found = []
    n = 0
    while len(found) < count:
        user = f"user-{n}"
        if (bucket(flag, user) < rollout_bps) == canary:
            found.append(user)
        n += 1
    return found


@contextlib.contextmanager
def serve_app(app: Any) -> Iterator[str]:
    """Serve an ASGI app with uvicorn on a free loopback port for the block; yields its URL."""
    import uvicorn

    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="example-app", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive(), "the app failed to start"
        assert time.monotonic() < deadline, "the app did not start within 30 s"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def real_models_or_skip() -> ModuleType:
    """``vibesdk_server.serving``, once llama-server and both small models are found.

    Call it at module level: without them the module is skipped, saying what is missing (a
    failure under ``CI=true``, see tests/conftest.py).
    """
    serving = pytest.importorskip("vibesdk_server.serving", reason="needs vibesdk-server")
    try:
        serving.find_llama_server()
        serving.models.resolve("smollm2")
        serving.models.resolve("gemma3-270m")
    except ConfigError as exc:
        pytest.skip(f"needs llama-server and the two small models: {exc}", allow_module_level=True)
    return serving
