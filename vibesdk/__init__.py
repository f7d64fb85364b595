"""vibesdk: release a new LLM to a small, sticky slice of users and pull it back in an instant."""

import importlib as _importlib
import typing as _typing

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

if _typing.TYPE_CHECKING:
    from ._telemetry.setup import TelemetryHandle, configure_telemetry

__version__ = "0.1.0"

# Names whose module is imported on first use, not by `import vibesdk`: only apps without an
# OpenTelemetry setup of their own call configure_telemetry(), once.
_LAZY = {
    "TelemetryHandle": "._telemetry.setup",
    "configure_telemetry": "._telemetry.setup",
}

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


# Hidden from type checkers, which see the names imported above instead: a module __getattr__
# would let a misspelt `vibesdk.Clinet` pass their checks.
if not _typing.TYPE_CHECKING:

    def __getattr__(name: str) -> object:
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module 'vibesdk' has no attribute {name!r}")
        value = getattr(_importlib.import_module(module, __name__), name)
        globals()[name] = value  # later look-ups skip this function
        return value

    def __dir__() -> list[str]:
        return sorted(set(globals()) | set(_LAZY))
