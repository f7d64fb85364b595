"""The dashboard in headless Chromium, against a real flag server and a real SDK app.

Debian's Chromium (``apt-get install chromium``; scripts/install does it as root) driven by
Playwright; Playwright's own browser download is never used. The app is a real
``vibesdk.Client`` with fake model backends; its measurements reach the server over OTLP.

With ``VIBESDK_UI_SCREENSHOTS=DIR`` the test also saves the pages it visits as PNGs there
(docs/assets/ui is made this way).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from vibesdk_server.testing import FlagServerProcess

import vibesdk
from vibesdk.testing import FakeBackend, make_flag

from .browser_harness import chromium_browser  # noqa: F401 -- the `browser` fixture

SHOTS = os.environ.get("VIBESDK_UI_SCREENSHOTS")
ASK = [{"role": "user", "content": "What is 2 + 2?"}]


@pytest.fixture
def world() -> Iterator[tuple[FlagServerProcess, vibesdk.Client]]:
    """A server whose flag has traffic from both arms, and an app still connected to it."""
    with (
        FlagServerProcess(heartbeat_s=0.5) as server,
        FakeBackend(default="4") as stable,
        FakeBackend(default="The answer is \\boxed{4}.") as canary,
    ):
        server.apply(make_flag(stable_url=stable.url, canary_url=canary.url, rollout_bps=5000))
        app = vibesdk.Client(
            server_url=server.url, sdk_key=server.sdk_key, cache_dir="", server_metrics_interval_s=1
        )
        try:
            assert app.wait_until_ready(15)
            for i in range(60):
                answer = app.chat("vibethinker", f"user-{i}", ASK)
                if i % 5 == 0:
                    app.feedback(answer.trace_id, 4 if answer.variant == "canary" else 5)
            _wait_for_measurements(server, calls=60)
            yield server, app
        finally:
            app.close()


def _wait_for_measurements(server: FlagServerProcess, *, calls: int) -> None:
    """Until the app's OTLP export (every second) has brought ``calls`` calls to the server."""
    path = f"/v1/admin/environments/{server.environment}/measurements?flag=vibethinker"
    deadline = time.monotonic() + 20
    while True:
        variants = server.admin_request("GET", path).json()["variants"]
        if sum(v["calls"] for v in variants.values()) >= calls:
            return
        assert time.monotonic() < deadline, f"the server has {variants}"
        time.sleep(0.2)


def _shot(page: Any, name: str, selector: str | None = None) -> None:
    """The whole page, or only the element ``selector`` picks, as ``SHOTS/name.png``."""
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        path = str(Path(SHOTS) / f"{name}.png")
        if selector is None:
            page.screenshot(path=path, full_page=True)
        else:
            page.locator(selector).screenshot(path=path)


def _sign_in(page: Any, server: FlagServerProcess) -> None:
    page.goto(server.url + "/ui/login")
    page.fill("#token", server.admin_token)
    page.click("button[type=submit]")
    page.wait_for_selector("text=Sign out")


def _csp_errors(page: Any) -> list[str]:
    errors: list[str] = []
    page.on(
        "console",
        lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None,
    )
    return errors


def test_sign_in_see_the_charts_and_roll_back(browser: Any, world: Any) -> None:
    server, app = world
    users = (f"user-{i}" for i in range(60))
    canary_user = next(u for u in users if app.assign("vibethinker", u).variant == "canary")
    for canary_right in (18, 17, 5):  # the last run's drop rings the regression alarm
        server.store_eval_run(
            "vibethinker",
            {
                "stable": [1.0] * 12 + [0.0] * 8,
                "canary": [1.0] * canary_right + [0.0] * (20 - canary_right),
            },
        )
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    csp = _csp_errors(page)
    try:
        page.goto(server.url + "/ui")
        assert "/ui/login" in page.url  # no page without a session
        _shot(page, "login")
        page.fill("#token", server.admin_token)
        page.click("button[type=submit]")
        page.wait_for_selector("text=vibethinker")
        _shot(page, "flags")

        page.click(f"a[href='/ui/environments/{server.environment}/flags/vibethinker']")
        page.wait_for_selector("#charts[data-ready='1']")
        canvases = page.locator("#charts canvas")
        assert canvases.count() >= 6
        drawn = page.evaluate(
            """() => {
                const c = document.querySelector('#charts .chart canvas');
                const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                let inked = 0;
                for (let i = 3; i < d.length; i += 4) if (d[i] > 0) inked++;
                return inked;
            }"""
        )
        assert drawn > 500, "the latency chart's canvas is blank"
        legend = page.locator("#charts .u-legend").first.inner_text()
        assert "canary" in legend
        assert "stable" in legend
        assert "canary" in page.locator("#totals").inner_text()
        page.wait_for_selector("#golden-chart[data-ready='1']")
        assert page.locator("#golden-chart").get_attribute("data-series") == (
            "stable,stable low,stable high,canary,canary low,canary high"
        )
        assert page.locator("#golden-chart canvas").count() == 1
        assert "Alarm:" in page.locator("#golden-set").inner_text()
        _shot(page, "flag")
        if SHOTS:
            page.locator("#golden-set").screenshot(path=str(Path(SHOTS) / "golden-set.png"))

        page.click("#rollback")
        page.fill("#reason", "canary answers look wrong")
        _shot(page, "confirm-rollback")
        page.click("#confirm")
        page.wait_for_selector("text=Rolled back")
        assert page.locator("#rollout").inner_text() == "0%"
        assert "canary answers look wrong" in page.locator("#audit").inner_text()

        deadline = time.monotonic() + 10
        while app.assign("vibethinker", canary_user).variant != "stable":
            assert time.monotonic() < deadline, "the app never switched to stable"
            time.sleep(0.05)
        assert csp == []
    finally:
        context.close()


def test_an_ended_session_and_a_forged_form_are_refused(browser: Any, world: Any) -> None:
    server, _ = world
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(30_000)
    try:
        _sign_in(page, server)
        # A form posted without the page's CSRF token (as another site's page would).
        status = page.evaluate(
            """async (path) => (await fetch(path, {method: 'POST',
                 headers: {'content-type': 'application/x-www-form-urlencoded'},
                 body: 'reason=x'})).status""",
            f"/ui/environments/{server.environment}/flags/vibethinker/rollback",
        )
        assert status == 403
        assert server.document().flags["vibethinker"].rollout_bps == 5000
        page.click("text=Sign out")
        page.wait_for_selector("#token")
        page.goto(server.url + "/ui")
        assert "/ui/login" in page.url
    finally:
        context.close()


def test_review_an_answer_in_the_browser(browser: Any) -> None:
    """The flag page's review section: a logged answer shown blind, scored with a note; the
    notice reveals the variant, the per-variant table counts the score and the review chart
    (absent before) draws it in the step of the answer."""
    with (
        FlagServerProcess(heartbeat_s=0.5) as server,
        FakeBackend(default="4") as stable,
        FakeBackend(default="The answer is \\boxed{4}.") as canary,
    ):
        server.apply(
            make_flag(
                stable_url=stable.url,
                canary_url=canary.url,
                rollout_bps=10_000,
                log_share={"canary": 1.0},
            )
        )
        app = vibesdk.Client(server_url=server.url, sdk_key=server.sdk_key, cache_dir="")
        try:
            assert app.wait_until_ready(15)
            answer = app.chat("vibethinker", "user-1", ASK)
        finally:
            app.close()  # sends the logged call
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.set_default_timeout(30_000)
        csp = _csp_errors(page)
        try:
            _sign_in(page, server)
            flag_page = f"{server.url}/ui/environments/{server.environment}/flags/vibethinker"
            deadline = time.monotonic() + 15
            while True:
                page.goto(flag_page + "#review")
                if page.locator("#review-answer").count():
                    break
                assert time.monotonic() < deadline, "the logged answer never reached the queue"
                time.sleep(0.2)
            review = page.locator("#review")
            assert "\\boxed{4}" in page.locator("#review-answer").inner_text()
            assert "What is 2 + 2?" in review.inner_text()
            assert "canary" not in review.inner_text()
            page.wait_for_selector("#charts[data-ready='1']")
            assert page.locator("#charts .chart[data-figure='review']").count() == 0
            _shot(page, "review", "#review")
            page.check("#review input[name=score][value='3']")
            page.fill("#review-note", "right, but no working shown")
            page.click("#review button[type=submit]")
            page.wait_for_selector("text=that answer was variant canary")
            assert page.locator("#review-empty").count() == 1
            assert "canary" in page.locator("#review-summary").inner_text()
            assert "3.00" in page.locator("#review-summary").inner_text()
            page.wait_for_selector("#charts[data-ready='1']")
            chart = page.locator("#charts .chart[data-figure='review']")
            assert chart.locator("h3").inner_text() == "Review score (1\u20135)"
            assert "canary" in chart.locator(".u-legend").inner_text()
            series = page.evaluate(
                "async (path) => (await fetch(path + '?window=1h')).json()", flag_page + "/series"
            )
            scored = series["variants"]["canary"]
            reviews = zip(scored["review"], scored["review_count"], strict=True)
            assert [(mean, n) for mean, n in reviews if n] == [(3.0, 1)]
            scores = server.admin_request(
                "GET",
                f"/v1/admin/environments/{server.environment}/flags/vibethinker/review/scores",
            ).json()
            assert [(s["trace_id"], s["score"], s["note"]) for s in scores] == [
                (answer.trace_id, 3, "right, but no working shown")
            ]
            assert csp == []
        finally:
            context.close()
