"""The public surface is exactly vibesdk.__all__, sorted; everything else is private."""

from __future__ import annotations

import vibesdk


def test_all_is_sorted_and_complete() -> None:
    """__all__ is sorted, names only real attributes, and lists every public name."""
    assert vibesdk.__all__ == sorted(vibesdk.__all__)
    public = {n for n in dir(vibesdk) if not n.startswith("_")}
    assert public - {"testing"} == set(vibesdk.__all__)
    for name in vibesdk.__all__:
        assert name.isupper() or getattr(vibesdk, name).__module__.startswith("vibesdk")
