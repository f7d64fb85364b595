"""``vibe eval run`` and ``vibe eval history``: a golden set through the SDK, per variant.

``run`` sends every item of the set through a real :class:`vibesdk.Client` as each named
variant of a flag (see :mod:`vibesdk_server._eval.runner` for how the variant is chosen),
scores the answers, stores every result on the flag server as it comes and prints the
per-variant summary the server computed. An interrupted run is continued with ``--resume``:
items already stored are not asked again.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sys
from pathlib import Path
from typing import Any, TextIO

from vibesdk import FlagDocumentError, parse_document

from .context import Context, Subparsers
from .errors import CliError, ExitCode
from .eval_schedule import register_schedule
from .eval_trend import register_trend
from .render import table

__all__ = ["register", "set_digest"]

DEFAULT_CONCURRENCY = 4
_BAR = 24


def register(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    group = sub.add_parser(
        "eval",
        help="evaluate a flag's variants on a golden set; list stored evaluations",
        description="Send every item of a golden set (math and code problems) through the SDK "
        "as each variant of FLAG, score the answers, store the run on the flag server and "
        "print accuracy, pass@1, latency and tokens per variant.",
    )
    commands = group.add_subparsers(dest="eval_command", metavar="COMMAND", required=True)
    p = commands.add_parser(
        "run", parents=[common], help="run a golden set through the flag's variants and score it"
    )
    p.add_argument("flag", help="flag key")
    p.add_argument(
        "--set",
        metavar="PATH",
        type=Path,
        help="golden set, JSON Lines (default: the set vibesdk-server ships)",
    )
    p.add_argument(
        "--variants",
        metavar="LIST",
        help="comma-separated variants to evaluate (default: the flag's default and rollout "
        "variants, e.g. stable,canary)",
    )
    p.add_argument(
        "--repeat", type=int, default=None, metavar="N", help="answers per item and variant (1)"
    )
    p.add_argument(
        "--concurrency",
        type=int,
        default=DEFAULT_CONCURRENCY,
        metavar="N",
        help=f"calls in flight at once (default {DEFAULT_CONCURRENCY})",
    )
    p.add_argument(
        "--item-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="how long one answer's scoring (running code) may take (default 10)",
    )
    p.add_argument(
        "--resume",
        type=int,
        metavar="RUN_ID",
        help="continue an interrupted run: only the answers it has not stored are asked for",
    )
    p.set_defaults(handler=run)

    p = commands.add_parser(
        "history", parents=[common], help="the flag's stored evaluation runs, newest first"
    )
    p.add_argument("flag", help="flag key")
    p.add_argument("--limit", type=int, default=20, help="at most this many runs (default 20)")
    p.set_defaults(handler=history)
    register_trend(commands, common)

    register_schedule(commands, common)


def set_digest(items: list[Any]) -> str:
    """A hash of the items' content (not their line numbers): a resumed run needs the same set."""
    rows = [{**dataclasses.asdict(i), "line": None} for i in items]
    text = json.dumps(rows, sort_keys=True, ensure_ascii=False)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def _load(path: Path | None) -> list[Any]:
    from vibesdk_server._eval.golden import GoldenSetError, load_set

    try:
        return load_set(path)
    except GoldenSetError as exc:
        raise CliError.usage(str(exc)) from None


def _check_counts(args: argparse.Namespace) -> None:
    for option, value in (("--repeat", args.repeat), ("--concurrency", args.concurrency)):
        if value is not None and value < 1:
            raise CliError.usage(f"{option} {value}: give 1 or more")
    if not args.item_timeout > 0:
        raise CliError.usage(f"--item-timeout {args.item_timeout:g}: give a positive number")


def _variants(args: argparse.Namespace, document: Any) -> list[str]:
    flag = document.flags.get(args.flag)
    if flag is None:
        known = ", ".join(sorted(document.flags)) or "none"
        raise CliError(
            f"environment {document.environment!r} has no flag {args.flag!r} (its flags: {known})",
            ExitCode.NOT_FOUND,
        )
    if args.variants is None:
        names = [flag.default_variant, flag.rollout_variant]
    else:
        names = [v.strip() for v in args.variants.split(",") if v.strip()]
    names = list(dict.fromkeys(n for n in names if n))
    unknown = [n for n in names if n not in flag.variants]
    if unknown or not names:
        raise CliError.usage(
            f"--variants {args.variants!r}: flag {args.flag!r} has no variant "
            f"{', '.join(map(repr, unknown)) or '(none given)'}; its variants: "
            + ", ".join(sorted(flag.variants))
        )
    return names


def _document(data: Any) -> Any:
    try:
        return parse_document(data)
    except FlagDocumentError as exc:
        raise CliError(
            f"the flag server sent a document this vibe cannot read: {exc}", ExitCode.UNREACHABLE
        ) from exc


def _resumed(
    args: argparse.Namespace, ctx: Context, digest: str
) -> tuple[dict[str, Any], Any, set[Any]]:
    """The run to continue, the document version it used and the answers it already has."""
    stored = ctx.api.get(ctx.api.env_path("eval-runs", args.resume))
    if stored["flag_key"] != args.flag:
        raise CliError.usage(
            f"--resume {args.resume}: that run evaluated flag {stored['flag_key']!r}, not "
            f"{args.flag!r}"
        )
    if stored["set_digest"] != digest:
        raise CliError.usage(
            f"--resume {args.resume}: the set differs from the one the run started with "
            f"({stored['set_name']}); pass that --set, unchanged"
        )
    if args.repeat is not None and args.repeat != stored["repeats"]:
        raise CliError.usage(
            f"--resume {args.resume}: the run repeats each item {stored['repeats']} time(s); "
            "leave out --repeat"
        )
    if args.variants is not None and _split(args.variants) != stored["variants"]:
        raise CliError.usage(
            f"--resume {args.resume}: the run evaluates {','.join(stored['variants'])}; "
            "leave out --variants"
        )
    version = ctx.api.get(ctx.api.env_path("versions", stored["document_version"]))
    results = ctx.api.get(ctx.api.env_path("eval-runs", args.resume, "results"))
    done = {(r["item_id"], r["variant"], r["attempt"]) for r in results}
    return stored, _document(version["document"]), done


def _split(text: str) -> list[str]:
    return list(dict.fromkeys(v.strip() for v in text.split(",") if v.strip()))


class _Progress:
    """A one-line progress bar on ``stream``, drawn only when it is a terminal."""

    def __init__(self, total: int, done: int, stream: TextIO) -> None:
        self.total, self.done, self.stream = total, done, stream
        try:
            self.enabled = stream.isatty()
        except (AttributeError, ValueError):
            self.enabled = False
        self._draw("")

    def advance(self, row: dict[str, Any]) -> None:
        self.done += 1
        self._draw(f"{row['variant']} {row['item_id']}")

    def _draw(self, last: str) -> None:
        if not self.enabled:
            return
        filled = _BAR * self.done // max(self.total, 1)
        bar = "#" * filled + "." * (_BAR - filled)
        self.stream.write(f"\r[{bar}] {self.done}/{self.total} {last[:40]:<40}")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()


def run(args: argparse.Namespace, ctx: Context) -> int:
    from vibesdk_server._eval.runner import EvalError, plan_tasks, run_tasks
    from vibesdk_server._eval.scoring import Scorer

    _check_counts(args)
    items = _load(args.set)  # before anything is sent: a bad set calls no model
    digest = set_digest(items)
    if args.resume is not None:
        stored, document, done = _resumed(args, ctx, digest)
        variants, repeats = list(stored["variants"]), int(stored["repeats"])
    else:
        state = ctx.environment_state()
        document = _document(state["document"])
        variants, repeats, done = _variants(args, document), args.repeat or 1, set()
        stored = ctx.api.post(
            ctx.api.env_path("eval-runs"),
            {
                "flag": args.flag,
                "set_name": "shipped set" if args.set is None else str(args.set),
                "set_digest": digest,
                "items": len(items),
                "variants": variants,
                "repeats": repeats,
                "document_version": document.version,
            },
        )
    run_id = stored["id"]
    results_path = ctx.api.env_path("eval-runs", run_id, "results")
    tasks = plan_tasks(items, variants, repeats, done)
    progress = _Progress(len(items) * len(variants) * repeats, len(done), sys.stderr)

    def store(row: dict[str, Any]) -> None:
        ctx.api.post(results_path, {"results": [row]})
        progress.advance(row)

    try:
        with Scorer(timeout_s=args.item_timeout) as scorer:
            run_tasks(
                document,
                args.flag,
                tasks,
                scorer=scorer,
                concurrency=args.concurrency,
                on_result=store,
            )
    except EvalError as exc:
        raise CliError.usage(str(exc)) from None
    except KeyboardInterrupt:
        progress.close()
        print(
            f"vibe: evaluation run {run_id} stopped with {progress.done} of {progress.total} "
            f"answers stored; continue it with: vibe eval run {args.flag} --resume {run_id}"
            + ("" if args.set is None else f" --set {args.set}"),
            file=sys.stderr,
        )
        raise
    progress.close()
    finished = ctx.api.post(ctx.api.env_path("eval-runs", run_id, "finish"))
    if ctx.json_output:
        ctx.emit_json(
            {**_as_json(finished, ctx.environment), "regression": finished.get("regression", [])}
        )
        return ExitCode.OK
    _print_run(ctx, finished)
    for check in finished.get("regression", ()):
        if check["alarm"]:
            ctx.out()
            ctx.out(f"alarm: {check['message']}")
    return ExitCode.OK


def _as_json(stored: dict[str, Any], environment: str) -> dict[str, Any]:
    return {
        "run_id": stored["id"],
        "environment": environment,
        "flag": stored["flag_key"],
        "document_version": stored["document_version"],
        "set": stored["set_name"],
        "set_digest": stored["set_digest"],
        "items": stored["items"],
        "repeat": stored["repeats"],
        "started_at": stored["started_at"],
        "finished_at": stored["finished_at"],
        "trigger": stored["trigger"],
        "error": stored["error"],
        "variants": stored["summary"] or {},
    }


def _pct(value: float | None) -> str | None:
    return None if value is None else f"{value:.0%}"


def _with_ci(value: float | None, ci: list[float] | None) -> str | None:
    if value is None:
        return None
    return f"{value:.0%}" if ci is None else f"{value:.0%} ({ci[0]:.0%}-{ci[1]:.0%})"


def _num(value: float | None, spec: str) -> str | None:
    return None if value is None else format(value, spec)


def _print_run(ctx: Context, stored: dict[str, Any]) -> None:
    summary: dict[str, Any] = stored["summary"] or {}
    ctx.out(
        f"evaluation run {stored['id']} of {stored['flag_key']!r} in {ctx.environment!r}: "
        f"document version {stored['document_version']}, set {stored['set_name']} "
        f"({stored['items']} items), {stored['repeats']} answer(s) per item and variant"
    )
    ctx.out()
    ctx.out(
        table(
            [
                "variant",
                "model",
                "prompt",
                "math",
                "accuracy (95% CI)",
                "complete",
                "math score",
                "code",
                "pass@1 (95% CI)",
                "concise",
                "score",
            ],
            (
                [
                    name,
                    v["model"],
                    v["prompt_ref"],
                    v["math"]["n"],
                    _with_ci(v["math"]["accuracy"], v["math"]["accuracy_ci95"]),
                    _num(v["math"]["completeness"], ".2f"),
                    _num(v["math"]["score"], ".2f"),
                    v["code"]["n"],
                    _with_ci(v["code"]["pass_at_1"], v["code"]["pass_at_1_ci95"]),
                    _num(v["code"]["conciseness"], ".2f"),
                    _num(v["score"], ".2f"),
                ]
                for name, v in summary.items()
            ),
        )
    )
    ctx.out()
    ctx.out(
        table(
            [
                "variant",
                "answers",
                "check failures",
                "errors",
                "fallbacks",
                "p50 s",
                "p95 s",
                "tokens in",
                "tokens out",
                "out/answer",
            ],
            (
                [
                    name,
                    v["n"],
                    v["check_failures"],
                    v["errors"],
                    v["fallbacks"],
                    _num(v["latency_p50_s"], ".2f"),
                    _num(v["latency_p95_s"], ".2f"),
                    v["input_tokens"],
                    v["output_tokens"],
                    _num(v["output_tokens_mean"], ".0f"),
                ]
                for name, v in summary.items()
            ),
        )
    )


def history(args: argparse.Namespace, ctx: Context) -> int:
    if args.limit < 1:
        raise CliError.usage(f"--limit {args.limit}: give 1 or more")
    runs = ctx.api.get(
        ctx.api.env_path("eval-runs"), params={"flag": args.flag, "limit": args.limit}
    )
    if ctx.json_output:
        ctx.emit_json([_as_json(r, ctx.environment) for r in runs])
        return ExitCode.OK
    if not runs:
        ctx.out(
            f"no evaluation runs of {args.flag!r} in {ctx.environment!r}; start one with "
            f"vibe eval run {args.flag}"
        )
        return ExitCode.OK
    rows: list[list[object]] = []
    for stored in runs:
        summary = stored["summary"]
        head = [
            stored["id"],
            stored["started_at"][:16].replace("T", " "),
            stored["trigger"],
            stored["set_name"],
            stored["document_version"],
        ]
        if not summary:
            unfinished = "(unfinished)" if summary is None else "(no answers)"
            rows.append([*head, unfinished, None, None, None, None])
            continue
        for i, (name, v) in enumerate(summary.items()):
            rows.append(
                [
                    *(head if i == 0 else [None] * len(head)),
                    name,
                    v["model"],
                    _pct(v["math"]["accuracy"]),
                    _pct(v["code"]["pass_at_1"]),
                    _num(v["score"], ".2f"),
                ]
            )
    ctx.out(
        table(
            [
                "run",
                "started (UTC)",
                "trigger",
                "set",
                "version",
                "variant",
                "model",
                "math acc",
                "pass@1",
                "score",
            ],
            rows,
        )
    )
    for stored in runs:
        if stored["error"]:
            ctx.out(f"run {stored['id']}: {stored['error']}")
    return ExitCode.OK
