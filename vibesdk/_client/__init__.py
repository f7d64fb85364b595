"""The public clients: :class:`Client` (threads) and :class:`AsyncClient` (asyncio)."""

from .aio import AsyncClient
from .results import ChatChunk, ChatResult, Usage
from .sync import Client

__all__ = ["AsyncClient", "ChatChunk", "ChatResult", "Client", "Usage"]
