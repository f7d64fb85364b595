"""Flag delivery: bootstrap file, disk cache and the flag server (ETag polls and SSE pushes).

:class:`FlagSource` (threads) and :class:`AsyncFlagSource` (asyncio) keep a
:class:`FlagStore` current; the Client evaluates through the store. See
docs/concepts/flag-delivery.md.
"""

from .async_driver import AsyncFlagSource
from .store import FlagState, FlagStore
from .sync_driver import FlagSource

__all__ = ["AsyncFlagSource", "FlagSource", "FlagState", "FlagStore"]
