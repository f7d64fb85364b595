"""vibesdk: release a new LLM to a small, sticky slice of users and pull it back in an instant."""

from ._client import AsyncClient, ChatChunk, ChatResult, Client, Usage
from ._errors import (
    AllBackendsFailedError,
    BackendConnectError,
    BackendError,
    BackendStatusError,
    BackendTimeoutError,
    CircuitOpenError,
    ClientClosedError,
    ConfigError,
    FlagDocumentError,
    FlagNotFoundError,
    FlagsNotReadyError,
    InvalidArgumentError,
    MalformedResponseError,
    StreamInterruptedError,
    VibeError,
)
from ._flags.bucketing import BUCKETING_VERSION, bucket
from ._flags.document import (
    Backend,
    Clause,
    FallbackPolicy,
    Flag,
    FlagDocument,
    GenerationParams,
    PromptTemplate,
    Rule,
    Variant,
    parse_document,
)
from ._flags.evaluation import Assignment, ErrorCode, Reason
from ._quality.checks import QualityReport, check_answer
from ._settings import Settings
from ._sources import FlagState
from ._telemetry.setup import TelemetryHandle, configure_telemetry

__version__ = "0.1.0"

__all__ = [
    "AllBackendsFailedError",
    "Assignment",
    "AsyncClient",
    "BUCKETING_VERSION",
    "Backend",
    "BackendConnectError",
    "BackendError",
    "BackendStatusError",
    "BackendTimeoutError",
    "ChatChunk",
    "ChatResult",
    "CircuitOpenError",
    "Clause",
    "Client",
    "ClientClosedError",
    "ConfigError",
    "ErrorCode",
    "FallbackPolicy",
    "Flag",
    "FlagDocument",
    "FlagDocumentError",
    "FlagNotFoundError",
    "FlagState",
    "FlagsNotReadyError",
    "GenerationParams",
    "InvalidArgumentError",
    "MalformedResponseError",
    "PromptTemplate",
    "QualityReport",
    "Reason",
    "Rule",
    "Settings",
    "StreamInterruptedError",
    "TelemetryHandle",
    "Usage",
    "Variant",
    "VibeError",
    "bucket",
    "check_answer",
    "configure_telemetry",
    "parse_document",
]
