# ruff: noqa: RUF001 -- Chinese answers use full-width punctuation, as real ones do
"""Scoring: math by equivalence x completeness, code by pass@1 with conciseness beside it."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from vibesdk_server._eval.code_answer import conciseness, extract_code
from vibesdk_server._eval.golden import Item
from vibesdk_server._eval.math_answer import extract_answer
from vibesdk_server._eval.scoring import Scorer

pytest.importorskip("math_verify")

REASONING = "Let us work it out step by step: we set up the equation and simplify it. "
HALF = Item("half", "math", "What is 1/2?", "en", ("t",), answer="\\frac{1}{2}")
SLACK_S = 15.0  # worker start (importing sympy) and a busy two-core machine


def _math(answer: str) -> Item:
    return Item("m", "math", "?", "en", ("t",), answer=answer)


ADD = Item(
    "add",
    "code",
    "Write add(a, b).",
    "en",
    ("t",),
    entry_point="add",
    tests="assert add(2, 3) == 5\nassert add(-1, 1) == 0\n",
    reference="def add(a, b):\n    return a + b\n",
)


@pytest.fixture(scope="module")
def scorer() -> Iterator[Scorer]:
    with Scorer(timeout_s=10.0, workers=2) as s:
        yield s


# --- math: the final answer ----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "answer", "how"),
    [
        ("so \\boxed{\\frac{\\sqrt{3}}{2}} done", "\\frac{\\sqrt{3}}{2}", "boxed"),
        ("first \\boxed{1}, then corrected: \\boxed{2}", "2", "boxed"),
        ("The final answer is $\\frac{1}{2}$.", "\\frac{1}{2}", "stated"),
        ("So the answer is 3.5.", "3.5", "stated"),
        ("所以答案是 42 个。", "42", "stated"),
        ("因此，最终答案：$2\\sqrt{2}$", "2\\sqrt{2}", "stated"),
        ("answer: (1, 2)", "(1, 2)", "stated"),
        ("we get 3 and then 17", "17", "last_number"),
        ("<think>maybe \\boxed{9}</think>It is \\boxed{8}", "8", "boxed"),
        ("no numbers here", None, None),
    ],
)
def test_the_final_answer_is_the_last_boxed_else_the_last_stated(
    text: str, answer: str | None, how: str | None
) -> None:
    """Last \\boxed{} with nested braces; else "answer is X"/"答案是 X"; else the last number."""
    found = extract_answer(text)
    assert (found.answer, found.how) == (answer, how)


@pytest.mark.parametrize(
    ("reference", "stated"),
    [
        ("\\frac{1}{2}", "0.5"),
        ("2\\sqrt{2}", "\\sqrt{8}"),
        ("\\frac{57}{2}", "28.5"),
        ("x^2 + 1", "1 + x^2"),
        ("\\frac{2-\\sqrt{3}}{4}", "\\frac{1}{2} - \\frac{\\sqrt{3}}{4}"),
        ("6\\sqrt{3}", "\\sqrt{108}"),
    ],
)
def test_equivalent_forms_are_correct(scorer: Scorer, reference: str, stated: str) -> None:
    """Mathematically equal answers count as correct, whatever their form."""
    result = scorer.score(_math(reference), f"{REASONING}\\boxed{{{stated}}}", "stop")
    assert result.correct is True, result.details
    assert result.score == 1.0


def test_a_right_answer_scores_one_and_a_wrong_one_zero(scorer: Scorer) -> None:
    """Right: score = completeness = 1. Wrong: correct False, score 0, completeness still kept."""
    right = scorer.score(HALF, f"{REASONING}So \\boxed{{0.5}}", "stop")
    assert (right.kind, right.correct, right.completeness, right.score) == ("math", True, 1.0, 1.0)
    assert right.details["extracted"] == "0.5"
    assert (right.passed, right.conciseness) == (None, None)
    wrong = scorer.score(HALF, f"{REASONING}So \\boxed{{0.25}}", "stop")
    assert (wrong.correct, wrong.score, wrong.completeness) == (False, 0.0, 1.0)


def test_a_chinese_answer_with_a_unit_is_correct(scorer: Scorer) -> None:
    """ "答案是 120 种。" matches the reference 120."""
    item = Item("zh", "math", "选法数？", "zh", ("计数",), answer="120")
    text = "先算出全部选法 C(9,4) = 126，再减去只有男生或只有女生的 6 种情况。所以答案是 120 种。"
    result = scorer.score(item, text, "stop")
    assert result.correct is True, result.details
    assert result.details["how"] == "stated"


def test_completeness_is_the_mean_of_four_facts(scorer: Scorer) -> None:
    """Each missing fact costs a quarter: cut by max_tokens, no reasoning, no explicit answer,
    a repetition loop."""
    full = f"{REASONING}\\boxed{{\\frac{{1}}{{2}}}}"
    assert scorer.score(HALF, full, "stop").completeness == 1.0
    assert scorer.score(HALF, full, None).completeness == 1.0
    cut = scorer.score(HALF, full, "length")
    assert (cut.completeness, cut.score, cut.details["finished"]) == (0.75, 0.75, False)
    terse = scorer.score(HALF, "\\boxed{1/2}", "stop")
    assert (terse.completeness, terse.details["reasoned"]) == (0.75, False)
    implicit = scorer.score(HALF, f"{REASONING} which leaves 0.5", "stop")
    assert (implicit.correct, implicit.completeness, implicit.details["how"]) == (
        True,
        0.75,
        "last_number",
    )
    looping = scorer.score(HALF, REASONING + "I will check again. " * 60 + "\\boxed{0.5}", "length")
    assert looping.details["no_loop"] is False
    assert looping.completeness == 0.5
    assert looping.score == 0.5


def test_no_answer_at_all_scores_zero(scorer: Scorer) -> None:
    """Nothing to extract: not correct, score 0, verify 'no_answer'."""
    result = scorer.score(HALF, "I am not sure how to approach this.", "stop")
    assert (result.correct, result.score, result.details["verify"]) == (False, 0.0, "no_answer")


def test_a_pathological_expression_is_stopped_by_math_verify_in_time(scorer: Scorer) -> None:
    """7^{7^{11}} makes sympy compute for minutes; math-verify's own alarm stops it (reported
    'timeout') within the item's deadline, and the worker keeps serving."""
    start = time.monotonic()
    result = scorer.score(HALF, f"{REASONING}\\boxed{{7^{{7^{{11}}}}}}", "stop")
    assert time.monotonic() - start < 10.0 + SLACK_S
    assert (result.correct, result.details["verify"]) == (False, "timeout")
    assert scorer.score(HALF, f"{REASONING}\\boxed{{0.5}}", "stop").correct is True


def test_a_worker_past_the_deadline_is_killed_and_replaced() -> None:
    """With math-verify's own timeouts longer than the item's deadline, the deadline kills the
    worker ('killed'); the next item gets a fresh one."""
    with Scorer(timeout_s=3.0, workers=1, verify_timeout_s=120) as scorer:
        assert scorer.score(HALF, "\\boxed{0.5}", "stop").correct  # the worker has started
        start = time.monotonic()
        result = scorer.score(HALF, f"{REASONING}\\boxed{{7^{{7^{{11}}}}}}", "stop")
        assert time.monotonic() - start < 3.0 + SLACK_S
        assert (result.correct, result.details["verify"]) == (False, "killed")
        assert scorer.score(HALF, f"{REASONING}\\boxed{{0.5}}", "stop").correct is True


def test_scoring_is_thread_safe(scorer: Scorer) -> None:
    """Many threads score at once (more than the workers); every result is right."""
    from concurrent.futures import ThreadPoolExecutor

    answers = [f"{REASONING}\\boxed{{{v}}}" for v in ("0.5", "1/2", "0.25", "\\frac{2}{4}")] * 3
    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda a: scorer.score(HALF, a, "stop").correct, answers))
    assert results == [True, True, False, True] * 3


# --- code ------------------------------------------------------------------------------


def test_the_program_is_the_last_python_block() -> None:
    """Usage first, solution last: the last ```python block is run; untagged as a fallback."""
    text = (
        "Usage:\n```python\nadd(1, 2)\n```\n"
        "Solution:\n```python\ndef add(a, b):\n    return a + b\n```\n"
    )
    assert extract_code(text) == "def add(a, b):\n    return a + b"
    assert extract_code("```\nx = 1\n```\n```bash\nls\n```") == "x = 1"
    assert extract_code("```py\ny = 2\n") == "y = 2"  # cut inside the block
    assert extract_code("no code") is None


def test_conciseness_compares_lines_and_counts_naming_violations() -> None:
    """length = min(1, reference/answer lines); naming = 1/(1 + violations)."""
    reference = "def add(a, b):\n    return a + b\n"
    tidy = conciseness("def add(a, b):\n\n    return a + b\n", reference, "add")
    assert tidy is not None
    assert (tidy.value, tidy.answer_lines, tidy.reference_lines, tidy.violations) == (1.0, 2, 2, ())
    verbose = conciseness(
        "def add(a, b):\n    totalSum = a + b\n    MAX = 10\n    return totalSum\n",
        reference,
        "add",
    )
    assert verbose is not None
    assert verbose.violations == ("totalSum",)
    assert verbose.value == pytest.approx(0.5 * 0.5)
    camel = conciseness("def addThem(firstNum, b):\n    return firstNum + b\n", None, "add")
    assert camel is not None
    assert (camel.value, camel.violations) == (pytest.approx(1 / 3), ("addThem", "firstNum"))
    assert conciseness("def (:\n", reference, "add") is None


def test_a_correct_program_passes_with_its_conciseness(scorer: Scorer) -> None:
    """pass@1 = 1.0 when the tests pass in the sandbox; details carry lines and names."""
    text = "Here it is:\n```python\ndef add(a, b):\n    return a + b\n```"
    result = scorer.score(ADD, text, "stop")
    assert (result.kind, result.passed, result.score, result.conciseness) == (
        "code",
        True,
        1.0,
        1.0,
    )
    assert (result.correct, result.completeness) == (None, None)
    assert result.details["reason"] is None
    assert (result.details["answer_lines"], result.details["reference_lines"]) == (2, 2)


def test_a_wrong_program_fails_with_the_reason(scorer: Scorer) -> None:
    """A failing test is score 0.0 with reason 'assertion'; no code block is 'no_code'."""
    wrong = scorer.score(ADD, "```python\ndef add(a, b):\n    return a - b\n```", "stop")
    assert (wrong.passed, wrong.score, wrong.details["reason"]) == (False, 0.0, "assertion")
    none = scorer.score(ADD, "def add(a, b): return a + b", "stop")
    assert (none.passed, none.score, none.details["reason"]) == (False, 0.0, "no_code")


def test_runaway_code_is_contained_and_reported(scorer: Scorer) -> None:
    """Memory hogs and sleeping code fail with their reason in details."""
    hog = scorer.score(ADD, "```python\nblob = bytearray(8 << 30)\n```", "stop")
    assert hog.details["reason"] == "memory"
    start = time.monotonic()
    stuck = scorer.score(ADD, "```python\nimport time\ntime.sleep(600)\n```", "stop")
    assert stuck.details["reason"] == "timeout"
    assert time.monotonic() - start < 10.0 + SLACK_S
