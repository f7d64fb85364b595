"""Start, watch and stop ``llama-server`` processes.

:func:`serve` starts one or several instances of a profile for a model on free loopback ports,
waits until each answers ``GET /health`` with 200 (it answers 503 while the model loads), and
returns a :class:`ServerGroup` whose ``urls`` go straight into a flag document variant's
``backend.urls``. The SDK spreads a variant's requests over those URLs itself.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from vibesdk import ConfigError, VibeError

from . import models
from ._gpu import mps_running, resolve_profile
from ._profiles import ServerProfile
from ._settings import ServingSettings, load_serving_settings

logger = logging.getLogger("vibesdk_server.serving")

__all__ = [
    "LlamaServer",
    "ServerGroup",
    "ServerStartError",
    "find_llama_server",
    "free_port",
    "serve",
]

LLAMA_CPP_CACHE = Path.home() / ".cache" / "vibesdk" / "llama.cpp"


class ServerStartError(VibeError):
    """A ``llama-server`` process exited or did not become healthy in time; the message holds
    the end of its log."""


def find_llama_server(
    binary: str | Path | None = None, settings: ServingSettings | None = None
) -> Path:
    """The ``llama-server`` to run: ``binary``, else ``VIBESDK_LLAMA_SERVER``, else the newest
    build of ``server/llama/build.sh`` in ``~/.cache/vibesdk/llama.cpp`` (a CUDA build first when
    this machine has an NVIDIA GPU), else ``llama-server`` on ``PATH``.

    Raises :class:`vibesdk.ConfigError` saying how to build one.
    """
    if binary is None:
        settings = settings or load_serving_settings()
        binary = settings.llama_server
    if binary is not None:
        path = Path(binary).expanduser()
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise ConfigError(f"llama-server binary {path} does not exist or is not executable")
        return path
    builds = sorted(
        LLAMA_CPP_CACHE.glob("*/bin/llama-server"), key=lambda p: p.stat().st_mtime, reverse=True
    )
    if Path("/dev/nvidiactl").exists():
        builds.sort(key=lambda p: "cuda" not in p.parent.parent.name)
    else:
        builds = [b for b in builds if "cuda" not in b.parent.parent.name]
    for build in builds:
        if os.access(build, os.X_OK):
            return build
    for directory in os.get_exec_path():
        candidate = Path(directory) / "llama-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise ConfigError(
        "no llama-server found: build one with server/llama/build.sh (add --cuda 90 on an H100), "
        "or set VIBESDK_LLAMA_SERVER to its path"
    )


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (bind to port 0, read it, close)."""
    return free_ports(1, host)[0]


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` different ports that were free a moment ago (all bound at once, then closed)."""
    with contextlib.ExitStack() as stack:
        socks = [
            stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            for _ in range(count)
        ]
        for sock in socks:
            sock.bind((host, 0))
        return [int(sock.getsockname()[1]) for sock in socks]


def _tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class LlamaServer:
    """One running ``llama-server`` process."""

    process: subprocess.Popen[bytes]
    host: str
    port: int
    log_path: Path
    command: list[str]

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT`` (``/health``, ``/metrics``, ``/completion`` live here)."""
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The OpenAI-compatible base URL, ``http://HOST:PORT/v1``."""
        return self.base_url + "/v1"

    def running(self) -> bool:
        return self.process.poll() is None

    def health(self, *, timeout_s: float = 2.0) -> str:
        """``"ok"`` (200), ``"loading"`` (503), or ``"down"`` (no answer / process gone)."""
        if not self.running():
            return "down"
        try:
            response = httpx.get(self.base_url + "/health", timeout=timeout_s)
        except httpx.HTTPError:
            return "down"
        if response.status_code == 200:
            return "ok"
        if response.status_code == 503:
            return "loading"
        return "down"

    def wait_ready(
        self,
        timeout_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """Block until ``/health`` is 200; raise :class:`ServerStartError` if the process exits or
        ``timeout_s`` passes first."""
        deadline = clock() + timeout_s
        while True:
            if not self.running():
                raise ServerStartError(
                    f"llama-server on port {self.port} exited with code {self.process.returncode} "
                    f"before it was ready; log {self.log_path}:\n{_tail(self.log_path)}"
                )
            if self.health() == "ok":
                return
            if clock() >= deadline:
                raise ServerStartError(
                    f"llama-server on port {self.port} was not healthy after {timeout_s:g} s; "
                    f"log {self.log_path}:\n{_tail(self.log_path)}"
                )
            sleep(0.1)

    def stop(self, timeout_s: float = 15.0) -> int:
        """SIGTERM, then SIGKILL after ``timeout_s``; return the exit code. Idempotent."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return int(self.process.returncode)


#: Patch 0002's counters on ``/metrics``: decode steps sampled by each path.
SAMPLING_STEP_COUNTERS = {
    "batched": "llamacpp:batched_sampling_steps_total",
    "stock": "llamacpp:stock_sampling_steps_total",
}


@dataclass
class ServerGroup:
    """The instances of one profile serving one model; a context manager that stops them."""

    profile: ServerProfile
    model: Path
    servers: list[LlamaServer] = field(default_factory=list)
    alias: str | None = None

    @property
    def urls(self) -> list[str]:
        """Each instance's ``http://127.0.0.1:PORT/v1``, for ``backend.urls``."""
        return [s.url for s in self.servers]

    @property
    def metrics_urls(self) -> list[str]:
        return [s.base_url + "/metrics" for s in self.servers]

    def sampling_steps(self) -> dict[str, int] | None:
        """Decode steps sampled so far by the batched op (``batched``) and by llama.cpp's own
        per-sequence graphs (``stock``), summed over the instances: our build's counters on
        ``/metrics`` (patch 0002). ``None`` when an instance has none (a build without them) or
        cannot be read."""
        total = dict.fromkeys(SAMPLING_STEP_COUNTERS, 0)
        for url in self.metrics_urls:
            try:
                text = httpx.get(url, timeout=10).text
            except httpx.HTTPError:
                return None
            lines = (line.split() for line in text.splitlines() if line.startswith("llamacpp:"))
            values = {parts[0]: parts[1] for parts in lines if len(parts) >= 2}
            for path, name in SAMPLING_STEP_COUNTERS.items():
                if name not in values:
                    return None
                total[path] += int(float(values[name]))
        return total

    def backend_config(self, *, model_name: str | None = None) -> dict[str, Any]:
        """A flag document variant fragment: ``backend`` (urls, provider), ``model`` (the name
        the servers answer as, else the file's stem) and ``params`` (the profile's sampling
        defaults)."""
        return {
            "backend": {"urls": self.urls, "provider": "llama.cpp"},
            "model": model_name or self.alias or self.model.stem,
            "params": self.profile.sampling.request_params(),
        }

    def write_urls(self, path: str | Path, *, model_name: str | None = None) -> Path:
        """Write :meth:`backend_config` as JSON, or YAML when the name ends in .yaml/.yml."""
        path = Path(path)
        config = self.backend_config(model_name=model_name)
        if path.suffix in (".yaml", ".yml"):
            import yaml

            text = yaml.safe_dump(config, sort_keys=False)
        else:
            text = json.dumps(config, indent=2) + "\n"
        path.write_text(text)
        return path

    def stop(self) -> None:
        """Stop every instance (each gets SIGTERM first)."""
        for server in self.servers:
            with contextlib.suppress(ProcessLookupError):
                server.process.terminate()
        for server in self.servers:
            server.stop()

    def __enter__(self) -> ServerGroup:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __iter__(self) -> Iterator[LlamaServer]:
        return iter(self.servers)


def serve(
    model: str | Path,
    profile: str | ServerProfile = "cpu-small",
    *,
    instances: int | None = None,
    binary: str | Path | None = None,
    host: str = "127.0.0.1",
    ports: Sequence[int] | None = None,
    ready_timeout_s: float = 180.0,
    log_dir: str | Path | None = None,
    extra_args: Sequence[str] = (),
    env: dict[str, str] | None = None,
    settings: ServingSettings | None = None,
    alias: str | None = None,
) -> ServerGroup:
    """Start ``instances`` llama-server processes of ``profile`` for ``model`` and wait for them.

    ``model`` is a path or a name from :mod:`vibesdk_server.serving.models`. ``profile`` is a
    :class:`ServerProfile`, a name from ``PROFILES``, or ``"auto"`` / ``"auto-topk"``: the
    VibeThinker profile for this machine's GPU (see :func:`resolve_profile`). Ports are free ones
    unless ``ports`` names them. All instances load in parallel; if one fails, every one is
    stopped and :class:`ServerStartError` carries the failing log. A missing binary or model file
    raises :class:`vibesdk.ConfigError` before anything starts.

    A model named in :data:`~vibesdk_server.serving.models.MODEL_NAMES` is served with its
    :class:`~vibesdk_server.serving.models.ModelDefaults` (the name it answers as, its chat
    template, its stop strings); ``alias`` renames it, and an ``--alias`` or ``--chat-template``
    in ``extra_args`` wins over the default.

    llama-server runs in this process's environment, over the profile's ``env`` defaults
    (:meth:`ServerProfile.environment`), with ``env`` over both.
    """
    settings = settings or load_serving_settings()
    prof = resolve_profile(profile)
    exe = find_llama_server(binary, settings)
    model_path = models.resolve(model, settings)
    model_args, alias = launch_args(model, alias, extra_args)
    count = instances if instances is not None else prof.instances
    if count < 1:
        raise ConfigError("instances must be at least 1")
    if ports is not None and len(ports) != count:
        raise ConfigError(f"{count} instances need {count} ports, got {len(ports)}")
    if prof.needs_mps and count > 1 and not mps_running():
        logger.warning(
            "profile %s runs %d llama-server processes on one GPU, which take turns on it unless "
            "the CUDA MPS control daemon is running (start it with `nvidia-cuda-mps-control -d`); "
            "without it they are slower than one server",
            prof.name,
            count,
        )
    logs = Path(log_dir) if log_dir is not None else Path(tempfile.mkdtemp(prefix="vibe-serve-"))
    logs.mkdir(parents=True, exist_ok=True)

    group = ServerGroup(profile=prof, model=model_path, alias=alias)
    ports = list(ports) if ports is not None else free_ports(count, host)
    try:
        for i in range(count):
            port = ports[i]
            command = [
                str(exe),
                *prof.args(model_path, host=host, port=port),
                *model_args,
                *extra_args,
            ]
            log_path = logs / f"llama-server-{port}.log"
            with log_path.open("wb") as log:
                process = subprocess.Popen(  # noqa: S603 -- our binary, argv list, no shell
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=prof.environment(os.environ, env),
                )
            group.servers.append(LlamaServer(process, host, port, log_path, command))
        for server in group.servers:
            server.wait_ready(ready_timeout_s)
    except BaseException:
        group.stop()
        raise
    return group


def launch_args(
    model: str | Path, alias: str | None = None, extra_args: Sequence[str] = ()
) -> tuple[list[str], str | None]:
    """The ``llama-server`` arguments a model needs beyond the profile's, and the name it answers
    as: its :class:`~vibesdk_server.serving.models.ModelDefaults` (none for a file path), with
    ``alias`` in place of the default one. What ``extra_args`` sets is left out."""
    defaults = models.defaults_for(model)
    given_alias = next(
        (v for k, v in itertools.pairwise(extra_args) if k in ("--alias", "-a")),
        None,
    )
    args: list[str] = []
    if alias is not None and given_alias is None:
        args += ["--alias", alias]
    if defaults is not None:
        args += defaults.args([*extra_args, *args])
    return args, given_alias or alias or (defaults.alias if defaults else None)
