"""Resolving the prompts of applied flags against the registry of reviewed templates.

A variant's ``prompt`` in an apply request is either a reference
``{"id", "version"}``, which is replaced by the registered template's text, or
a full template, which must equal the registered one (so a document exported
from the server can be applied again). Either way the template must be
APPROVED and bound to the variant's model; anything else is a 422 that names
the variant and says what to do.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from pydantic import ValidationError

from vibesdk import Flag
from vibesdk.schema import describe_validation_error

from ._errors import InvalidError, NotFoundError

__all__ = ["resolve_flags"]

PromptLookup = Callable[[str, int], dict[str, Any]]
_TEXT_FIELDS = ("system", "user_template")


def resolve_flags(raw: Sequence[Any], lookup: PromptLookup) -> list[Flag]:
    """Validate every flag of an apply request, embedding registered templates."""
    flags = []
    for index, item in enumerate(raw):
        if not isinstance(item, dict):
            raise InvalidError(f"flags[{index}] must be a JSON object (one flag), got {item!r:.40}")
        where = f"flags[{index}]" + (
            f" ({item['key']})" if isinstance(item.get("key"), str) else ""
        )
        data = dict(item)
        variants = data.get("variants")
        if isinstance(variants, dict):
            data["variants"] = {
                name: _resolve_variant(f"{where}.variants.{name}", variant, lookup)
                for name, variant in variants.items()
            }
        try:
            flags.append(Flag.model_validate(data))
        except ValidationError as exc:
            text = describe_validation_error(exc).removeprefix("invalid flag document: ")
            raise InvalidError(f"{where}: {text}") from exc
    return flags


def _resolve_variant(where: str, variant: Any, lookup: PromptLookup) -> Any:
    if not isinstance(variant, dict) or not isinstance(variant.get("prompt"), dict):
        return variant
    prompt = variant["prompt"]
    pid, version = prompt.get("id"), prompt.get("version")
    if not isinstance(pid, str) or not isinstance(version, int) or isinstance(version, bool):
        raise InvalidError(
            f"{where}.prompt needs an id (string) and a version (integer) of a registered template"
        )
    try:
        registered = lookup(pid, version)
    except NotFoundError:
        raise InvalidError(
            f"{where}.prompt {pid}@{version} is not a registered template; register it with"
            " vibe prompt add and have it approved"
        ) from None
    if registered["state"] != "approved":
        raise InvalidError(
            f"{where}.prompt {pid}@{version} is {registered['state']}, not approved; approve it"
            f" (vibe prompt approve {pid} {version}) or reference an approved version"
        )
    model = variant.get("model")
    if registered["model"] != model:
        raise InvalidError(
            f"{where}.prompt {pid}@{version} was reviewed for model {registered['model']!r}, but"
            f" the variant uses {model!r}; register a template for that model"
        )
    extra = set(prompt) - {"id", "version", "model", *_TEXT_FIELDS}
    if extra:
        raise InvalidError(f"{where}.prompt has unknown field(s): {', '.join(sorted(extra))}")
    for field in (*_TEXT_FIELDS, "model"):
        if field in prompt and prompt[field] != registered[field]:
            raise InvalidError(
                f"{where}.prompt {pid}@{version}: {field} differs from the registered template;"
                " templates are immutable, so reference it as {id, version} or register a new"
                " version"
            )
    embedded = {
        "id": pid,
        "version": version,
        "system": registered["system"],
        "user_template": registered["user_template"],
        "model": registered["model"],
    }
    return {**variant, "prompt": embedded}
