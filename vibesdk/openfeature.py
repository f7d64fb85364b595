"""An OpenFeature provider for vibesdk: evaluate vibesdk flags through the OpenFeature API.

Install it with ``pip install 'vibesdk[openfeature]'`` (``openfeature-sdk`` 0.8 or newer),
then register a :class:`VibeProvider`::

    from openfeature import api
    from openfeature.evaluation_context import EvaluationContext
    from vibesdk.openfeature import VibeProvider

    api.set_provider_and_wait(VibeProvider(server_url=..., sdk_key=...))
    flags = api.get_client()
    ctx = EvaluationContext(targeting_key="u42", attributes={"plan": "pro"})
    flags.get_string_value("vibethinker", "stable", ctx)    # the user's variant
    flags.get_boolean_value("vibethinker", False, ctx)      # in the canary?
    flags.get_object_value("vibethinker", {}, ctx)          # the variant's public configuration

The evaluation context's ``targeting_key`` is the user id vibesdk buckets by and its
attributes are the targeting attributes, exactly as in ``Client.assign``. What each type
means, the reasons, error codes, flag metadata, events and tracking are described on the
OpenFeature page of the docs and in :class:`VibeProvider`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

try:
    from openfeature.evaluation_context import EvaluationContext
    from openfeature.event import ProviderEvent, ProviderEventDetails
    from openfeature.exception import ErrorCode, ProviderNotReadyError
    from openfeature.flag_evaluation import FlagMetadata, FlagResolutionDetails, FlagValueType
    from openfeature.flag_evaluation import Reason as OFReason
    from openfeature.provider import AbstractProvider, Metadata
    from openfeature.track import TrackingEventDetails
except ImportError as exc:  # pragma: no cover - the message is the point
    raise ImportError(
        "vibesdk.openfeature needs the OpenFeature SDK: pip install 'vibesdk[openfeature]'"
    ) from exc

from vibesdk._client import Client
from vibesdk._errors import ConfigError, InvalidArgumentError
from vibesdk._flags.document import Flag, FlagDocument, Variant
from vibesdk._flags.evaluation import Assignment, Reason
from vibesdk._flags.evaluation import ErrorCode as VibeErrorCode
from vibesdk._sources.store import FlagState

__all__ = ["FEEDBACK_EVENT", "REPORT_EVENT", "VibeProvider", "in_canary", "public_config"]

logger = logging.getLogger("vibesdk.openfeature")

FEEDBACK_EVENT = "feedback"
"""The tracking event name that records a user's score: ``client.feedback``."""
REPORT_EVENT = "report"
"""The tracking event name that records a reported answer: ``client.report``."""

_T = TypeVar("_T")
_Object = Sequence[FlagValueType] | Mapping[str, FlagValueType]

_ERROR_CODES = {
    VibeErrorCode.PROVIDER_NOT_READY: ErrorCode.PROVIDER_NOT_READY,
    VibeErrorCode.FLAG_NOT_FOUND: ErrorCode.FLAG_NOT_FOUND,
    VibeErrorCode.INVALID_CONTEXT: ErrorCode.INVALID_CONTEXT,
}
_REASONS = {
    Reason.TARGETING_MATCH: OFReason.TARGETING_MATCH,
    Reason.SPLIT: OFReason.SPLIT,
    Reason.DISABLED: OFReason.DISABLED,
}
_TYPES = "a string (the variant), a boolean (in the canary) or an object (the variant's config)"


def in_canary(flag: Flag, variant: str) -> bool:
    """Whether serving ``variant`` of ``flag`` puts the user in its canary.

    The canary is the flag's ``rollout_variant``: the variant the percentage rollout
    moves users onto, whether a user got it by bucket or by a targeting rule. A
    ``rollout_variant`` that is also the ``default_variant`` is no canary at all.
    """
    return variant == flag.rollout_variant and variant != flag.default_variant


def public_config(variant: str, config: Variant) -> dict[str, FlagValueType]:
    """The part of a variant an application may see: no backend URLs, key names or prompt text.

    ``variant``, ``model``, ``provider`` (the backend's ``gen_ai.provider.name``) and
    ``params`` (the generation parameters that are set) always; ``notice`` and
    ``prompt`` (the reviewed template's ``id@version``) only when the variant has them.
    """
    params: dict[str, FlagValueType] = {
        name: value
        for name, value in config.params.model_dump(exclude_none=True).items()
        if value != []
    }
    public: dict[str, FlagValueType] = {
        "variant": variant,
        "model": config.model,
        "provider": config.backend.provider,
        "params": params,
    }
    if config.notice is not None:
        public["notice"] = config.notice
    if config.prompt is not None:
        public["prompt"] = config.prompt.ref
    return public


class VibeProvider(AbstractProvider):
    """Resolves vibesdk flags for OpenFeature, from a :class:`vibesdk.Client`.

    Pass ``client=`` to share an application's client, or the arguments of
    :class:`vibesdk.Client` (``server_url=``, ``sdk_key=``, ``bootstrap=``, ...) to let
    the provider build one; only a client it built is closed by :meth:`shutdown` (and
    built again by a later :meth:`initialize`). Bad arguments raise
    :class:`~vibesdk.ConfigError` here.

    :meth:`initialize` waits up to ``ready_timeout_s`` seconds for the flag server's
    document. It succeeds when a document is served by then (a ``bootstrap`` or cached one
    counts) and raises ``ProviderNotReadyError`` when none is, which the OpenFeature SDK
    reports as a ``PROVIDER_ERROR`` event; the first document to arrive later emits
    ``PROVIDER_READY``.

    Resolution never raises: errors come back as OpenFeature error codes with the
    caller's default value. Tracking events named :data:`FEEDBACK_EVENT` and
    :data:`REPORT_EVENT` become ``client.feedback`` and ``client.report``; see :meth:`track`.
    """

    def __init__(
        self, client: Client | None = None, *, ready_timeout_s: float = 5.0, **client_args: Any
    ) -> None:
        if client is not None and client_args:
            raise ConfigError(
                "VibeProvider takes client= or the arguments of vibesdk.Client, not both; "
                f"got client= and {', '.join(sorted(client_args))}"
            )
        if client is not None and not isinstance(client, Client):
            raise ConfigError(
                f"client must be a vibesdk.Client, not {type(client).__name__} "
                "(AsyncClient's feedback is a coroutine, which OpenFeature's track cannot await)"
            )
        if (
            isinstance(ready_timeout_s, bool)
            or not isinstance(ready_timeout_s, (int, float))
            or not 0 <= ready_timeout_s <= 3600
        ):
            raise ConfigError(
                "ready_timeout_s must be a number of seconds from 0 to 3600, "
                f"not {ready_timeout_s!r}"
            )
        super().__init__()
        self._client_args = client_args
        self._owns_client = client is None
        self._client: Client = Client(**client_args) if client is None else client
        self._client_closed = False
        self._ready_timeout_s = float(ready_timeout_s)
        self._lock = threading.Lock()
        self._listening = False
        # The status this provider last gave the OpenFeature SDK: None until initialize has
        # ended (the SDK itself reports how it ended), then "READY", "STALE" or "ERROR".
        self._announced: str | None = None
        self._document: FlagDocument | None = None

    @property
    def client(self) -> Client:
        """The vibesdk client flags are resolved with (for ``chat``, ``feedback``, ...)."""
        return self._client

    def get_metadata(self) -> Metadata:
        """The provider's name: ``vibesdk``."""
        return Metadata(name="vibesdk")

    # -- lifecycle ---------------------------------------------------------------

    def initialize(self, evaluation_context: EvaluationContext) -> None:
        """Start following the flag source and wait for a flag document.

        Raises ``ProviderNotReadyError`` when no document is served after
        ``ready_timeout_s`` seconds (the server did not answer, refused the SDK key, or
        sent nothing valid); the provider keeps waiting and emits ``PROVIDER_READY`` when
        the first document arrives.
        """
        with self._lock:
            if self._owns_client and self._client_closed:
                self._client = Client(**self._client_args)
                self._client_closed = False
            store = self._store
            if not self._listening:
                store.add_listener(self._on_document)
                store.add_state_listener(self._on_state)
                self._listening = True
            self._document = store.document
        self._client.wait_until_ready(self._ready_timeout_s)
        with self._lock:
            self._document = store.document
            if self._document is None:
                self._announced = "ERROR"
                raise ProviderNotReadyError(
                    f"vibesdk: no flag document after {self._ready_timeout_s:g} s; check "
                    "server_url and sdk_key, or pass bootstrap= to start from a local document"
                )
            self._announced = "READY"

    def shutdown(self) -> None:
        """Stop emitting events and close the client if the provider built it. Idempotent."""
        with self._lock:
            store = self._store
            store.remove_listener(self._on_document)
            store.remove_state_listener(self._on_state)
            self._listening = False
            self._announced = None
            self._document = None
            close = self._owns_client and not self._client_closed
            self._client_closed = self._owns_client
        if close:
            self._client.close()

    @property
    def _store(self) -> Any:
        return self._client.flag_source.store

    # -- events ------------------------------------------------------------------

    def _on_document(self, document: FlagDocument) -> None:
        with self._lock:
            previous, self._document = self._document, document
            if self._announced is None or previous is None:
                # Before initialize has ended its outcome is the event; a first document
                # is followed by the state READY (or OFFLINE), which _on_state announces.
                return
            details = ProviderEventDetails(
                flags_changed=_changed_flags(previous, document),
                message=f"vibesdk: version {previous.version} -> {document.version}",
                metadata={"version": document.version},
            )
        self.emit(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED, details)

    def _on_state(self, state: FlagState) -> None:
        with self._lock:
            if self._announced is None or self._document is None:
                return
            version = self._document.version
            if state is FlagState.STALE:
                status, event = "STALE", ProviderEvent.PROVIDER_STALE
                message = f"vibesdk: the flag server stopped answering; serving version {version}"
            elif state in (FlagState.READY, FlagState.OFFLINE):
                status, event = "READY", ProviderEvent.PROVIDER_READY
                message = f"vibesdk: the flag server answers again; serving version {version}"
            else:
                return
            if status == self._announced:
                return
            self._announced = status
        self.emit(event, ProviderEventDetails(message=message, metadata={"version": version}))

    # -- resolution --------------------------------------------------------------

    def resolve_string_details(
        self,
        flag_key: str,
        default_value: str,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[str]:
        """The variant the user is assigned (``client.assign(...).variant``)."""
        return self._resolve(flag_key, default_value, evaluation_context, _variant)

    def resolve_boolean_details(
        self,
        flag_key: str,
        default_value: bool,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[bool]:
        """Whether the user is in the flag's canary; see :func:`in_canary`."""
        return self._resolve(
            flag_key, default_value, evaluation_context, lambda f, a: in_canary(f, a.variant)
        )

    def resolve_object_details(
        self,
        flag_key: str,
        default_value: _Object,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[_Object]:
        """The public configuration of the user's variant; see :func:`public_config`."""
        return self._resolve(flag_key, default_value, evaluation_context, _public)

    def resolve_integer_details(
        self,
        flag_key: str,
        default_value: int,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[int]:
        """Always ``TYPE_MISMATCH``: a vibesdk flag is no number."""
        return _mismatch(flag_key, default_value, "an integer")

    def resolve_float_details(
        self,
        flag_key: str,
        default_value: float,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[float]:
        """Always ``TYPE_MISMATCH``: a vibesdk flag is no number."""
        return _mismatch(flag_key, default_value, "a float")

    def _resolve(
        self,
        flag_key: str,
        default: _T,
        context: EvaluationContext | None,
        value_of: Any,
    ) -> FlagResolutionDetails[_T]:
        user_id = None if context is None else context.targeting_key
        if user_id is None or user_id == "":
            return _error(
                default,
                ErrorCode.TARGETING_KEY_MISSING,
                "the evaluation context needs a targeting_key: the user id vibesdk buckets by",
            )
        attributes = dict(context.attributes) if context is not None else None
        assignment, flag = self._assign(flag_key, user_id, attributes or None)
        metadata = _metadata(assignment, flag)
        code = assignment.error_code
        if code is not None:
            return _error(
                default, _ERROR_CODES.get(code, ErrorCode.GENERAL), _explain(assignment), metadata
            )
        if flag is None:
            return _error(
                default,
                ErrorCode.GENERAL,
                "the flag document changed during the evaluation; evaluate again",
                metadata,
            )
        return FlagResolutionDetails(
            value=value_of(flag, assignment),
            reason=_reason(assignment, flag),
            variant=assignment.variant,
            flag_metadata=metadata,
        )

    def _assign(
        self, flag_key: str, user_id: str, attributes: Mapping[str, Any] | None
    ) -> tuple[Assignment, Flag | None]:
        """The assignment, and the flag of the very document version that decided it."""
        store = self._store
        for _ in range(3):  # a new document between the two reads: read both again
            assignment = self._client.assign(flag_key, user_id, attributes)
            document: FlagDocument | None = store.document
            if document is None or document.version == assignment.flag_version:
                break
        flag = None
        if document is not None and document.version == assignment.flag_version:
            flag = document.flags.get(flag_key)
        return assignment, flag

    # -- tracking ----------------------------------------------------------------

    def track(
        self,
        tracking_event_name: str,
        evaluation_context: EvaluationContext | None = None,
        tracking_event_details: TrackingEventDetails | None = None,
    ) -> None:
        """Record a user's verdict on an answer: ``feedback`` or ``report`` events.

        ``feedback``: the attribute ``trace_id`` (a ``ChatResult.trace_id``), the score
        1..5 as the event's ``value`` and an optional ``comment`` attribute become
        ``client.feedback(trace_id, score, comment)``. ``report``: ``trace_id`` and an
        optional ``reason`` attribute become ``client.report(trace_id, reason)``. Neither
        blocks (both are queued). Other event names are not vibesdk's and are ignored.
        Raises :class:`~vibesdk.InvalidArgumentError` for a missing or bad trace id, score
        or text.
        """
        if tracking_event_name not in (FEEDBACK_EVENT, REPORT_EVENT):
            logger.debug("vibesdk: ignoring tracking event %r", tracking_event_name)
            return
        details = tracking_event_details or TrackingEventDetails()
        trace_id = details.attributes.get("trace_id")
        if trace_id is None:
            raise InvalidArgumentError(
                f"the tracking event {tracking_event_name!r} needs the attribute trace_id: "
                "the ChatResult.trace_id of the answer"
            )
        if tracking_event_name == REPORT_EVENT:
            self._client.report(trace_id, details.attributes.get("reason"))  # type: ignore[arg-type]
            return
        score = details.value
        if score is None:
            raise InvalidArgumentError(
                "the tracking event 'feedback' needs the user's score 1..5 as its value"
            )
        if isinstance(score, float) and score.is_integer():
            score = int(score)
        self._client.feedback(
            trace_id,  # type: ignore[arg-type]
            score,  # type: ignore[arg-type]
            details.attributes.get("comment"),  # type: ignore[arg-type]
        )


def _variant(flag: Flag, assignment: Assignment) -> str:
    return assignment.variant


def _public(flag: Flag, assignment: Assignment) -> dict[str, FlagValueType]:
    config = (
        assignment.config if assignment.config is not None else flag.variants[assignment.variant]
    )
    return public_config(assignment.variant, config)


def _reason(assignment: Assignment, flag: Flag) -> str:
    """OpenFeature's reason: vibesdk's, except DEFAULT where no percentage is rolled out."""
    if assignment.reason == Reason.SPLIT and flag.rollout_bps == 0:
        return OFReason.DEFAULT
    return _REASONS.get(assignment.reason, OFReason.UNKNOWN)


def _metadata(assignment: Assignment, flag: Flag | None) -> FlagMetadata:
    metadata: dict[str, bool | int | float | str] = {}
    if assignment.flag_version is not None:
        metadata["version"] = assignment.flag_version
    if flag is not None:
        metadata["salt"] = flag.effective_salt
        metadata["rollout_bps"] = flag.rollout_bps
        metadata["rollout_variant"] = flag.rollout_variant
        metadata["default_variant"] = flag.default_variant
    if assignment.bucket is not None:
        metadata["bucket"] = assignment.bucket
    if assignment.rule_id is not None:
        metadata["rule"] = assignment.rule_id
    return metadata


def _explain(assignment: Assignment) -> str:
    code = assignment.error_code
    if code == VibeErrorCode.PROVIDER_NOT_READY:
        return "no flag document yet: the flag server has not answered (see bootstrap=)"
    if code == VibeErrorCode.FLAG_NOT_FOUND:
        return (
            f"flag {assignment.flag_key!r} is not in version {assignment.flag_version} "
            "of the flag document"
        )
    if code == VibeErrorCode.INVALID_CONTEXT:
        return "the targeting_key must be text (valid Unicode) and the attributes a mapping"
    return f"vibesdk could not evaluate the flag ({code})"


def _error(
    default: _T, code: ErrorCode, message: str, metadata: FlagMetadata | None = None
) -> FlagResolutionDetails[_T]:
    return FlagResolutionDetails(
        value=default,
        error_code=code,
        error_message=message,
        reason=OFReason.ERROR,
        flag_metadata=metadata or {},
    )


def _mismatch(flag_key: str, default: _T, kind: str) -> FlagResolutionDetails[_T]:
    return _error(
        default,
        ErrorCode.TYPE_MISMATCH,
        f"flag {flag_key!r} resolves as {_TYPES}, not as {kind}",
    )


def _changed_flags(old: FlagDocument, new: FlagDocument) -> list[str]:
    keys = old.flags.keys() | new.flags.keys()
    return sorted(k for k in keys if old.flags.get(k) != new.flags.get(k))
