"""The flag document's schema: its models, the key pattern and the validation messages.

This is the one definition of the document that the flag server stores and publishes and the
SDK applies; ``vibesdk-server`` validates with these same models and reports problems with the
same messages. The models are also exported from the top-level :mod:`vibesdk` package.

* :class:`FlagDocument` holds every :class:`Flag` of one environment at one version; a flag has
  :class:`Variant`\\ s (each a :class:`Backend`, a reviewed :class:`PromptTemplate` and
  :class:`GenerationParams`), targeting :class:`Rule`\\ s made of :class:`Clause`\\ s, and a
  :class:`FallbackPolicy`. Unknown fields are refused and every model is frozen.
* :data:`KEY_PATTERN` is what a flag, variant, rule, template or environment key must match
  (:data:`Key` is the same as a pydantic field type; :func:`is_valid_key` checks one string).
* :func:`parse_document` validates JSON text or a mapping and raises
  :class:`~vibesdk.FlagDocumentError`; :func:`describe_validation_error` turns a pydantic
  ``ValidationError`` into that one-line message (``invalid flag document: location: problem;
  ...``).
* :func:`check_http_url` is what a base URL (the flag server's) must be: ``http://`` or
  ``https://``, a host, a valid port, no spaces, query or fragment; the SDK's settings and the
  ``vibe`` CLI check ``server_url`` with it.

The prose version, with an example document, is the flag document page of the docs.
"""

from ._flags.document import (
    KEY_PATTERN,
    SCHEMA_VERSION,
    Backend,
    Clause,
    FallbackPolicy,
    Flag,
    FlagDocument,
    GenerationParams,
    Key,
    PromptTemplate,
    Rule,
    Variant,
    describe_validation_error,
    is_valid_key,
    parse_document,
)
from ._settings import check_http_url

__all__ = [
    "Backend",
    "Clause",
    "FallbackPolicy",
    "Flag",
    "FlagDocument",
    "GenerationParams",
    "KEY_PATTERN",
    "Key",
    "PromptTemplate",
    "Rule",
    "SCHEMA_VERSION",
    "Variant",
    "check_http_url",
    "describe_validation_error",
    "is_valid_key",
    "parse_document",
]
