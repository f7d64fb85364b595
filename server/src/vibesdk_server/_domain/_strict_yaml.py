"""The one YAML loader of vibe-server and the ``vibe`` CLI: safe, and strict about duplicate keys.

PyYAML's ``safe_load`` keeps the last of two equal keys in a mapping without a
word, so a flags file with ``rollout_bps`` given twice would apply whichever
came last. Everything that reads YAML here (``vibe apply``, the server's YAML
request bodies, the demo) goes through :func:`load`, which refuses that with
the key's line and column, as it does malformed YAML.
"""

from __future__ import annotations

from typing import Any

import yaml

__all__ = ["YamlError", "load"]


class YamlError(ValueError):
    """A document that cannot be loaded; the message is one line that says where and why."""


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    keys = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in keys:
            mark = key_node.start_mark
            raise YamlError(
                f"key {key!r} appears twice in one mapping "
                f"(line {mark.line + 1}, column {mark.column + 1})"
            )
        keys.add(key)
    loader.flatten_mapping(node)
    return dict(loader.construct_pairs(node))


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load(text: str | bytes) -> Any:
    """The document in ``text``; :class:`YamlError` if it is malformed or repeats a key."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise YamlError(f"malformed YAML{where}: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise YamlError(f"malformed YAML: {exc}") from None
