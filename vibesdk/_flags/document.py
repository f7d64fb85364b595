"""The flag document: one versioned JSON document per environment.

The flag server publishes it, the SDK applies it. Every field that changes who
gets which model, with which prompt and parameters, lives here so it can be
reviewed, versioned, audited and rolled back centrally. ``schema_version``
changes only for incompatible changes; ``version`` increases with every
change and the SDK never applies an older document than the one it has.

See docs/concepts/flag-document.md for the prose version and an example.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from vibesdk._errors import FlagDocumentError

from .bucketing import BUCKETS

__all__ = [
    "LOCAL_PROVIDER",
    "Backend",
    "Clause",
    "FallbackPolicy",
    "Flag",
    "FlagDocument",
    "GenerationParams",
    "PromptTemplate",
    "Rule",
    "Variant",
    "parse_document",
]

SCHEMA_VERSION: Literal[1] = 1
"""The document format's version; it changes only for incompatible changes."""
KEY_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
"""What a flag, variant, rule, template or environment key must match: 1 to 64 characters."""
_KEY_RE = re.compile(KEY_PATTERN)

Key = Annotated[str, Field(pattern=KEY_PATTERN, description="lowercase letters, digits, _ . -")]
"""A key as a pydantic field type: a ``str`` that must match :data:`KEY_PATTERN`."""


class _Model(BaseModel):
    # Unknown fields are refused: a typo in a reviewed document must not pass silently.
    # defer_build: pydantic builds a model's validator when it first validates (the first
    # document parsed), not at `import vibesdk`; building all of them took a third of the
    # SDK's own import time (benchmarks/import_time/).
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


LOCAL_PROVIDER = "llama-cpp-python"
"""The provider that runs the model inside the app's process (``pip install 'vibesdk[local]'``)."""


class Backend(_Model):
    """Where a variant's model is served: OpenAI-compatible base URLs, or the app's own process.

    With several URLs the SDK sends each request to the one with the fewest
    requests in flight. ``api_key_name`` names an entry of the SDK setting
    ``api_keys``; secrets never travel in the document.

    ``provider: llama-cpp-python`` runs the GGUF file ``model_path`` in the app's
    process with llama-cpp-python instead (the extra ``vibesdk[local]``); such a
    backend has no ``urls``, and ``n_ctx``, ``n_threads`` and ``n_gpu_layers``
    are how the model is loaded (unset: llama-cpp-python's defaults). A relative
    ``model_path`` is relative to the app's working directory.
    """

    urls: list[Annotated[str, Field(pattern=r"^https?://\S+$")]] = Field(default_factory=list)
    provider: str = Field(default="openai", description="gen_ai.provider.name, e.g. llama.cpp")
    api_key_name: str | None = None
    model_path: str | None = Field(
        default=None, min_length=1, description="provider llama-cpp-python: the GGUF file"
    )
    n_ctx: int | None = Field(default=None, ge=0, le=1_048_576, description="0: the model's own")
    n_threads: int | None = Field(default=None, ge=1, le=1024)
    n_gpu_layers: int | None = Field(default=None, ge=-1, description="-1: every layer")

    @field_validator("urls")
    @classmethod
    def _strip_slash(cls, urls: list[str]) -> list[str]:
        return [u.rstrip("/") for u in urls]

    @model_validator(mode="after")
    def _served_one_way(self) -> Backend:
        if self.is_local:
            if self.urls:
                raise ValueError(
                    f"provider {LOCAL_PROVIDER!r} runs the model in the app's process and takes no "
                    "urls; remove them (llama-cpp-python's HTTP server is provider 'llama.cpp')"
                )
            if self.model_path is None:
                raise ValueError(
                    f"provider {LOCAL_PROVIDER!r} needs model_path, the GGUF file on the app's "
                    "machine"
                )
            return self
        if not self.urls:
            raise ValueError(
                f"provider {self.provider!r} is called over HTTP and needs urls (at least one); "
                f"for a model in the app's process use provider {LOCAL_PROVIDER!r} and model_path"
            )
        local = [
            n
            for n in ("model_path", "n_ctx", "n_threads", "n_gpu_layers")
            if getattr(self, n) is not None
        ]
        if local:
            raise ValueError(
                f"{', '.join(local)} only apply to provider {LOCAL_PROVIDER!r}, not to "
                f"provider {self.provider!r} (an HTTP backend)"
            )
        return self

    @property
    def is_local(self) -> bool:
        """Whether the model runs in the app's process (``provider: llama-cpp-python``)."""
        return self.provider == LOCAL_PROVIDER


class PromptTemplate(_Model):
    """A reviewed prompt: the system prompt and how the user's input is wrapped.

    ``user_template`` must contain ``{input}``, which is replaced (literally,
    no other formatting) by the content of the last user message.
    ``model`` is the model version the template was reviewed for.
    """

    id: Key
    version: int = Field(ge=1)
    system: str = ""
    user_template: str = "{input}"
    model: str | None = None

    @field_validator("user_template")
    @classmethod
    def _has_input(cls, value: str) -> str:
        if "{input}" not in value:
            raise ValueError("user_template must contain the placeholder {input}")
        return value

    @property
    def ref(self) -> str:
        """``id@version``, as shown in spans and audit logs."""
        return f"{self.id}@{self.version}"


class GenerationParams(_Model):
    """Sampling parameters sent with every call of the variant (``None``: backend default)."""

    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    top_k: int | None = Field(default=None, ge=0)
    repetition_penalty: float | None = Field(default=None, gt=0, le=3)
    max_tokens: int | None = Field(default=None, ge=1, le=262_144)
    stop: list[str] = Field(default_factory=list, max_length=16)
    seed: int | None = None


class Variant(_Model):
    """One arm of a flag: a backend, a model, a prompt, parameters and a notice.

    ``log_share`` is the share of this variant's calls (0 to 1) whose whole request and
    answer the SDK sends to the flag server's request log: e.g. ``1.0`` for a canary,
    ``0.01`` for stable. The default, 0, logs nothing. Which calls are logged is decided
    by each call's trace id, so the same call is logged wherever it is decided. A document
    whose variants all leave it at 0 serializes exactly as before the field existed, so
    SDKs that do not know it keep reading it.
    """

    backend: Backend
    model: str = Field(min_length=1)
    prompt: PromptTemplate | None = None
    params: GenerationParams = Field(default_factory=GenerationParams)
    notice: str | None = Field(default=None, description="shown to users of this variant")
    log_share: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="share of calls (0 to 1) logged in full to the flag server; 0: none",
        # SDKs older than log_share refuse unknown fields: a document that does not use it
        # must not name it, or every such SDK would refuse every document the server serves.
        exclude_if=lambda share: share == 0,
    )


class FallbackPolicy(_Model):
    """Deadlines, retries and the circuit breaker for calls made under a flag."""

    connect_timeout_s: float = Field(default=2.0, gt=0, le=60)
    first_token_timeout_s: float = Field(default=15.0, gt=0, le=600)
    total_timeout_s: float = Field(default=120.0, gt=0, le=3600)
    retries: int = Field(default=1, ge=0, le=5, description="extra attempts before falling back")
    retry_backoff_s: float = Field(default=0.1, ge=0, le=10)
    breaker_failures: int = Field(
        default=5, ge=1, le=1000, description="consecutive failures that open it"
    )
    breaker_cooldown_s: float = Field(default=30.0, gt=0, le=3600)


class Clause(_Model):
    """One condition on the evaluation context; ``attribute`` ``user_id`` is the unit id."""

    attribute: str = Field(min_length=1)
    op: Literal["equals", "in", "not_in"]
    values: list[str] = Field(min_length=1)

    @model_validator(mode="after")
    def _one_value_for_equals(self) -> Clause:
        if self.op == "equals" and len(self.values) != 1:
            raise ValueError("op 'equals' takes exactly one value; use 'in' for a list")
        return self


class Rule(_Model):
    """Targeting: when every clause matches, serve ``variant`` (before the percentage)."""

    id: Key
    clauses: list[Clause] = Field(min_length=1)
    variant: Key


class Flag(_Model):
    """A flag: who gets which variant of a model."""

    key: Key
    description: str = ""
    salt: str | None = Field(default=None, description="bucketing salt; defaults to the key")
    enabled: bool = Field(default=True, description="false is the kill switch: everyone on default")
    default_variant: Key = "stable"
    rollout_variant: Key = "canary"
    rollout_bps: int = Field(default=0, ge=0, le=BUCKETS, description="basis points, 0..10000")
    rules: list[Rule] = Field(default_factory=list)
    variants: dict[Key, Variant] = Field(min_length=1)
    fallback: FallbackPolicy = Field(default_factory=FallbackPolicy)

    @model_validator(mode="after")
    def _variants_exist(self) -> Flag:
        wanted = {"default_variant": self.default_variant}
        if self.rollout_bps > 0:
            wanted["rollout_variant"] = self.rollout_variant
        wanted.update({f"rules[{r.id}].variant": r.variant for r in self.rules})
        for where, name in wanted.items():
            if name not in self.variants:
                known = ", ".join(sorted(self.variants))
                raise ValueError(f"{where} names variant {name!r}, which is not one of: {known}")
        ids = [r.id for r in self.rules]
        if len(ids) != len(set(ids)):
            raise ValueError("rule ids must be unique within a flag")
        return self

    @property
    def effective_salt(self) -> str:
        return self.key if self.salt is None else self.salt

    @functools.cached_property
    def step_id(self) -> str:
        """16 hex digits naming what decides who gets which variant: the kill switch, salt,
        default and rollout variants, rollout and rules. Two versions of a flag that differ only
        elsewhere (a description, a variant's prompt or model, the fallback policy) have the
        same id; a change to any of these starts a new *step*. The SDK tags its user counts
        (``vibesdk.exposures``) with it and the flag server reads a step's users by it, so both
        compute it alike: the first 16 hex digits of the SHA-256 of the compact JSON array
        ``[enabled, salt, default_variant, rollout_variant, rollout_bps, [[rule id, variant,
        [[attribute, op, values], ...]], ...]]`` (the salt is the key when unset).
        """
        rules = [
            [r.id, r.variant, [[c.attribute, c.op, list(c.values)] for c in r.clauses]]
            for r in self.rules
        ]
        fields = [
            self.enabled,
            self.effective_salt,
            self.default_variant,
            self.rollout_variant,
            self.rollout_bps,
            rules,
        ]
        text = json.dumps(fields, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


class FlagDocument(_Model):
    """All flags of one environment at one version."""

    schema_version: Literal[1] = SCHEMA_VERSION
    environment: Key = "default"
    version: int = Field(ge=0)
    updated_at: str | None = None
    flags: dict[Key, Flag] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _keys_match(self) -> FlagDocument:
        for name, flag in self.flags.items():
            if name != flag.key:
                raise ValueError(f"flags[{name!r}] has key {flag.key!r}; they must be equal")
        return self


def parse_document(data: bytes | str | dict[str, Any]) -> FlagDocument:
    """Validate a flag document from JSON text or a decoded mapping.

    Raises :class:`FlagDocumentError` with every problem found, each with its
    location (``flags.vibethinker.rollout_bps: ...``).
    """
    try:
        if isinstance(data, dict):
            return FlagDocument.model_validate(data)
        return FlagDocument.model_validate_json(data)
    except ValidationError as exc:
        raise FlagDocumentError(describe_validation_error(exc)) from exc


def describe_validation_error(exc: ValidationError) -> str:
    """One line per problem, ``location: message``, for humans and HTTP 422 bodies.

    A key that holds a line break or another unprintable character is quoted
    (``flags.'a\\nb'``), so a document cannot write extra lines into a log.
    """
    lines = []
    for err in exc.errors(include_url=False):
        loc = ".".join(_printable(str(p)) for p in err["loc"]) or "(document)"
        lines.append(f"{loc}: {err['msg']}")
    return "invalid flag document: " + "; ".join(lines)


def _printable(part: str) -> str:
    return part if part.isprintable() else repr(part)


def is_valid_key(key: str) -> bool:
    """Whether ``key`` is a valid flag, variant, rule or template key."""
    return bool(_KEY_RE.match(key))
