"""``vibe-server``: run the flag server, or bootstrap tokens straight in the database.

    vibe-server --db ./vibesdk.db --host 127.0.0.1 --port 8700
    vibe-server --db postgresql://vibesdk@db:5432/vibesdk --port 8700   # one of several replicas
    vibe-server --db ./vibesdk.db --allow-self-review   # one operator: may approve own prompts
    vibe-server --db ./vibesdk.db --metrics-source prometheus --prometheus-url http://prom:9090
    vibe-server --db ./vibesdk.db --otlp-logs-endpoint http://collector:4318/v1/logs
    vibe-server token create --db ./vibesdk.db --name alice --kind admin
    vibe-server token create --db ./vibesdk.db --env prod --kind sdk --name web
    vibe-server token list --db ./vibesdk.db
    vibe-server token revoke --db ./vibesdk.db --name alice --kind admin
    vibe-server env create --db ./vibesdk.db --name prod

``token create`` prints the new secret once on stdout (nothing else), so
scripts can capture it; it is stored only as a hash.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sqlite3
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING

from . import __version__
from ._domain._errors import NotFoundError, ServerError
from ._guard.sources import (
    DEFAULT_ENVIRONMENT_LABEL,
    SOURCES,
    PrometheusSource,
    check_label,
    check_prometheus_url,
)
from ._review.events import check_otlp_endpoint, otlp_logger_provider

if TYPE_CHECKING:
    from ._storage import SqlStore

__all__ = ["main"]

log = logging.getLogger("vibesdk_server")
_COMMANDS = ("serve", "token", "env")
SYSTEM_ACTOR = "vibe-server"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vibe-server", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"vibe-server {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP server (the default command)")
    serve.add_argument(
        "--db",
        default="./vibesdk.db",
        help="SQLite file path, or a postgresql:// URL (default: ./vibesdk.db)",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8700, help="port; 0 picks a free one")
    serve.add_argument("--port-file", type=Path, help="write the bound port here once listening")
    serve.add_argument(
        "--heartbeat-s",
        type=float,
        default=15.0,
        help="seconds between SSE heartbeat comments (default 15)",
    )
    serve.add_argument(
        "--refresh-s",
        type=float,
        default=5.0,
        help="PostgreSQL only: safety re-read of versions (default 5)",
    )
    serve.add_argument(
        "--auth-cache-s",
        type=float,
        default=5.0,
        help="seconds a verified token is cached; a revoked one works that long",
    )
    serve.add_argument(
        "--allow-self-review",
        action="store_true",
        help="let an admin approve a prompt version they added themselves (single-operator"
        " setups, demos); by default another admin must approve it (four-eyes review)",
    )
    serve.add_argument(
        "--guard-interval-s",
        type=_positive,
        default=5.0,
        help="seconds between the guard loop's looks at running releases (default 5)",
    )
    serve.add_argument(
        "--eval-schedule-check-s",
        type=_positive,
        default=60.0,
        help="seconds between the evaluation scheduler's looks for due daily runs (default 60)",
    )
    serve.add_argument(
        "--ui-session-ttl-s",
        type=_positive,
        default=8 * 3600.0,
        help="seconds a sign-in to the dashboard at /ui lasts (default 8 hours)",
    )
    serve.add_argument(
        "--request-log-days",
        type=_days,
        default=7.0,
        help="days the request log keeps an entry (default 7)",
    )
    serve.add_argument(
        "--request-log-rows",
        type=_non_negative_int,
        default=10_000,
        help="entries the request log keeps per environment, newest first (default 10000;"
        " 0 keeps none)",
    )
    serve.add_argument(
        "--measurement-days",
        type=_days,
        default=8.0,
        help="days the 10 s measurements from the SDKs are kept (default 8; the guard and the"
        " dashboard's finest steps read them)",
    )
    serve.add_argument(
        "--measurement-rollup-days",
        type=_days,
        default=90.0,
        help="days their 1 min and 10 min rollups are kept, at least --measurement-days"
        " (default 90; the dashboard's long windows read them)",
    )
    serve.add_argument(
        "--measurement-prune-s",
        type=_positive,
        default=3600.0,
        help="seconds between drops of measurements past those ages (default 3600; one at start)",
    )
    serve.add_argument(
        "--metrics-source",
        choices=SOURCES,
        default="store",
        help="where the guard reads the SDKs' measurements: the server's own (store, received"
        " over OTLP; the default) or Prometheus (prometheus, with --prometheus-url)",
    )
    serve.add_argument(
        "--prometheus-url",
        type=_checked(check_prometheus_url),
        help="Prometheus' base URL for --metrics-source prometheus, e.g. http://prometheus:9090",
    )
    serve.add_argument(
        "--prometheus-environment-label",
        type=_checked(check_label),
        default=DEFAULT_ENVIRONMENT_LABEL,
        help="the label holding the environment's name on the SDK's series in Prometheus"
        f" (default {DEFAULT_ENVIRONMENT_LABEL}); '' for none (one Prometheus per environment)",
    )
    serve.add_argument(
        "--otlp-logs-endpoint",
        metavar="URL",
        type=_checked(check_otlp_endpoint),
        help="send review scores as OpenTelemetry gen_ai.evaluation.result events to this"
        " OTLP/HTTP logs endpoint, e.g. http://collector:4318/v1/logs (default: not sent)",
    )
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.add_argument("--access-log", action="store_true", help="log every HTTP request")

    token = sub.add_parser("token", help="manage tokens directly in the database")
    token_sub = token.add_subparsers(dest="token_command", required=True)
    create = token_sub.add_parser("create", help="create an admin token or an SDK key")
    create.add_argument("--db", default="./vibesdk.db")
    create.add_argument("--name", required=True, help="who (admin) or which app (sdk)")
    create.add_argument("--kind", choices=["admin", "sdk"], default="admin")
    create.add_argument("--env", help="the SDK key's environment (created if missing)")

    listing = token_sub.add_parser("list", help="list tokens (names and kinds, never secrets)")
    listing.add_argument("--db", default="./vibesdk.db")
    revoke = token_sub.add_parser("revoke", help="delete a token (effective within 5 s)")
    revoke.add_argument("--db", default="./vibesdk.db")
    revoke.add_argument("--name", required=True)
    revoke.add_argument("--kind", choices=["admin", "sdk"], default="admin")
    revoke.add_argument("--env", help="the SDK key's environment")

    env = sub.add_parser("env", help="manage environments directly in the database")
    env_sub = env.add_subparsers(dest="env_command", required=True)
    env_create = env_sub.add_parser("create", help="create an environment (version 0)")
    env_create.add_argument("--db", default="./vibesdk.db")
    env_create.add_argument("--name", required=True)
    return parser


def _checked(check: Callable[[str], str]) -> Callable[[str], str]:
    """An argparse ``type`` from a check that raises ValueError with a one-line message."""

    def convert(text: str) -> str:
        try:
            return check(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


def _serve_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with ``serve``'s options taken together, or None."""
    if args.metrics_source == "prometheus" and not args.prometheus_url:
        return (
            "--metrics-source prometheus needs --prometheus-url, Prometheus' base URL"
            " (e.g. http://prometheus:9090)"
        )
    if args.metrics_source != "prometheus" and args.prometheus_url:
        return "--prometheus-url is read only with --metrics-source prometheus; add that option"
    if args.measurement_rollup_days < args.measurement_days:
        return (
            f"--measurement-rollup-days ({args.measurement_rollup_days:g}) must be at least"
            f" --measurement-days ({args.measurement_days:g}): rollups outlive the 10 s rows"
        )
    return None


def _above_zero(unit: str, example: str) -> Callable[[str], float]:
    """An argparse type: a number above 0 of ``unit``, or a one-line error naming it."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not value > 0:
            raise argparse.ArgumentTypeError(
                f"give a number of {unit} above 0, e.g. {example}, got {text!r}"
            )
        return value

    return parse


_positive = _above_zero("seconds", "5")
_days = _above_zero("days", "7")


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"give a whole number, 0 or more, got {text!r}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``vibe-server``; returns the exit status."""
    args_in = list(sys.argv[1:] if argv is None else argv)
    if not args_in or (
        args_in[0] not in _COMMANDS and args_in[0] not in ("-h", "--help", "--version")
    ):
        args_in.insert(0, "serve")
    parser = _parser()
    args = parser.parse_args(args_in)
    problem = _serve_problem(args) if args.command == "serve" else None
    if problem:
        parser.error(problem)
    logging.basicConfig(
        level=getattr(args, "log_level", "info").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "token":
            return {"create": _token_create, "list": _token_list, "revoke": _token_revoke}[
                args.token_command
            ](args)
        return _env_create(args)
    except ServerError as exc:
        print(f"vibe-server: {exc.detail}", file=sys.stderr)
        return 1


def _open_store(db: str) -> SqlStore:
    """``open_store(db)``, with a database that cannot be opened reported as one line."""
    from ._storage import open_store

    errors: tuple[type[BaseException], ...] = (OSError, sqlite3.Error)
    if db.startswith(("postgresql://", "postgres://")):
        import psycopg

        errors = (*errors, psycopg.Error)
    try:
        return open_store(db)
    except errors as exc:
        # psycopg's text spans lines; its first line names the cause and no password.
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ServerError(
            f"cannot open the database given by --db ({first}); check the path or URL, and"
            " that PostgreSQL is running and reachable"
        ) from exc


def _token_create(args: argparse.Namespace) -> int:
    store = _open_store(args.db)
    try:
        if args.kind == "sdk":
            if not args.env:
                print(
                    "vibe-server: an SDK key belongs to one environment; pass --env NAME",
                    file=sys.stderr,
                )
                return 2
            _ensure_environment(store, args.env)
        secret = store.create_token(
            kind=args.kind, name=args.name, environment=args.env, created_by=SYSTEM_ACTOR
        )
    finally:
        store.close()
    print(secret)
    where = f" for environment {args.env!r}" if args.kind == "sdk" else ""
    print(
        f"created {args.kind} token {args.name!r}{where}; it is shown only this once",
        file=sys.stderr,
    )
    return 0


def _token_list(args: argparse.Namespace) -> int:
    store = _open_store(args.db)
    try:
        rows = store.list_tokens()
    finally:
        store.close()
    print(f"{'KIND':<6} {'NAME':<24} {'ENVIRONMENT':<16} {'CREATED':<25} BY")
    for r in rows:
        print(
            f"{r['kind']:<6} {r['name']:<24} {r['environment'] or '-':<16}"
            f" {r['created_at']:<25} {r['created_by']}"
        )
    return 0


def _token_revoke(args: argparse.Namespace) -> int:
    store = _open_store(args.db)
    try:
        store.revoke_token(kind=args.kind, name=args.name, environment=args.env, actor=SYSTEM_ACTOR)
    finally:
        store.close()
    print(
        f"revoked {args.kind} token {args.name!r}; running servers refuse it within 5 s",
        file=sys.stderr,
    )
    return 0


def _env_create(args: argparse.Namespace) -> int:
    store = _open_store(args.db)
    try:
        store.create_environment(args.name, actor=SYSTEM_ACTOR, reason="vibe-server env create")
    finally:
        store.close()
    print(f"created environment {args.name!r}", file=sys.stderr)
    return 0


def _ensure_environment(store: object, name: str) -> None:
    from ._storage import SqlStore

    assert isinstance(store, SqlStore)
    try:
        store.current_version(name)
    except NotFoundError:
        store.create_environment(name, actor=SYSTEM_ACTOR, reason="created with an SDK key")
        print(f"created environment {name!r}", file=sys.stderr)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from ._http._app import create_app
    from ._storage._measurements import MeasurementRetention
    from ._storage._requestlog import Retention

    store = _open_store(args.db)
    lock = _single_server_lock(store)
    if not store.list_environments():
        store.create_environment("default", actor=SYSTEM_ACTOR, reason="first start")
    source = None
    if args.metrics_source == "prometheus":
        source = PrometheusSource(
            args.prometheus_url, environment_label=args.prometheus_environment_label
        )
        log.info("the guard reads measurements from %s", source.describe())
    logger_provider = None
    if args.otlp_logs_endpoint:
        logger_provider = otlp_logger_provider(args.otlp_logs_endpoint)
        log.info("review scores go as events to %s", args.otlp_logs_endpoint)
    app = create_app(
        store,
        heartbeat_s=args.heartbeat_s,
        refresh_s=args.refresh_s,
        auth_cache_s=args.auth_cache_s,
        allow_self_review=args.allow_self_review,
        guard_interval_s=args.guard_interval_s,
        ui_session_ttl_s=args.ui_session_ttl_s,
        request_log=Retention(
            max_age_s=args.request_log_days * 86_400, max_rows=args.request_log_rows
        ),
        metrics_source=source,
        logger_provider=logger_provider,
        eval_schedule_check_s=args.eval_schedule_check_s,
        measurements=MeasurementRetention(
            raw_s=args.measurement_days * 86_400, rollups_s=args.measurement_rollup_days * 86_400
        ),
        prune_interval_s=args.measurement_prune_s,
    )

    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host, args.port))
    except OSError as exc:
        sock.close()
        if source is not None:
            source.close()
        store.close()
        if lock is not None:
            lock.close()
        raise ServerError(
            f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}; stop what holds"
            " that port or pick another --port (--port 0 picks a free one)"
        ) from exc
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        log_config=None,
        log_level=args.log_level,
        access_log=args.access_log,
        # SSE streams never end on their own; don't let them hold a shutdown.
        timeout_graceful_shutdown=1,
        timeout_keep_alive=30,
        backlog=2048,
    )
    server = uvicorn.Server(config)
    log.info(
        "vibe-server %s listening on http://%s:%d (db: %s)%s",
        __version__,
        args.host,
        port,
        store.describe(),
        " - self-review of prompts allowed" if args.allow_self_review else "",
    )
    if args.port_file is not None:
        tmp = args.port_file.with_name(args.port_file.name + ".tmp")
        tmp.write_text(str(port))
        os.replace(tmp, args.port_file)
    try:
        server.run(sockets=[sock])
    finally:
        if logger_provider is not None:
            logger_provider.shutdown()
        if source is not None:
            source.close()
        store.close()
        if lock is not None:
            lock.close()
    return 0


def _single_server_lock(store: object) -> IO[bytes] | None:
    """Refuse to serve a SQLite file that another vibe-server already serves.

    Each process pushes only the changes it wrote itself, so a second process
    on the same file would serve stale flags; several replicas need PostgreSQL.
    """
    from ._storage._sqlite import SqliteStore

    if not isinstance(store, SqliteStore):
        return None
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no advisory locks, no check
        return None
    handle = store.path.with_name(store.path.name + ".lock").open("ab")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise ServerError(
            f"another vibe-server is already serving {store.path}; run one server per SQLite"
            " file, or use a postgresql:// database for several replicas"
        ) from None
    return handle


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
