"""The ops dashboard, served by vibe-server at ``/ui``.

Server-rendered HTML (Jinja2) that reads without JavaScript; htmx refreshes the release panel
and uPlot draws the charts, both vendored under ``static/vendor`` (no CDN). Signing in
exchanges an admin token for an HttpOnly, SameSite=Strict session cookie; every form that
changes something carries the session's CSRF token; every action goes through the same code
as the admin API, audited under the token's name.
"""

from __future__ import annotations

from ._routes import SESSION_TTL_S, install

__all__ = ["SESSION_TTL_S", "install"]
