"""The storage logic shared by SQLite and PostgreSQL: one class, two small dialects.

:class:`SqlStore` combines one mixin per concern (documents, prompts, tokens, feedback,
measurements, releases, the request log, dashboard sessions, evaluation runs, review scores)
over :class:`~._base.StoreBase`; :mod:`._sqlite` and :mod:`._postgres` subclass it with their
connection, locking and notification.
"""

from __future__ import annotations

from ._access import TokenStore
from ._base import Mutation, Published, StoreBase, Tx, rfc3339, utcnow
from ._documents import DocumentStore
from ._eval_checks import EvalCheckStore
from ._eval_schedule import EvalScheduleStore
from ._feedback import FeedbackStore
from ._measurements import MeasurementStore
from ._prompts import PromptStore
from ._releases import ReleaseStore
from ._requestlog import RequestLogStore
from ._review import ReviewStore
from ._sessions import UiSessionStore

__all__ = ["Mutation", "Published", "SqlStore", "StoreBase", "Tx", "rfc3339", "utcnow"]


class SqlStore(
    DocumentStore,
    PromptStore,
    TokenStore,
    FeedbackStore,
    MeasurementStore,
    ReleaseStore,
    UiSessionStore,
    RequestLogStore,
    EvalCheckStore,
    EvalScheduleStore,
    ReviewStore,
):
    """Flag server storage; subclasses supply connections, locking and notification.

    All methods are synchronous and thread-safe (a small connection pool); the
    HTTP layer calls them from worker threads. ``on_publish`` is called after
    every commit that produced a new document version.
    """

    def init_schema(self) -> None:
        super().init_schema()
        with self._tx(write=True) as tx:
            self._lock(tx, "schema")
            self.init_eval_schema(tx)
            self.init_review_schema(tx)
            self.init_eval_check_schema(tx)
            self.init_eval_schedule_schema(tx)
            self.init_rollups(tx)
