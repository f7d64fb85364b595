"""A flag's release plan: the ``release:`` section of a flags file, its defaults, its guardrails.

Pure, no I/O. A plan is server-side only: ``vibe apply`` sends it inside each flag, the server
takes it out before the flag is validated and stores it beside the flag (never in the document
SDKs fetch), and ``vibe release start`` uses it, each command-line option overriding its part.
A flag with no ``release:`` section uses the defaults::

    release:
      steps: [1, 5, 10, 25, 50, 100]   # percent, rising to 100
      dwell: 2                          # least time per step: minutes, or "90s", "5m", "1h"
      min_samples: 200                  # least calls per arm per step
      guardrails:                       # merged onto the defaults; "off" turns one off
        slow_calls: {threshold: 0.05, action: rollback}
        output_length: {threshold: 0.25, action: pause}

:data:`GUARDRAILS` names every guardrail a plan can use, with its default threshold and action
and whether it is on by default. :func:`parse` checks a section (one-line errors naming the
field), :func:`guardrail_rules` turns a plan's guardrails into :class:`~.decide.Guardrail` s.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from vibesdk_server._domain._errors import InvalidError
from vibesdk_server._guard.decide import GuardAction, Guardrail

__all__ = [
    "BPS_MAX",
    "DEFAULT_MIN_DWELL_S",
    "DEFAULT_MIN_SAMPLES",
    "DEFAULT_STEPS_BPS",
    "GUARDRAILS",
    "GuardrailSpec",
    "PlanError",
    "guardrail_rules",
    "parse",
    "duration_s",
    "parse_dwell",
    "resolve",
    "take_sections",
]

BPS_MAX = 10_000
DEFAULT_STEPS_BPS = (100, 500, 1000, 2500, 5000, 10_000)
DEFAULT_MIN_DWELL_S = 120.0
DEFAULT_MIN_SAMPLES = 200
MAX_DWELL_S = 30 * 86400.0
CHECK = "check:"
_ACTIONS = ("rollback", "pause")
_KEYS = ("steps", "dwell", "min_samples", "guardrails")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smh]?)$")
_UNIT_S = {"s": 1.0, "m": 60.0, "h": 3600.0}


class PlanError(InvalidError):
    """A bad ``release:`` section; the message starts with its field (``release.steps: ...``)."""


@dataclass(frozen=True)
class GuardrailSpec:
    """One guardrail a plan can name: what it means, its defaults, how it becomes rules."""

    meaning: str
    threshold: float
    action: str
    on: bool
    low: float
    high: float
    """The thresholds allowed: ``low <= threshold <= high`` (``high`` excluded when open)."""
    high_open: bool
    unit: str
    build: Callable[[float, str, Sequence[str]], list[Guardrail]]


def _action(action: str) -> GuardAction:
    if action not in _ACTIONS:
        raise PlanError(f"a guardrail's action must be rollback or pause, got {action!r}")
    return cast("GuardAction", action)


def _one(
    name: str, kind: Any, metric: str, *, harm: Any = "increase", min_trials: int = 20
) -> Callable[[float, str, Sequence[str]], list[Guardrail]]:
    def build(threshold: float, action: str, checks: Sequence[str]) -> list[Guardrail]:
        limit = -threshold if harm == "decrease" else threshold
        return [
            Guardrail(
                name,
                kind,
                metric,
                limit,
                _action(action),
                harm=harm,
                min_trials=min_trials,
            )
        ]

    return build


def _checks(threshold: float, action: str, checks: Sequence[str]) -> list[Guardrail]:
    return [Guardrail(CHECK + n, "relative", CHECK + n, threshold, _action(action)) for n in checks]


def _output_length(threshold: float, action: str, checks: Sequence[str]) -> list[Guardrail]:
    # A shift either way: each side is its own one-sided test of the mean's ratio to stable's.
    return [
        Guardrail(
            f"output_length:{side}",
            "relative",
            "output_length",
            threshold,
            _action(action),
            harm=harm,  # type: ignore[arg-type]
            tolerance="ratio",
        )
        for side, harm in (("longer", "increase"), ("shorter", "decrease"))
    ]


_SHARE = "a share between 0 and 1 (0.05 = 5%)"
GUARDRAILS: dict[str, GuardrailSpec] = {
    "breakage": GuardrailSpec(
        "at least this share of at least 20 canary calls had an attempt on the canary fail"
        " (retried, fell back to stable or raised): no test, at once",
        0.5, "rollback", True, 0.0, 1.0, False, _SHARE,
        _one("breakage", "breakage", "failed_attempts"),
    ),
    "latency": GuardrailSpec(
        "absolute: at most this share of canary calls over 3 s (0.05: P95 under 3 s)",
        0.05, "rollback", False, 0.0, 1.0, True, _SHARE,
        _one("latency", "absolute", "slow_calls"),
    ),
    "slow_calls": GuardrailSpec(
        "relative: the canary's share of calls over 3 s may exceed stable's by this much",
        0.05, "rollback", True, 0.0, 1.0, False, _SHARE,
        _one("slow_calls", "relative", "slow_calls"),
    ),
    "attempt_errors": GuardrailSpec(
        "absolute: at most this share of canary calls with a failed attempt on the canary"
        " (retried, fell back to stable or raised)",
        0.05, "rollback", False, 0.0, 1.0, True, _SHARE,
        _one("attempt_errors", "absolute", "failed_attempts"),
    ),
    "failed_attempts": GuardrailSpec(
        "relative: the canary's share of calls with a failed attempt on their own variant"
        " (retried, fell back to stable or raised) may exceed stable's by this much",
        0.01, "rollback", True, 0.0, 1.0, False, _SHARE,
        _one("failed_attempts", "relative", "failed_attempts"),
    ),
    "errors": GuardrailSpec(
        "relative: the canary's share of calls that raised may exceed stable's by this much",
        0.01, "rollback", False, 0.0, 1.0, False, _SHARE,
        _one("errors", "relative", "errors"),
    ),
    "fallbacks": GuardrailSpec(
        "relative: the canary's share of calls that fell back may exceed stable's by this much",
        0.01, "rollback", True, 0.0, 1.0, False, _SHARE,
        _one("fallbacks", "relative", "fallbacks"),
    ),
    "checks": GuardrailSpec(
        "relative, one per output check that failed in either arm: its failure share may exceed"
        " stable's by this much",
        0.0, "rollback", True, 0.0, 1.0, False, _SHARE,
        _checks,
    ),
    "output_length": GuardrailSpec(
        "relative: the canary's mean output tokens may differ from stable's by this fraction,"
        " either way (0.25: 25% longer or shorter)",
        0.25, "pause", False, 0.0, 1.0, True, "a fraction between 0 and 1 (0.25 = 25%)",
        _output_length,
    ),
    "feedback_score": GuardrailSpec(
        "relative: the canary's mean user score (1..5) may be below stable's by this many points",
        0.25, "pause", False, 0.0, 4.0, False, "points of the 1..5 score, 0 to 4",
        _one("feedback_score", "relative", "feedback_score", harm="decrease"),
    ),
    "review_score": GuardrailSpec(
        "relative: the canary's mean review score (1..5, vibe review) may be below stable's by"
        " this many points",
        0.5, "pause", False, 0.0, 4.0, False, "points of the 1..5 score, 0 to 4",
        _one("review_score", "relative", "review_score", harm="decrease"),
    ),
    "reports": GuardrailSpec(
        "relative: the canary's share of calls users reported may exceed stable's by this much",
        0.005, "pause", False, 0.0, 1.0, False, _SHARE,
        _one("reports", "relative", "reports"),
    ),
    "eval_regression": GuardrailSpec(
        "the canary's golden-set score (vibe eval run) may fall below its baseline by this much;"
        " 0: any drop the regression test proves. Each step waits for an evaluation run of the"
        " canary finished during it",
        0.0, "pause", False, 0.0, 1.0, True,
        "a score difference, at least 0 and below 1 (0.1 = 10 points)",
        _one("eval_regression", "eval", "eval_regression"),
    ),
}  # fmt: skip
"""Every guardrail a plan can name; those with ``on`` apply when a plan names none."""


def guardrail_rules(
    guardrails: Mapping[str, Any] | None, checks: Iterable[str] = ()
) -> list[Guardrail]:
    """The rules of a plan's (normalized) ``guardrails``, merged onto the defaults.

    ``guardrails`` maps a name of :data:`GUARDRAILS` to ``{"threshold", "action"}`` (either
    optional) or to ``"off"``; ``None`` or ``{}`` is the defaults. ``checks`` are the output
    checks that failed in either arm (one ``check:<name>`` rule each).
    """
    chosen = dict(guardrails or {})
    rules: list[Guardrail] = []
    names = sorted(checks)
    for name, spec in GUARDRAILS.items():
        given = chosen.get(name)
        if given == "off" or (given is None and not spec.on):
            continue
        given = given or {}
        rules += spec.build(
            float(given.get("threshold", spec.threshold)), given.get("action", spec.action), names
        )
    return rules


# -- parsing a release: section ------------------------------------------------------------------
def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _steps(value: Any) -> list[float]:
    rises = (
        isinstance(value, list)
        and value
        and all(_number(v) and 0 < v <= 100 for v in value)
        and all(b > a for a, b in itertools.pairwise(value))
        and value[-1] == 100
    )
    if not rises:
        raise PlanError(f"release.steps: must rise to 100, got {value!r}")
    if any(abs(v * 100 - round(v * 100)) > 1e-9 for v in value):
        raise PlanError(f"release.steps: percentages take at most 2 decimals, got {value!r}")
    return [v if isinstance(v, int) else float(v) for v in value]


def duration_s(value: Any, *, bare_s: float) -> float | None:
    """``value`` as seconds (``None`` if it is not a duration): ``"90s"``, ``"5m"``, ``"1h"``,
    or a plain number (or numeric text) counted in units of ``bare_s`` seconds."""
    if _number(value):
        return float(value) * bare_s
    match = _DURATION.match(value.strip()) if isinstance(value, str) else None
    if match is None:
        return None
    return float(match.group(1)) * (_UNIT_S[match.group(2)] if match.group(2) else bare_s)


def parse_dwell(value: Any) -> float:
    """A plan's dwell as seconds: a number is minutes; ``"90s"``, ``"5m"``, ``"1h"`` name their
    unit."""
    seconds = duration_s(value, bare_s=60.0)
    if seconds is None or not 0 <= seconds <= MAX_DWELL_S:
        raise PlanError(
            "release.dwell: give minutes (e.g. 5) or a duration such as 90s, 5m or 1h, at most 30"
            f" days; got {value!r}"
        )
    return seconds


def _min_samples(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 10**9:
        raise PlanError(f"release.min_samples: must be a whole number of calls >= 1, got {value!r}")
    return value


def _guardrail(name: str, value: Any) -> dict[str, Any] | str:
    where = f"release.guardrails.{name}"
    if value in ("off", False):
        return "off"
    if value in ("on", True, None):
        return {}
    if not isinstance(value, dict):
        raise PlanError(f"{where}: give {{threshold: ..., action: ...}} or off, got {value!r}")
    unknown = sorted(str(k) for k in value if k not in ("threshold", "action"))
    if unknown:
        raise PlanError(f"{where}: unknown key(s) {', '.join(unknown)}; use threshold, action")
    spec = GUARDRAILS[name]
    out: dict[str, Any] = {}
    if "threshold" in value:
        t = value["threshold"]
        top = not spec.high_open and t == spec.high
        inside = _number(t) and spec.low <= t and (t < spec.high or top)
        if not inside or (name == "breakage" and t == 0):
            raise PlanError(f"{where}.threshold: must be {spec.unit}, got {t!r}")
        out["threshold"] = float(t)
    if "action" in value:
        if value["action"] not in _ACTIONS:
            raise PlanError(f"{where}.action: must be rollback or pause, got {value['action']!r}")
        out["action"] = value["action"]
    return out


def _guardrails(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise PlanError(
            "release.guardrails: must be a mapping of guardrail names, e.g."
            f" {{latency: {{threshold: 0.05}}}}; got {value!r}"
        )
    unknown = sorted(str(k) for k in value if k not in GUARDRAILS)
    if unknown:
        raise PlanError(
            f"release.guardrails: unknown guardrail(s) {', '.join(unknown)};"
            f" use {', '.join(sorted(GUARDRAILS))}"
        )
    return {str(k): _guardrail(str(k), v) for k, v in value.items()}


def parse(section: Any) -> dict[str, Any] | None:
    """A flag's ``release:`` section, checked and normalized; ``None`` when it sets nothing.

    The result keeps only what the section sets: ``steps`` (percent), ``dwell_s`` (seconds),
    ``min_samples`` and ``guardrails`` (name -> ``{threshold?, action?}`` or ``"off"``).
    Raises :class:`PlanError` naming the field, e.g. ``release.steps: must rise to 100, ...``.
    """
    if section is None:
        return None
    if not isinstance(section, dict):
        raise PlanError(
            f"release: must be a mapping with {', '.join(_KEYS)}; got {type(section).__name__}"
        )
    unknown = sorted(str(k) for k in section if k not in _KEYS)
    if unknown:
        raise PlanError(f"release: unknown key(s) {', '.join(unknown)}; use {', '.join(_KEYS)}")
    plan: dict[str, Any] = {}
    if "steps" in section:
        plan["steps"] = _steps(section["steps"])
    if "dwell" in section:
        plan["dwell_s"] = parse_dwell(section["dwell"])
    if "min_samples" in section:
        plan["min_samples"] = _min_samples(section["min_samples"])
    if "guardrails" in section:
        plan["guardrails"] = _guardrails(section["guardrails"])
    return plan or None


def take_sections(flags: Sequence[Any]) -> tuple[list[Any], dict[str, dict[str, Any] | None]]:
    """An apply's flags without their ``release:`` sections, and each flag's plan by key.

    Every flag with a key gets an entry (``None``: no section, the defaults). A bad section
    raises :class:`PlanError` as ``flag KEY: release...: ...``.
    """
    stripped: list[Any] = []
    plans: dict[str, dict[str, Any] | None] = {}
    for item in flags:
        if not isinstance(item, dict) or not isinstance(item.get("key"), str):
            stripped.append(item)  # resolve_flags says what is wrong with it
            continue
        data = dict(item)
        section = data.pop("release", None)
        try:
            plans[item["key"]] = parse(section)
        except PlanError as exc:
            raise PlanError(f"flag {item['key']}: {exc.detail}") from None
        stripped.append(data)
    return stripped, plans


# -- the plan a release starts with -----------------------------------------------------------
@dataclass(frozen=True)
class Resolved:
    """What a release runs with, and where each part came from (``plan`` column of a release)."""

    steps_bps: tuple[int, ...]
    min_dwell_s: float
    min_samples: int
    guardrails: dict[str, Any]
    source: str
    """``"flags file"`` when the flag has a stored plan, else ``"defaults"``."""
    version: int | None
    """The environment version whose apply set the plan (``None`` for the defaults)."""
    overrides: tuple[str, ...]

    def record(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "version": self.version,
            "overrides": list(self.overrides),
            "guardrails": self.guardrails,
        }


def resolve(
    plan: Mapping[str, Any] | None,
    version: int | None,
    *,
    steps: Sequence[int] | None = None,
    min_dwell_s: float | None = None,
    min_samples: int | None = None,
    guardrails_given: bool = False,
) -> Resolved:
    """The flag's stored ``plan`` (set at ``version``) with the start command's overrides."""
    p = plan or {}
    file_steps = tuple(round(s * 100) for s in p["steps"]) if "steps" in p else None
    given = {
        "steps": steps is not None,
        "dwell": min_dwell_s is not None,
        "min_samples": min_samples is not None,
        "guardrails": guardrails_given,
    }
    return Resolved(
        steps_bps=tuple(steps) if steps is not None else file_steps or DEFAULT_STEPS_BPS,
        min_dwell_s=float(
            min_dwell_s if min_dwell_s is not None else p.get("dwell_s", DEFAULT_MIN_DWELL_S)
        ),
        min_samples=int(
            min_samples if min_samples is not None else p.get("min_samples", DEFAULT_MIN_SAMPLES)
        ),
        guardrails=dict(p.get("guardrails") or {}),
        source="flags file" if plan else "defaults",
        version=version if plan else None,
        overrides=tuple(k for k, v in given.items() if v),
    )
