"""Parsing and printing rollout percentages as basis points (1 bps = 0.01%).

The flag document stores ``rollout_bps`` (0..10000). People type percentages,
so ``10%``, ``0.01%`` and ``1000bps`` are accepted; a bare number other than
``0`` is refused because ``0.1`` could mean 0.1% or 10%, and guessing wrong by
a factor of 100 on a canary is exactly the accident this tool must prevent.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from .errors import CliError

__all__ = ["format_bps", "parse_percent"]

BPS_MAX = 10_000
_NUMBER = r"[0-9]+(?:\.[0-9]+)?|\.[0-9]+"
_PERCENT_RE = re.compile(rf"^({_NUMBER})\s*%$")
_BPS_RE = re.compile(r"^([0-9]+)\s*bps?$", re.IGNORECASE)
_FRACTION_BPS_RE = re.compile(rf"^({_NUMBER})\s*bps?$", re.IGNORECASE)
_BARE_RE = re.compile(rf"^(?:{_NUMBER})$")

_EXAMPLES = "write it as a percentage (10%, 0.01%) or in basis points (1000bps)"


def parse_percent(text: str) -> int:
    """Return the basis points that ``text`` means, or raise a usage :class:`CliError`.

    Accepted: ``N%`` with at most two decimals (0.01% steps), ``Nbps`` (an
    integer), and ``0``. Refused, with a message that says how to write it:
    bare numbers, negative values, more than 100%, finer than 0.01%.
    """
    value = text.strip()
    if value in {"0", "0%", "0bps"}:
        return 0
    match = _PERCENT_RE.match(value)
    if match:
        try:
            scaled = Decimal(match.group(1)) * 100
        except InvalidOperation:  # pragma: no cover - the regex only admits decimals
            raise CliError.usage(f"{text!r} is not a percentage; {_EXAMPLES}") from None
        if scaled != scaled.to_integral_value():
            raise CliError.usage(
                f"{text!r} is finer than the 0.01% step rollouts use; "
                "round it to two decimals (e.g. 0.01%, 0.25%)"
            )
        return _in_range(int(scaled), text)
    match = _BPS_RE.match(value)
    if match:
        return _in_range(int(match.group(1)), text)
    if _FRACTION_BPS_RE.match(value):
        raise CliError.usage(f"{text!r}: basis points are whole numbers (1bps = 0.01%)")
    if value.startswith("-") and _looks_numeric(value[1:].strip()):
        raise CliError.usage(f"{text!r}: a rollout cannot be negative; use 0% to stop the canary")
    if _BARE_RE.match(value):
        raise CliError.usage(
            f"{text!r} is ambiguous (percent or fraction?): write {_readings(value)}"
        )
    raise CliError.usage(f"{text!r} is not a rollout percentage; {_EXAMPLES}")


def _looks_numeric(value: str) -> bool:
    return bool(_PERCENT_RE.match(value) or _FRACTION_BPS_RE.match(value) or _BARE_RE.match(value))


def _readings(value: str) -> str:
    # Spell out each plausible reading so the fix is a copy-paste away.
    number = Decimal(value)
    readings = [f"{value}%"]
    as_fraction = number * BPS_MAX
    if number <= 1 and as_fraction == as_fraction.to_integral_value():
        readings.append(format_bps(int(as_fraction)))
    if number == number.to_integral_value():
        readings.append(f"{int(number)}bps")
    return " or ".join(dict.fromkeys(readings))


def _in_range(bps: int, text: str) -> int:
    if bps > BPS_MAX:
        raise CliError.usage(f"{text!r} is more than 100%; a rollout is 0%..100% (0..10000bps)")
    return bps


def format_bps(bps: int) -> str:
    """``1000`` -> ``"10%"``, ``1`` -> ``"0.01%"``, ``1050`` -> ``"10.5%"``."""
    whole, rest = divmod(bps, 100)
    if rest == 0:
        return f"{whole}%"
    return f"{whole}.{rest:02d}".rstrip("0") + "%"
