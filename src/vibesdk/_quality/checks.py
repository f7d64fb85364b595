"""Cheap output checks on one model answer. Pure functions: no I/O, no model, never raise.

A new model can be fluent and still fail users in ways a dashboard of
latencies never shows. These checks catch the mechanical failures cheaply
(well under a millisecond for a few KB of text) so that every answer's result
can travel on the call result, the span and the metrics, split per variant:

``empty``
    Nothing visible: blank after stripping, or only a ``<think>`` block.
``repetition_loop``
    The text ends in the same unit (characters, a phrase, a line) repeated
    many times, or one line keeps coming back at the end: a model stuck in a
    loop until ``max_tokens`` cut it.
``python_syntax``
    A fenced ```` ```python ```` block that ``ast.parse`` rejects (the failure
    the source article shows: code that looks right but does not run).
``no_explanation_before_code``
    The answer opens with a code block and no prose before it -- what the
    source article saw VibeThinker do on Chinese prompts. CJK text counts as
    prose. Skipped when the user asked for code only.
``too_long``
    The visible answer is longer than ``max_chars``.

VibeThinker (and other reasoning models) write a ``<think>...</think>`` block
before the answer. The checks look at the answer after it; an unclosed
``<think>`` (the stream was cut while thinking) means there is no answer.
``repetition_loop`` looks at the end of the whole text, since loops usually
happen while thinking.
"""

from __future__ import annotations

import ast
import re
import warnings
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = [
    "CHECKS",
    "QualityReport",
    "check_answer",
    "split_reasoning",
]

EMPTY = "empty"
REPETITION_LOOP = "repetition_loop"
PYTHON_SYNTAX = "python_syntax"
NO_EXPLANATION_BEFORE_CODE = "no_explanation_before_code"
TOO_LONG = "too_long"

#: Every check's name, in the order failures are reported.
CHECKS: tuple[str, ...] = (
    EMPTY,
    REPETITION_LOOP,
    PYTHON_SYNTAX,
    NO_EXPLANATION_BEFORE_CODE,
    TOO_LONG,
)


@dataclass(frozen=True)
class QualityReport:
    """The result of :func:`check_answer`.

    ``failures`` names the failed checks (in :data:`CHECKS` order), ``passed``
    is ``not failures``; ``details`` maps a failed check to a short,
    human-readable reason (not a stable format).
    """

    failures: tuple[str, ...] = ()
    passed: bool = True
    details: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False)


_THINK_OPEN = re.compile(r"<think>", re.IGNORECASE)
_THINK_CLOSE = re.compile(r"</think>", re.IGNORECASE)


def split_reasoning(text: str) -> tuple[str | None, str]:
    """Split a reasoning model's output into ``(reasoning, answer)``.

    ``"<think>r</think>a"`` -> ``("r", "a")``. A closing tag without an
    opening one (chat templates that open the block in the prompt) counts
    everything before it as reasoning. An unclosed ``<think>`` -> everything
    after it is reasoning and the answer is ``""``. No tags -> ``(None, text)``.
    """
    close = _THINK_CLOSE.search(text)
    opened = _THINK_OPEN.search(text)
    if close is None:
        if opened is not None and not text[: opened.start()].strip():
            return text[opened.end() :], ""
        return None, text
    start = opened.end() if opened is not None and opened.start() < close.start() else 0
    return text[start : close.start()], text[close.end() :]


# --- code fences -------------------------------------------------------------

# An opening fence: up to 3 spaces, 3+ backticks or tildes, then an info string.
_FENCE_OPEN = re.compile(r"^[ ]{0,3}(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^\n`]*)$", re.MULTILINE)
_PYTHON_INFO = frozenset({"python", "py", "python3", "py3", "python2", "ipython", "pycon"})


@dataclass(frozen=True)
class _Block:
    start: int  # offset of the opening fence line
    info: str  # first word of the info string, lower-cased
    body: str
    closed: bool


def _fenced_blocks(text: str) -> list[_Block]:
    blocks: list[_Block] = []
    pos = 0
    while True:
        match = _FENCE_OPEN.search(text, pos)
        if match is None:
            return blocks
        fence = match.group("fence")
        info_words = match.group("info").strip().split()
        info = info_words[0].lower().lstrip("{.") if info_words else ""
        body_start = match.end() + 1
        closer = re.compile(
            rf"^[ ]{{0,3}}{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$", re.MULTILINE
        )
        end = closer.search(text, body_start)
        if end is None:
            blocks.append(_Block(match.start(), info, text[body_start:], closed=False))
            return blocks
        blocks.append(_Block(match.start(), info, text[body_start : end.start()], closed=True))
        pos = end.end()


def _python_source(body: str, info: str) -> str:
    """The parseable source of a python block: REPL prompts and notebook magics removed."""
    lines = body.split("\n")
    if info == "pycon" or any(line.startswith(">>>") for line in lines):
        lines = [line[4:] for line in lines if line.startswith((">>> ", "... ", ">>>", "..."))]
    return "\n".join(line for line in lines if not line.lstrip().startswith(("%", "!")))


def _syntax_error(source: str) -> str | None:
    """``None`` when ``source`` parses as Python, else a one-line reason."""
    try:
        # Code like "\d" in a string is valid but warns; a warning is not a failure here.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ast.parse(source)
    except SyntaxError as exc:
        return f"line {exc.lineno}: {exc.msg}"
    except (ValueError, RecursionError, MemoryError, OverflowError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


# --- prose ---------------------------------------------------------------------


def _is_cjk(char: str) -> bool:
    code = ord(char)
    return (
        0x4E00 <= code <= 0x9FFF  # CJK unified ideographs
        or 0x3400 <= code <= 0x4DBF  # extension A
        or 0x3040 <= code <= 0x30FF  # hiragana, katakana
        or 0xAC00 <= code <= 0xD7AF  # hangul syllables
        or 0x20000 <= code <= 0x2FFFF  # supplementary ideographs
    )


def _prose_weight(text: str) -> int:
    """Roughly how much prose ``text`` holds: letters, with a CJK character worth two."""
    weight = 0
    for char in text:
        if _is_cjk(char):
            weight += 2
        elif char.isalpha():
            weight += 1
    return weight


_MIN_PROSE = 4  # "Code:" or "代码" is enough; a lone "A." is not

_CODE_ONLY_REQUEST = re.compile(
    r"(only|just)\s+(the\s+)?(code|function|program|snippet)|no\s+explanation|"
    r"without\s+(any\s+)?explanation|code\s+only|只(要|给|需要?|输出|写)(出)?代码|"
    r"不(要|用|需要)(任何)?(解释|说明)|仅(输出|给出?)代码",
    re.IGNORECASE,
)


# --- repetition ----------------------------------------------------------------

_TAIL = 4096  # look at most this far back
_MAX_PERIOD = 400  # longest repeated unit (characters) we look for
_MIN_REPEATS = 4  # a unit must occur at least this many times in a row ...
_MIN_SPAN = 120  # ... and the repeats must cover at least this many characters
_LINE_WINDOW = 40  # last non-blank lines inspected for a recurring line
_LINE_REPEATS = 10  # a line (>= 8 characters of text) recurring this often is a loop


def _periodic_tail(tail: str) -> tuple[int, int] | None:
    """``(period, repeats)`` when ``tail`` ends in one unit repeated, else ``None``.

    For a period p, the repeated suffix of length m + p satisfies
    ``tail[n-m-p:n-p] == tail[n-m:n]``; that property is monotone in m, so m
    is found by binary search over C-level slice comparisons. A unit cut
    short by ``max_tokens`` at the very end still counts.
    """
    n = len(tail)
    if n == 0:
        return None
    last = tail[-1]
    for p in range(1, min(_MAX_PERIOD, n // _MIN_REPEATS) + 1):
        # Cheap pre-filter: the last character must recur at one period's distance.
        if tail[n - 1 - p] != last or tail[n - 1 - 2 * p] != last or tail[n - 1 - 3 * p] != last:
            continue
        need = max(_MIN_REPEATS * p, _MIN_SPAN) - p  # m for the minimum repeated span
        if need + p > n or tail[n - need - p : n - p] != tail[n - need :]:
            continue
        lo, hi = need, n - p  # lo holds, find the largest m that holds
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if tail[n - mid - p : n - p] == tail[n - mid :]:
                lo = mid
            else:
                hi = mid - 1
        return p, (lo + p) // p
    return None


def _recurring_line(tail: str) -> tuple[str, int] | None:
    """A line that keeps recurring among the last lines (loops with variations between)."""
    lines = [line.strip() for line in tail.split("\n")]
    lines = [line for line in lines if line][-_LINE_WINDOW:]
    if len(lines) < _LINE_REPEATS:
        return None
    line, count = Counter(lines).most_common(1)[0]
    if count >= _LINE_REPEATS and sum(c.isalnum() or _is_cjk(c) for c in line) >= 8:
        return line, count
    return None


def _repetition(text: str) -> str | None:
    tail = text[-_TAIL:].rstrip()
    found = _periodic_tail(tail)
    if found is not None:
        period, repeats = found
        unit = tail[-period:]
        return f"the last {period}-character unit repeats {repeats} times: {unit[:40]!r}"
    line = _recurring_line(tail)
    if line is not None:
        return f"the line {line[0][:40]!r} recurs {line[1]} times at the end"
    return None


def _code_checks(answer: str, user_input: str | None, details: dict[str, str]) -> None:
    """``python_syntax`` and ``no_explanation_before_code`` on the visible answer."""
    try:
        blocks = _fenced_blocks(answer)
    except Exception:  # defensive: a check that cannot run counts as passed
        return
    for number, block in enumerate(blocks, start=1):
        if block.info in _PYTHON_INFO:
            error = _syntax_error(_python_source(block.body, block.info))
            if error is not None:
                suffix = "" if block.closed else " (unclosed block)"
                details[PYTHON_SYNTAX] = f"code block {number}, {error}{suffix}"
                break
    code_only = bool(user_input and _CODE_ONLY_REQUEST.search(user_input))
    if blocks and not code_only and _prose_weight(answer[: blocks[0].start]) < _MIN_PROSE:
        details[NO_EXPLANATION_BEFORE_CODE] = "the answer opens with a code block"


# --- the entry point -------------------------------------------------------------


def check_answer(
    text: str,
    *,
    user_input: str | None = None,
    max_chars: int = 20000,
) -> QualityReport:
    """Run every check on ``text`` (a model's whole output, ``<think>`` block included).

    ``user_input`` is the user's message, when known: asking for "code only"
    ("只要代码", "no explanation") turns off ``no_explanation_before_code``.
    Never raises; a check that cannot run counts as passed.
    """
    if not isinstance(text, str):
        text = "" if text is None else str(text)
    details: dict[str, str] = {}
    try:
        _, answer = split_reasoning(text)
    except Exception:  # defensive: a check must never break the caller
        answer = text
    visible = answer.strip()

    if not visible:
        details[EMPTY] = "no answer text" if not text.strip() else "only a <think> block"

    try:
        loop = _repetition(text)
        if loop is not None:
            details[REPETITION_LOOP] = loop
    except Exception:  # noqa: S110 -- defensive: a check that cannot run counts as passed
        pass

    if visible:
        _code_checks(answer, user_input, details)

    if len(visible) > max_chars:
        details[TOO_LONG] = f"{len(visible)} characters > {max_chars}"

    failures = tuple(name for name in CHECKS if name in details)
    return QualityReport(failures=failures, passed=not failures, details=details)
