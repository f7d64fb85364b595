# ruff: noqa: RUF001, RUF002 -- Chinese answers use full-width punctuation, as real ones do
"""A math answer's final answer and its reasoning completeness. Pure functions, no I/O.

The final answer (:func:`extract_answer`) is, in order of preference:

1. ``boxed``: the content of the last ``\\boxed{...}`` (or ``\\fbox{...}``), nested braces
   balanced;
2. ``stated``: the last stated answer -- "the answer is X", "final answer: X", "答案是 X",
   "答案为 X", "最终答案：X" -- up to the end of its line or sentence, without ``$``, trailing
   punctuation or a trailing Chinese unit word ("42 个" is 42);
3. ``last_number``: else the last number in the text (not an explicit answer).

Text inside a ``<think>`` block is only searched when the visible answer holds none.

Completeness (:func:`completeness`) is the mean of four observable facts, each 0 or 1::

    completeness = (finished + reasoned + explicit + no_loop) / 4

- ``finished``: the model stopped by itself -- ``finish_reason`` is not ``"length"``
  (cut by ``max_tokens``); an unknown reason counts as finished;
- ``reasoned``: at least 40 non-blank characters come before the final answer;
- ``explicit``: the final answer is ``boxed`` or ``stated``;
- ``no_loop``: the SDK's output check finds no repetition loop
  (:func:`vibesdk.check_answer`, ``repetition_loop``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from vibesdk import check_answer

__all__ = ["Completeness", "Extracted", "completeness", "extract_answer"]

MIN_REASONING_CHARS = 40

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_STATED = re.compile(
    r"(?:final\s+answer|the\s+answer|answer)\s*(?:is|:|=)\s*(?P<en>[^\n]+)"
    r"|(?:最终答案|答案)\s*(?:是|为|：|:|=)\s*(?P<zh>[^\n]+)",
    re.IGNORECASE,
)
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:/\d+)?")
# The end of a stated answer: a full stop (not a decimal point), a semicolon or a Chinese
# comma; not an ASCII comma, which tuples and sets hold.
_SENTENCE_END = re.compile(r"(?<!\d)\.(?!\d)|[。；;，]")
_TRAILING_UNIT = re.compile(r"[\s\u3400-\u9fff]+$")
_THINK_END = "</think>"


@dataclass(frozen=True)
class Extracted:
    """``answer``: the final answer's text (None: nothing found); ``how``: ``boxed``,
    ``stated``, ``last_number`` or None; ``start``: where it begins in the text."""

    answer: str | None
    how: str | None
    start: int


@dataclass(frozen=True)
class Completeness:
    """The four facts and their mean (see the module docstring)."""

    finished: bool
    reasoned: bool
    explicit: bool
    no_loop: bool

    @property
    def value(self) -> float:
        return (self.finished + self.reasoned + self.explicit + self.no_loop) / 4


def extract_answer(text: str) -> Extracted:
    """The final answer of ``text`` (see the module docstring for the rules)."""
    cut = text.rfind(_THINK_END)
    visible_from = cut + len(_THINK_END) if cut >= 0 else 0
    for start in (visible_from, 0) if visible_from else (0,):
        found = _boxed(text, start) or _stated(text, start)
        if found is not None:
            return found
    numbers = list(_NUMBER.finditer(text))
    if numbers:
        return Extracted(numbers[-1].group(), "last_number", numbers[-1].start())
    return Extracted(None, None, len(text))


def completeness(text: str, extracted: Extracted, finish_reason: str | None) -> Completeness:
    """The reasoning completeness of ``text`` whose final answer is ``extracted``."""
    before = text[: extracted.start]
    return Completeness(
        finished=finish_reason != "length",
        reasoned=len("".join(before.split())) >= MIN_REASONING_CHARS,
        explicit=extracted.how in ("boxed", "stated"),
        no_loop="repetition_loop" not in check_answer(text).failures,
    )


def _boxed(text: str, start: int) -> Extracted | None:
    matches = list(_BOXED.finditer(text, start))
    for match in reversed(matches):  # the last one whose braces close
        depth, i = 1, match.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0:
            content = text[match.end() : i - 1].strip()
            if content:
                return Extracted(content, "boxed", match.start())
    return None


def _stated(text: str, start: int) -> Extracted | None:
    matches = list(_STATED.finditer(text, start))
    for match in reversed(matches):
        group = "en" if match.group("en") is not None else "zh"
        answer = _clean(match.group(group))
        if answer:
            return Extracted(answer, "stated", match.start())
    return None


def _clean(stated: str) -> str:
    """The answer in "X." / "$X$。" / "**X** 个": no markup, punctuation or unit word."""
    end = _SENTENCE_END.search(stated)
    if end is not None:
        stated = stated[: end.start()]
    stated = stated.replace("**", "").replace("$", "").strip()
    stated = stated.removeprefix("\\(").removesuffix("\\)").strip()
    stated = stated.removeprefix("\\[").removesuffix("\\]").strip()
    return _TRAILING_UNIT.sub("", stated).strip(" .:：")
