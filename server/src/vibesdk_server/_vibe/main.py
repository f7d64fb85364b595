"""Entry point of the ``vibe`` console script: parse arguments, run one command, map errors.

Every command is a function ``(args, ctx) -> exit code`` registered by its
module (a file per command group). Failures are :class:`CliError`\\ s, printed
as one line on stderr; the exit codes are :class:`ExitCode`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn, TextIO

import httpx

from . import apply, changes, environments, feedback, log, prompts, releases, review, status
from . import eval as eval_command
from .context import Context
from .errors import CliError, ExitCode
from .settings import DEFAULT_SERVER_URL, load_cli_settings

__all__ = ["build_parser", "main"]

_EPILOG = f"""\
settings: --server/--token/--env, or VIBESDK_SERVER_URL (default {DEFAULT_SERVER_URL}),
VIBESDK_ADMIN_TOKEN, VIBESDK_ENVIRONMENT (default "default").
exit codes: 0 ok, 1 refused by the server, 2 usage error, 3 conflict (stale version),
4 server unreachable or failing, 5 not found."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line and an exception, not a usage dump and exit."""

    def error(self, message: str) -> NoReturn:
        raise CliError.usage(f"{message} (see `{self.prog} --help`)")


def _common_options() -> argparse.ArgumentParser:
    # SUPPRESS: an option given before the command is not overwritten by the
    # subcommand's default, so `vibe --json status` and `vibe status --json` agree.
    common = _Parser(add_help=False)
    group = common.add_argument_group("connection and output")
    group.add_argument(
        "--server",
        metavar="URL",
        default=argparse.SUPPRESS,
        help="flag server URL (VIBESDK_SERVER_URL)",
    )
    group.add_argument(
        "--token",
        metavar="TOKEN",
        default=argparse.SUPPRESS,
        help="admin token (VIBESDK_ADMIN_TOKEN)",
    )
    group.add_argument(
        "--env",
        metavar="ENV",
        default=argparse.SUPPRESS,
        help="environment (VIBESDK_ENVIRONMENT, default: default)",
    )
    group.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print the server's JSON answer instead of a table",
    )
    group.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=float,
        default=argparse.SUPPRESS,
        help="per-request timeout (default 10)",
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    """The whole command tree; the docs test checks that every command is documented."""
    common = _common_options()
    parser = _Parser(
        prog="vibe",
        description="Operate vibesdk canary releases: flips, rollouts, rollback, prompts, audit, "
        "feedback.",
        epilog=_EPILOG,
        parents=[common],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from vibesdk import __version__

    parser.add_argument("--version", action="version", version=f"vibe (vibesdk) {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    apply.register(sub, common)
    changes.register(sub, common)
    status.register(sub, common)
    feedback.register(sub, common)
    log.register(sub, common)
    prompts.register(sub, common)
    environments.register(sub, common)
    releases.register(sub, common)
    eval_command.register(sub, common)
    review.register(sub, common)
    demo = sub.add_parser(
        "demo", add_help=False, help="run the local end-to-end demo (vibe demo --help)"
    )
    demo.add_argument("demo_args", nargs=argparse.REMAINDER)
    demo.set_defaults(handler=None)
    return parser


def _run_demo(argv: list[str]) -> int:
    # Imported only when asked for: the demo pulls in the server and model packages.
    try:
        demo = importlib.import_module(f"{__package__}.demo")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__package__}.demo":
            raise
        raise CliError.usage(
            "vibe demo is not available in this installation (vibesdk_server._vibe.demo is missing)"
        ) from None
    return int(demo.main(argv))


def _dispatch(
    args_list: list[str],
    *,
    transport: httpx.BaseTransport | None,
    stdin: TextIO | None,
    ask: Callable[[str], str] | None,
) -> int:
    if args_list[:1] == ["demo"]:
        # Before argparse: REMAINDER would not pass the demo's own --options through.
        return _run_demo(args_list[1:])
    args = build_parser().parse_args(args_list)
    if args.command == "demo":
        return _run_demo(list(args.demo_args))
    settings = load_cli_settings(
        server_url=getattr(args, "server", None),
        admin_token=getattr(args, "token", None),
        environment=getattr(args, "env", None),
    )
    # --env or an exported VIBESDK_ENVIRONMENT is a choice a flag file may not
    # silently override (an operator set to staging must not write prod).
    args.env_given = hasattr(args, "env") or "environment" in settings.model_fields_set
    ctx = Context(
        settings=settings,
        json_output=getattr(args, "json", False),
        timeout_s=getattr(args, "timeout", 10.0),
        transport=transport,
        stdin=stdin if stdin is not None else sys.stdin,
        ask=ask if ask is not None else input,
    )
    try:
        return int(args.handler(args, ctx))
    finally:
        ctx.close()


def main(
    argv: Sequence[str] | None = None,
    *,
    transport: httpx.BaseTransport | None = None,
    stdin: TextIO | None = None,
    ask: Callable[[str], str] | None = None,
) -> int:
    """Run ``vibe`` with ``argv`` (default ``sys.argv[1:]``); return the exit code.

    ``transport``, ``stdin`` and ``ask`` exist for tests (an httpx transport, the
    stream ``-`` reads, and the confirmation prompt).
    """
    args_list = list(sys.argv[1:] if argv is None else argv)
    try:
        return _dispatch(args_list, transport=transport, stdin=stdin, ask=ask)
    except CliError as exc:
        print(f"vibe: {exc.message}", file=sys.stderr)
        return int(exc.code)
    except SystemExit as exc:  # --help and --version exit through argparse
        return exc.code if isinstance(exc.code, int) else int(ExitCode.USAGE)
    except KeyboardInterrupt:
        print("vibe: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
