"""examples/product_app in a real headless Chromium, against a real flag server and real models.

Stable is SmolLM2-135M-Instruct and the canary Gemma 3 270M, both served by llama.cpp's
llama-server through ``vibesdk_server.serving``; the page is driven by Playwright with the
system's Chromium (Debian's ``chromium`` package, which scripts/install installs on CI; no
browser is ever downloaded). One set of servers and one browser serve the whole module; each test
applies the flag it needs first, so the tests do not depend on their order.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import vibesdk
from vibesdk import Flag
from vibesdk.testing import make_flag

from .browser_harness import chromium_browser  # noqa: F401 -- the `browser` fixture
from .examples_harness import load_example, real_models_or_skip, serve_app, users_in

serving = real_models_or_skip()

pytestmark = pytest.mark.model

app_module = load_example("product_app/app.py")

FLAG = "vibethinker"
NOTICE = "You are trying the new assistant."
CANARY_USER = users_in(FLAG, 1000, canary=True)[0]
STABLE_USER = users_in(FLAG, 1000, canary=False)[0]
LONG_QUESTION = "Write a Python function that checks whether a number is prime."
# What must never reach an end user's eyes: model ids and fallback reasons.
HIDDEN = ("smollm2", "gemma", "fell back", "connect", "[object Object]", "undefined")


def _flag(stable_url: str, canary_url: str, *, rollout_bps: int, max_tokens: int = 24) -> Flag:
    flag = make_flag(
        FLAG,
        stable_url=stable_url,
        canary_url=canary_url,
        rollout_bps=rollout_bps,
        stable_model="smollm2-135m-instruct",
        canary_model="gemma-3-270m",
        notice=NOTICE,
    )
    data = flag.model_dump(mode="json")
    for variant in data["variants"].values():
        variant["params"]["max_tokens"] = max_tokens
    # A dead canary: one attempt, no wait for a breaker, stable answers at once.
    data["fallback"] = {**(data.get("fallback") or {}), "retries": 0, "connect_timeout_s": 1.0}
    return Flag.model_validate(data)


class World:
    """The servers of the module: the flag server's environment, both models, the app."""

    def __init__(self, env: Any, stable: Any, canary: Any, client: vibesdk.Client, url: str):
        self.env, self.stable, self.canary, self.client, self.url = env, stable, canary, client, url

    def apply(self, rollout_bps: int, *, canary_url: str | None = None, **kw: Any) -> None:
        """Apply the flag and wait until the app serves the new version."""
        url = canary_url or self.canary.urls[0]
        change = self.env.apply(_flag(self.stable.urls[0], url, rollout_bps=rollout_bps, **kw))
        self.wait_for_version(int(change["version"]))

    def wait_for_version(self, version: int) -> None:
        deadline = time.monotonic() + 20
        while self.client.flag_source.store.version < version:
            assert time.monotonic() < deadline, f"the app never saw flag version {version}"
            time.sleep(0.05)


@pytest.fixture(scope="module")
def world(flag_server_process: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    logs = tmp_path_factory.mktemp("llama-logs")
    groups: dict[str, Any] = {}
    errors: list[BaseException] = []

    def start(name: str, model: str) -> None:
        try:
            groups[name] = serving.serve(model, "cpu-small", log_dir=logs)
        except BaseException as exc:  # reported below, once both attempts ended
            errors.append(exc)

    threads = [
        threading.Thread(target=start, args=("stable", "smollm2")),
        threading.Thread(target=start, args=("canary", "gemma3-270m")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        if errors:
            raise errors[0]
        env = flag_server_process.new_environment()
        env.apply(_flag(groups["stable"].urls[0], groups["canary"].urls[0], rollout_bps=1000))
        client = vibesdk.Client(
            server_url=env.url, sdk_key=env.sdk_key, cache_dir=str(tmp_path_factory.mktemp("c"))
        )
        try:
            with serve_app(app_module.create_app(client)) as url:
                yield World(env, groups["stable"], groups["canary"], client, url)
        finally:
            client.close()
    finally:
        for group in groups.values():
            group.stop()


@pytest.fixture
def page(browser: Any, world: World) -> Iterator[Any]:
    context = browser.new_context()
    p = context.new_page()
    p.set_default_timeout(60_000)
    try:
        yield p
    finally:
        context.close()


def _open(page: Any, world: World, user: str, *, debug: bool = False) -> None:
    """Load the page for ``user`` and wait until it asked for the user's variant."""
    with page.expect_response(lambda r: "/api/variant" in r.url):
        page.goto(world.url + ("/?debug=1" if debug else "/"))
    with page.expect_response(lambda r: f"user_id={user}" in r.url):
        page.fill("#user", user)
        page.dispatch_event("#user", "change")


def _ask(page: Any, question: str = "What is 17 * 23?") -> None:
    page.fill("#q", question)
    page.click("#ask")
    page.wait_for_function(
        "() => !document.getElementById('ask').disabled", timeout=120_000, polling=50
    )


def _visible_text(page: Any) -> str:
    return str(page.inner_text("body"))


def _assert_nothing_internal_shown(page: Any) -> None:
    text = _visible_text(page).lower()
    for word in HIDDEN:
        assert word.lower() not in text, f"{word!r} is shown to the user: {text!r}"


def test_canary_user_sees_the_notice_on_load_and_a_streamed_answer(page: Any, world: World) -> None:
    """Notice before asking; Ask disabled while the answer streams in pieces; one request only."""
    world.apply(1000)
    _open(page, world, CANARY_USER)
    # The page shows it once its script has handled the variant answer: wait for it.
    page.wait_for_selector("#notice", state="visible")
    assert page.inner_text("#notice") == NOTICE

    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url) if "/api/ask" in r.url else None)
    # Count how often the answer's text changes before the stream ends.
    page.evaluate(
        """() => { window.answerUpdates = 0;
        new MutationObserver(() => { window.answerUpdates += 1; })
          .observe(document.getElementById('answer'), {childList: true, characterData: true,
                                                       subtree: true}); }"""
    )
    page.fill("#q", LONG_QUESTION)
    page.click("#ask")
    assert page.is_disabled("#ask")
    assert page.inner_text("#ask") == "Asking…"
    page.click("#ask", force=True)  # a second click while busy sends nothing
    page.press("#q", "Control+Enter")
    page.wait_for_selector("#feedback:not([hidden])", timeout=120_000)
    assert not page.is_disabled("#ask")
    assert len(requests) == 1, requests
    assert page.evaluate("window.answerUpdates") > 2  # token by token, not all at once
    assert page.inner_text("#answer").strip()
    assert page.inner_text("#notice") == NOTICE
    _assert_nothing_internal_shown(page)


def test_stable_user_sees_no_notice_and_rates_with_labelled_buttons(
    page: Any, world: World
) -> None:
    """No notice for stable; the rating buttons have names, a selected state and send a comment."""
    world.apply(1000)
    _open(page, world, STABLE_USER)
    assert not page.is_visible("#notice")
    _ask(page)
    assert page.is_visible("#feedback")
    assert not page.is_visible("#notice")
    assert page.is_disabled("#send")  # nothing to send before a rating is picked
    good = page.get_by_role("button", name="4 · Good")
    good.click()
    pressed = page.eval_on_selector_all(
        ".rating button", "bs => bs.map(b => b.getAttribute('aria-pressed'))"
    )
    assert pressed == ["false", "false", "false", "true", "false"]
    page.get_by_role("button", name="2 · Fair").click()
    assert page.get_attribute(".rating button[data-score='2']", "aria-pressed") == "true"
    assert page.get_attribute(".rating button[data-score='4']", "aria-pressed") == "false"
    page.get_by_label("Comment (optional; sent with your rating or report)").fill("too short")
    with page.expect_response(lambda r: r.url.endswith("/api/feedback")) as sent:
        page.click("#send")
    assert sent.value.status == 202
    body = sent.value.request.post_data_json
    assert (body["score"], body["comment"]) == (2, "too short")
    page.wait_for_selector("text=Thanks, your feedback was sent.")
    _assert_nothing_internal_shown(page)


def test_a_canary_user_reports_an_answer_and_ops_see_it_per_variant(
    page: Any, world: World
) -> None:
    """ "Report this answer" sends the comment as the reason; the flag server stores the report."""
    world.apply(1000)
    _open(page, world, CANARY_USER)
    _ask(page)
    page.get_by_label("Comment (optional; sent with your rating or report)").fill("made up")
    with page.expect_response(lambda r: r.url.endswith("/api/report")) as sent:
        page.get_by_role("button", name="Report this answer").click()
    assert sent.value.status == 202
    trace = sent.value.request.post_data_json["trace_id"]
    page.wait_for_selector("text=Thanks, the answer was reported. We will look at it.")
    assert page.is_disabled("#report")  # one report per answer
    params = {"environment": world.env.environment, "flag": FLAG}
    deadline = time.monotonic() + 20
    while not (stored := world.env.admin_request("GET", "/v1/admin/reports", params=params).json()):
        assert time.monotonic() < deadline, "the report never reached the flag server"
        time.sleep(0.1)
    assert [(r["trace_id"], r["variant"], r["user_id"], r["reason"]) for r in stored] == [
        (trace, "canary", CANARY_USER, "made up")
    ]
    _ask(page)  # a new answer can be reported again
    assert not page.is_disabled("#report")
    _assert_nothing_internal_shown(page)


def test_a_flip_and_a_rollback_change_the_notice_on_the_next_load(page: Any, world: World) -> None:
    """At 100% a stable user turns canary (notice on load); after a rollback the notice is gone."""
    world.apply(1000)
    world.env.mark_good()
    _open(page, world, STABLE_USER)
    assert not page.is_visible("#notice")

    change = world.env.rollout(FLAG, 10_000)
    world.wait_for_version(int(change["version"]))
    _open(page, world, STABLE_USER)
    assert page.inner_text("#notice") == NOTICE

    change = world.env.rollback(FLAG, reason="browser test")
    world.wait_for_version(int(change["version"]))
    _open(page, world, STABLE_USER)
    assert not page.is_visible("#notice")
    _ask(page)
    assert not page.is_visible("#notice")
    assert page.inner_text("#answer").strip()


def test_a_killed_canary_answers_from_stable_without_showing_why_unless_debugging(
    page: Any, world: World
) -> None:
    """A canary user of a dead canary gets stable's answer, no error; details only in debug."""
    dead = serving.serve(
        "gemma3-270m", "cpu-small", log_dir=world.canary.servers[0].log_path.parent
    )
    try:
        world.apply(1000, canary_url=dead.urls[0])
        dead.stop()
        _open(page, world, CANARY_USER)
        _ask(page)
        assert page.is_visible("#feedback")
        assert not page.is_visible("#error")
        assert page.inner_text("#answer").strip()
        _assert_nothing_internal_shown(page)
        page.check("#debug")
        details = page.inner_text("#details")
        assert "fell back from canary" in details
        assert "smollm2-135m-instruct" in details
    finally:
        dead.stop()
        world.apply(1000)


def test_a_truncated_answer_is_marked_and_an_empty_question_clears_it(
    page: Any, world: World
) -> None:
    """A cut answer is marked; an empty question then shows a sentence and nothing stale."""
    world.apply(1000, max_tokens=6)
    _open(page, world, STABLE_USER)
    _ask(page, LONG_QUESTION)
    assert page.is_visible("#truncated")
    assert "cut short" in page.inner_text("#truncated")
    assert page.is_visible("#feedback")

    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url) if "/api/ask" in r.url else None)
    page.fill("#q", "   ")
    page.click("#ask")
    assert page.inner_text("#error") == "Type a question first."
    for stale in ("#answer", "#truncated", "#feedback", "#details"):
        assert not page.is_visible(stale), stale
    assert requests == []
    page.fill("#user", "")
    page.fill("#q", "What is 2 + 2?")
    page.click("#ask")
    assert page.inner_text("#error") == "Enter a user id first."
    assert not page.is_visible("#notice")
    _assert_nothing_internal_shown(page)
    world.apply(1000)


def test_server_errors_reach_the_page_as_sentences(page: Any, world: World) -> None:
    """A 422 from the app (a question over the limit) shows its sentence, not "[object Object]"."""
    _open(page, world, STABLE_USER)
    page.fill("#q", "x" * 4001)
    page.click("#ask")
    page.wait_for_selector("#error:not([hidden])")
    assert page.inner_text("#error") == "Type a question (up to 4,000 characters)."
    assert not page.is_visible("#result")
