"""Daily evaluation runs made by vibe-server itself (``vibe eval schedule``).

Every ``interval_s`` the scheduler looks at each stored schedule, on one server only: with
PostgreSQL the replica holding the scheduler's own advisory lock (the guard's mechanism,
:func:`vibesdk_server._guard.loop.leadership`), with SQLite the single server. A schedule is due
for the latest day whose ``HH:MM`` (UTC) has passed, if that moment came after the schedule was
stored: a server that was down over several ``HH:MM`` runs the latest missed day once when it
is back, never one run per missed day. Before running a day the scheduler claims it in the
database (:meth:`~vibesdk_server._storage._eval_schedule.EvalScheduleStore.claim_eval_day`), so a
day is never run twice, even across a change of leader.

A scheduled run is a ``vibe eval run`` made in the server: the environment's current document,
each item sent through a real :class:`vibesdk.Client` as each variant by
:func:`~vibesdk_server._eval.runner.run_tasks` (the same prompts, sampling and backends users
get), each answer stored as it is scored, the run marked ``trigger: scheduled``. Whatever goes
wrong in a run (a flag deleted since, a backend down, the eval extra missing) is stored on the
run as its ``error``; the server carries on.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from vibesdk import parse_document
from vibesdk_server._guard.loop import leadership
from vibesdk_server._storage import SqlStore

__all__ = [
    "DEFAULT_EVAL_SCHEDULE_CHECK_S",
    "SCHEDULE_ACTOR",
    "Scheduler",
    "due_day",
    "parse_daily",
]

DEFAULT_EVAL_SCHEDULE_CHECK_S = 60.0
SCHEDULE_ACTOR = "eval-schedule"
"""Who scheduled runs are started and stored by, in the runs and the audit log."""
DEFAULT_CONCURRENCY = 4
DEFAULT_ITEM_TIMEOUT_S = 10.0
_DAILY = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")
log = logging.getLogger("vibesdk_server")


def parse_daily(text: str) -> str:
    """``text`` if it is a time of day ``HH:MM`` (00:00 to 23:59), else a one-line ValueError."""
    if not isinstance(text, str) or _DAILY.fullmatch(text) is None:
        raise ValueError(
            f"--daily {text!r}: give a time of day as HH:MM in UTC, 00:00 to 23:59, e.g. 03:30"
        )
    return text


def due_day(daily_at: str, since: dt.datetime, now: dt.datetime) -> str | None:
    """The day (``YYYY-MM-DD``, UTC) whose run is due at ``now``: the latest day whose
    ``daily_at`` is at or before ``now``, if that moment is after ``since`` (when the schedule
    was stored); else None."""
    hour, minute = (int(p) for p in parse_daily(daily_at).split(":"))
    now = now.astimezone(dt.timezone.utc)
    latest = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if latest > now:
        latest -= dt.timedelta(days=1)
    return latest.date().isoformat() if latest > since else None


def _time(stored: str) -> dt.datetime:
    return dt.datetime.fromisoformat(stored.replace("Z", "+00:00"))


class _Stopped(Exception):
    """The server is shutting down: the run in progress ends at its next answer."""


class Scheduler:
    """Runs due evaluation schedules, on the leader only (see the module's docstring).

    ``clock``: seconds since the epoch (tests move it). ``client_options`` go to each
    :class:`vibesdk.Client` a run makes.
    """

    def __init__(
        self,
        store: SqlStore,
        *,
        interval_s: float = DEFAULT_EVAL_SCHEDULE_CHECK_S,
        clock: Callable[[], float] = time.time,
        concurrency: int = DEFAULT_CONCURRENCY,
        item_timeout_s: float = DEFAULT_ITEM_TIMEOUT_S,
        client_options: Mapping[str, Any] | None = None,
    ) -> None:
        if not interval_s > 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s}")
        self.store = store
        self.interval_s = interval_s
        self.clock = clock
        self.concurrency = concurrency
        self.item_timeout_s = item_timeout_s
        self.client_options = dict(client_options or {})
        self.stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._leadership = leadership(store, "eval-schedule")

    def tick(self) -> list[int]:
        """Run every schedule due now, one after the other, if this server leads; the ids of
        the runs made."""
        if not self._leadership.acquire():
            return []
        now = dt.datetime.fromtimestamp(self.clock(), dt.timezone.utc)
        made: list[int] = []
        for schedule in self.store.list_eval_schedules():
            if self.stopping.is_set():
                break
            env, flag = schedule["environment"], schedule["flag_key"]
            day = due_day(schedule["daily_at"], _time(schedule["since"]), now)
            if day is None or (schedule["last_day"] or "") >= day:
                continue
            if not self.store.claim_eval_day(env, flag, day):
                continue  # another replica (a leader before a failover) has it
            try:
                run_id = self.run_schedule(schedule, day)
            except Exception as exc:  # nothing to store it on: no run could be made
                log.warning("eval-schedule: %s/%s %s: %s", env, flag, day, _one_line(exc))
                continue
            made.append(run_id)
        return made

    def run_schedule(self, schedule: Mapping[str, Any], day: str) -> int:
        """Make, run and finish the evaluation run of ``schedule`` for ``day``; its id.

        Raises only if the run cannot be created (its environment is gone); every later error
        is stored on the run.
        """
        from vibesdk_server._eval.summary import summarize

        env, flag_key = schedule["environment"], schedule["flag_key"]
        published = self.store.current(env)
        document = parse_document(json.loads(published.document_json))
        flag = document.flags.get(flag_key)
        variants: list[str] = list(schedule["variants"] or [])
        if not variants and flag is not None:
            variants = list(dict.fromkeys(v for v in (flag.default_variant, flag.rollout_variant)))
        run = self.store.create_eval_run(
            env,
            {
                "flag_key": flag_key,
                "set_name": schedule["set_name"],
                "set_digest": schedule["set_digest"],
                "items": schedule["items"],
                "variants": variants,
                "repeats": schedule["repeats"],
                "document_version": document.version,
                "trigger": "scheduled",
            },
            actor=SCHEDULE_ACTOR,
        )
        run_id = int(run["id"])
        self.store.record_eval_day_run(env, flag_key, day, run_id)
        log.info("eval-schedule: run %d of %s/%s for %s", run_id, env, flag_key, day)
        error: str | None = None
        try:
            self._answer(schedule, document, variants, run_id)
        except _Stopped:
            error = "stopped: vibe-server shut down during the run"
        except Exception as exc:
            error = _one_line(exc)
            log.warning("eval-schedule: run %d of %s/%s: %s", run_id, env, flag_key, error)
        summary = summarize(self.store.eval_results(env, run_id), variants)
        self.store.finish_eval_run(env, run_id, summary, actor=SCHEDULE_ACTOR, error=error)
        return run_id

    def _answer(
        self, schedule: Mapping[str, Any], document: Any, variants: list[str], run_id: int
    ) -> None:
        from vibesdk_server._eval.golden import load_set, parse_set
        from vibesdk_server._eval.runner import EvalError, plan_tasks, run_tasks
        from vibesdk_server._eval.scoring import Scorer

        env, flag_key = schedule["environment"], schedule["flag_key"]
        if not variants:  # no variants stored and the flag is gone
            raise EvalError(
                f"environment {env!r} (version {document.version}) has no flag {flag_key!r};"
                f" add it back or remove the schedule: vibe eval schedule {flag_key} --off"
            )
        text = schedule["set_text"]
        items = load_set() if text is None else parse_set(text, schedule["set_name"])

        def store(row: dict[str, Any]) -> None:
            self.store.add_eval_results(env, run_id, [row], actor=SCHEDULE_ACTOR)
            if self.stopping.is_set():
                raise _Stopped

        with Scorer(timeout_s=self.item_timeout_s) as scorer:
            run_tasks(
                document,
                flag_key,
                plan_tasks(items, variants, int(schedule["repeats"])),
                scorer=scorer,
                concurrency=self.concurrency,
                on_result=store,
                client_options=self.client_options,
            )

    def start(self) -> None:
        """Look every ``interval_s`` in a daemon thread of its own (``vibesdk-eval-schedule``),
        until :meth:`stop`."""
        self.stopping.clear()
        self._thread = threading.Thread(
            target=self._loop, name="vibesdk-eval-schedule", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop looking, at once: a run in progress ends at its next answer and is stored with
        what it had (it is not waited for)."""
        self.stopping.set()

    def _loop(self) -> None:
        try:
            while not self.stopping.wait(self.interval_s):
                try:
                    self.tick()
                except Exception:
                    log.warning("eval-schedule: a look failed", exc_info=True)
        finally:
            self._leadership.release()


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(getattr(exc, "detail", exc)).split())
    return f"{type(exc).__name__}: {text}"[:1000]
