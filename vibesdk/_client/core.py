"""Everything :class:`~vibesdk.Client` and :class:`~vibesdk.AsyncClient` share.

The two clients differ only in how they wait (threads vs ``await``). The
order of the I/O is written once, in ``calls_aio.py`` (``calls_sync.py`` is
generated from it); the decisions live here: which variants to try, the
request for each, which URL, breaker and deadline an attempt has, how a failure
maps to a fallback, and what goes on the span, the metrics and the result.
Nothing here does network I/O.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, NamedTuple, TypeVar

import httpx
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from pydantic import ValidationError

from vibesdk._backends import CHAT_PATH, BackendPool, Completion, StreamParser, build_request
from vibesdk._backends.local import LOAD_KEY, load_options, local_url
from vibesdk._errors import (
    AllBackendsFailedError,
    BackendConnectError,
    BackendError,
    BackendTimeoutError,
    CircuitOpenError,
    FlagNotFoundError,
    FlagsNotReadyError,
    InvalidArgumentError,
    StreamInterruptedError,
    VibeError,
)
from vibesdk._flags.document import Backend, FallbackPolicy, Flag, GenerationParams, Variant
from vibesdk._flags.evaluation import Assignment, ErrorCode
from vibesdk._quality.checks import QualityReport, check_answer
from vibesdk._resilience import CircuitBreaker, Step, fallback_reason, plan
from vibesdk._settings import Settings
from vibesdk._telemetry import semconv as sc
from vibesdk._telemetry.exposures import Exposures
from vibesdk._telemetry.instruments import (
    Metrics,
    emit_feedback,
    emit_report,
    flag_attributes,
    flag_evaluation_event,
    server_attributes,
    tracer,
)
from vibesdk._telemetry.request_log import RequestLog, make_record
from vibesdk._watch import Watch

from .results import ChatChunk, ChatResult, Usage

__all__ = [
    "Attempt",
    "Call",
    "ClientCore",
    "Opened",
    "map_http_error",
    "validate_chat",
    "validate_feedback",
    "validate_report",
]

logger = logging.getLogger("vibesdk.client")

_DEFAULT_POLICY = FallbackPolicy()
_PARAM_NAMES = frozenset(GenerationParams.model_fields)
_RECENT_TRACES = 4096  # trace ids remembered so feedback can name the flag and variant
_MAX_COMMENT = 2000


class Call:
    """The state of one chat call, from assignment to result."""

    __slots__ = (
        "assignment",
        "attempt_failed",
        "backend",
        "ctx",
        "ended",
        "fallback_reason",
        "flag",
        "messages",
        "overrides",
        "policy",
        "span",
        "started",
        "step_error",
        "steps",
        "stream",
        "trace_id",
    )

    def __init__(
        self,
        *,
        assignment: Assignment,
        flag: Flag | None,
        steps: tuple[Step, ...],
        messages: Sequence[Mapping[str, Any]],
        overrides: Mapping[str, Any],
        stream: bool,
        started: float,
    ) -> None:
        self.assignment = assignment
        self.flag = flag
        self.steps = steps
        self.messages = messages
        self.overrides = overrides
        self.stream = stream
        self.started = started
        self.policy = _DEFAULT_POLICY if flag is None else flag.fallback
        self.fallback_reason: str | None = None
        # The first failure of the step being tried that reached a backend: when a retry then
        # meets an open breaker (opened meanwhile by other calls), the fallback reason is
        # this root cause ("connect"), not "circuit_open".
        self.step_error: BaseException | None = None
        # An attempt on the assigned variant (the first step) failed, whatever came after.
        self.attempt_failed = False
        self.span: Span = trace.INVALID_SPAN
        self.backend: str | None = None  # the base URL of the latest attempt
        self.ctx: Any = None
        self.trace_id = ""
        self.ended = False


class Recalled(NamedTuple):
    """What the client remembers of a recent answer, for feedback on it."""

    flag_key: str | None
    variant: str | None  # the variant that answered
    user_id: str | None
    span_id: str | None  # the call span's, hex
    model: str | None
    provider: str | None


_UNKNOWN_ANSWER = Recalled(None, None, None, None, None, None)


@dataclass(slots=True)
class Attempt:
    """One request to one URL: what must be released when it ends."""

    url: str
    pool: BackendPool
    breaker: CircuitBreaker | None
    permit: int | None
    span: Span
    started: float
    call: Call
    #: What cuts the attempt's reads at its deadline (see :attr:`phase`).
    watch: Watch
    ended: bool = False
    got_token: bool = False
    #: Gives back the attempt's place in its client's gate (see ``gate.py``) once it holds one.
    leave: Callable[[], None] | None = None

    @property
    def phase(self) -> str:
        """The deadline the attempt is under now: ``first_token`` or ``total``.

        A stream is under its first-token deadline until the first token came,
        unless the total deadline is the earlier one; everything else is under
        the total deadline, from sending the request to the last byte.
        """
        policy = self.call.policy
        if (
            self.call.stream
            and not self.got_token
            and policy.first_token_timeout_s < policy.total_timeout_s
        ):
            return "first_token"
        return "total"


_Lines = TypeVar("_Lines")


@dataclass(slots=True)
class Opened(Generic[_Lines]):
    """A stream whose first token has arrived: the rest of its lines still to read."""

    step: Step
    attempt: Attempt
    response: httpx.Response
    lines: _Lines
    parser: StreamParser
    first: tuple[str, str]
    ttft: float


class ClientCore:
    """Shared, thread-safe state and decisions of one client."""

    def __init__(
        self,
        settings: Settings,
        store: Any,
        *,
        clock: Callable[[], float],
        metrics: Metrics,
        request_log: RequestLog | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self.metrics = metrics
        self.request_log = request_log
        self._lock = threading.Lock()
        self._pools: dict[tuple[str, ...], BackendPool] = {}
        self._breakers: dict[tuple[str, int, float], CircuitBreaker] = {}
        self._timeouts: dict[tuple[FallbackPolicy, bool], httpx.Timeout] = {}
        self._endpoints: dict[str, httpx.URL] = {}
        self._local_urls: dict[str, tuple[str, ...]] = {}
        self._recent: OrderedDict[str, Recalled] = OrderedDict()
        self._span_bases: dict[tuple[Any, ...], tuple[Variant | None, dict[str, Any]]] = {}
        self._exposures = Exposures()

    # -- begin ---------------------------------------------------------------

    def begin(
        self,
        flag_key: str,
        user_id: str,
        messages: Sequence[Mapping[str, Any]],
        attributes: Mapping[str, Any] | None,
        overrides: Mapping[str, Any],
        *,
        stream: bool,
    ) -> Call:
        """Assign, plan and open the call's span.

        Raises :class:`~vibesdk.FlagsNotReadyError` before any flag document,
        and :class:`~vibesdk.FlagNotFoundError` for a flag not in it.
        """
        assignment = self.store.evaluate(flag_key, user_id, attributes)
        flag = self.store.flag(flag_key) if assignment.config is not None else None
        if flag is not None and self._exposures.first(flag, assignment.variant, user_id):
            config = assignment.config
            self.metrics.record_exposure(
                flag_key=flag_key,
                variant=assignment.variant,
                client_id=self._exposures.client_id,
                step=flag.step_id,
                model=None if config is None else config.model,
                provider=None if config is None else config.backend.provider,
            )
        steps = plan(assignment, flag)
        call = Call(
            assignment=assignment,
            flag=flag,
            steps=steps,
            messages=messages,
            overrides=overrides,
            stream=stream,
            started=self.clock(),
        )
        model = assignment.config.model if assignment.config is not None else None
        span = _start_span(sc.span_name(model), None)
        call.span = span
        call.ctx = trace.set_span_in_context(span)
        span_ctx = span.get_span_context()
        call.trace_id = (
            format(span_ctx.trace_id, "032x") if span_ctx.is_valid else secrets.token_hex(16)
        )
        if span.is_recording():
            self._start_attributes(call, span)
        if not steps:
            # No variant, so no backend to call: say why instead of trying.
            error: VibeError = (
                FlagsNotReadyError(flag_key)
                if assignment.error_code == ErrorCode.PROVIDER_NOT_READY
                else FlagNotFoundError(flag_key, assignment.flag_version)
            )
            self.abort(call, error)
            raise error
        return call

    def _start_attributes(self, call: Call, span: Span) -> None:
        a = call.assignment
        config = a.config
        # All but the unit and its bucket are the same for every call of one variant of one
        # document version: built once. The variant's config is compared by identity, so a
        # new document (new Variant objects) never reuses another's attributes.
        if a.flag_key.__class__ is not str:  # a caller's mistake (about to fail): no caching
            attrs = self._span_base(a, call.stream)
        else:
            key = (
                a.flag_key,
                a.variant,
                a.reason,
                a.flag_version,
                a.rule_id,
                a.error_code,
                call.stream,
            )
            found = self._span_bases.get(key)
            if found is None or found[0] is not config:
                found = (config, self._span_base(a, call.stream))
                if len(self._span_bases) > 1024:
                    self._span_bases.clear()
                self._span_bases[key] = found
            attrs = found[1].copy()
        if a.user_id is not None:
            attrs[sc.FEATURE_FLAG_CONTEXT_ID] = a.user_id
        if a.bucket is not None:
            attrs[sc.VIBESDK_BUCKET] = a.bucket
        span.set_attributes(attrs)
        if self.settings.flag_evaluation_events:
            span.add_event(sc.EVENT_FEATURE_FLAG_EVALUATION, flag_evaluation_event(a))

    @staticmethod
    def _span_base(a: Assignment, stream: bool) -> dict[str, Any]:
        """The call span's first attributes, but for the unit's id and bucket."""
        config = a.config
        attrs: dict[str, Any] = flag_attributes(
            flag_key=a.flag_key,
            variant=a.variant,
            reason=a.reason,
            flag_version=a.flag_version,
            rule_id=a.rule_id,
            error_code=a.error_code,
        )
        attrs[sc.GEN_AI_OPERATION_NAME] = sc.GEN_AI_OPERATION_CHAT
        attrs[sc.GEN_AI_REQUEST_STREAM] = stream
        if config is not None:
            attrs[sc.GEN_AI_REQUEST_MODEL] = config.model
            attrs[sc.GEN_AI_PROVIDER_NAME] = config.backend.provider
            if config.prompt is not None:
                attrs[sc.VIBESDK_PROMPT_REF] = config.prompt.ref
            p = config.params
            for name, value in (
                (sc.GEN_AI_REQUEST_TEMPERATURE, p.temperature),
                (sc.GEN_AI_REQUEST_TOP_P, p.top_p),
                (sc.GEN_AI_REQUEST_TOP_K, p.top_k),
                (sc.GEN_AI_REQUEST_MAX_TOKENS, p.max_tokens),
                (sc.GEN_AI_REQUEST_SEED, p.seed),
            ):
                if value is not None:
                    attrs[name] = value
        return attrs

    # -- requests ------------------------------------------------------------

    def request_body(self, call: Call, step: Step) -> dict[str, Any]:
        """The JSON body for ``step``: its variant's prompt and params, plus per-call overrides."""
        params = None
        if call.overrides:
            merged = {**step.config.params.model_dump(), **call.overrides}
            params = GenerationParams.model_validate(merged)
        body = build_request(step.config, call.messages, stream=call.stream, params=params)
        backend = step.config.backend
        if backend.is_local:
            # How to load the model, for the in-process transport (vibesdk._backends.local).
            body[LOAD_KEY] = load_options(
                backend.model_path or "", backend.n_ctx, backend.n_threads, backend.n_gpu_layers
            )
        return body

    def targets(self, backend: Backend) -> tuple[str, ...]:
        """The base URLs of ``backend``; a local model's is ``llama-cpp-python://local/<path>``."""
        if not backend.is_local:
            return tuple(backend.urls)
        path = backend.model_path or ""
        found = self._local_urls.get(path)
        if found is None:
            found = (local_url(path),)
            if len(self._local_urls) > 256:
                self._local_urls.clear()
            self._local_urls[path] = found
        return found

    def headers(self, step: Step) -> dict[str, str]:
        """Authorization for the variant's backend, from the ``api_keys`` setting."""
        name = step.config.backend.api_key_name
        if name is None:
            return {}
        secret = self.settings.api_keys.get(name)
        if secret is None:
            err = BackendConnectError(
                f"variant {step.variant!r} needs API key {name!r}, which is not in the "
                "api_keys setting (VIBESDK_API_KEYS)",
                backend=self.targets(step.config.backend)[0],
            )
            err.kind = "missing_api_key"
            setattr(err, "permanent", True)  # noqa: B010 -- read by is_retryable: retrying cannot help
            raise err
        return {"Authorization": f"Bearer {secret.get_secret_value()}"}

    def timeout(self, policy: FallbackPolicy, stream: bool) -> httpx.Timeout:
        """httpx deadlines: connect; per read the first-token (streams) or total deadline."""
        key = (policy, stream)
        found = self._timeouts.get(key)
        if found is None:
            read = policy.first_token_timeout_s if stream else policy.total_timeout_s
            found = httpx.Timeout(
                connect=policy.connect_timeout_s,
                read=min(read, policy.total_timeout_s),
                write=policy.connect_timeout_s,
                pool=policy.total_timeout_s,
            )
            if len(self._timeouts) > 256:
                self._timeouts.clear()
            self._timeouts[key] = found
        return found

    # -- attempts --------------------------------------------------------------

    def endpoint(self, url: str) -> httpx.URL:
        """``{url}/chat/completions``, parsed once per base URL."""
        found = self._endpoints.get(url)
        if found is None:
            found = httpx.URL(url + CHAT_PATH)
            if len(self._endpoints) > 1024:
                self._endpoints.clear()
            self._endpoints[url] = found
        return found

    def _pool(self, urls: Sequence[str]) -> BackendPool:
        key = tuple(urls)
        pool = self._pools.get(key)
        if pool is None:
            with self._lock:
                pool = self._pools.setdefault(key, BackendPool(key))
        return pool

    def breaker(self, url: str, policy: FallbackPolicy) -> CircuitBreaker:
        """The circuit breaker of ``url`` under ``policy``'s thresholds."""
        key = (url, policy.breaker_failures, policy.breaker_cooldown_s)
        found = self._breakers.get(key)
        if found is None:
            with self._lock:
                found = self._breakers.get(key)
                if found is None:
                    found = CircuitBreaker(
                        policy.breaker_failures, policy.breaker_cooldown_s, clock=self.clock
                    )
                    self._breakers[key] = found
        return found

    def start_attempt(self, call: Call, step: Step, number: int) -> Attempt:
        """Pick a URL (least busy, breaker permitting) and open the attempt's span.

        Raises :class:`~vibesdk.CircuitOpenError` when every URL of a guarded
        variant has an open breaker.
        """
        urls = self.targets(step.config.backend)
        pool = self._pool(urls)
        breaker: CircuitBreaker | None = None
        permit: int | None = None
        if step.guarded:
            policy = call.policy
            got = pool.acquire(lambda u: self.breaker(u, policy).admit())
            if got is None:
                raise CircuitOpenError(
                    f"variant {step.variant!r}: the circuit breaker of every backend URL is open",
                    backend=urls[0],
                )
            url, permit = got
            breaker = self.breaker(url, policy)
        else:
            url = pool.acquire()[0]  # type: ignore[index]  # no admit: always a URL
        call.backend = url
        span = _start_span(sc.SPAN_ATTEMPT, call.ctx)
        if span.is_recording():
            attrs: dict[str, Any] = {
                sc.VIBESDK_ATTEMPT: number,
                sc.VIBESDK_BACKEND_URL: url,
                sc.FEATURE_FLAG_RESULT_VARIANT: step.variant,
                **server_attributes(url),
            }
            if breaker is not None:
                attrs[sc.VIBESDK_BREAKER_STATE] = breaker.state.value
            span.set_attributes(attrs)
        started = self.clock()
        att = Attempt(url, pool, breaker, permit, span, started, call, Watch(None, self.clock))
        att.watch.deadline = started + self._deadline(att)
        return att

    @staticmethod
    def _deadline(attempt: Attempt) -> float:
        """Seconds from the attempt's start to the deadline of its :attr:`~Attempt.phase`."""
        policy = attempt.call.policy
        if attempt.phase == "first_token":
            return policy.first_token_timeout_s
        return policy.total_timeout_s

    @staticmethod
    def alive(attempt: Attempt) -> None:
        """The backend sent its first token: good enough to close its breaker."""
        if attempt.breaker is not None and attempt.permit is not None:
            attempt.breaker.success(attempt.permit)

    @staticmethod
    def end_attempt(attempt: Attempt, exc: BaseException | None) -> None:
        """Release the URL, tell the breaker, end the attempt span. Idempotent."""
        if attempt.ended:
            return
        attempt.ended = True
        attempt.pool.release(attempt.url)
        breaker, permit = attempt.breaker, attempt.permit
        if breaker is not None and permit is not None:
            if exc is None:
                breaker.success(permit)
            elif isinstance(exc, BackendError) and not _saturated(exc):
                breaker.failure(permit)
            else:  # cancelled, our own saturation or a bug of ours: no verdict on the backend
                breaker.abandon(permit)
        if isinstance(exc, BackendError) and attempt.call.step_error is None:
            attempt.call.step_error = exc
        if (
            isinstance(exc, BackendError)
            and not _saturated(exc)
            and attempt.call.fallback_reason is None  # still on the assigned variant
        ):
            attempt.call.attempt_failed = True
        span = attempt.span
        if exc is not None and span.is_recording():
            span.set_attribute(sc.ERROR_TYPE, _error_type(exc))
            span.set_status(Status(StatusCode.ERROR, str(exc)[:500]))
        span.end()

    # -- outcomes ---------------------------------------------------------------

    def fall_back(self, call: Call, failed: Step, to: Step, exc: BaseException) -> None:
        """Record that ``failed`` gave up with ``exc`` and ``to`` is tried next.

        The reason is the step's first failure that reached a backend when there
        was one (see :attr:`Call.step_error`), else ``exc``'s.
        """
        cause = call.step_error if call.step_error is not None else exc
        call.step_error = None
        reason = fallback_reason(cause)
        call.fallback_reason = reason
        span = call.span
        if span.is_recording():
            span.add_event(
                sc.EVENT_FALLBACK,
                {
                    sc.VIBESDK_FALLBACK_REASON: reason,
                    sc.VIBESDK_FALLBACK_FROM: failed.variant,
                    sc.VIBESDK_FALLBACK_TO: to.variant,
                    "exception.message": str(cause)[:500],
                },
            )
        self.metrics.record_fallback(
            flag_key=call.assignment.flag_key,
            variant=failed.variant,
            reason=reason,
            model=failed.config.model,
            provider=failed.config.backend.provider,
        )

    def step_failed(
        self, call: Call, index: int, exc: BackendError, primary: BaseException | None
    ) -> BaseException:
        """Step ``index`` gave up with ``exc``: record the fallback to the next step.

        Returns the primary error to keep (the first step's); raises
        :class:`~vibesdk.AllBackendsFailedError` (from ``exc``) when no step is left.
        """
        if primary is None:
            primary = exc
        steps = call.steps
        step = steps[index]
        if index + 1 < len(steps):
            self.fall_back(call, step, steps[index + 1], exc)
            return primary
        raise self.fail(call, primary, exc if step.is_fallback else None) from exc

    def finish(
        self,
        call: Call,
        step: Step,
        completion: Completion,
        backend: str,
        ttft: float | None,
    ) -> ChatResult:
        """Check the answer, close the span, record metrics; the call's result."""
        latency = self.clock() - call.started
        quality = _check(completion, call.messages)
        config = step.config
        a = call.assignment
        timings = completion.timings
        server_ttft: float | None = None
        if timings is not None and isinstance(timings.get("prompt_ms"), (int, float)):
            server_ttft = float(timings["prompt_ms"]) / 1000.0
        result = ChatResult(
            text=completion.text,
            variant=step.variant,
            model=config.model,
            fallback=step.is_fallback,
            fallback_reason=call.fallback_reason if step.is_fallback else None,
            trace_id=call.trace_id,
            usage=Usage(completion.input_tokens, completion.output_tokens),
            latency_s=latency,
            notice=config.notice,
            assignment=a,
            quality=quality,
            reasoning=completion.reasoning,
            finish_reason=completion.finish_reason,
            time_to_first_token_s=ttft if ttft is not None else server_ttft,
            backend=backend,
        )
        span = call.span
        if span.is_recording():
            attrs: dict[str, Any] = {
                sc.VIBESDK_FALLBACK: step.is_fallback,
                sc.VIBESDK_QUALITY_PASSED: quality.passed,
                **server_attributes(backend),
            }
            if step.is_fallback:
                attrs[sc.VIBESDK_FALLBACK_REASON] = result.fallback_reason or ""
                attrs[sc.VIBESDK_FALLBACK_TO] = step.variant
            if quality.failures:
                attrs[sc.VIBESDK_QUALITY_FAILURES] = list(quality.failures)
            if completion.model is not None:
                attrs[sc.GEN_AI_RESPONSE_MODEL] = completion.model
            if completion.response_id is not None:
                attrs[sc.GEN_AI_RESPONSE_ID] = completion.response_id
            if completion.finish_reason is not None:
                attrs[sc.GEN_AI_RESPONSE_FINISH_REASONS] = [completion.finish_reason]
            if completion.input_tokens is not None:
                attrs[sc.GEN_AI_USAGE_INPUT_TOKENS] = completion.input_tokens
            if completion.output_tokens is not None:
                attrs[sc.GEN_AI_USAGE_OUTPUT_TOKENS] = completion.output_tokens
            if ttft is not None:
                attrs[sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] = ttft
            span.set_attributes(attrs)
        self._local_telemetry(call, step, timings)
        self._end(call)
        self._log(
            call,
            step=step,
            completion=completion,
            failed_checks=quality.failures,
            latency=latency,
            error_type=None,
        )
        m = self.metrics
        flag_key = a.flag_key
        m.record_call(
            flag_key=flag_key,
            variant=a.variant,
            model=config.model,
            provider=config.backend.provider,
            duration_s=latency,
            fallback=step.is_fallback,
            response_model=completion.model,
            backend=backend,
            attempt_failed=call.attempt_failed,
        )
        m.record_tokens(
            flag_key=flag_key,
            variant=a.variant,
            model=config.model,
            input_tokens=completion.input_tokens,
            output_tokens=completion.output_tokens,
            provider=config.backend.provider,
            backend=backend,
        )
        if ttft is not None or server_ttft is not None:
            m.record_ttft(
                flag_key=flag_key,
                variant=a.variant,
                model=config.model,
                seconds=ttft,
                provider=config.backend.provider,
                server_seconds=server_ttft,
                backend=backend,
            )
        if quality.failures:
            m.record_quality_failures(
                flag_key=flag_key,
                variant=step.variant,
                failures=quality.failures,
                model=config.model,
                provider=config.backend.provider,
            )
        self._remember(call, step)
        return result

    def _local_telemetry(self, call: Call, step: Step, timings: Mapping[str, Any] | None) -> None:
        """An in-process model's wait for its turn (and load) on the span and in the metric."""
        attrs = _local_timings(timings) if step.config.backend.is_local else None
        if attrs is None:
            return
        call.span.set_attributes(attrs)
        config = step.config
        self.metrics.record_queue_wait(
            flag_key=call.assignment.flag_key,
            variant=call.assignment.variant,
            model=config.model,
            seconds=float(attrs[sc.VIBESDK_LOCAL_QUEUE_WAIT]),
            provider=config.backend.provider,
        )

    def fail(
        self, call: Call, primary: BaseException, fallback: BaseException | None
    ) -> AllBackendsFailedError:
        """Close the call as failed; the error to raise (naming both causes)."""
        error = AllBackendsFailedError(primary, fallback)
        self.abort(call, error)
        return error

    def abort(self, call: Call, exc: BaseException) -> None:
        """Close the call's span as failed with ``exc`` (no-op once the call ended)."""
        if call.ended:
            return
        error_type = _error_type(exc)
        span = call.span
        if span.is_recording():
            span.set_attribute(sc.ERROR_TYPE, error_type)
            if call.fallback_reason is not None:
                span.set_attribute(sc.VIBESDK_FALLBACK_REASON, call.fallback_reason)
            if call.backend is not None:
                span.set_attributes(server_attributes(call.backend))
            if error_type != "cancelled":
                span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, str(exc)[:500]))
        self._end(call)
        config = call.assignment.config
        duration = self.clock() - call.started
        if error_type != "cancelled":
            self._log(
                call,
                step=None,
                completion=None,
                failed_checks=None,
                latency=duration,
                error_type=error_type,
            )
        self.metrics.record_call(
            flag_key=call.assignment.flag_key,
            variant=call.assignment.variant,
            model=None if config is None else config.model,
            provider=None if config is None else config.backend.provider,
            duration_s=duration,
            error_type=error_type,
            fallback=call.fallback_reason is not None,
            backend=call.backend,
            attempt_failed=call.attempt_failed,
        )

    def _log(
        self,
        call: Call,
        *,
        step: Step | None,
        completion: Completion | None,
        failed_checks: tuple[str, ...] | None,
        latency: float,
        error_type: str | None,
    ) -> None:
        """Offer the call to the request log (its variant's ``log_share`` decides)."""
        log = self.request_log
        config = call.assignment.config
        if log is None or config is None or config.log_share <= 0:
            return

        def record() -> dict[str, Any]:
            sent = step if step is not None else (call.steps[0] if call.steps else None)
            request = call.messages if sent is None else self.request_body(call, sent)["messages"]
            answering = config if step is None else step.config
            prompt = answering.prompt
            return make_record(
                trace_id=call.trace_id,
                flag=call.assignment.flag_key,
                variant=call.assignment.variant,
                answered_by=None if step is None else step.variant,
                model=answering.model,
                prompt_ref=None if prompt is None else prompt.ref,
                request=request,
                text=None if completion is None else completion.text,
                reasoning=None if completion is None else completion.reasoning,
                finish_reason=None if completion is None else completion.finish_reason,
                latency_s=latency,
                input_tokens=None if completion is None else completion.input_tokens,
                output_tokens=None if completion is None else completion.output_tokens,
                error_type=error_type,
                fallback_reason=call.fallback_reason,
                failed_checks=failed_checks,
            )

        log.offer(call.trace_id, config.log_share, record)

    @staticmethod
    def _end(call: Call) -> None:
        if not call.ended:
            call.ended = True
            call.span.end()

    # -- streams --------------------------------------------------------------------

    @staticmethod
    def chunk(call: Call, step: Step, text: str, reasoning: str) -> ChatChunk:
        return ChatChunk(
            text=text,
            variant=step.variant,
            model=step.config.model,
            fallback=step.is_fallback,
            fallback_reason=call.fallback_reason if step.is_fallback else None,
            trace_id=call.trace_id,
            notice=step.config.notice,
            assignment=call.assignment,
            reasoning=reasoning,
        )

    @staticmethod
    def last_chunk(call: Call, step: Step, result: ChatResult) -> ChatChunk:
        return ChatChunk(
            text="",
            variant=step.variant,
            model=step.config.model,
            fallback=step.is_fallback,
            fallback_reason=result.fallback_reason,
            trace_id=call.trace_id,
            notice=step.config.notice,
            assignment=call.assignment,
            done=True,
            result=result,
        )

    def check_deadlines(self, attempt: Attempt) -> None:
        """Raise the timeout of the deadline the attempt has passed, if any.

        The attempt's watch cuts reads at the deadline on the default
        transport; this check, after every chunk, also holds a transport of
        the app's own to it, and a backend that trickles bytes.
        """
        deadline = attempt.watch.deadline
        if deadline is None or self.clock() <= deadline:
            return
        url, phase = attempt.url, attempt.phase
        seconds = self._deadline(attempt)
        what = "no first token" if phase == "first_token" else "answer not complete"
        raise BackendTimeoutError(f"{url}: {what} within {seconds}s", backend=url, phase=phase)

    def first_token(self, attempt: Attempt) -> float:
        """The first token arrived: close the breaker, move to the total deadline; time taken."""
        ttft = self.clock() - attempt.started
        attempt.got_token = True
        attempt.watch.deadline = attempt.started + self._deadline(attempt)
        self.alive(attempt)
        return ttft

    @staticmethod
    def interrupted(exc: BaseException, url: str) -> StreamInterruptedError:
        """The error a caller gets when a stream breaks after its first token."""
        if isinstance(exc, StreamInterruptedError):
            return exc
        err = StreamInterruptedError(
            f"the stream from {url} broke after its first token ({fallback_reason(exc)}): {exc}",
            backend=url,
        )
        err.__cause__ = exc
        return err

    # -- feedback ------------------------------------------------------------------

    def _remember(self, call: Call, step: Step) -> None:
        span_ctx = call.span.get_span_context()
        span_id = format(span_ctx.span_id, "016x") if span_ctx.is_valid else None
        config = step.config
        entry = Recalled(
            call.assignment.flag_key,
            step.variant,
            call.assignment.user_id,
            span_id,
            config.model,
            config.backend.provider,
        )
        with self._lock:
            recent = self._recent
            recent[call.trace_id] = entry
            if len(recent) > _RECENT_TRACES:
                recent.popitem(last=False)

    def recall(self, trace_id: str) -> Recalled | None:
        """What feedback needs to know of a recent answer, if remembered."""
        with self._lock:
            return self._recent.get(trace_id)

    def feedback(self, trace_id: str, score: int, comment: str | None) -> dict[str, Any]:
        """Check the arguments, record the trace event and metric; the payload to send.

        Raises ``InvalidArgumentError`` for bad arguments, before
        recording anything.
        """
        comment = validate_feedback(trace_id, score, comment)
        recalled = self.recall(trace_id) or _UNKNOWN_ANSWER
        flag_key, variant, user_id, span_id, model, provider = recalled
        emit_feedback(
            trace_id=trace_id,
            score=score,
            comment=comment,
            flag_key=flag_key,
            variant=variant,
            user_id=user_id,
            span_id=span_id,
        )
        self.metrics.record_feedback(
            flag_key=flag_key,
            variant=variant,
            score=score,
            model=model,
            provider=provider,
        )
        return {
            "trace_id": trace_id,
            "score": score,
            "comment": comment,
            "flag_key": flag_key,
            "variant": variant,
            "user_id": user_id,
        }

    def report(self, trace_id: str, reason: str | None) -> dict[str, Any]:
        """Check the arguments, record the trace event and metric; the payload to send."""
        reason = validate_report(trace_id, reason)
        recalled = self.recall(trace_id) or _UNKNOWN_ANSWER
        flag_key, variant, user_id, span_id, model, provider = recalled
        emit_report(
            trace_id=trace_id,
            reason=reason,
            flag_key=flag_key,
            variant=variant,
            user_id=user_id,
            span_id=span_id,
        )
        self.metrics.record_report(
            flag_key=flag_key, variant=variant, model=model, provider=provider
        )
        return {
            "trace_id": trace_id,
            "reason": reason,
            "flag_key": flag_key,
            "variant": variant,
            "user_id": user_id,
        }


def _error_type(exc: BaseException) -> str:
    """``error.type``: the failure's kind, or ``cancelled`` when the caller left or cancelled."""
    if isinstance(exc, (GeneratorExit, asyncio.CancelledError, KeyboardInterrupt)):
        return "cancelled"
    return fallback_reason(exc)


def _start_span(name: str, context: Any) -> Span:
    # Never raises, and neither does any method of the span it returns (a SafeSpan):
    # whatever the host's OpenTelemetry pipeline does, it cannot change a call's outcome.
    return tracer().start_span(name, context=context, kind=SpanKind.CLIENT)


def validate_overrides(overrides: Mapping[str, Any]) -> None:
    """Per-call overrides must be GenerationParams fields with valid values.

    Raises :class:`~vibesdk.InvalidArgumentError` with one line that names each
    bad override, its value and what it must be.
    """
    unknown = sorted(set(overrides) - _PARAM_NAMES)
    if unknown:
        raise InvalidArgumentError(
            f"unknown chat() override(s) {', '.join(unknown)}; "
            f"the overrides are: {', '.join(sorted(_PARAM_NAMES))}"
        )
    try:
        GenerationParams.model_validate(dict(overrides))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}={e['input']!r:.60}: {e['msg']}"
            for e in exc.errors(include_url=False)
        )
        raise InvalidArgumentError(f"invalid chat() override {problems}") from exc


def validate_chat(messages: Any, overrides: Mapping[str, Any]) -> None:
    """Check a chat call's arguments before any work (:class:`~vibesdk.InvalidArgumentError`)."""
    validate_messages(messages)
    if overrides:
        validate_overrides(overrides)


def validate_messages(messages: Any) -> None:
    """Messages: a non-empty list of mappings with a string role and string (or parts) content."""
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence) or not messages:
        raise InvalidArgumentError(
            "messages must be a non-empty list of {'role': ..., 'content': ...}"
        )
    for m in messages:
        if not isinstance(m, Mapping) or not isinstance(m.get("role"), str) or not m["role"]:
            raise InvalidArgumentError(
                f"each message must be a mapping with a 'role' string; got {m!r:.80}"
            )
        content = m.get("content")
        if content is not None and not isinstance(content, (str, list)):
            raise InvalidArgumentError(
                f"a message's 'content' must be a string (or a list of parts); got {content!r:.80}"
            )


def validate_feedback(trace_id: Any, score: Any, comment: Any) -> str | None:
    """Check feedback arguments (InvalidArgumentError); the comment to send."""
    _check_trace_id(trace_id)
    if isinstance(score, bool) or not isinstance(score, int) or not 1 <= score <= 5:
        raise InvalidArgumentError(f"score must be an integer from 1 to 5, not {score!r}")
    return _check_text("comment", comment)


def validate_report(trace_id: Any, reason: Any) -> str | None:
    """Check report arguments (InvalidArgumentError); the reason to send."""
    _check_trace_id(trace_id)
    return _check_text("reason", reason)


def _check_trace_id(trace_id: Any) -> None:
    if (
        not isinstance(trace_id, str)
        or len(trace_id) != 32
        or trace_id.strip("0123456789abcdef") != ""
    ):
        raise InvalidArgumentError(
            "trace_id must be the 32 lowercase hex digits of a ChatResult.trace_id"
        )


def _check_text(name: str, text: Any) -> str | None:
    if text is None:
        return None
    if not isinstance(text, str):
        raise InvalidArgumentError(f"{name} must be a string or None, not {type(text).__name__}")
    if len(text) > _MAX_COMMENT:
        raise InvalidArgumentError(f"{name} is longer than {_MAX_COMMENT} characters")
    return text


def _check(completion: Completion, messages: Sequence[Mapping[str, Any]]) -> QualityReport:
    user_input: str | None = None
    for m in reversed(messages):
        if m.get("role") == "user":
            content = m.get("content")
            user_input = content if isinstance(content, str) else None
            break
    return check_answer(completion.text, user_input=user_input, reasoning=completion.reasoning)


def _local_timings(timings: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The span attributes of an in-process model's ``timings`` (queue wait, load time)."""
    if timings is None:
        return None
    queue_ms, behind, load_ms = (timings.get(k) for k in ("queue_ms", "queued_behind", "load_ms"))
    if not isinstance(queue_ms, (int, float)):
        return None
    attrs: dict[str, Any] = {sc.VIBESDK_LOCAL_QUEUE_WAIT: float(queue_ms) / 1000.0}
    if isinstance(behind, int):
        attrs[sc.VIBESDK_LOCAL_QUEUED_BEHIND] = behind
    if isinstance(load_ms, (int, float)):
        attrs[sc.VIBESDK_LOCAL_LOAD_TIME] = float(load_ms) / 1000.0
    return attrs


def _saturated(exc: BackendError) -> bool:
    """The attempt never reached its backend: it found no free connection in time."""
    return isinstance(exc, BackendTimeoutError) and exc.phase == "queue"


def map_http_error(
    exc: httpx.HTTPError, url: str, *, phase: str, stream: bool = False
) -> BackendError:
    """An httpx failure as a :class:`~vibesdk.BackendError`.

    ``phase`` names the deadline a read timeout passed: ``first_token`` for a
    stream still waiting for its first token, ``total`` otherwise. A
    connection lost while a stream was being read is a cut stream.
    """
    if isinstance(exc, httpx.ConnectTimeout):
        return BackendTimeoutError(f"{url}: connect timed out", backend=url, phase="connect")
    if isinstance(exc, httpx.ReadTimeout):
        return BackendTimeoutError(f"{url}: {phase} deadline passed", backend=url, phase=phase)
    if isinstance(exc, httpx.TimeoutException):
        return BackendTimeoutError(f"{url}: {type(exc).__name__}", backend=url, phase="total")
    if isinstance(exc, httpx.ConnectError):
        return BackendConnectError(f"{url}: cannot connect ({exc})", backend=url)
    if stream and isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError)):
        return StreamInterruptedError(f"{url}: connection lost mid-answer ({exc})", backend=url)
    return BackendConnectError(f"{url}: {type(exc).__name__}: {exc}", backend=url)
