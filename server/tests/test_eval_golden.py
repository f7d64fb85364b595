"""Golden sets: the format's checks name the bad line, and the set we ship is sound."""

from __future__ import annotations

import json
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from vibesdk_server._eval.golden import SHIPPED_SET, GoldenSetError, Item, load_set
from vibesdk_server._eval.math_verdict import MathVerifier
from vibesdk_server._eval.sandbox import Limits, Sandbox

MATH = {"id": "m1", "kind": "math", "prompt": "1+1?", "answer": "2", "lang": "en", "tags": []}
CODE = {
    "id": "c1",
    "kind": "code",
    "prompt": "Write inc(x).",
    "entry_point": "inc",
    "tests": "assert inc(1) == 2\n",
    "reference": "def inc(x):\n    return x + 1\n",
    "lang": "zh",
    "tags": ["basics"],
}


def _write(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "set.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_a_well_formed_file_loads_in_order_with_line_numbers(tmp_path: Path) -> None:
    """Blank lines are skipped; each item keeps its own line number and every field."""
    path = _write(tmp_path, json.dumps(MATH), "", json.dumps(CODE))
    math, code = load_set(path)
    assert math == Item("m1", "math", "1+1?", "en", (), answer="2", line=1)
    assert (code.id, code.kind, code.entry_point, code.lang, code.line) == (
        "c1",
        "code",
        "inc",
        "zh",
        3,
    )
    assert code.tags == ("basics",)
    assert code.reference == CODE["reference"]


BAD = {
    "not JSON": ("{not json", "not valid JSON"),
    "not an object": ("[1, 2]", "expected a JSON object"),
    "unknown kind": (json.dumps({**MATH, "kind": "essay"}), "unknown kind 'essay'; use one of"),
    "math without answer": (
        json.dumps({k: v for k, v in MATH.items() if k != "answer"}),
        "a math item needs 'answer'",
    ),
    "code without entry_point": (
        json.dumps({k: v for k, v in CODE.items() if k != "entry_point"}),
        "a code item needs 'entry_point'",
    ),
    "code without tests": (
        json.dumps({k: v for k, v in CODE.items() if k != "tests"}),
        "a code item needs 'tests'",
    ),
    "empty prompt": (json.dumps({**MATH, "prompt": " "}), "'prompt' must be a non-empty string"),
    "unbalanced answer": (
        json.dumps({**MATH, "answer": "\\frac{1}{2"}),
        "'answer' has unbalanced braces",
    ),
    "bad lang": (json.dumps({**MATH, "lang": "fr"}), "unknown lang 'fr'"),
    "tags not a list": (json.dumps({**MATH, "tags": "algebra"}), "'tags' must be a list"),
    "unknown field": (json.dumps({**MATH, "answr": "2"}), "unknown field(s) answr"),
    "tests not Python": (json.dumps({**CODE, "tests": "assert (\n"}), "'tests' is not valid"),
    "entry point not a name": (
        json.dumps({**CODE, "entry_point": "my func"}),
        "is not a Python name",
    ),
}


@pytest.mark.parametrize("bad", BAD, ids=list(BAD))
def test_a_bad_line_is_named_with_what_to_fix(tmp_path: Path, bad: str) -> None:
    """Each kind of bad input raises GoldenSetError 'PATH:LINE: ...' for the bad line."""
    line, message = BAD[bad]
    path = _write(tmp_path, json.dumps(MATH), line)
    with pytest.raises(GoldenSetError) as caught:
        load_set(path)
    assert str(caught.value).startswith(f"{path}:2: ")
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_duplicate_id_names_both_lines(tmp_path: Path) -> None:
    """The second use of an id is the error, and the message points at the first."""
    path = _write(tmp_path, json.dumps(MATH), json.dumps(CODE), json.dumps({**CODE, "id": "m1"}))
    with pytest.raises(GoldenSetError, match=r":3: duplicate id 'm1' \(first on line 1\)"):
        load_set(path)


def test_an_empty_or_missing_file_is_refused(tmp_path: Path) -> None:
    """No items, or no file, is an error too (not an evaluation of nothing)."""
    with pytest.raises(GoldenSetError, match="has no items"):
        load_set(_write(tmp_path, ""))
    with pytest.raises(GoldenSetError, match="cannot read the golden set"):
        load_set(tmp_path / "missing.jsonl")


# --- the set we ship ---------------------------------------------------------------


def test_the_shipped_set_is_inside_the_package_and_loads_by_default() -> None:
    """load_set() reads SHIPPED_SET, a file of the vibesdk_server package (so the wheel has it)."""
    assert "vibesdk_server" in SHIPPED_SET.parts
    assert load_set() == load_set(SHIPPED_SET)


def test_the_shipped_set_has_enough_problems_of_each_kind_and_language() -> None:
    """At least 40 math and 30 code problems; at least a third of them in Chinese."""
    items = load_set()
    kinds = Counter(item.kind for item in items)
    assert kinds["math"] >= 40
    assert kinds["code"] >= 30
    assert sum(item.lang == "zh" for item in items) * 3 >= len(items)
    assert all(item.tags for item in items)
    assert all(item.reference for item in items if item.kind == "code")


def test_every_code_reference_passes_its_own_tests_in_the_sandbox() -> None:
    """A shipped reference solution that fails its tests means the item is wrong."""
    items = [item for item in load_set() if item.kind == "code"]
    sandbox = Sandbox(Limits(timeout_s=30.0), slots=2)
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda i: sandbox.run(i.reference or "", i.tests or ""), items))
    failed = {i.id: r.details() for i, r in zip(items, results, strict=True) if not r.passed}
    assert failed == {}


def test_every_math_reference_is_understood_by_math_verify() -> None:
    """Each reference answer parses and equals itself (a reference math-verify cannot read
    would mark every answer wrong)."""
    pytest.importorskip("math_verify")
    items = [item for item in load_set() if item.kind == "math"]
    verifier = MathVerifier(workers=2, timeout_s=30.0)
    try:
        with ThreadPoolExecutor(2) as pool:
            verdicts = list(
                pool.map(lambda i: verifier.equivalent(i.answer or "", i.answer or ""), items)
            )
    finally:
        verifier.close()
    bad = {i.id: v for i, v in zip(items, verdicts, strict=True) if not v.equivalent}
    assert bad == {}
