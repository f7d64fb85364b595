"""The ``vibe`` ops CLI: a thin HTTP client of the flag server's admin API.

Nothing here is imported by ``import vibesdk``; the console script ``vibe``
enters through :func:`vibesdk_server._vibe.main.main`.
"""
