"""Send golden-set items through the SDK as a chosen variant, score each answer.

How a variant is chosen: the flag server's document (one version, fetched once per run) is
served to a real :class:`vibesdk.Client` from memory with one change, :func:`pin_variant`: a
first targeting rule that gives the evaluation's own unit (:data:`EVAL_UNIT`) the variant under
test. Everything else the user's call goes through is the SDK's own: the variant's reviewed
prompt template, its generation parameters, its backend, deadlines, retries and fallback to
the default variant. The client is not told the flag server's address, so evaluation traffic
is never counted in the server's canary analysis (no OTLP metrics are sent).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import vibesdk
from vibesdk import Clause, FlagDocument, Rule, VibeError
from vibesdk.testing import InMemoryFlagSource

from .golden import Item
from .scoring import Scorer

__all__ = ["EVAL_UNIT", "PIN_RULE", "EvalError", "Task", "pin_variant", "plan_tasks", "run_tasks"]

EVAL_UNIT = "vibe-eval"
"""The unit id every evaluation call is made for (its assignment is pinned, never bucketed)."""
PIN_RULE = "vibe-eval-pin"
"""The id of the targeting rule :func:`pin_variant` puts first."""


class EvalError(ValueError):
    """The run cannot start as asked (unknown flag or variant); the message says what to fix."""


@dataclass(frozen=True)
class Task:
    """One call to make: ``item`` answered by ``variant``, the ``attempt``-th time (from 0)."""

    item: Item
    variant: str
    attempt: int = 0

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.item.id, self.variant, self.attempt)


def pin_variant(document: FlagDocument, flag_key: str, variant: str) -> FlagDocument:
    """``document`` with ``flag_key`` serving ``variant`` to :data:`EVAL_UNIT`, by a first rule.

    The flag is switched on (so a canary can be evaluated before it is enabled); its variants,
    prompts, parameters, backends, fallback policy and other rules are untouched. Raises
    :class:`EvalError` for a flag or variant the document does not have.
    """
    flag = document.flags.get(flag_key)
    if flag is None:
        known = ", ".join(sorted(document.flags)) or "none"
        raise EvalError(
            f"environment {document.environment!r} (version {document.version}) has no flag "
            f"{flag_key!r}; its flags: {known}"
        )
    if variant not in flag.variants:
        raise EvalError(
            f"flag {flag_key!r} has no variant {variant!r}; its variants: "
            + ", ".join(sorted(flag.variants))
        )
    rule = Rule(
        id=PIN_RULE,
        clauses=[Clause(attribute="user_id", op="equals", values=[EVAL_UNIT])],
        variant=variant,
    )
    others = [r for r in flag.rules if r.id != PIN_RULE]
    pinned = flag.model_copy(update={"enabled": True, "rules": [rule, *others]})
    return document.model_copy(update={"flags": {**document.flags, flag_key: pinned}})


def _prompt_ref(document: FlagDocument, flag_key: str, variant: str) -> str | None:
    prompt = document.flags[flag_key].variants[variant].prompt
    return None if prompt is None else prompt.ref


def _full_text(result: vibesdk.ChatResult) -> str:
    """The answer as the model wrote it: a split-out ``<think>`` block is put back in front."""
    if result.reasoning:
        return f"<think>{result.reasoning}</think>\n{result.text}"
    return result.text


def _answer(
    client: vibesdk.Client,
    scorer: Scorer,
    flag_key: str,
    task: Task,
    base: dict[str, Any],
) -> dict[str, Any]:
    item = task.item
    messages = [{"role": "user", "content": item.prompt}]
    try:
        result = client.chat(flag_key, EVAL_UNIT, messages)
    except VibeError as exc:
        return {**base, "error": f"{type(exc).__name__}: {exc}"[:1000], **_wrong(item)}
    row = {
        **base,
        "model": result.model,
        "finish_reason": result.finish_reason,
        "latency_s": result.latency_s,
        "input_tokens": result.usage.input_tokens,
        "output_tokens": result.usage.output_tokens,
        "checks": list(result.quality.failures),
    }
    if result.variant != task.variant or result.fallback:
        # Stable answered for the variant under test: that is not the variant's answer.
        reason = result.fallback_reason or "answered by another variant"
        return {
            **row,
            "fallback": True,
            "error": f"fallback to {result.variant}: {reason}",
            **_wrong(item),
        }
    score = scorer.score(item, _full_text(result), result.finish_reason)
    return {
        **row,
        "score": score.score,
        "correct": score.correct,
        "completeness": score.completeness,
        "passed": score.passed,
        "conciseness": score.conciseness,
        "details": score.details,
    }


def _wrong(item: Item) -> dict[str, Any]:
    """The score fields of an item the variant did not answer: wrong, nothing to measure."""
    if item.kind == "math":
        return {"score": 0.0, "correct": False, "completeness": 0.0}
    return {"score": 0.0, "passed": False}


def run_tasks(
    document: FlagDocument,
    flag_key: str,
    tasks: Iterable[Task],
    *,
    scorer: Scorer,
    concurrency: int,
    on_result: Callable[[dict[str, Any]], None],
    client_options: Mapping[str, Any] | None = None,
) -> int:
    """Answer and score every task, ``concurrency`` at a time; return how many were done.

    ``on_result`` receives each result row (JSON-ready: item, variant, attempt, scores, model,
    prompt ref, document version, latency, tokens, output-check failures, error) in the
    calling thread, as soon as it is scored: a run stopped halfway has stored what it did.
    The calls run in daemon threads, so Ctrl-C (or an exception from ``on_result``) ends the
    run at once, without waiting for answers in flight. ``client_options`` go to each
    :class:`vibesdk.Client`. Raises :class:`EvalError` for an unknown flag or variant, before
    any call.
    """
    todo = list(tasks)
    variants = sorted({t.variant for t in todo})
    pinned = {v: pin_variant(document, flag_key, v) for v in variants}
    prompt_refs = {v: _prompt_ref(document, flag_key, v) for v in variants}
    options = {"server_metrics": False, "cache_dir": "", **(client_options or {})}
    # server_url "" (not None): a VIBESDK_SERVER_URL exported for the CLI must not make the
    # client look for an SDK key or a flag server.
    clients = {
        v: vibesdk.Client(server_url="", flag_source=InMemoryFlagSource(doc), **options)
        for v, doc in pinned.items()
    }
    waiting: queue.SimpleQueue[Task] = queue.SimpleQueue()
    for task in todo:
        waiting.put(task)
    answered: queue.SimpleQueue[dict[str, Any] | BaseException] = queue.SimpleQueue()
    stop = threading.Event()

    def work() -> None:
        while not stop.is_set():
            try:
                task = waiting.get_nowait()
            except queue.Empty:
                return
            base = {
                "item_id": task.item.id,
                "kind": task.item.kind,
                "variant": task.variant,
                "attempt": task.attempt,
                "document_version": document.version,
                "prompt_ref": prompt_refs[task.variant],
                "fallback": False,
            }
            try:
                answered.put(_answer(clients[task.variant], scorer, flag_key, task, base))
            except BaseException as exc:  # handed to the calling thread, which raises it
                answered.put(exc)
                return

    workers = [
        threading.Thread(target=work, name=f"vibe-eval-{i}", daemon=True)
        for i in range(min(concurrency, len(todo)))
    ]
    for worker in workers:
        worker.start()
    done = 0
    try:
        while done < len(todo):
            got = answered.get()
            if isinstance(got, BaseException):
                raise got
            on_result(got)
            done += 1
    finally:
        # Start nothing more; closed clients end the calls still in flight.
        stop.set()
        for client in clients.values():
            client.close()
    return done


def plan_tasks(
    items: Sequence[Item],
    variants: Sequence[str],
    repeat: int,
    skip: Iterable[tuple[str, str, int]] = (),
) -> list[Task]:
    """Every (item, variant, attempt) not in ``skip``, interleaved so variants progress together."""
    skipped = set(skip)
    tasks = [
        Task(item, variant, attempt)
        for attempt in range(repeat)
        for item in items
        for variant in variants
    ]
    return [t for t in tasks if t.key not in skipped]
