"""Human review of sampled answers: per-variant aggregates, agreement, and the scores as events.

The queue and the stored scores live in :mod:`vibesdk_server._storage._review`; the routes in
:mod:`vibesdk_server._http._review`.
"""
