"""A code answer's program and its conciseness. Pure functions, no I/O.

The program (:func:`extract_code`) is the **last** fenced block tagged ``python``, ``py`` or
``python3`` (models show usage first and the final solution last); without one, the last
untagged fenced block; without any, there is no program. A last block left open (the answer
was cut) is taken as it is. Text inside a ``<think>`` block is not searched when a visible
answer follows it.

Conciseness (:func:`conciseness`), in [0, 1]::

    conciseness = length * naming
    length = min(1, reference_lines / answer_lines)   (1 when the item has no reference)
    naming = 1 / (1 + violations)

Lines are non-blank lines. ``violations`` counts the distinct names the program defines that
break Python's naming convention: functions and parameters that are not ``snake_case``, and
variables that are neither ``snake_case`` nor ``UPPER_CASE`` (constants); class names and the
item's entry point are not judged. A program that does not parse has no conciseness (None).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

__all__ = ["Conciseness", "conciseness", "extract_code", "naming_violations"]

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})\s*([\w+.-]*)[^\n]*$")
_PYTHON_TAGS = {"python", "py", "python3"}
_SNAKE = re.compile(r"^_*[a-z0-9][a-z0-9_]*$|^_+$")
_UPPER = re.compile(r"^_*[A-Z][A-Z0-9_]*$")
_THINK_END = "</think>"


@dataclass(frozen=True)
class Conciseness:
    value: float
    answer_lines: int
    reference_lines: int | None
    violations: tuple[str, ...]


def extract_code(text: str) -> str | None:
    """The program in ``text``: see the module docstring."""
    cut = text.rfind(_THINK_END)
    if cut >= 0 and text[cut + len(_THINK_END) :].strip():
        text = text[cut + len(_THINK_END) :]
    tagged: list[str] = []
    untagged: list[str] = []
    fence: str | None = None
    tag = ""
    body: list[str] = []
    for line in text.splitlines():
        match = _FENCE.match(line)
        if fence is None:
            if match:
                fence, tag, body = match.group(1), match.group(2).lower(), []
        elif match and match.group(1).startswith(fence) and not match.group(2):
            (tagged if tag in _PYTHON_TAGS else untagged if not tag else []).append("\n".join(body))
            fence = None
        else:
            body.append(line)
    if fence is not None:  # cut inside a block
        (tagged if tag in _PYTHON_TAGS else untagged if not tag else []).append("\n".join(body))
    if tagged:
        return tagged[-1]
    return untagged[-1] if untagged else None


def _lines(code: str) -> int:
    return sum(1 for line in code.splitlines() if line.strip())


def naming_violations(tree: ast.AST, *, exempt: frozenset[str] = frozenset()) -> tuple[str, ...]:
    """The names defined in ``tree`` that break the convention (sorted, each once)."""
    bad: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            if not _SNAKE.match(node.name):
                bad.add(node.name)
            arguments = node.args
            for arg in (*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs):
                if not _SNAKE.match(arg.arg) and arg.arg not in ("self", "cls"):
                    bad.add(arg.arg)
        elif (
            isinstance(node, ast.Name)
            and isinstance(node.ctx, ast.Store)
            and not (_SNAKE.match(node.id) or _UPPER.match(node.id))
        ):
            bad.add(node.id)
    return tuple(sorted(bad - exempt))


def conciseness(code: str, reference: str | None, entry_point: str | None) -> Conciseness | None:
    """The conciseness of ``code`` (see the module docstring); None when it does not parse."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return None
    answer_lines = _lines(code)
    reference_lines = _lines(reference) if reference else None
    length = 1.0
    if reference_lines is not None:
        length = min(1.0, reference_lines / max(answer_lines, 1))
    exempt = frozenset({entry_point}) if entry_point else frozenset()
    violations = naming_violations(tree, exempt=exempt)
    value = length / (1 + len(violations))
    return Conciseness(value, answer_lines, reference_lines, violations)
