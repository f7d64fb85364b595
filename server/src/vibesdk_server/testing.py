"""Start the real flag server in tests: a subprocess on 127.0.0.1, a free port, a fresh database.

    with FlagServerProcess() as server:          # SQLite in a temporary directory
        server.apply(make_flag(rollout_bps=0))   # registers + approves its prompt templates
        server.rollout("vibethinker", 1000)
        settings = Settings(server_url=server.url, sdk_key=server.sdk_key)

``FlagServerProcess`` creates an admin token, an SDK key and the environment
before it starts the server, waits for ``/healthz``, and ``stop()`` terminates
the process and waits for it. :meth:`FlagServer.new_environment` gives an
isolated environment (and its own SDK key) on the same server, which is how
the pytest fixtures keep tests apart without a process per test.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple

import httpx

from vibesdk import Flag, FlagDocument

__all__ = [
    "FlagServer",
    "FlagServerProcess",
    "SseEvent",
    "drop_postgres_schema",
    "iter_sse",
    "make_eval_schedule_due",
    "postgres_schema_url",
]


class SseEvent(NamedTuple):
    """One server-sent event: ``id``, ``event`` and ``data`` (None when absent); or a comment."""

    id: str | None
    event: str | None
    data: str | None
    comment: str | None = None


def iter_sse(lines: Iterator[str]) -> Iterator[SseEvent]:
    """Parse SSE text lines (``httpx.Response.iter_lines()``) into events and comments.

    A minimal reader for tests: fields ``id``, ``event``, ``data`` (multi-line
    joined with newlines), ``retry`` is skipped, comments are yielded as
    ``SseEvent(None, None, None, comment)``.
    """
    fields: dict[str, str] = {}
    data: list[str] = []
    for line in lines:
        if line == "":
            if data or fields:
                yield SseEvent(
                    fields.get("id"), fields.get("event"), "\n".join(data) if data else None
                )
            fields, data = {}, []
            continue
        if line.startswith(":"):
            yield SseEvent(None, None, None, line[1:].strip())
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        elif name in ("id", "event"):
            fields[name] = value


class FlagServer:
    """One environment of a running flag server, with admin helpers for tests.

    Helpers raise :class:`httpx.HTTPStatusError` on a refused call; use
    :meth:`admin_request` to look at a refusal instead.
    """

    def __init__(
        self,
        url: str,
        admin_token: str,
        sdk_key: str,
        environment: str,
        reviewer_token: str | None = None,
    ) -> None:
        self.url = url
        self.admin_token = admin_token
        self.sdk_key = sdk_key
        self.environment = environment
        #: A second admin token that approves prompts (four-eyes review: the
        #: author of a version may not approve it). None: approve with admin_token.
        self.reviewer_token = reviewer_token

    # -- raw access --------------------------------------------------------------------------
    def admin_request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """``method path`` with the admin token (``path`` relative to the server URL)."""
        headers = {"Authorization": f"Bearer {self.admin_token}", **kwargs.pop("headers", {})}
        return httpx.request(method, self.url + path, headers=headers, timeout=30.0, **kwargs)

    def sdk_request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """``method path`` with this environment's SDK key."""
        headers = {"Authorization": f"Bearer {self.sdk_key}", **kwargs.pop("headers", {})}
        return httpx.request(method, self.url + path, headers=headers, timeout=30.0, **kwargs)

    def _admin_ok(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.admin_request(method, path, **kwargs)
        if response.is_error:
            detail = response.text
            raise httpx.HTTPStatusError(
                f"{method} {path} -> {response.status_code}: {detail}",
                request=response.request,
                response=response,
            )
        return response.json()

    @property
    def _env_path(self) -> str:
        return f"/v1/admin/environments/{self.environment}"

    # -- helpers -----------------------------------------------------------------------------
    def document(self) -> FlagDocument:
        """The environment's current document, as the SDK would get it."""
        response = self.sdk_request("GET", "/v1/flags")
        response.raise_for_status()
        return FlagDocument.model_validate_json(response.content)

    def register_prompt(
        self,
        *,
        prompt_id: str,
        system: str,
        model: str,
        user_template: str = "{input}",
        approve: bool = True,
    ) -> dict[str, Any]:
        """Register a template version (and approve it, by default); returns the prompt object.

        It is added with :attr:`admin_token` and approved with
        :attr:`reviewer_token` (another admin), as four-eyes review requires.
        """
        created = self._admin_ok(
            "POST",
            "/v1/admin/prompts",
            json={
                "id": prompt_id,
                "system": system,
                "user_template": user_template,
                "model": model,
            },
        )
        if approve:
            reviewer = self.reviewer_token or self.admin_token
            created = self._admin_ok(
                "POST",
                f"/v1/admin/prompts/{prompt_id}/versions/{created['version']}/approve",
                json={"reason": "approved by the test fixture"},
                headers={"Authorization": f"Bearer {reviewer}"},
            )
        return dict(created)

    def apply(
        self,
        *flags: Flag | Mapping[str, Any],
        reason: str | None = "test",
        prune: bool = False,
        register_prompts: bool = True,
    ) -> dict[str, Any]:
        """Apply ``flags``; returns the change object.

        With ``register_prompts`` every inline prompt that is not already a
        registered approved template is registered, approved and referenced
        by the version the server assigned (which may differ from the inline one).
        """
        payload = [f.model_dump(mode="json") if isinstance(f, Flag) else dict(f) for f in flags]
        if register_prompts:
            payload = [self._register_inline_prompts(f) for f in payload]
        return dict(
            self._admin_ok(
                "POST",
                f"{self._env_path}/apply",
                json={
                    "flags": payload,
                    "prune": prune,
                    "reason": reason,
                },
            )
        )

    def _register_inline_prompts(self, flag: dict[str, Any]) -> dict[str, Any]:
        variants = dict(flag.get("variants") or {})
        for name, variant in variants.items():
            prompt = variant.get("prompt") if isinstance(variant, dict) else None
            if not isinstance(prompt, dict) or "system" not in prompt:
                continue
            existing = self.admin_request(
                "GET", f"/v1/admin/prompts/{prompt['id']}/versions/{prompt['version']}"
            )
            if existing.status_code == 200:
                got = existing.json()
                if (
                    got["state"] == "approved"
                    and all(
                        got[k] == prompt.get(k, got[k])
                        for k in ("system", "user_template", "model")
                    )
                    and got["model"] == variant.get("model")
                ):
                    continue
            created = self.register_prompt(
                prompt_id=prompt["id"],
                system=prompt.get("system", ""),
                user_template=prompt.get("user_template", "{input}"),
                model=variant.get("model", prompt.get("model") or ""),
            )
            variants[name] = {
                **variant,
                "prompt": {"id": created["id"], "version": created["version"]},
            }
        return {**flag, "variants": variants}

    def rollout(self, key: str, bps: int, *, reason: str | None = "test") -> dict[str, Any]:
        """Set ``key``'s rollout to ``bps`` basis points (1000 = 10%)."""
        return dict(
            self._admin_ok(
                "POST", f"{self._env_path}/flags/{key}/rollout", json={"bps": bps, "reason": reason}
            )
        )

    def set_enabled(
        self, key: str, enabled: bool, *, reason: str | None = "test"
    ) -> dict[str, Any]:
        """Flip ``key``'s kill switch."""
        return dict(
            self._admin_ok(
                "POST",
                f"{self._env_path}/flags/{key}/enabled",
                json={"enabled": enabled, "reason": reason},
            )
        )

    def rollback(
        self, key: str, *, reason: str = "test rollback", to_version: int | None = None
    ) -> dict[str, Any]:
        """Roll ``key`` back (rollout 0, last good flag restored)."""
        return dict(
            self._admin_ok(
                "POST",
                f"{self._env_path}/flags/{key}/rollback",
                json={"reason": reason, "to_version": to_version},
            )
        )

    def mark_good(
        self, version: int | None = None, *, reason: str | None = "test"
    ) -> dict[str, Any]:
        """Mark ``version`` (default: the current one) known-good."""
        if version is None:
            version = int(self._admin_ok("GET", self._env_path)["version"])
        return dict(
            self._admin_ok(
                "POST", f"{self._env_path}/versions/{version}/good", json={"reason": reason}
            )
        )

    def store_eval_run(
        self,
        flag: str,
        scores: Mapping[str, Sequence[float]],
        *,
        set_name: str = "test-set.jsonl",
        set_digest: str = "sha256:test-set",
        kind: str = "math",
    ) -> dict[str, Any]:
        """Store a finished evaluation run of ``flag`` whose answers score ``scores`` (per
        variant, one answer per item), as ``vibe eval run`` stores one; the finished run, with
        its ``summary`` and ``regression`` checks."""
        base = f"{self._env_path}/eval-runs"
        version = self.document().version
        created = self._admin_ok(
            "POST",
            base,
            json={
                "flag": flag,
                "set_name": set_name,
                "set_digest": set_digest,
                "items": max(len(s) for s in scores.values()),
                "variants": list(scores),
                "document_version": version,
            },
        )
        rows = [
            {
                "item_id": f"item-{i}",
                "variant": variant,
                "kind": kind,
                "score": score,
                "document_version": version,
            }
            for variant, values in scores.items()
            for i, score in enumerate(values)
        ]
        self._admin_ok("POST", f"{base}/{created['id']}/results", json={"results": rows})
        return dict(self._admin_ok("POST", f"{base}/{created['id']}/finish"))

    def new_environment(self, name: str | None = None) -> FlagServer:
        """Create an environment (default: a random name) with its own SDK key, on this server."""
        name = name or f"test-{secrets.token_hex(4)}"
        self._admin_ok("POST", "/v1/admin/environments", json={"name": name})
        key = self._admin_ok(
            "POST", f"/v1/admin/environments/{name}/sdk-keys", json={"name": "test-sdk"}
        )["key"]
        return FlagServer(self.url, self.admin_token, str(key), name, self.reviewer_token)


class FlagServerProcess(FlagServer):
    """The real ``vibe-server`` in a subprocess, started as an operator would start it.

    ``db``: a SQLite path or a ``postgresql://`` URL; default: ``vibesdk.db``
    in a new temporary directory. The admin token is named ``test-admin-*``, a
    second admin token ``test-reviewer-*`` (:attr:`reviewer_token`, which
    approves prompts: the server refuses self-approval) and the SDK key
    ``test-sdk-*``. ``allow_self_review=True`` starts the server with
    ``--allow-self-review`` instead (one admin approves their own prompts; no
    reviewer token is created unless given). ``guard_interval_s``: how often the guard loop
    looks at running releases (tests use ~0.5 s). Use as a context manager, or
    ``start()``/``stop()``.
    """

    def __init__(
        self,
        db: str | os.PathLike[str] | None = None,
        *,
        environment: str = "default",
        heartbeat_s: float = 15.0,
        refresh_s: float = 5.0,
        guard_interval_s: float = 5.0,
        startup_timeout_s: float = 60.0,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        admin_token: str | None = None,
        sdk_key: str | None = None,
        reviewer_token: str | None = None,
        allow_self_review: bool = False,
    ) -> None:
        # Holds the log, the port file and (by default) the SQLite database.
        self._tmp: tempfile.TemporaryDirectory[str] | None = tempfile.TemporaryDirectory(
            prefix="vibesdk-server-"
        )
        self._workdir = Path(self._tmp.name)
        self.db = str(self._workdir / "vibesdk.db" if db is None else db)
        self.heartbeat_s = heartbeat_s
        self.refresh_s = refresh_s
        self.guard_interval_s = guard_interval_s
        self.startup_timeout_s = startup_timeout_s
        self.extra_args = list(extra_args)
        self.allow_self_review = allow_self_review
        self.extra_env = dict(env or {})
        self.process: subprocess.Popen[bytes] | None = None
        self.port: int | None = None
        self.log_path = self._workdir / "server.log"
        super().__init__("", admin_token or "", sdk_key or "", environment, reviewer_token)

    # -- lifecycle -----------------------------------------------------------------------------
    def _bootstrap(self) -> None:
        from ._domain._errors import NotFoundError
        from ._storage import open_store

        store = open_store(self.db)
        try:
            try:
                store.current_version(self.environment)
            except NotFoundError:
                store.create_environment(self.environment, actor="test-fixture", reason="test")
            suffix = secrets.token_hex(3)
            if not self.admin_token:
                self.admin_token = store.create_token(
                    kind="admin",
                    name=f"test-admin-{suffix}",
                    environment=None,
                    created_by="test-fixture",
                )
            if not self.reviewer_token and not self.allow_self_review:
                self.reviewer_token = store.create_token(
                    kind="admin",
                    name=f"test-reviewer-{suffix}",
                    environment=None,
                    created_by="test-fixture",
                )
            if not self.sdk_key:
                self.sdk_key = store.create_token(
                    kind="sdk",
                    name=f"test-sdk-{suffix}",
                    environment=self.environment,
                    created_by="test-fixture",
                )
        finally:
            store.close()

    def start(self) -> FlagServerProcess:
        """Bootstrap the database, start the server and wait until ``/healthz`` answers."""
        if self.process is not None and self.process.poll() is None:
            return self
        self._bootstrap()
        port_file = self._workdir / f"port-{secrets.token_hex(4)}"
        command = [
            sys.executable,
            "-m",
            "vibesdk_server",
            "serve",
            "--db",
            self.db,
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--port-file",
            str(port_file),
            "--heartbeat-s",
            str(self.heartbeat_s),
            "--refresh-s",
            str(self.refresh_s),
            "--guard-interval-s",
            str(self.guard_interval_s),
            *(["--allow-self-review"] if self.allow_self_review else []),
            *self.extra_args,
        ]
        log = self.log_path.open("ab")
        try:
            # Our own interpreter and module, with arguments we built: not untrusted input.
            self.process = subprocess.Popen(  # noqa: S603
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **self.extra_env},
            )
        finally:
            log.close()
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"vibe-server exited with {self.process.returncode}:\n" + self.log_tail()
                )
            if port_file.exists():
                self.port = int(port_file.read_text())
                self.url = f"http://127.0.0.1:{self.port}"
                try:
                    if httpx.get(self.url + "/healthz", timeout=2.0).status_code == 200:
                        return self
                except httpx.TransportError:
                    pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("vibe-server did not answer /healthz in time:\n" + self.log_tail())

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the server's log (stdout + stderr)."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, wait up to ``timeout`` s, then SIGKILL; idempotent."""
        proc = self.process
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.process = None

    def kill(self) -> None:
        """SIGKILL the server (no shutdown at all), for durability tests."""
        proc = self.process
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        self.process = None

    def restart(self) -> FlagServerProcess:
        """Stop (if running) and start again on the same database and tokens (new port)."""
        self.stop()
        return self.start()

    def close(self) -> None:
        """Stop the server and remove its temporary directory."""
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> FlagServerProcess:
        try:
            return self.start()
        except BaseException:
            self.close()  # __exit__ will not run: remove the temporary directory now
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def postgres_schema_url(base_url: str, schema: str | None = None) -> str:
    """Create a fresh schema in the PostgreSQL at ``base_url``; return a URL that uses it.

    Tests share one database this way without seeing each other's tables.
    """
    import psycopg

    schema = schema or f"t_{secrets.token_hex(6)}"
    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    parts = urllib.parse.urlsplit(base_url)
    query = urllib.parse.parse_qsl(parts.query)
    query.append(("options", f"-c search_path={schema}"))
    return urllib.parse.urlunsplit(
        parts._replace(query=urllib.parse.urlencode(query, quote_via=urllib.parse.quote))
    )


def drop_postgres_schema(base_url: str, schema_url: str) -> None:
    """Drop the schema that :func:`postgres_schema_url` created (stop its servers first)."""
    import psycopg

    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(schema_url).query))
    options = query.get("options", "")
    schema = options.removeprefix("-c search_path=")
    if not schema or schema == options or not schema.startswith("t_"):
        return
    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def make_eval_schedule_due(db: str | os.PathLike[str], environment: str, flag_key: str) -> None:
    """Make the flag's evaluation schedule due now, as if it had been stored two days ago.

    ``db``: the server's database (``FlagServerProcess.db``). A server running with a short
    ``--eval-schedule-check-s`` then makes the scheduled run at its next look, once (the run is
    for the latest day whose ``HH:MM`` has passed; the days before it are not caught up).
    """
    import datetime as dt

    from ._storage import open_store, rfc3339

    store = open_store(str(db))
    try:
        store.eval_schedule(environment, flag_key)  # 404 (NotFoundError) if there is none
        since = rfc3339(dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=2))
        with store._tx(write=True) as tx:
            tx.run(
                "UPDATE eval_schedules SET since = ? WHERE environment = ? AND flag_key = ?",
                (since, environment, flag_key),
            )
    finally:
        store.close()
