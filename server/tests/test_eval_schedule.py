"""`vibe eval schedule`: daily evaluation runs stored on, and made by, vibe-server itself.

End to end with the real server (conftest's, checking for due schedules every 0.5 s; on
SQLite and PostgreSQL) and two fake OpenAI-compatible backends whose answers are known: the
canary answers both items of a small set right, stable both wrong. The scheduler's day
arithmetic (catch-up once, never twice a day, one claim between two schedulers) is pinned on a
real SQLite store with a moved clock.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from vibesdk_server._eval.schedule import Scheduler, due_day, parse_daily
from vibesdk_server._storage import Mutation, SqlStore, open_store
from vibesdk_server.testing import FlagServer, FlagServerProcess, make_eval_schedule_due

from vibesdk import Flag
from vibesdk.testing import VIBETHINKER_SYSTEM_PROMPT, FakeBackend, Reply, make_flag

FLAG = "vibethinker"
SET_LINES = [
    {
        "id": "sum",
        "kind": "math",
        "prompt": "What is 4 + 4? Put the final answer in \\boxed{}.",
        "answer": "8",
        "lang": "en",
        "tags": [],
    },
    {
        "id": "triple",
        "kind": "code",
        "prompt": "Write a Python function triple(x) that returns 3 * x.",
        "entry_point": "triple",
        "tests": "assert triple(2) == 6",
        "lang": "en",
        "tags": [],
    },
]
ANSWERS = {
    "sum": (
        "Four and four more: counting up from four gives five, six, seven, eight, so the "
        "answer is \\boxed{8}.",
        "It is \\boxed{7}.",
    ),
    "triple": (
        "```python\ndef triple(x):\n    return 3 * x\n```",
        "```python\ndef triple(x):\n    return x\n```",
    ),
}


def _answer(right: bool) -> Callable[[Mapping[str, Any]], str]:
    def answer(request: Mapping[str, Any]) -> str:
        content = request["messages"][-1]["content"]
        item = next(i for i in SET_LINES if i["prompt"] in content)
        return ANSWERS[item["id"]][0 if right else 1]

    return answer


@pytest.fixture
def golden(tmp_path: Path) -> Path:
    path = tmp_path / "daily.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in SET_LINES))
    return path


@pytest.fixture
def right() -> Iterator[FakeBackend]:
    with FakeBackend(default=Reply(text=_answer(True)), model="canary-model") as fake:
        yield fake


@pytest.fixture
def wrong() -> Iterator[FakeBackend]:
    with FakeBackend(default=Reply(text=_answer(False)), model="stable-model") as fake:
        yield fake


def _flag(right: FakeBackend, wrong: FakeBackend) -> Flag:
    return make_flag(stable_url=wrong.url, canary_url=right.url, rollout_bps=0, enabled=False)


def _runs(server: FlagServer) -> list[dict[str, Any]]:
    path = f"/v1/admin/environments/{server.environment}/eval-runs"
    runs: list[dict[str, Any]] = server.admin_request("GET", path).json()
    return runs


def _schedules(server: FlagServer) -> list[dict[str, Any]]:
    path = f"/v1/admin/environments/{server.environment}/eval-schedules"
    found: list[dict[str, Any]] = server.admin_request("GET", path).json()
    return found


def _wait_finished(server: FlagServerProcess | FlagServer, log: Any = None) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        runs = [r for r in _runs(server) if r["finished_at"] is not None]
        if runs:
            return runs[0]
        assert time.monotonic() < deadline, log() if log else "no scheduled run finished"
        time.sleep(0.1)


# -- storing schedules ------------------------------------------------------------------------


def test_a_schedule_is_stored_shown_listed_replaced_and_removed_with_audit(
    vibe: Callable[..., tuple[int, str, str]],
    server: FlagServer,
    golden: Path,
    right: FakeBackend,
    wrong: FakeBackend,
) -> None:
    """--daily stores the set's text with the schedule; listing shows it; a second --daily
    replaces it (revision 2); --off removes it; each write is in the audit log."""
    server.apply(_flag(right, wrong))
    code, out, err = vibe("eval", "schedule", FLAG, "--daily", "03:30", "--set", str(golden))
    assert code == 0, err
    assert "scheduled every day at 03:30 UTC (revision 1)" in out
    assert f"set {golden} (2 items)" in out
    code, out, _ = vibe("eval", "schedule", FLAG, "--json")
    shown = json.loads(out)
    assert (shown["daily_at"], shown["items"], shown["variants"], shown["repeats"]) == (
        "03:30",
        2,
        None,
        1,
    )
    assert "set_text" not in shown
    assert shown["last_day"] is None

    code, out, err = vibe(
        "eval", "schedule", FLAG, "--daily", "22:05", "--variants", "canary", "--repeat", "2"
    )
    assert code == 0, err
    code, out, _ = vibe("eval", "schedule")
    header, row = out.splitlines()
    assert header.split()[:3] == ["FLAG", "DAILY", "(UTC)"]
    assert re.search(r"vibethinker\s+22:05\s+shipped set\s+\d+\s+canary\s+2\s+-\s+2$", row)

    code, out, err = vibe("eval", "schedule", FLAG, "--off")
    assert (code, out.strip()) == (
        0,
        f"removed the daily evaluation of 'vibethinker' in {server.environment!r} "
        "(was at 22:05 UTC)",
    )
    assert _schedules(server) == []
    audit = server.admin_request(
        "GET", "/v1/admin/audit", params={"environment": server.environment}
    ).json()
    actions = [a["action"] for a in audit if a["action"].startswith("eval_schedule")]
    assert actions == ["eval_schedule_remove", "eval_schedule_set", "eval_schedule_set"]
    replaced = next(a for a in audit if a["action"] == "eval_schedule_set")
    assert replaced["before"]["daily_at"] == "03:30"
    assert replaced["after"]["daily_at"] == "22:05"
    assert replaced["after"]["revision"] == 2
    code, out, err = vibe("eval", "schedule", FLAG, "--off")
    assert code == 5
    assert "has no evaluation schedule" in err


@pytest.mark.parametrize(
    ("argv", "exit_code", "says"),
    [
        (["--daily", "25:00"], 2, "give a time of day as HH:MM in UTC, 00:00 to 23:59"),
        (["--daily", "3:30"], 2, "--daily '3:30'"),
        (["--daily", "03:30", "--set", "/nonexistent/set.jsonl"], 2, "cannot read the golden"),
        (["--daily", "03:30", "--set", "BAD"], 2, ":2: not valid JSON"),
        (["--daily", "03:30", "--variants", "blue"], 1, "no variant 'blue'"),
        (["--daily", "03:30", "--repeat", "0"], 2, "--repeat 0: give 1 or more"),
        (["--off", "--daily", "03:30"], 2, "give one of them"),
        (["--set", "x.jsonl"], 2, "add --daily HH:MM"),
        (["NOPE", "--daily", "03:30"], 5, "has no flag 'NOPE'"),
    ],
)
def test_bad_schedules_are_refused_in_one_line_and_nothing_is_stored(
    vibe: Callable[..., tuple[int, str, str]],
    server: FlagServer,
    tmp_path: Path,
    right: FakeBackend,
    wrong: FakeBackend,
    argv: list[str],
    exit_code: int,
    says: str,
) -> None:
    """A bad time, an unreadable or malformed set, an unknown variant or flag: one line."""
    server.apply(_flag(right, wrong))
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(SET_LINES[0]) + "\n{not json\n")
    args = [str(bad) if a == "BAD" else a for a in argv]
    if args[0] != "NOPE":
        args.insert(0, FLAG)
    code, out, err = vibe("eval", "schedule", *args)
    assert code == exit_code, err
    assert out == ""
    assert len(err.splitlines()) == 1
    assert says in err
    assert _schedules(server) == []


def test_the_server_refuses_a_bad_time_or_set_sent_straight_to_its_route(
    server: FlagServer, right: FakeBackend, wrong: FakeBackend
) -> None:
    """The route checks too (422, one line): the CLI is not the only client."""
    server.apply(_flag(right, wrong))
    path = f"/v1/admin/environments/{server.environment}/eval-schedules/{FLAG}"
    late = server.admin_request("PUT", path, json={"daily_at": "24:00"})
    assert late.status_code == 422
    assert late.json()["detail"].startswith("daily_at '24:00': give a time of day as HH:MM")
    bad = server.admin_request(
        "PUT", path, json={"daily_at": "01:00", "set_name": "mine", "set_text": '{"id": 1}'}
    )
    assert bad.status_code == 422
    assert bad.json()["detail"].startswith("mine:1: unknown kind None")
    assert _schedules(server) == []


# -- the server runs them ------------------------------------------------------------------------


def test_the_server_makes_a_due_scheduled_run_once_like_vibe_eval_run(
    vibe: Callable[..., tuple[int, str, str]],
    backend_process: FlagServerProcess,
    server: FlagServer,
    golden: Path,
    right: FakeBackend,
    wrong: FakeBackend,
) -> None:
    """Made due, the schedule runs within a few looks: every item through the SDK as each
    variant (the reviewed prompt and sampling), stored and summarized, marked scheduled in
    vibe eval history; later looks the same day make no second run."""
    server.apply(_flag(right, wrong))
    code, _, err = vibe("eval", "schedule", FLAG, "--daily", "00:00", "--set", str(golden))
    assert code == 0, err
    time.sleep(1.5)  # three looks: a schedule is first due at its first 00:00 after it was set
    assert _runs(server) == []
    make_eval_schedule_due(backend_process.db, server.environment, FLAG)
    run = _wait_finished(server, backend_process.log_tail)
    assert (run["trigger"], run["error"], run["started_by"]) == ("scheduled", None, "eval-schedule")
    assert run["variants"] == ["stable", "canary"]
    assert run["set_name"] == str(golden)
    assert run["document_version"] == server.document().version
    canary, stable = run["summary"]["canary"], run["summary"]["stable"]
    assert (canary["math"]["accuracy"], canary["code"]["pass_at_1"], canary["score"]) == (1, 1, 1)
    assert (stable["math"]["accuracy"], stable["code"]["pass_at_1"], stable["score"]) == (0, 0, 0)
    assert len(right.chat_requests) == len(wrong.chat_requests) == len(SET_LINES)
    sent = right.chat_requests[0].json
    assert sent["messages"][0] == {"role": "system", "content": VIBETHINKER_SYSTEM_PROMPT}
    assert (sent["temperature"], sent["top_p"], sent["top_k"]) == (0.6, 0.95, 64)

    time.sleep(1.5)  # three more looks: the day is claimed, nothing runs again
    assert len(_runs(server)) == 1
    assert len(right.chat_requests) == len(SET_LINES)
    (schedule,) = _schedules(server)
    assert schedule["last_day"] == run["started_at"][:10]

    code, out, _ = vibe("eval", "history", FLAG)
    assert re.search(rf"^{run['id']}\s+\S+ \S+\s+scheduled\s+{re.escape(str(golden))}", out, re.M)
    history = json.loads(vibe("eval", "history", FLAG, "--json")[1])
    assert (history[0]["trigger"], history[0]["error"]) == ("scheduled", None)


def test_an_error_in_a_scheduled_run_is_stored_on_the_run_and_the_server_carries_on(
    vibe: Callable[..., tuple[int, str, str]],
    backend_process: FlagServerProcess,
    server: FlagServer,
    right: FakeBackend,
    wrong: FakeBackend,
) -> None:
    """The flag is deleted after the schedule was set: the run is stored, finished, with the
    error, and history shows it; the server still answers."""
    server.apply(_flag(right, wrong))
    code, _, err = vibe("eval", "schedule", FLAG, "--daily", "00:00", "--variants", "canary")
    assert code == 0, err
    server.apply(make_flag("other", stable_url=wrong.url, canary_url=right.url), prune=True)
    make_eval_schedule_due(backend_process.db, server.environment, FLAG)
    run = _wait_finished(server, backend_process.log_tail)
    assert run["trigger"] == "scheduled"
    assert run["error"].startswith("EvalError: environment")
    assert "has no flag 'vibethinker'" in run["error"]
    assert right.chat_requests == []
    code, out, _ = vibe("eval", "history", FLAG)
    assert code == 0
    assert re.search(
        rf"^{run['id']}\s+\S+ \S+\s+scheduled\s+shipped set\s+\d+\s+canary\s+-", out, re.M
    )
    assert f"run {run['id']}: EvalError: " in out
    assert server.admin_request("GET", "/healthz").status_code == 200


@pytest.mark.postgres
def test_two_replicas_make_a_due_scheduled_run_once(
    postgres_schema: str,
    flag_server_factory: Callable[..., FlagServerProcess],
    right: FakeBackend,
    wrong: FakeBackend,
) -> None:
    """Two servers on one PostgreSQL, both looking every 0.2 s: one leads, one run is made."""
    fast = ["--eval-schedule-check-s", "0.2"]
    a = flag_server_factory(postgres_schema, extra_args=fast)
    b = flag_server_factory(
        postgres_schema, extra_args=fast, admin_token=a.admin_token, sdk_key=a.sdk_key
    )
    a.apply(_flag(right, wrong))
    path = f"/v1/admin/environments/{a.environment}/eval-schedules/{FLAG}"
    set_text = "".join(json.dumps(line) + "\n" for line in SET_LINES)
    stored = a.admin_request("PUT", path, json={"daily_at": "00:00", "set_text": set_text})
    assert stored.status_code == 200, stored.text
    make_eval_schedule_due(a.db, a.environment, FLAG)
    run = _wait_finished(b, a.log_tail)
    time.sleep(1.0)  # five more looks on each server
    assert [r["id"] for r in _runs(a)] == [run["id"]]
    assert len(right.chat_requests) == len(wrong.chat_requests) == len(SET_LINES)
    leads = "eval-schedule: this replica leads"
    assert [leads in s.log_tail(400) for s in (a, b)].count(True) == 1


# -- the scheduler's days, on a real store with a moved clock -------------------------------------


def test_due_day_is_the_latest_passed_time_after_the_schedule_was_set() -> None:
    """Before today's HH:MM the due day is yesterday; nothing is due before the first HH:MM
    after the schedule was stored; a bad time is one line."""
    utc = dt.timezone.utc
    since = dt.datetime(2026, 3, 1, 10, 0, tzinfo=utc)
    assert due_day("09:00", since, dt.datetime(2026, 3, 1, 12, 0, tzinfo=utc)) is None
    assert due_day("11:00", since, dt.datetime(2026, 3, 1, 10, 30, tzinfo=utc)) is None
    assert due_day("11:00", since, dt.datetime(2026, 3, 1, 11, 0, tzinfo=utc)) == "2026-03-01"
    assert due_day("09:00", since, dt.datetime(2026, 3, 2, 8, 59, tzinfo=utc)) is None
    assert due_day("09:00", since, dt.datetime(2026, 3, 2, 9, 0, tzinfo=utc)) == "2026-03-02"
    assert due_day("09:00", since, dt.datetime(2026, 3, 9, 8, 0, tzinfo=utc)) == "2026-03-08"
    assert due_day("23:59", since, dt.datetime(2026, 3, 2, 0, 1, tzinfo=utc)) == "2026-03-01"
    for bad in ("24:00", "9:00", "09:60", "0900", " 09:00"):
        with pytest.raises(ValueError, match="HH:MM in UTC") as caught:
            parse_daily(bad)
        assert "\n" not in str(caught.value)


class Clock:
    def __init__(self, when: dt.datetime) -> None:
        self.when = when

    def __call__(self) -> float:
        return self.when.timestamp()


@pytest.fixture
def store(tmp_path: Path, right: FakeBackend, wrong: FakeBackend) -> Iterator[SqlStore]:
    """A SQLite store whose environment has the flag and a schedule at 09:00, set 'now'."""
    opened = open_store(tmp_path / "vibesdk.db")
    opened.create_environment("prod", actor="test", reason=None)
    flag = _flag(right, wrong)
    opened.write(
        "prod",
        lambda tx, doc: Mutation(flags={**doc.flags, FLAG: flag}, extra={}),
        actor="test",
        action="apply",
        reason=None,
    )
    from vibesdk_server._eval.golden import parse_set
    from vibesdk_server._vibe.eval import set_digest

    text = "".join(json.dumps(line) + "\n" for line in SET_LINES)
    fields = {
        "daily_at": "09:00",
        "set_name": "daily",
        "set_digest": set_digest(parse_set(text, "daily")),
        "set_text": text,
        "items": len(SET_LINES),
        "variants": ["canary"],
        "repeats": 1,
    }
    opened.set_eval_schedule("prod", FLAG, fields, actor="test")
    yield opened
    opened.close()


def _since(store: SqlStore) -> dt.datetime:
    since = store.eval_schedule("prod", FLAG)["since"]
    return dt.datetime.fromisoformat(since.replace("Z", "+00:00"))


def test_missed_days_are_caught_up_once_and_a_day_never_runs_twice(
    store: SqlStore, right: FakeBackend
) -> None:
    """Down for three 09:00s: one run (for the latest); later looks that day and a look before
    the next 09:00 make none; the next 09:00 makes one."""
    start = _since(store)
    clock = Clock(start.replace(hour=8, minute=0) + dt.timedelta(days=4))
    scheduler = Scheduler(store, interval_s=1, clock=clock)
    (first,) = scheduler.tick()
    run = store.eval_run("prod", first)
    assert (run["trigger"], run["error"], run["items"]) == ("scheduled", None, 2)
    assert run["summary"]["canary"]["score"] == 1.0
    assert len(right.chat_requests) == len(SET_LINES)
    yesterday = (clock.when - dt.timedelta(days=1)).date().isoformat()
    assert store.eval_schedule("prod", FLAG)["last_day"] == yesterday
    clock.when += dt.timedelta(minutes=59)
    assert scheduler.tick() == []
    clock.when += dt.timedelta(minutes=1)
    (second,) = scheduler.tick()
    assert second != first
    assert scheduler.tick() == []
    assert [r["id"] for r in store.list_eval_runs("prod", flag_key=FLAG, limit=10)] == [
        second,
        first,
    ]


def test_two_schedulers_on_one_database_run_a_day_once(store: SqlStore) -> None:
    """The day is claimed in the database: a second scheduler (a new leader) finds it taken,
    and a claim of a day already claimed fails even for one that read the list before."""
    clock = Clock(_since(store) + dt.timedelta(days=1, hours=1))
    assert len(Scheduler(store, interval_s=1, clock=clock).tick()) == 1
    assert Scheduler(store, interval_s=1, clock=clock).tick() == []
    assert len(store.list_eval_runs("prod", flag_key=FLAG, limit=10)) == 1
    day = store.eval_schedule("prod", FLAG)["last_day"]
    assert store.claim_eval_day("prod", FLAG, day) is False
    assert store.claim_eval_day("prod", FLAG, "2099-01-01") is True
    assert store.claim_eval_day("prod", FLAG, "2099-01-01") is False


def test_a_run_cut_short_by_a_shutdown_is_stored_with_what_it_had(store: SqlStore) -> None:
    """Stopping during a run ends it at its next answer: finished, that answer kept, the
    error says why; the day stays claimed."""
    scheduler = Scheduler(store, interval_s=1, concurrency=1)
    scheduler.stop()
    schedule = store.list_eval_schedules()[0]
    assert store.claim_eval_day("prod", FLAG, "2026-01-02")
    run = store.eval_run("prod", scheduler.run_schedule(schedule, "2026-01-02"))
    assert run["error"] == "stopped: vibe-server shut down during the run"
    assert run["finished_at"] is not None
    assert len(store.eval_results("prod", run["id"])) == 1
    assert store.eval_schedule("prod", FLAG)["last_day"] == "2026-01-02"


def test_server_refuses_a_look_interval_that_is_not_positive(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """vibe-server --eval-schedule-check-s 0 is a usage error naming the option; nothing runs."""
    from vibesdk_server._cli import main

    with pytest.raises(SystemExit) as exited:
        main(["serve", "--db", str(tmp_path / "x.db"), "--eval-schedule-check-s", "0"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "--eval-schedule-check-s: give a number of seconds above 0" in err
    assert not (tmp_path / "x.db").exists()
