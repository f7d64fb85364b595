"""The dashboard at /ui over HTTP, against the real server on SQLite and PostgreSQL.

Sign-in, sessions, CSRF, every route's refusal without a session, the pages' content and the
actions' effects on the flag document. The browser tests (tests/test_ui_browser.py) drive the
same pages in Chromium.
"""

from __future__ import annotations

import html
import json
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from vibesdk_server._ui._routes import router as ui_router
from vibesdk_server._ui._routes import templates
from vibesdk_server.testing import FlagServer, FlagServerProcess

import vibesdk
from vibesdk.testing import VIBETHINKER_SYSTEM_PROMPT, FakeBackend, Reply, make_flag

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


class Browsers:
    """httpx clients standing in for browsers (cookies kept per client), closed at the end."""

    def __init__(self) -> None:
        self._open: list[httpx.Client] = []

    def new(self, server: FlagServer) -> httpx.Client:
        browser = httpx.Client(base_url=server.url, timeout=30.0, follow_redirects=False)
        self._open.append(browser)
        return browser

    def signed_in(self, server: FlagServer, token: str | None = None) -> httpx.Client:
        browser = self.new(server)
        r = browser.post("/ui/login", data={"token": token or server.admin_token, "next": "/ui"})
        assert r.status_code == 303, r.text
        return browser

    def close(self) -> None:
        for browser in self._open:
            browser.close()


@pytest.fixture
def browsers() -> Iterator[Browsers]:
    made = Browsers()
    yield made
    made.close()


def _csrf(browser: httpx.Client, path: str) -> str:
    page = browser.get(path)
    assert page.status_code == 200, page.text
    found = CSRF.search(page.text)
    assert found, "no CSRF token on " + path
    return found.group(1)


def _ui_routes() -> list[tuple[str, str]]:
    """Every (method, path) the dashboard's router serves, with sample parameters."""
    samples = {
        "{env}": "default",
        "{key}": "vibethinker",
        "{action}": "rollback",
        "{prompt_id}": "p",
        "{version}": "1",
        "{verdict}": "approve",
        "{incident_id}": "1",
        "{entry_id}": "1",
    }
    out = []
    for route in ui_router.routes:
        path = getattr(route, "path", "")
        for name, value in samples.items():
            path = path.replace(name, value)
        assert "{" not in path, f"add a sample for {path}"
        out.extend((method, path) for method in sorted(getattr(route, "methods", ())))
    return out


def test_no_dashboard_route_answers_without_a_session(
    server: FlagServer, browsers: Browsers
) -> None:
    """Walks every /ui route the app has: pages redirect to sign-in, the rest are refused."""
    routes = _ui_routes()
    assert len(routes) >= 12, routes
    browser = browsers.new(server)
    for method, path in routes:
        if path == "/ui/login":
            continue
        r = browser.request(method, path, headers={"Cookie": "vibe_session=forged"})
        if method == "GET" and not path.endswith("/series"):
            assert r.status_code == 303, (method, path, r.status_code)
            assert r.headers["location"].startswith("/ui/login?next="), (method, path)
        else:
            assert r.status_code == 401, (method, path, r.status_code)
        assert "vibethinker" not in r.text or path.endswith("vibethinker"), (method, path)


def test_sign_in_takes_an_admin_token_only_and_sets_a_strict_cookie(
    server: FlagServer, browsers: Browsers
) -> None:
    browser = browsers.new(server)
    r = browser.post("/ui/login", data={"token": "vibe_admin_nope_x"})
    assert r.status_code == 401
    assert "Unknown token" in r.text
    r = browser.post("/ui/login", data={"token": server.sdk_key})
    assert r.status_code == 401
    assert "is an SDK key" in r.text
    r = browser.post("/ui/login", data={"token": server.admin_token, "next": "//evil.example/x"})
    assert r.status_code == 303
    assert r.headers["location"] == "/ui"  # no open redirect
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie or "SameSite=Strict" in cookie
    assert "Path=/ui" in cookie
    home = browser.get("/ui")
    assert home.status_code == 200
    assert "default-src 'none'" in home.headers["content-security-policy"]
    assert "script-src 'self'" in home.headers["content-security-policy"]
    assert "<script>" not in home.text  # no inline script: the CSP would refuse it


def test_rollback_from_the_flag_page_needs_the_csrf_token_and_is_audited(
    server: FlagServer, browsers: Browsers
) -> None:
    server.apply(make_flag(rollout_bps=2500))
    env = server.environment
    browser = browsers.signed_in(server)
    page = f"/ui/environments/{env}/flags/vibethinker"
    assert "25%" in browser.get(page).text
    token = _csrf(browser, page + "/confirm/rollback")

    forged = browser.post(page + "/rollback", data={"reason": "x", "csrf": "not-it"})
    missing = browser.post(page + "/rollback", data={"reason": "x"})
    assert (forged.status_code, missing.status_code) == (403, 403)
    assert server.document().flags["vibethinker"].rollout_bps == 2500  # nothing changed

    blank = browser.post(page + "/rollback", data={"reason": "  ", "csrf": token})
    assert blank.status_code == 400
    assert "Give a reason" in blank.text

    done = browser.post(page + "/rollback", data={"reason": "P95 over 3 s", "csrf": token})
    assert done.status_code == 303, done.text
    assert server.document().flags["vibethinker"].rollout_bps == 0
    after = browser.get(done.headers["location"])
    assert "Rolled back" in after.text
    audit = server.admin_request("GET", f"/v1/admin/audit?environment={env}&limit=1").json()
    assert (audit[0]["action"], audit[0]["reason"]) == ("rollback", "P95 over 3 s")
    assert audit[0]["actor"].startswith("test-admin-")  # the signed-in token's name


def test_refusals_show_the_servers_own_message(server: FlagServer, browsers: Browsers) -> None:
    """Pausing a flag with no release: the same sentence the admin API (and vibe) gives."""
    server.apply(make_flag())
    page = f"/ui/environments/{server.environment}/flags/vibethinker"
    api = server.admin_request(
        "POST",
        f"/v1/admin/environments/{server.environment}/flags/vibethinker/release/pause",
        json={"reason": "x"},
    )
    assert api.status_code == 404
    browser = browsers.signed_in(server)
    token = _csrf(browser, page + "/confirm/pause")
    r = browser.post(page + "/pause", data={"reason": "x", "csrf": token})
    assert r.status_code == 404
    assert _html_text(api.json()["detail"]) in r.text


def _html_text(text: str) -> str:
    return (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace("'", "&#39;")
        .replace('"', "&#34;")
    )


def test_kill_switch_and_enable(server: FlagServer, browsers: Browsers) -> None:
    server.apply(make_flag())
    page = f"/ui/environments/{server.environment}/flags/vibethinker"
    browser = browsers.signed_in(server)
    token = _csrf(browser, page + "/confirm/kill")
    assert browser.post(page + "/kill", data={"reason": "bad", "csrf": token}).status_code == 303
    assert server.document().flags["vibethinker"].enabled is False
    assert "Killed" in browser.get(page).text
    assert browser.post(page + "/enable", data={"reason": "ok", "csrf": token}).status_code == 303
    assert server.document().flags["vibethinker"].enabled is True


def test_sign_out_ends_the_session(server: FlagServer, browsers: Browsers) -> None:
    browser = browsers.signed_in(server)
    token = _csrf(browser, "/ui")
    old = browser.cookies["vibe_session"]
    assert browser.post("/ui/logout", data={"csrf": token}).status_code == 303
    r = browsers.new(server).get("/ui", headers={"Cookie": f"vibe_session={old}"})
    assert r.status_code == 303
    assert r.headers["location"].startswith("/ui/login")


def test_a_session_expires(browsers: Browsers) -> None:
    with FlagServerProcess(extra_args=["--ui-session-ttl-s", "1"]) as process:
        browser = browsers.signed_in(process)
        assert browser.get("/ui").status_code == 200
        time.sleep(1.5)
        r = browser.get("/ui")
        assert r.status_code == 303
        assert r.headers["location"].startswith("/ui/login")


def test_prompt_review_keeps_four_eyes(server: FlagServer, browsers: Browsers) -> None:
    created = server.register_prompt(
        prompt_id="ui-review", system="Think step by step.", model="m", approve=False
    )
    path = f"/ui/prompts/ui-review/versions/{created['version']}"
    author = browsers.signed_in(server)
    assert "ui-review@" in author.get("/ui/prompts").text
    token = _csrf(author, path)
    r = author.post(path + "/approve", data={"csrf": token})
    assert r.status_code == 403  # the author may not approve their own version
    assert "approve" in r.text.lower()
    if server.reviewer_token is None:
        pytest.skip("this server allows self-review; no second admin to approve with")
    reviewer = browsers.signed_in(server, server.reviewer_token)
    token = _csrf(reviewer, path)
    r = reviewer.post(path + "/approve", data={"csrf": token, "reason": "reads well"})
    assert r.status_code == 303
    prompt = server.admin_request(
        "GET", f"/v1/admin/prompts/ui-review/versions/{created['version']}"
    )
    assert prompt.json()["state"] == "approved"


def test_the_flag_page_and_its_series_show_what_the_sdk_measured(
    server: FlagServer, browsers: Browsers
) -> None:
    with (
        FakeBackend(default="stable answer") as stable,
        FakeBackend(default=Reply(status=500)) as canary,
    ):
        server.apply(make_flag(stable_url=stable.url, canary_url=canary.url, rollout_bps=10_000))
        client = vibesdk.Client(
            server_url=server.url,
            sdk_key=server.sdk_key,
            cache_dir="",
            server_metrics_interval_s=60,
        )
        try:
            assert client.wait_until_ready(15)
            for user in ("u1", "u2", "u3", "u4"):
                client.chat("vibethinker", user, [{"role": "user", "content": "2+2?"}])
        finally:
            client.close()  # exports what is left
    browser = browsers.signed_in(server)
    base = f"/ui/environments/{server.environment}/flags/vibethinker"
    page = browser.get(base)
    assert page.status_code == 200
    totals = page.text[page.text.index('id="totals"') :]
    assert re.search(r"<td>canary</td><td>4</td>", totals), totals[:600]
    assert "100.0%" in totals  # every canary call fell back
    series: dict[str, Any] = browser.get(base + "/series?window=1h").json()
    assert series["t"]
    assert series["step_s"] == 10
    logged_canary_calls = [c for c in series["variants"]["canary"]["calls"] if c is not None]
    assert sum(logged_canary_calls) == 4
    assert max(v for v in series["variants"]["canary"]["fallbacks"] if v is not None) == 1.0
    for variant in series["variants"].values():  # nothing reviewed: gaps, not zeros
        assert set(variant["review"]) == set(variant["review_count"]) == {None}
    bad = browser.get(base + "/series?window=2y")
    assert bad.status_code == 400
    assert "window must be one of" in bad.json()["detail"]


def test_the_request_log_on_the_flag_page_and_one_call_in_full(
    server: FlagServer,
    browsers: Browsers,
    logged_canary_calls: Callable[..., list[vibesdk.ChatResult]],
) -> None:
    (answer,) = logged_canary_calls(["What is 2+2?"])
    browser = browsers.signed_in(server)
    base = f"/ui/environments/{server.environment}/flags/vibethinker"
    deadline = time.monotonic() + 15
    while "What is 2+2?" not in (page := browser.get(base)).text:
        assert time.monotonic() < deadline, "the logged call never reached the flag page"
        time.sleep(0.2)
    link = re.search(rf'href="({re.escape(base)}/requests/\d+)"', page.text)
    assert link, page.text[page.text.index('id="request-log"') :][:800]
    entry = browser.get(link.group(1))
    assert entry.status_code == 200
    assert answer.trace_id in entry.text
    assert "What is 2+2?" in entry.text
    assert "\\boxed{4}" in entry.text
    assert html.escape(VIBETHINKER_SYSTEM_PROMPT[:60]) in entry.text  # the reviewed prompt sent
    none = browser.get(base, params={"log_variant": "stable"}).text
    logged = none[none.index('id="request-log"') :]  # the review section shows the answer too
    assert "What is 2+2?" not in logged[: logged.index("</section>")]
    assert browser.get(f"{base}/requests/999999").status_code == 404


def test_the_request_log_filters_reported_answers_and_shows_the_reasons(
    server: FlagServer,
    browsers: Browsers,
    logged_canary_calls: Callable[..., list[vibesdk.ChatResult]],
) -> None:
    """ "reported only" keeps the answers a user reported (client.report), which the table
    marks; the entry's page shows each report's reason."""
    logged_canary_calls(
        ["What is 2+2?", "What is 3+3?"],
        answer="The answer is \\boxed{5}.",
        reports=[(0, "2+2 is not <5>")],
    )
    browser = browsers.signed_in(server)
    base = f"/ui/environments/{server.environment}/flags/vibethinker"

    def request_log(**params: str) -> str:
        page = browser.get(base, params=params)
        assert page.status_code == 200, page.text
        section = page.text[page.text.index('<section id="request-log">') :]
        return section[: section.index("</section>")]

    deadline = time.monotonic() + 15
    while 'class="bad reported"' not in (everything := request_log()) or "3+3" not in everything:
        assert time.monotonic() < deadline, "the calls or the report never reached the flag page"
        time.sleep(0.2)
    assert 'name="log_reported" value="true">' in everything  # the box, not ticked
    rows = everything[everything.index("<tbody>") :].split("<tr>")[1:]
    assert len(rows) == 2
    (marked,) = [row for row in rows if 'class="bad reported"' in row]
    (plain,) = [row for row in rows if row is not marked]
    assert "2+2" in marked
    only = request_log(log_reported="true")
    assert 'name="log_reported" value="true" checked>' in only
    assert "What is 2+2?" in only
    assert "What is 3+3?" not in only
    assert "match" in request_log(log_reported="true", log_variant="stable")
    link = re.search(rf'href="({re.escape(base)}/requests/\d+)"', only)
    assert link
    entry = browser.get(link.group(1)).text
    reports = entry[entry.index('id="reports"') :]
    assert html.escape("2+2 is not <5>") in reports[: reports.index("</td>")]
    other = re.search(rf'href="({re.escape(base)}/requests/\d+)"', plain)
    assert other
    unreported = browser.get(other.group(1)).text
    assert '<td id="reports">no</td>' in unreported


def test_review_an_answer_from_the_flag_page_blind_with_csrf_and_audited(
    server: FlagServer,
    browsers: Browsers,
    logged_canary_calls: Callable[..., list[vibesdk.ChatResult]],
) -> None:
    """The flag page offers the signed-in reviewer one logged answer without its variant; the
    score form needs the CSRF token, refuses what the API refuses, and reveals the variant."""
    (answer,) = logged_canary_calls(["What is 2+2?"])
    browser = browsers.signed_in(server)
    base = f"/ui/environments/{server.environment}/flags/vibethinker"
    deadline = time.monotonic() + 15
    while answer.trace_id not in (page := browser.get(base)).text:
        assert time.monotonic() < deadline, "the logged call never reached the review queue"
        time.sleep(0.2)
    section = page.text[page.text.index('<section id="review">') :]
    section = section[: section.index("</section>")]
    assert "What is 2+2?" in section
    assert "\\boxed{4}" in section
    for hint in ("canary", "stable", "vibethinker-1.5b"):
        assert hint not in section, hint
    csrf = CSRF.search(page.text)
    assert csrf
    form = {"trace_id": answer.trace_id, "score": "4", "note": "right, no working"}
    forged = browser.post(base + "/review/score", data=form)
    assert forged.status_code == 403
    bad = browser.post(base + "/review/score", data={**form, "score": "9", "csrf": csrf.group(1)})
    assert bad.status_code == 422
    assert "score: Input should be less than or equal to 5" in bad.text
    scores = base.replace("/ui/", "/v1/admin/") + "/review/scores"
    assert server.admin_request("GET", scores).json() == []
    done = browser.post(base + "/review/score", data={**form, "csrf": csrf.group(1)})
    assert done.status_code == 303
    page = browser.get(done.headers["location"])
    assert "that answer was variant canary, model vibethinker-1.5b" in page.text
    assert "review-empty" in page.text  # nothing left for this reviewer
    summary = page.text[page.text.index('id="review-summary"') :]
    assert re.search(r"<td>canary</td><td>1</td><td>4.00</td>", summary), summary[:400]
    audit = page.text[page.text.index('id="audit"') :]
    assert "review_score" in audit
    assert "right, no working" in audit
    again = browser.post(base + "/review/score", data={**form, "csrf": csrf.group(1)})
    assert again.status_code == 409
    assert "already scored" in again.text
    assert [s["score"] for s in server.admin_request("GET", scores).json()] == [4]
    # The second reviewer gets the same answer.
    second = browsers.signed_in(server, server.reviewer_token)
    assert answer.trace_id in second.get(base).text


def test_the_flag_page_shows_the_golden_set_trend_and_the_alarm(
    server: FlagServer, browsers: Browsers
) -> None:
    """The golden-set section reads without JavaScript: a table of the trend's points (the
    same figures as ``GET .../eval-trend``), the alarm, and the chart's data for golden.js."""
    server.apply(make_flag(rollout_bps=0))
    browser = browsers.signed_in(server)
    base = f"/ui/environments/{server.environment}/flags/vibethinker"
    assert "No finished evaluation runs in the last 30 days" in browser.get(base).text
    ones = [1.0] * 17 + [0.0] * 3
    for _ in range(2):
        server.store_eval_run("vibethinker", {"stable": [1.0] * 10 + [0.0] * 10, "canary": ones})
    server.store_eval_run("vibethinker", {"stable": [1.0] * 10 + [0.0] * 10, "canary": [0.0] * 20})
    page = browser.get(base).text
    golden = page[page.index('id="golden-set"') :]
    assert "<strong>Alarm:</strong> eval_regression: canary&#39;s golden-set score fell" in golden
    table = golden[golden.index('id="golden"') : golden.index("</table>")]
    assert re.search(r"<td>canary</td><td>3</td><td>60</td>\s*<td>0.57</td>", table), table
    assert re.search(r"<td>stable</td><td>3</td><td>60</td>\s*<td>0.50</td>", table), table
    found = re.search(r'data-trend="([^"]+)"', golden)
    assert found
    trend = json.loads(html.unescape(found.group(1)))
    api = server.admin_request(
        "GET",
        f"/v1/admin/environments/{server.environment}/eval-trend",
        params={"flag": "vibethinker"},
    ).json()
    assert trend["points"] == api["points"]
    assert '<script defer src="/ui/static/golden.js"></script>' in golden
    assert browser.get("/ui/static/golden.js").status_code == 200


def test_the_audit_query_by_flag_keeps_that_flags_entries_alone(db_url: str) -> None:
    """store.audit(flag_key=): entries of that flag, alone or among several, newest first;
    never a flag whose key differs in case or matches it only as a LIKE pattern would."""
    from vibesdk_server._storage import open_store

    store = open_store(db_url)
    try:
        with store._tx(write=True) as tx:
            for flags in (["beta"], ["Beta"], ["bexta"], ["b%"], ["alpha", "beta"], ["be_ta"]):
                store._audit(
                    tx, actor="t", action="put", environment="prod", reason=None, flags=flags
                )
            store._audit(
                tx, actor="t", action="put", environment="other", reason=None, flags=["beta"]
            )
        found = store.audit(environment="prod", flag_key="beta", limit=50)
        assert [e["flags"] for e in found] == [["alpha", "beta"], ["beta"]]
        assert [
            e["flags"] for e in store.audit(environment="prod", flag_key="be_ta", limit=50)
        ] == [["be_ta"]]
        assert store.audit(environment="prod", flag_key="beta", limit=1)[0]["flags"] == [
            "alpha",
            "beta",
        ]
        assert len(store.audit(environment=None, flag_key="beta", limit=50)) == 3
    finally:
        store.close()


def test_the_series_steps_to_the_charts_width_and_starts_at_a_whole_step(
    server: FlagServer, browsers: Browsers
) -> None:
    """?width= gives at most a point per pixel, in 10 minutes for 7 days (a rollup read);
    ``from`` is a whole step; a bad width is a one-line 400."""
    browser = browsers.signed_in(server)
    base = f"/ui/environments/{server.environment}/flags/vibethinker/series"
    week = browser.get(base, params={"window": "7d", "width": 1200}).json()
    assert week["step_s"] == 600
    assert week["from"] % 600 == 0
    assert week["to"] - week["from"] >= 7 * 86_400
    assert browser.get(base, params={"window": "1h", "width": 1200}).json()["step_s"] == 10
    assert browser.get(base, params={"window": "7d"}).json()["step_s"] == 120
    bad = browser.get(base, params={"window": "7d", "width": 0})
    assert bad.status_code == 400
    assert bad.json()["detail"] == "width must be the charts' width in pixels, 1 or more, got 0"


@pytest.mark.parametrize(
    ("srm", "shown"),
    [
        (
            {"unit": "users", "canary_users": 101, "stable_users": 899},
            "Split: 101 canary / 899 stable users (10.10% canary, configured 10.00%)",
        ),
        (
            {"unit": "users", "canary_users": 101, "stable_users": 899, "clients": 4},
            "Split: 101 canary / 899 stable users (of the SDK client that met the most, of 4)"
            " (10.10% canary",
        ),
        # Older SDKs, or a decision stored before users were counted (no unit): calls.
        ({"unit": "calls"}, "Split: 1700 canary / 8300 stable calls (10.10% canary"),
        ({}, "Split: 1700 canary / 8300 stable calls (10.10% canary"),
    ],
)
def test_the_release_panel_shows_the_split_in_the_unit_tested(
    srm: dict[str, Any], shown: str
) -> None:
    """The dashboard names what the sample-ratio test counted, next to the calls per arm."""
    decision = {
        "action": "hold",
        "reasons": [],
        "evidence": [],
        "min_samples_per_arm": 200,
        "srm": {
            "canary_calls": 1_700,
            "stable_calls": 8_300,
            "expected_canary_share": 0.1,
            "observed_canary_share": 0.101,
            "p_value": 0.74,
            **srm,
        },
    }
    release = {"id": 1, "state": "running", "step": 0, "steps": [1000, 10_000]}
    html = templates.env.get_template("_release.html").render(
        env="prod", key="vibethinker", release={**release, "decision": decision}
    )
    text = " ".join(html.split())
    assert "Samples 1700 canary / 8300 stable (each arm needs 200)." in text
    assert shown in text
    assert "sample-ratio test p 0.74." in text
