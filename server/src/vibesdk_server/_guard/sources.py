"""Where the guard reads a step's measurements: the server's own store, or Prometheus.

A :class:`MetricsSource` answers ``measurements(environment=, flag_key=, since=)`` with the
figures of each variant, in the shape of
:meth:`~vibesdk_server._storage.SqlStore.measurements` (the store is the default source; it
needs no wrapper), which :func:`~.release.aggregates` maps to counts.

:class:`PrometheusSource` computes the same figures with PromQL (``/api/v1/query``) over the
SDK's OpenTelemetry metrics as an OpenTelemetry Prometheus exporter (the Python SDK's, or the
Collector's ``prometheus`` / ``prometheusremotewrite`` exporters) names them: dots become
underscores, the unit ``s`` becomes ``_seconds``, counters end in ``_total``, and units in
braces (``{fallback}``) are dropped (:data:`READS` lists every query):

* ``gen_ai.client.operation.duration`` -> ``gen_ai_client_operation_duration_seconds_count``
  (calls, by ``error_type``), ``_sum``, and ``_bucket`` by ``le`` (calls over 3 s);
* ``vibesdk.fallbacks`` -> ``vibesdk_fallbacks_total`` (by ``vibesdk_fallback_reason``);
* ``vibesdk.quality.failures`` -> ``vibesdk_quality_failures_total`` (by
  ``vibesdk_quality_check``);
* ``gen_ai.client.token.usage`` -> ``gen_ai_client_token_usage_{count,sum}`` (output tokens);
* ``vibesdk.feedback.score`` -> ``vibesdk_feedback_score_{count,sum,bucket}`` (users' scores);
* ``vibesdk.reports`` -> ``vibesdk_reports_total`` (reports users filed);
* ``vibesdk.exposures`` -> ``vibesdk_exposures_total`` (users, each counted by an SDK client
  the first time it met them in the flag's current rollout step; by ``vibesdk_client_id``, and
  only the series of the step's ``vibesdk_step`` when the guard reads a step).

``failed_attempts`` are the calls with ``error_type``, ``vibesdk_fallback="true"`` or
``vibesdk_attempt_failed="true"``. Users'
scores and reports (``feedback_received``) come from the SDK's counts of them here, not from
the server's feedback and reports tables.

Every query selects the flag by ``feature_flag_key`` and, unless ``environment_label`` is
empty, the environment by that label equal to the flag server's environment name (default
``deployment_environment_name``: the resource attribute ``deployment.environment.name`` kept as
a label), and sums per ``feature_flag_result_variant`` (the variant the user was assigned). A
step's count of a counter is, per series, its last value in the step minus
its first one in the step, or minus 0 for a series born during the step (as the canary's are
at the first step), never below 0; summed over series (app instances). Unlike ``increase()``
this keeps a new series' first scraped value and does not extrapolate, so the figures are the
store's, give or take the calls of one scrape interval at each end of the step: those between
the step's start and its first scrape are left out, and so are those not scraped yet. An app
that restarts during a step counts its calls since the restart (its series start again at 0).

A Prometheus that cannot be reached, times out or answers an error raises
:class:`MetricsUnavailable`; :func:`judge` then holds the step and says why. The guard never
advances nor rolls back on figures it could not read.
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import httpx

from vibesdk_server._domain._urls import check_http_url
from vibesdk_server._guard.decide import Decision, Drop, Reason
from vibesdk_server._guard.release import evaluate, step_since
from vibesdk_server._storage._measurements import SLOW_S, _bump, _empty, _over

__all__ = [
    "DEFAULT_ENVIRONMENT_LABEL",
    "DEFAULT_TIMEOUT_S",
    "SOURCES",
    "MetricsSource",
    "MetricsUnavailable",
    "PrometheusSource",
    "READS",
    "Add",
    "Read",
    "check_label",
    "check_prometheus_url",
    "judge",
]

SOURCES = ("store", "prometheus")
DEFAULT_ENVIRONMENT_LABEL = "deployment_environment_name"
#: The most one read of a step's figures (all its queries together) may take.
DEFAULT_TIMEOUT_S = 10.0
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")

_FLAG = "feature_flag_key"
_VARIANT = "feature_flag_result_variant"
_DURATION = "gen_ai_client_operation_duration_seconds"
_TOKENS = "gen_ai_client_token_usage"
_FEEDBACK = "vibesdk_feedback_score"
_EXPOSURES = "vibesdk_exposures_total"


class MetricsSource(Protocol):
    """Per variant, the figures measured for ``flag_key`` in ``environment`` from ``since`` on.

    ``since`` is unix seconds (``None``: everything kept); ``step`` (a flag's ``step_id``)
    counts only the users counted in that step. The figures are those of
    :meth:`~vibesdk_server._storage.SqlStore.measurements`. Raises :class:`MetricsUnavailable`
    when the figures cannot be read now.
    """

    def measurements(
        self,
        *,
        environment: str,
        flag_key: str,
        since: int | None = None,
        step: str | None = None,
    ) -> dict[str, dict[str, Any]]: ...


class MetricsUnavailable(Exception):
    """The source could not answer (unreachable, timed out, an error); ``str()`` says why."""


def judge(
    source: MetricsSource,
    release: Mapping[str, Any],
    *,
    now: float,
    drop: Drop | None = None,
    step: str | None = None,
) -> tuple[dict[str, dict[str, Any]], Decision]:
    """The figures of ``release``'s current step from ``source``, and the decision on them
    (with ``drop``, the canary's golden-set drop judged in the step, if any). ``step`` is the
    flag's ``step_id`` now: the users counted under it are the step's.

    When the source cannot answer, the figures are empty and the decision is a hold whose one
    reason (``source_unavailable``) says why: no figures never advance and never roll back.
    """
    try:
        measured = source.measurements(
            environment=release["environment"],
            flag_key=release["flag_key"],
            since=step_since(float(release["step_started_s"])),
            step=step,
        )
    except MetricsUnavailable as exc:
        held = evaluate(release, {}, now=now)
        reason = Reason(
            "source_unavailable",
            f"no measurements: {exc}; holding until the metrics source answers",
        )
        return {}, dataclasses.replace(held, action="hold", reasons=(reason,))
    return measured, evaluate(release, measured, now=now, drop=drop)


def check_prometheus_url(url: str) -> str:
    """``url`` without a trailing slash if it is an http(s) URL with a host; else ValueError."""
    rule = "the Prometheus URL must be its http:// or https:// base URL"
    return check_http_url(url, rule, "http://prometheus:9090").rstrip("/")


def check_label(name: str) -> str:
    """``name`` if it is a Prometheus label name or empty; else ValueError."""
    if name and not _LABEL.fullmatch(name):
        raise ValueError(
            f"the environment label must be a Prometheus label name (letters, digits and _,"
            f" not starting with a digit), or empty for none; got {name!r}"
        )
    return name


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


Add = Callable[[dict[str, Any], Mapping[str, str], float], None]
"""Adds one series' value to a variant's figures: ``add(figures, labels, value)``."""


@dataclasses.dataclass(frozen=True)
class Read:
    """One PromQL read: a series, the labels it is split by, and where its value goes."""

    series: str
    add: Add
    by: tuple[str, ...] = ()
    matchers: tuple[str, ...] = ()


def _calls(f: dict[str, Any], labels: Mapping[str, str], value: float) -> None:
    f["calls"] += round(value)
    if labels.get("error_type"):
        _bump(f["errors"], labels["error_type"], value)
    fell_back = labels.get("vibesdk_fallback") == "true"
    if fell_back or labels.get("vibesdk_attempt_failed") == "true" or labels.get("error_type"):
        f["failed_attempts"] += round(value)


def _buckets(*path: str) -> Add:
    """Keeps a histogram's cumulative ``le`` buckets at ``path`` until :func:`_finish`."""

    def add(f: dict[str, Any], labels: Mapping[str, str], value: float) -> None:
        if "le" in labels:
            inner: dict[Any, Any] = f
            for key in path:
                inner = inner.setdefault(key, {})
            inner[float(labels["le"])] = value

    return add


def _into(*paths: str, count: bool = True) -> Add:
    """Adds the value at each dotted path (``"feedback.count"``), rounded if ``count``."""

    def add(f: dict[str, Any], labels: Mapping[str, str], value: float) -> None:
        for path in paths:
            *outer, last = path.split(".")
            inner = f
            for key in outer:
                inner = inner[key]
            inner[last] += round(value) if count else value

    return add


def _users(f: dict[str, Any], labels: Mapping[str, str], value: float) -> None:
    f["users"] += round(value)
    _bump(f["users_by_client"], labels.get("vibesdk_client_id", ""), value)


def _by(key: str, label: str) -> Add:
    def add(f: dict[str, Any], labels: Mapping[str, str], value: float) -> None:
        _bump(f[key], labels.get(label, ""), value)

    return add


_OUTPUT = ('gen_ai_token_type="output"',)
_LE = "le"  # cumulative buckets, kept under this key until _finish()
READS = (
    Read(
        f"{_DURATION}_count",
        _calls,
        by=("error_type", "vibesdk_fallback", "vibesdk_attempt_failed"),
    ),
    Read(f"{_DURATION}_sum", _into("latency_sum_s", count=False)),
    Read(f"{_DURATION}_bucket", _buckets(_LE, "duration"), by=("le",)),  # and calls over 3 s
    Read(
        "vibesdk_fallbacks_total",
        _by("fallbacks", "vibesdk_fallback_reason"),
        by=("vibesdk_fallback_reason",),
    ),
    Read(
        "vibesdk_quality_failures_total",
        _by("quality_failures", "vibesdk_quality_check"),
        by=("vibesdk_quality_check",),
    ),
    Read(f"{_TOKENS}_count", _into("output_tokens.count"), matchers=_OUTPUT),
    Read(f"{_TOKENS}_sum", _into("output_tokens.sum", count=False), matchers=_OUTPUT),
    Read(f"{_TOKENS}_bucket", _buckets(_LE, "tokens"), by=("le",), matchers=_OUTPUT),
    # Users' scores and reports, as the SDK counts them (the store reads its own tables).
    Read(f"{_FEEDBACK}_count", _into("feedback.count", "feedback_received.count")),
    Read(f"{_FEEDBACK}_sum", _into("feedback.sum", "feedback_received.sum", count=False)),
    Read(f"{_FEEDBACK}_bucket", _buckets(_LE, "feedback"), by=("le",)),
    Read("vibesdk_reports_total", _into("reports", "feedback_received.reports")),
    Read(_EXPOSURES, _users, by=("vibesdk_client_id",)),
)
"""Every query of one read of a step's figures, in order."""


class PrometheusSource:
    """:class:`MetricsSource` over Prometheus' HTTP API (see the module docstring).

    ``url``: Prometheus' base URL (``/api/v1/query`` is appended). ``environment_label``: the
    label holding the flag server's environment name on the SDK's series; ``""`` reads every
    series of the flag (one Prometheus per environment). ``timeout_s`` bounds one read, all its
    queries together. ``clock`` and ``transport`` are for tests.
    """

    def __init__(
        self,
        url: str,
        *,
        environment_label: str = DEFAULT_ENVIRONMENT_LABEL,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        clock: Callable[[], float] = time.time,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = check_prometheus_url(url)
        self.environment_label = check_label(environment_label)
        self.timeout_s = timeout_s
        self._clock = clock
        self._http = httpx.Client(base_url=self.url, transport=transport, timeout=timeout_s)

    def describe(self) -> str:
        """Where the figures come from, for the server's log."""
        label = self.environment_label or "none: every series"
        return f"Prometheus at {self.url} (environment label: {label})"

    def close(self) -> None:
        self._http.close()

    def measurements(
        self,
        *,
        environment: str,
        flag_key: str,
        since: int | None = None,
        step: str | None = None,
    ) -> dict[str, dict[str, Any]]:
        """Per variant, the figures of ``flag_key`` from ``since`` on (see the module docstring).

        ``since=None`` reads the whole history Prometheus keeps for it, up to 365 days. With
        ``step``, users are read from the series of that ``vibesdk_step`` only: each is born
        when its client first counts a user in the step, so all its count is the step's.
        """
        now = self._clock()
        if since is not None and since >= now:
            return {}  # the step has only just started: nothing measured in it yet
        deadline = time.monotonic() + self.timeout_s
        start = now - 365 * 86_400 if since is None else since
        window = f"{math.floor((now - start) * 1000)}ms"
        matchers = [f"{_FLAG}={_quote(flag_key)}"]
        if self.environment_label:
            matchers.append(f"{self.environment_label}={_quote(environment)}")
        out: dict[str, dict[str, Any]] = {}
        for read in READS:
            only = read.matchers
            if step is not None and read.series == _EXPOSURES:
                only = (*only, f"vibesdk_step={_quote(step)}")
            selector = f"{read.series}{{{','.join([*matchers, *only])}}}"
            grouping = ", ".join([_VARIANT, *read.by])
            last, first = (
                f"last_over_time({selector}[{window}])",
                f"min_over_time({selector}[{window}])",
            )
            # A series seen before the step counts from its first value in the step (counters
            # only rise, so that is its least); one born during the step counts from 0.
            before = f"{selector} offset {window}"
            query = (
                f"sum by ({grouping})"
                f" (clamp_min({last} - (({first} and {before}) or {last} * 0), 0))"
            )
            for labels, value in self._query(query, now, deadline):
                read.add(out.setdefault(labels.get(_VARIANT, ""), _empty()), labels, value)
        for figures in out.values():
            _finish(figures)
        return out

    def _query(self, query: str, at: float, deadline: float) -> list[tuple[dict[str, str], float]]:
        """One instant query at ``at``: (labels, value) per series of its vector."""
        left = deadline - time.monotonic()
        where = f"Prometheus at {self.url}"
        if left <= 0:
            raise MetricsUnavailable(f"{where} took over {self.timeout_s:g} s to answer")
        try:
            response = self._http.get(
                "/api/v1/query", params={"query": query, "time": f"{at:.3f}"}, timeout=left
            )
        except httpx.TimeoutException:
            raise MetricsUnavailable(f"{where} took over {self.timeout_s:g} s to answer") from None
        except httpx.HTTPError as exc:
            raise MetricsUnavailable(
                f"{where} cannot be reached ({type(exc).__name__}: {exc})"
            ) from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise MetricsUnavailable(
                f"{where} answered HTTP {response.status_code} with no Prometheus API result"
                " (is --prometheus-url Prometheus' base URL?)"
            )
        if response.status_code != 200 or body.get("status") != "success":
            error = " ".join(str(body.get("error") or "no error given").split())
            raise MetricsUnavailable(
                f"{where} answered HTTP {response.status_code}"
                f" ({body.get('errorType') or 'error'}: {error})"
            )
        data = body.get("data") or {}
        if data.get("resultType") != "vector":
            raise MetricsUnavailable(f"{where} answered a {data.get('resultType')!r}, not a vector")
        try:
            return [(dict(s["metric"]), float(s["value"][1])) for s in data["result"]]
        except (KeyError, IndexError, TypeError, ValueError):
            raise MetricsUnavailable(f"{where} answered a vector that cannot be read") from None


def _finish(figures: dict[str, Any]) -> None:
    """The figures' histograms in the store's shape, and what is computed from them."""
    cumulative = figures.pop(_LE, {})
    figures["duration_histogram"] = _histogram(cumulative.get("duration", {}))
    figures["slow_calls"] = _over(figures["duration_histogram"], SLOW_S)
    figures["output_tokens"]["histogram"] = _histogram(cumulative.get("tokens", {}))
    # Scores are whole numbers 1..5 and the SDK's buckets end at each: a bucket's scores all
    # equal its upper bound, so the sum of squares is exact.
    scores = _histogram(cumulative.get("feedback", {}))
    figures["feedback_received"]["sum_sq"] = float(
        sum(n * b * b for n, b in zip(scores["counts"], scores["bounds"], strict=False))
    )


def _histogram(cumulative: Mapping[float, float]) -> dict[str, list[Any]]:
    """Prometheus' cumulative ``le`` buckets as the store's bounds and per-bucket counts."""
    les = sorted(cumulative)
    counts, below = [], 0.0
    for le in les:
        counts.append(max(0, round(cumulative[le] - below)))
        below = max(below, cumulative[le])
    return {"bounds": [le for le in les if math.isfinite(le)], "counts": counts}
