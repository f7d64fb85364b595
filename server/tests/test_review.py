"""The human review queue on the real flag server (SQLite and PostgreSQL), fed by a real SDK.

vibesdk.Client answers through two FakeBackends with every variant's ``log_share`` at 1, so
each call lands in the request log; reports go through ``client.report``. Then reviewers
(the fixture's two admin tokens) take items from ``.../review/next``, score them, and read the
aggregates, over HTTP and with ``vibe review``.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes
from vibesdk_server._domain._otlp import Point
from vibesdk_server._domain._otlp_traces import Entry
from vibesdk_server._guard import plan
from vibesdk_server._guard.release import aggregates
from vibesdk_server._guard.stats import Moments
from vibesdk_server._review import events, stats
from vibesdk_server._storage import open_store
from vibesdk_server._storage._requestlog import DEFAULT_RETENTION
from vibesdk_server.testing import FlagServer, FlagServerProcess

import vibesdk
from vibesdk.testing import FakeBackend, make_flag

FLAG = "vibethinker"
ANSWERS = {"stable": "Two plus two makes four.", "canary": "The sum is 4."}
BLIND_KEYS = {"trace_id", "system_instructions", "input_messages", "output_messages"}


def _review(server: FlagServer, what: str) -> str:
    return f"/v1/admin/environments/{server.environment}/flags/{FLAG}/review/{what}"


def logged_calls(
    server: FlagServer, users: int, *, report: Callable[[list[Any]], list[int]] = lambda r: []
) -> list[Any]:
    """``users`` calls of a real Client, half the users on the canary, every call logged; the
    answers at the indexes ``report`` picks are reported (in that order), one after another."""
    with (
        FakeBackend(default=ANSWERS["stable"]) as stable,
        FakeBackend(default=ANSWERS["canary"]) as canary,
    ):
        server.apply(
            make_flag(
                stable_url=stable.url,
                canary_url=canary.url,
                rollout_bps=5_000,
                log_share={"stable": 1.0, "canary": 1.0},
            )
        )
        client = vibesdk.Client(server_url=server.url, sdk_key=server.sdk_key, cache_dir="")
        try:
            assert client.wait_until_ready(15)
            results = [
                client.chat(FLAG, f"user-{i}", [{"role": "user", "content": f"What is {i}+{i}?"}])
                for i in range(users)
            ]
            for index in report(results):
                client.report(results[index].trace_id, "wrong")
                time.sleep(0.01)  # reports in a known order (times have milliseconds)
        finally:
            client.close()  # sends what is queued
    _wait_for(server, len(results))
    return results


def _wait_for(server: FlagServer, entries: int) -> None:
    path = f"/v1/admin/environments/{server.environment}/request-log"
    deadline = time.monotonic() + 15
    while len(server.admin_request("GET", path, params={"flag": FLAG}).json()) < entries:
        assert time.monotonic() < deadline, "the logged calls never reached the request log"
        time.sleep(0.1)


def _next(server: FlagServer, token: str | None = None) -> dict[str, Any]:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    response = server.admin_request("GET", _review(server, "next"), headers=headers)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def _score(
    server: FlagServer, trace_id: str, score: int, *, token: str | None = None, note: str = ""
) -> Any:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    body = {"trace_id": trace_id, "score": score, "note": note or None}
    return server.admin_request("POST", _review(server, "scores"), json=body, headers=headers)


def test_reported_answers_come_first_by_report_time_and_every_item_is_blind(
    server: FlagServer,
) -> None:
    """Reported answers first (the first report first), then the newest; an item is the
    question, system prompt and answer, with nothing naming the variant or model."""
    results = logged_calls(server, 4, report=lambda r: [2, 0])
    seen = []
    for _ in range(4):
        answer = _next(server)
        item = answer["item"]
        assert set(item) == BLIND_KEYS
        text = json.dumps(item)
        for hint in ("canary", "stable", "vibethinker-1.5b", "stable-model", "variant", "model"):
            assert hint not in text, hint
        result = next(r for r in results if r.trace_id == item["trace_id"])
        assert item["output_messages"][0]["parts"][0]["content"] == ANSWERS[result.variant]
        assert answer["remaining"] == 4 - len(seen)
        assert _score(server, item["trace_id"], 3).status_code == 201
        seen.append(item["trace_id"])
    assert seen == [results[i].trace_id for i in (2, 0, 3, 1)]
    assert _next(server) == {"item": None, "remaining": 0}


def test_a_score_reveals_the_variant_is_stored_with_the_reviewer_and_audited(
    server: FlagServer,
) -> None:
    (result,) = logged_calls(server, 1)
    response = _score(server, result.trace_id, 4, note="  right,\n but long ")
    assert response.status_code == 201, response.text
    stored = response.json()
    reviewer = server.admin_request("GET", "/v1/admin/audit").json()[0]["actor"]
    assert stored["variant"] == result.variant
    assert stored["model"] == ("vibethinker-1.5b" if result.variant == "canary" else "stable-model")
    assert (stored["trace_id"], stored["score"], stored["note"]) == (
        result.trace_id,
        4,
        "right, but long",
    )
    assert stored["reviewer"] == reviewer
    assert reviewer.startswith("test-admin-")
    listed = server.admin_request("GET", _review(server, "scores")).json()
    assert listed == [stored]
    (audit,) = [
        a
        for a in server.admin_request(
            "GET", "/v1/admin/audit", params={"environment": server.environment}
        ).json()
        if a["action"] == "review_score"
    ]
    assert audit["actor"] == reviewer
    assert audit["flag_key"] == FLAG
    assert audit["reason"] == "right, but long"


def test_a_second_reviewer_gets_what_the_first_scored_and_nobody_gets_it_a_third_time(
    server: FlagServer, backend_process: FlagServerProcess
) -> None:
    """An answer one reviewer scored goes to the next reviewer first; never twice to one."""
    results = logged_calls(server, 2)
    first = _next(server)["item"]["trace_id"]
    assert _score(server, first, 5).status_code == 201
    assert _next(server)["item"]["trace_id"] != first  # not again to the same reviewer
    assert _next(server, server.reviewer_token)["item"]["trace_id"] == first
    assert _score(server, first, 4, token=server.reviewer_token).status_code == 201
    other = next(r.trace_id for r in results if r.trace_id != first)
    assert _next(server, server.reviewer_token)["item"]["trace_id"] == other
    assert _next(server)["item"]["trace_id"] == other
    assert _next(server)["remaining"] == 1
    # A third reviewer is offered only the answer fewer than two reviewers scored.
    store = open_store(backend_process.db)
    try:
        third = store.create_token(
            kind="admin", name=f"third-{server.environment}", environment=None, created_by="test"
        )
    finally:
        store.close()
    offered = _next(server, third)
    assert (offered["item"]["trace_id"], offered["remaining"]) == (other, 1)


def test_bad_scores_are_refused_with_one_line_and_nothing_stored_is_lost(
    server: FlagServer,
) -> None:
    (result,) = logged_calls(server, 1)
    assert _score(server, result.trace_id, 2).status_code == 201
    cases = [
        ({"trace_id": result.trace_id, "score": 0}, 422, "score"),
        ({"trace_id": result.trace_id, "score": 6}, 422, "score"),
        ({"trace_id": result.trace_id, "score": 2.5}, 422, "score"),
        ({"trace_id": "not-a-trace", "score": 3}, 422, "trace_id"),
        ({"trace_id": "0" * 32, "score": 3}, 404, "no answer with trace id"),
        ({"trace_id": result.trace_id, "score": 3}, 409, "already scored"),
        ({"trace_id": result.trace_id, "score": 3, "variant": "canary"}, 422, "variant"),
    ]
    for body, status, words in cases:
        response = server.admin_request("POST", _review(server, "scores"), json=body)
        assert response.status_code == status, (body, response.text)
        detail = response.json()["detail"]
        assert words in detail, detail
        assert "\n" not in detail
    scores = server.admin_request("GET", _review(server, "scores")).json()
    assert [(s["trace_id"], s["score"]) for s in scores] == [(result.trace_id, 2)]
    missing = server.admin_request(
        "GET", f"/v1/admin/environments/nowhere/flags/{FLAG}/review/next"
    )
    assert missing.status_code == 404


def test_the_summary_gives_each_variants_mean_interval_and_the_reviewers_agreement(
    server: FlagServer,
) -> None:
    """Known scores from two reviewers over ten answers; figures worked out by hand."""
    results = logged_calls(server, 10)
    first = [5, 4, 3, 2, 1, 5, 4, 3, 2, 1]
    second = [5, 4, 3, 2, 1, 4, 5, 2, 1, 3]
    for result, a, b in zip(results, first, second, strict=True):
        assert _score(server, result.trace_id, a).status_code == 201
        assert _score(server, result.trace_id, b, token=server.reviewer_token).status_code == 201
    summary = server.admin_request("GET", _review(server, "summary")).json()
    assert summary["scores"] == 20
    assert len(summary["reviewers"]) == 2
    agreement = summary["agreement"]
    # 5 of 10 pairs equal; 9 within 1 ((1, 3) is not). Quadratic kappa: observed mean squared
    # difference 8/10 = 0.8; both margins are two of each score (uniform on 1..5), so the
    # expected one, for independent scores, is twice that variance: 2 * 2 = 4.
    assert (agreement["items"], agreement["exact"], agreement["within_one"]) == (10, 0.5, 0.9)
    assert agreement["weighted_kappa"] == pytest.approx(1 - 0.8 / 4.0)
    by_variant = {v["variant"]: v for v in summary["variants"]}
    for variant, figures in by_variant.items():
        mine = [
            s
            for r, a, b in zip(results, first, second, strict=True)
            if r.variant == variant
            for s in (a, b)
        ]
        assert figures["n"] == len(mine)
        assert figures["mean"] == pytest.approx(sum(mine) / len(mine), abs=1e-4)
        low, high = figures["ci95"]
        assert 1 <= low < figures["mean"] < high <= 5
    assert sum(v["n"] for v in by_variant.values()) == 20


def test_vibe_review_next_scores_interactively_or_with_options_and_stats_reads_back(
    server: FlagServer, vibe: Callable[..., tuple[int, str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    results = logged_calls(server, 2)
    code, out, _ = vibe("review", "next", FLAG)  # no terminal, no --score: shown only
    assert code == 0
    assert "answer:" in out
    assert "What is" in out
    assert "--score N" in out
    assert "canary" not in out
    assert "stable" not in out
    code, out, _ = vibe("review", "next", FLAG, "--score", "4", "--note", "fine")
    assert code == 0
    shown = out.split()[1]
    variant = next(r.variant for r in results if r.trace_id == shown)
    assert f"scored 4 (good): trace {shown} was variant {variant!r}" in out
    # Interactively: a bad answer is asked again, then the note.
    from vibesdk_server._vibe.main import main

    answers = iter(["7", "2", "too short"])

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert main(["review", "next", FLAG], stdin=Tty(), ask=lambda _: next(answers)) == 0
    code, out, _ = vibe("review", "next", FLAG)
    assert code == 0
    assert "queue of 'vibethinker'" in out
    assert "is empty" in out
    code, out, err = vibe("review", "next", FLAG, "--score", "9")
    assert code == 2
    assert "give a whole number from 1 to 5" in err
    code, out, _ = vibe("review", "stats", FLAG, "--json")
    assert code == 0
    summary = json.loads(out)
    scores = server.admin_request("GET", _review(server, "scores")).json()
    assert sorted((s["score"], s["note"]) for s in scores) == [(2, "too short"), (4, "fine")]
    assert summary["scores"] == 2
    code, out, _ = vibe("review", "stats", FLAG)
    assert code == 0
    assert "MEAN" in out
    assert "no answer scored by two reviewers yet" in out


def test_the_server_refuses_a_logs_endpoint_that_is_not_an_http_url(
    flag_server_factory: Callable[..., FlagServerProcess],
) -> None:
    with pytest.raises(RuntimeError, match="must be an http:// or https:// URL"):
        flag_server_factory(None, extra_args=["--otlp-logs-endpoint", "collector:4318"])


# -- the figures, on known scores (pure) -----------------------------------------------------------
def test_the_event_names_are_the_genai_semantic_conventions() -> None:
    assert events.EVENT_NAME == "gen_ai.evaluation.result"
    assert events.GEN_AI_EVALUATION_NAME == gen_ai_attributes.GEN_AI_EVALUATION_NAME
    assert events.GEN_AI_EVALUATION_SCORE_VALUE == gen_ai_attributes.GEN_AI_EVALUATION_SCORE_VALUE
    assert events.GEN_AI_EVALUATION_SCORE_LABEL == gen_ai_attributes.GEN_AI_EVALUATION_SCORE_LABEL
    assert events.GEN_AI_EVALUATION_EXPLANATION == gen_ai_attributes.GEN_AI_EVALUATION_EXPLANATION


def test_t_quantiles_match_the_table_and_the_expansion_beyond_it() -> None:
    assert stats.t_975(1) == 12.706
    assert stats.t_975(9) == 2.262
    assert stats.t_975(40) == pytest.approx(2.0211, abs=1e-3)
    assert stats.t_975(120) == pytest.approx(1.9799, abs=1e-3)
    with pytest.raises(ValueError, match="degrees of freedom"):
        stats.t_975(0)


def test_a_variants_interval_is_the_student_t_one_clipped_to_the_scale() -> None:
    rows = [{"variant": "canary", "score": s} for s in (2, 3, 4)]
    rows += [{"variant": "stable", "score": 5}, {"variant": "stable", "score": 5}]
    rows += [{"variant": "solo", "score": 3}]
    canary, solo, stable = stats.per_variant(rows)
    # mean 3, sd 1, n 3: 3 ± 4.303 / sqrt(3) = 3 ± 2.4843.
    assert canary == {"variant": "canary", "n": 3, "mean": 3.0, "ci95": [1.0, 5.0]}
    rows = [{"variant": "canary", "score": s} for s in (3, 4) * 10]
    (wide,) = stats.per_variant(rows)
    # mean 3.5, sd 0.5130, n 20: ± 2.093 · 0.5130 / sqrt(20) = ± 0.2401.
    assert wide["ci95"] == pytest.approx([3.2599, 3.7401], abs=1e-4)
    assert stable == {"variant": "stable", "n": 2, "mean": 5.0, "ci95": [5.0, 5.0]}
    assert solo == {"variant": "solo", "n": 1, "mean": 3.0, "ci95": None}


def test_agreement_takes_the_first_two_scores_and_kappa_needs_items_and_spread() -> None:
    def scored(pairs: list[tuple[int, ...]]) -> list[dict[str, Any]]:
        return [{"trace_id": f"t{i}", "score": s} for i, pair in enumerate(pairs) for s in pair]

    few = stats.agreement(scored([(5, 5), (4, 2), (3, 3, 1), (2,)]))
    assert (few["items"], few["exact"], few["within_one"]) == (3, 0.6667, 0.6667)
    assert few["weighted_kappa"] is None  # fewer than 10 items
    same = stats.agreement(scored([(4, 4)] * 10))
    assert (same["exact"], same["weighted_kappa"]) == (1.0, None)  # nothing to disagree about
    opposite = stats.agreement(scored([(1, 5), (5, 1)] * 5))
    assert opposite["weighted_kappa"] == -1.0
    assert stats.agreement([])["exact"] is None


def test_review_scores_feed_the_review_score_guardrail_of_a_release(server: FlagServer) -> None:
    """The step's figures carry each variant's review scores; the opt-in guardrail reads them
    as a mean, like users' scores."""
    results = logged_calls(server, 4)
    for result, score in zip(results, (5, 4, 2, 1), strict=True):
        assert _score(server, result.trace_id, score).status_code == 201
    measured = server.admin_request(
        "GET",
        f"/v1/admin/environments/{server.environment}/measurements",
        params={"flag": FLAG},
    ).json()["variants"]
    for variant in {r.variant for r in results}:
        mine = [s for r, s in zip(results, (5, 4, 2, 1), strict=True) if r.variant == variant]
        review = measured[variant]["feedback_received"]["review"]
        assert review == {
            "count": len(mine),
            "sum": float(sum(mine)),
            "sum_sq": float(sum(s * s for s in mine)),
        }
        moments = aggregates(measured[variant]).metrics["review_score"]
        assert moments == Moments(len(mine), float(sum(mine)), float(sum(s * s for s in mine)))
    (rule,) = [r for r in plan.guardrail_rules({"review_score": {}}) if r.name == "review_score"]
    assert (rule.metric, rule.kind, rule.harm, rule.threshold, rule.action) == (
        "review_score",
        "relative",
        "decrease",
        -0.5,  # the canary's mean may be 0.5 points below stable's
        "pause",
    )
    assert "review_score" not in {r.name for r in plan.guardrail_rules(None)}  # opt-in


def test_the_charts_series_counts_each_score_in_the_step_its_answer_was_logged_in(
    db_url: str,
) -> None:
    """``measurement_series`` gives each step the count and sum of the scores of the answers
    logged in it (not of the scores given in it); a step with no scored answer has no review
    point, and a measured step without scores has a count of 0."""
    t0 = 1_800_000_000 // 600 * 600  # a whole minute, long after the scores are given
    logged = {  # trace id: (variant, seconds after t0 the call ended)
        "a" * 32: ("canary", 5),
        "b" * 32: ("canary", 59),
        "c" * 32: ("stable", 61),
        "d" * 32: ("canary", 70),  # never scored: its step has no canary point
        "e" * 32: ("canary", -1),  # before the window
    }
    store = open_store(db_url)
    try:
        store.create_environment("prod", actor="t", reason=None)
        entries = [
            Entry(FLAG, variant, trace, (t0 + s) * 10**9 + 500_000_000, 0.5, answered_by=variant)
            for trace, (variant, s) in logged.items()
        ]
        store.add_requests("prod", entries, DEFAULT_RETENTION)
        scores = [
            ("a", 5, "ann"),
            ("a", 4, "bob"),
            ("b", 2, "ann"),
            ("c", 3, "ann"),
            ("e", 1, "ann"),
        ]
        for trace, score, reviewer in scores:
            store.add_review_score(
                "prod", FLAG, trace * 32, score=score, note=None, reviewer=reviewer
            )
        # A measured step (two minutes in) where nothing was scored.
        store.add_points("prod", [Point(FLAG, "canary", t0 + 120, "vibesdk.reports", "", 1, 1)])
        series = store.measurement_series(environment="prod", flag_key=FLAG, since=t0, step_s=60)
        stored = store.review_scores("prod", FLAG)
    finally:
        store.close()
    reviews = {
        variant: [(p["t"] - t0, p["review"]) for p in points] for variant, points in series.items()
    }
    assert reviews == {
        "canary": [(0, {"count": 3, "sum": 11.0}), (120, {"count": 0, "sum": 0.0})],
        "stable": [(60, {"count": 1, "sum": 3.0})],
    }
    assert stored[0]["answered_at"] == "2027-01-15T08:00:05.500Z"  # the call's end, kept
