"""Output checks: realistic answers, English and Chinese, and no text makes them raise."""

# ruff: noqa: RUF001  -- Chinese test answers use full-width punctuation, as real ones do

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import vibesdk
from vibesdk._quality.checks import (
    _ASCII_TOKEN,
    CHECKS,
    QualityReport,
    _ascii_token_count,
    check_answer,
    split_reasoning,
)
from vibesdk._telemetry import semconv as sc
from vibesdk.testing import (
    FakeBackend,
    InMemoryFlagSource,
    Reply,
    SpanCapture,
    make_document,
    make_flag,
)

GOOD_EN = """To reverse a list in place, use two pointers that walk towards each other.

```python
def reverse(items: list[int]) -> None:
    i, j = 0, len(items) - 1
    while i < j:
        items[i], items[j] = items[j], items[i]
        i, j = i + 1, j - 1
```

This runs in O(n) time and O(1) extra space.
"""

GOOD_ZH = """思路：用双指针从两端向中间交换元素，时间复杂度 O(n)。

```python
def reverse(items):
    i, j = 0, len(items) - 1
    while i < j:
        items[i], items[j] = items[j], items[i]
        i += 1
        j -= 1
```
"""

# The source article's failure on a Chinese prompt: code straight away, no explanation.
CODE_FIRST_ZH = """```python
def reverse(items):
    return items[::-1]
```
"""

BROKEN_CODE = """Here is the solution.

```python
def solve(n):
    total = 0
    for i in range(n)
        total += i
    return total
```
"""

THINKING = "<think>\nThe user wants 2+2. That is 4.\n</think>\n\nThe answer is **4**."


def test_good_answers_pass() -> None:
    """A well-formed English and Chinese answer with valid code passes every check."""
    assert check_answer(GOOD_EN) == QualityReport(failures=(), passed=True)
    assert check_answer(GOOD_ZH).passed


def test_code_first_answer_fails_no_explanation() -> None:
    """An answer that opens with a code block (the article's Chinese-prompt failure) is flagged."""
    report = check_answer(CODE_FIRST_ZH, user_input="用 Python 反转一个列表")
    assert report.failures == ("no_explanation_before_code",)
    assert not report.passed


def test_code_only_requests_skip_the_explanation_check() -> None:
    """When the user asked for code only (English or Chinese), code first is what they wanted."""
    assert check_answer(CODE_FIRST_ZH, user_input="只要代码，不要解释").passed
    assert check_answer(CODE_FIRST_ZH, user_input="Reverse a list. Just the code please.").passed


def test_cjk_prose_counts_as_explanation() -> None:
    """Two Chinese characters before the code are an explanation; a lone symbol is not."""
    assert check_answer("代码：\n```python\nx = 1\n```").passed
    assert check_answer("-\n```python\nx = 1\n```").failures == ("no_explanation_before_code",)


def test_broken_python_fails_syntax_with_a_reason() -> None:
    """A python block that does not parse fails python_syntax and says where."""
    report = check_answer(BROKEN_CODE)
    assert report.failures == ("python_syntax",)
    assert "line 3" in report.details["python_syntax"]


def test_only_python_blocks_are_parsed() -> None:
    """Blocks in other languages, or without a language, are not parsed as Python."""
    text = "Run this:\n```bash\nfor f in *; do echo $f; done\n```\nand\n```\nnot python (\n```\n"
    assert check_answer(text).passed


def test_repl_sessions_magics_and_escape_warnings_parse() -> None:
    """>>> sessions, notebook magics and "\\d" in strings are valid Python for this check."""
    text = (
        "Example:\n```pycon\n>>> x = 1\n>>> x + 1\n2\n```\n"
        "```python\n%pip install numpy\nimport re\nre.compile('\\d+')\n```\n"
    )
    assert check_answer(text).passed


def test_truncated_python_block_fails() -> None:
    """A python block cut off mid-code (no closing fence) is broken code."""
    report = check_answer("Solution:\n```python\ndef f(x):\n    return (x +")
    assert report.failures == ("python_syntax",)
    assert "unclosed" in report.details["python_syntax"]


@pytest.mark.parametrize("text", ["", "   \n\t ", "<think>\nlet me think about this\n</think>\n  "])
def test_empty_answers_fail_empty(text: str) -> None:
    """Blank output, or only a think block, is empty."""
    assert check_answer(text).failures == ("empty",)


def test_unclosed_think_is_no_answer() -> None:
    """A stream cut while thinking left no answer."""
    assert check_answer("<think>\nFirst, consider the cases").failures == ("empty",)


def test_think_block_is_not_the_answer() -> None:
    """Prose inside <think> does not count as the explanation, and its code is not checked."""
    assert check_answer(THINKING).passed
    text = "<think>I will explain.\n```python\nbroken(\n```\n</think>```python\nx = 1\n```"
    assert check_answer(text).failures == ("no_explanation_before_code",)


def test_split_reasoning_cases() -> None:
    """<think> blocks split off cleanly, including templates that open the block in the prompt."""
    assert split_reasoning("<think>r</think>a") == ("r", "a")
    assert split_reasoning("r</think>a") == ("r", "a")
    assert split_reasoning("<think>r") == ("r", "")
    assert split_reasoning("plain") == (None, "plain")
    assert split_reasoning("say <think> literally") == (None, "say <think> literally")


@pytest.mark.parametrize(
    "tail",
    [
        "The answer is 5. " * 40,
        "所以答案是5。" * 30,
        "\\boxed{4}\n" * 30,
        "0 " * 200,
        "Wait, let me re-check the second case.\n" * 12,
    ],
)
def test_loops_at_the_end_fail_repetition(tail: str) -> None:
    """Text that ends in one unit repeated many times is a repetition loop."""
    text = "Let me solve this step by step.\n" + tail
    assert "repetition_loop" in check_answer(text).failures


def test_loop_cut_mid_unit_still_counts() -> None:
    """A loop that max_tokens cut halfway through a repeat is still a loop."""
    text = "Answer: " + "we get x = 3, so " * 20 + "we get x"
    assert "repetition_loop" in check_answer(text).failures


def test_recurring_line_with_variations_is_a_loop() -> None:
    """One line coming back again and again between varying lines is a loop too."""
    body = "".join(
        f"Try n = {i}: not a solution.\nWait, that does not work either.\n" for i in range(12)
    )
    assert "repetition_loop" in check_answer("Let me try values.\n" + body).failures


@pytest.mark.parametrize(
    "text",
    [
        GOOD_EN,
        "| a | b |\n|---|---|\n| 1 | 2 |\n| 3 | 4 |\n",
        "Steps:\n" + "".join(f"{i}. Add {i} to the total.\n" for i in range(1, 30)),
        "Ha! " * 3 + "that's funny.",
        "Done.\n\n---\n",
        "The end......",
    ],
)
def test_normal_endings_are_not_loops(text: str) -> None:
    """Tables, numbered steps, rules and short flourishes are not repetition loops."""
    assert "repetition_loop" not in check_answer(text).failures


def test_too_long_counts_the_visible_answer() -> None:
    """too_long fires past max_chars of answer; a long think block does not count."""
    long_answer = " ".join(f"word{i}" for i in range(100))
    assert check_answer(long_answer, max_chars=200).failures == ("too_long",)
    assert check_answer("<think>" + "hmm, " * 100 + "</think>Fine.", max_chars=200).passed


# What Gemma 3 270M (a base model) answered through llama-server's fallback ChatML template.
LEAKED = (
    "What is 20 * 15 + 17?<|im_end|>\n<|im_start|>user\nWhat is 15 * 22 + 17<|im_end|>\n"
    "<|im_start|>user\nWhat is 10 * "
)


@pytest.mark.parametrize(
    "text",
    [
        LEAKED,
        "391<|eot_id|>",
        "391<end_of_turn>\n<start_of_turn>user\nAnd 18 * 23?",
        "391 [/INST] [INST] And 18 * 23?",
        "<think>17 * 23 = 391</think>It is 391.<|endoftext|>",
    ],
)
def test_chat_template_markers_in_the_answer_fail_template_tokens(text: str) -> None:
    """ChatML, Llama 3, Gemma and [INST] turn markers written into the answer are flagged."""
    report = check_answer(text)
    assert "template_tokens" in report.failures
    assert "chat-template marker" in report.details["template_tokens"]


@pytest.mark.parametrize(
    "text",
    [
        "Use <s>strikethrough</s> or <b>bold</b> in HTML.",
        "The pipe operator: `a | b`, and `<|` is not a marker.",
        "In Python, `x[INSTANCE]` indexes a dict.",
        GOOD_EN,
    ],
)
def test_html_tags_and_pipes_are_not_template_markers(text: str) -> None:
    """HTML tags, pipes and brackets that are not a template's turn markers pass."""
    assert "template_tokens" not in check_answer(text).failures


def test_template_tokens_are_counted_like_the_other_checks() -> None:
    """A leaked marker fails the result's quality and counts in vibesdk.quality.failures."""
    with FakeBackend(default=Reply(text=LEAKED)).serve() as url:
        source = InMemoryFlagSource(make_document(make_flag(stable_url=url, rollout_bps=0)))
        with SpanCapture() as capture, vibesdk.Client(flag_source=source, cache_dir="") as c:
            result = c.chat("vibethinker", "u1", [{"role": "user", "content": "17 * 23?"}])
            points = capture.metric_count(
                sc.METRIC_QUALITY_FAILURES, {sc.VIBESDK_QUALITY_CHECK: "template_tokens"}
            )
    assert result.quality is not None
    assert result.quality.failures == ("template_tokens",)
    assert points == 1


def test_failures_are_reported_in_check_order() -> None:
    """Several failures come back in CHECKS order, each with a detail."""
    text = "```python\ndef f(:\n```\n" + "x" * 50
    report = check_answer(text, max_chars=10)
    assert report.failures == ("python_syntax", "no_explanation_before_code", "too_long")
    assert set(report.details) == set(report.failures)
    assert list(report.failures) == [c for c in CHECKS if c in report.failures]


def test_non_string_input_does_not_raise() -> None:
    """None or a number (a backend's garbage) is checked as text, never raises."""
    assert check_answer(None).failures == ("empty",)  # type: ignore[arg-type]
    assert check_answer(42).passed  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(text=st.text(), user_input=st.none() | st.text(max_size=50), max_chars=st.integers(0, 500))
def test_never_raises_on_any_text(text: str, user_input: str | None, max_chars: int) -> None:
    """Any text at all yields a consistent report, never an exception."""
    report = check_answer(text, user_input=user_input, max_chars=max_chars)
    assert report.passed == (not report.failures)
    assert set(report.failures) <= set(CHECKS)


@settings(max_examples=500, deadline=None)
@given(
    st.text(alphabet=st.characters(max_codepoint=127), max_size=400)
    | st.lists(
        st.sampled_from(["a", "_", "1", " ", "\n", "\t", "\x0b", "\x1c", ".", "(", "-"])
    ).map("".join)
)
def test_the_token_count_of_ascii_text_is_the_tokenizers(text: str) -> None:
    """The diversity rule's count (no tokens built) equals the tokenizer's, so its verdict holds.

    The count decides whether an answer has the tokens to judge at all; below the minimum the
    answer is never tokenized.
    """
    assert _ascii_token_count(text) == len(_ASCII_TOKEN.findall(text))


_pieces = st.sampled_from(
    ["```python\n", "```\n", "~~~py\n", "<think>", "</think>", "\n", ">>> ", "def f(", "):\n",
     "    return 1\n", "代码", "x" * 30, "ab" * 20, "\x00", "\\d", "'''", "\t"]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(_pieces, max_size=40))
def test_never_raises_on_markdown_like_text(pieces: list[str]) -> None:
    """Fences, think tags, NUL bytes and half-written code in any order never make a check raise."""
    report = check_answer("".join(pieces))
    assert report.passed == (not report.failures)


_REAL = json.loads((Path(__file__).parent / "data" / "smollm2-answers.json").read_text("utf-8"))


@pytest.mark.parametrize("answer", _REAL["answers"], ids=lambda a: a["name"])
def test_real_model_answers(answer: dict[str, Any]) -> None:
    """Real SmolLM2 answers (loops, code-first answers, normal prose) get the expected verdicts."""
    report = check_answer(answer["text"], user_input=answer["prompt"])
    assert list(report.failures) == answer["expected_failures"]


def test_loops_in_separate_reasoning_count_only_without_an_answer() -> None:
    """reasoning_content that loops fails only when no answer came; an escaped loop passes."""
    looping = "Let me check again. " * 40
    assert check_answer("", reasoning=looping).failures == ("empty", "repetition_loop")
    assert check_answer("The answer is 4.", reasoning=looping).passed


def test_a_loop_inside_a_closed_think_block_is_not_a_failure() -> None:
    """A model that looped while thinking but then answered is judged on its answer."""
    text = "<think>" + "hmm, " * 100 + "</think>The answer is 4."
    assert check_answer(text).passed
    assert check_answer("<think>" + "hmm, " * 100).failures == ("empty", "repetition_loop")


_plain = st.text().filter(lambda t: "<think>" not in t.lower() and "</think>" not in t.lower())


@settings(max_examples=200, deadline=None)
@given(reasoning=_plain, answer=_plain)
def test_split_reasoning_round_trips(reasoning: str, answer: str) -> None:
    """<think>r</think>a splits into exactly (r, a); text without tags is all answer."""
    assert split_reasoning(f"<think>{reasoning}</think>{answer}") == (reasoning, answer)
    assert split_reasoning(answer) == (None, answer)
