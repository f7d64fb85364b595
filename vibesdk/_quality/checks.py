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
``template_tokens``
    The answer holds a chat template's turn markers (``<|im_end|>``,
    ``<start_of_turn>``, ``[INST]``, ...): a model served with the wrong
    template (or none) wrote them out and usually went on inventing turns.

VibeThinker (and other reasoning models) write a ``<think>...</think>`` block
before the answer. The checks look at the answer after it; an unclosed
``<think>`` (the stream was cut while thinking) means there is no answer.
``repetition_loop`` looks at the end of the answer or, when there is none,
at the end of the reasoning: a model thinking in circles until ``max_tokens``
is how reasoning models usually fail.
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
TEMPLATE_TOKENS = "template_tokens"

#: Every check's name, in the order failures are reported.
CHECKS: tuple[str, ...] = (
    EMPTY,
    REPETITION_LOOP,
    PYTHON_SYNTAX,
    NO_EXPLANATION_BEFORE_CODE,
    TOO_LONG,
    TEMPLATE_TOKENS,
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
        end = _closer(fence).search(text, body_start)
        if end is None:
            blocks.append(_Block(match.start(), info, text[body_start:], closed=False))
            return blocks
        blocks.append(_Block(match.start(), info, text[body_start : end.start()], closed=True))
        pos = end.end()


_closers: dict[str, re.Pattern[str]] = {}


def _closer(fence: str) -> re.Pattern[str]:
    """The closing-fence pattern for an opening ``fence`` (compiled once per fence)."""
    found = _closers.get(fence)
    if found is None:
        found = re.compile(
            rf"^[ ]{{0,3}}{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$", re.MULTILINE
        )
        if len(_closers) < 64:  # fences are short; a pathological answer must not grow this
            _closers[fence] = found
    return found


_MAGIC_LINE = re.compile(r"^[ \t]*[%!]", re.MULTILINE)


def _python_source(body: str, info: str) -> str:
    """The parseable source of a python block: REPL prompts and notebook magics removed."""
    # Fast path: most blocks have neither, and splitting them into lines costs more than parsing.
    if info != "pycon" and ">>>" not in body and not _MAGIC_LINE.search(body):
        return body
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


_MIN_PROSE = 4  # "Code:" or "代码" is enough; a lone "A." is not
_LETTER = re.compile(r"[^\W\d_]")  # any script's letters, CJK included


# Fast path of the prose test: _MIN_PROSE ASCII letters are enough prose (each weighs 1).
_ASCII_PROSE = re.compile(rf"[A-Za-z](?:[^A-Za-z]*[A-Za-z]){{{_MIN_PROSE - 1}}}")


def _has_prose(text: str) -> bool:
    """Whether ``text`` holds at least ``_MIN_PROSE`` of prose weight."""
    return _ASCII_PROSE.search(text) is not None or _prose_weight(text) >= _MIN_PROSE


def _prose_weight(text: str, enough: int = _MIN_PROSE) -> int:
    """Letters in ``text``, a CJK character counting two, up to ``enough`` (then it stops)."""
    weight = 0
    for match in _LETTER.finditer(text):
        weight += 2 if _is_cjk(match.group()) else 1
        if weight >= enough:
            break
    return weight


_CODE_ONLY_REQUEST = re.compile(
    r"(only|just)\s+(the\s+)?(code|function|program|snippet)|no\s+explanation|"
    r"without\s+(any\s+)?explanation|code\s+only|只(要|给|需要?|输出|写)(出)?代码|"
    r"不(要|用|需要)(任何)?(解释|说明)|仅(输出|给出?)代码",
    re.IGNORECASE,
)


# --- repetition ----------------------------------------------------------------
#
# Thresholds were tuned on real degenerate answers (SmolLM2-135M through llama-server at
# temperature 0: exact loops, loops with varying line breaks, a function body re-emitted
# under new names, rambling) and checked for false positives against the tails of 4,073
# real Python files and 144 Markdown/reST documents: one generated file (a run of near-identical
# enum docstrings) trips the repeated-block rule, nothing else trips anything.

_TAIL = 4096  # look at most this far back
_MAX_PERIOD = 400  # longest repeated unit (characters, whitespace removed) we look for
_MIN_REPEATS = 4  # a unit must occur at least this many times in a row ...
_MIN_SPAN = 120  # ... and the repeats must cover at least this many characters
_NGRAM = 8  # n-gram length for the diversity rule
_NGRAM_WINDOW = 200  # the last this many tokens ...
_NGRAM_MIN_TOKENS = 120  # ... of which at least this many are needed
_MIN_DIVERSITY = 0.4  # distinct/total n-grams below this is a loop
_BLOCK_LINES = 4  # a block of this many consecutive lines ...
_BLOCK_REPEATS = 4  # ... recurring this often among the last lines ...
_BLOCK_WINDOW = 60  # ... (this many non-trivial lines) ...
_BLOCK_DIVERSITY = 0.6  # ... with n-gram diversity below this is a loop too (lines too)
_LINE_WINDOW = 40  # last non-blank lines inspected for a recurring line
_LINE_REPEATS = 10  # a line (>= 8 characters of text) recurring this often is a loop

_CJK_CLASS = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af"
# Tokens: a word (no CJK), one CJK character, or a run of punctuation ("-----", ").").
_TOKEN = re.compile(rf"[^\W{_CJK_CLASS}]+|[{_CJK_CLASS}]|[^\w\s]+")
_ASCII_TOKEN = re.compile(r"\w+|[^\w\s]+", re.ASCII)  # the same for ASCII text, much faster


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
    max_period = min(_MAX_PERIOD, n // _MIN_REPEATS)
    # Only periods at which the last character recurs can work: find those with rfind (C speed)
    # instead of trying all 400.
    position = n - 1
    while True:
        position = tail.rfind(last, n - 1 - max_period, position)
        if position < 0:
            return None
        p = n - 1 - position
        if tail[n - 1 - 2 * p] != last or tail[n - 1 - 3 * p] != last:
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


# _ASCII_TOKEN's tokens counted without building them: each ASCII character is mapped to its
# class as the pattern sees it (w: \w, space: \s, p: anything else), and a token starts
# wherever a w or p follows a character of another class.
def _ascii_class(char: str) -> int:
    if re.match(r"\w", char, re.ASCII):
        return ord("w")
    return ord(" ") if re.match(r"\s", char, re.ASCII) else ord("p")


_ASCII_CLASSES = bytes(_ascii_class(chr(b)) for b in range(128)) + bytes(128)


def _ascii_token_count(window: str) -> int:
    """``len(_ASCII_TOKEN.findall(window))`` for ASCII ``window``, at a fraction of the cost."""
    classes = b" " + window.encode("ascii").translate(_ASCII_CLASSES)
    return classes.count(b" w") + classes.count(b" p") + classes.count(b"pw") + classes.count(b"wp")


def _diversity(tail: str) -> float | None:
    """Distinct share of the word n-grams among the last tokens (None: too little text)."""
    # 200 tokens fit in the last ~1,600 characters of real text; tokenize no more.
    window = tail[-1600:]
    if window.isascii():
        # Most answers are too short to judge: count before building any token.
        if _ascii_token_count(window) < _NGRAM_MIN_TOKENS:
            return None
        pattern = _ASCII_TOKEN
    else:
        pattern = _TOKEN
    tokens = pattern.findall(window)[-_NGRAM_WINDOW:]
    if len(tokens) < _NGRAM_MIN_TOKENS:
        return None
    total = len(tokens) - _NGRAM + 1
    distinct = len(set(zip(*(tokens[i:] for i in range(_NGRAM)), strict=False)))
    return distinct / total


_NOT_ALNUM = re.compile(r"[\W_]+")


def _meaningful_lines(tail: str) -> list[str]:
    """Stripped lines with at least 3 letters or digits (blank and "}" lines say nothing)."""
    lines = (line.strip() for line in tail.split("\n"))
    return [line for line in lines if len(_NOT_ALNUM.sub("", line)) >= 3]


def _repeated_block(lines: list[str]) -> int:
    """How often the most frequent block of consecutive lines occurs among the last lines."""
    lines = lines[-_BLOCK_WINDOW:]
    if len(lines) < _BLOCK_LINES * _BLOCK_REPEATS:
        return 0
    blocks = Counter(
        tuple(lines[i : i + _BLOCK_LINES]) for i in range(len(lines) - _BLOCK_LINES + 1)
    )
    return blocks.most_common(1)[0][1]


def _recurring_line(lines: list[str]) -> tuple[str, int] | None:
    """A line that keeps recurring among the last lines (loops with variations between)."""
    lines = lines[-_LINE_WINDOW:]
    if len(lines) < _LINE_REPEATS:
        return None
    line, count = Counter(lines).most_common(1)[0]
    if count >= _LINE_REPEATS and sum(c.isalnum() or _is_cjk(c) for c in line) >= 8:
        return line, count
    return None


def _repetition(text: str) -> str | None:
    """Why the end of ``text`` looks like a generation loop, or None."""
    tail = text[-_TAIL:].rstrip()
    # Exact loops, even when the model varies the line breaks between repeats.
    compact = "".join(tail.split())  # str.split is several times faster than a regex here
    found = _periodic_tail(compact)
    if found is not None:
        period, repeats = found
        unit = compact[-period:]
        return f"the last {period}-character unit repeats {repeats} times: {unit[:40]!r}"
    diversity = _diversity(tail)
    if diversity is not None and diversity < _MIN_DIVERSITY:
        return f"only {diversity:.0%} of the last {_NGRAM}-word sequences are distinct"
    # Real code repeats lines ("return None" twenty times in a visitor) but is diverse as a
    # whole; the line rules only speak when the text is also repetitive overall.
    if diversity is None or diversity >= _BLOCK_DIVERSITY:
        return None
    lines = _meaningful_lines(tail)
    repeats = _repeated_block(lines)
    if repeats >= _BLOCK_REPEATS:
        return f"a block of {_BLOCK_LINES} lines recurs {repeats} times at the end"
    line = _recurring_line(lines)
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
    # The code-only request is looked for only when it could matter (no prose before the code).
    if (
        blocks
        and not _has_prose(answer[: blocks[0].start])
        and not (user_input and _CODE_ONLY_REQUEST.search(user_input))
    ):
        details[NO_EXPLANATION_BEFORE_CODE] = "the answer opens with a code block"


# --- template tokens -------------------------------------------------------------

# Turn markers of the common chat templates: ChatML and Llama 3 (<|im_end|>, <|eot_id|>, ...),
# Gemma (<start_of_turn>), Llama 2 and Mistral ([INST]). Written out as text, they mean the model
# ran through a template that is not its own. Plain HTML-like tags (</s>) are left alone: an
# answer about HTML may hold them.
_TEMPLATE_TOKEN = re.compile(r"<\|[a-z_]{2,40}\|>|<(?:start|end)_of_turn>|\[/?INST\]")


def _template_token(text: str) -> str | None:
    """Why ``text`` looks like it holds chat-template markers, or None."""
    found = _TEMPLATE_TOKEN.findall(text)
    if not found:
        return None
    kinds = sorted(set(found), key=found.index)
    return f"{len(found)} chat-template marker(s) in the answer: {', '.join(kinds[:3])}"


# --- the entry point -------------------------------------------------------------


def check_answer(
    text: str,
    *,
    user_input: str | None = None,
    max_chars: int = 20000,
    reasoning: str | None = None,
) -> QualityReport:
    """Run every check on ``text`` (a model's whole output, ``<think>`` block included).

    ``user_input`` is the user's message, when known: asking for "code only"
    ("只要代码", "no explanation") turns off ``no_explanation_before_code``.
    ``reasoning`` is reasoning the server returned separately (llama.cpp's
    ``reasoning_content``); it is only looked at for loops when there is no
    answer. Never raises; a check that cannot run counts as passed.
    """
    if not isinstance(text, str):
        text = "" if text is None else str(text)
    details: dict[str, str] = {}
    try:
        thought, answer = split_reasoning(text)
    except Exception:  # defensive: a check must never break the caller
        thought, answer = None, text
    if not isinstance(reasoning, str):
        reasoning = None
    visible = answer.strip()

    if not visible:
        details[EMPTY] = "no answer text" if not text.strip() else "only a <think> block"

    try:
        # Loop in the answer; with no answer, in the reasoning (thinking in circles until
        # max_tokens is how reasoning models usually fail). A loop the model escaped from is
        # not this check's business.
        loop = _repetition(answer if visible else (reasoning or thought or text))
        if loop is not None:
            details[REPETITION_LOOP] = loop
    except Exception:  # noqa: S110 -- defensive: a check that cannot run counts as passed
        pass

    if visible:
        _code_checks(answer, user_input, details)

    if len(visible) > max_chars:
        details[TOO_LONG] = f"{len(visible)} characters > {max_chars}"

    template = _template_token(answer)
    if template is not None:
        details[TEMPLATE_TOKENS] = template

    failures = tuple(name for name in CHECKS if name in details)
    return QualityReport(failures=failures, passed=not failures, details=details)
