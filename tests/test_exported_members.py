"""The public surface is exactly vibesdk.__all__, sorted; everything else is private."""

from __future__ import annotations

import vibesdk


def test_all_is_sorted_and_complete() -> None:
    """__all__ is sorted, names only real attributes, and lists every public name."""
    assert vibesdk.__all__ == sorted(vibesdk.__all__)
    public = {n for n in dir(vibesdk) if not n.startswith("_")}
    assert public - {"openfeature", "schema", "testing"} == set(vibesdk.__all__)
    for name in vibesdk.__all__:
        assert name.isupper() or getattr(vibesdk, name).__module__.startswith("vibesdk")


def test_schema_module_is_the_one_definition_of_the_flag_document() -> None:
    """vibesdk.schema's __all__ is sorted and real, and its models are the top-level ones."""
    import vibesdk.schema as schema

    assert schema.__all__ == sorted(schema.__all__)
    public = {n for n in dir(schema) if not n.startswith("_")}
    assert public == set(schema.__all__)
    for name in set(schema.__all__) & set(vibesdk.__all__):
        assert getattr(schema, name) is getattr(vibesdk, name)
