"""Which users a client has met in a flag's current rollout step: the ``vibesdk.exposures`` count.

The flag server checks that a step's traffic splits as configured (its sample-ratio test).
Assignment hashes *users*, so the user is the unit that splits: a test on calls mistakes a few
busy users for a skewed split. :class:`Exposures` answers "is this the first time this client
meets this user, in this variant, in this flag's current step?", and the client counts each
"yes" in ``vibesdk.exposures``, so the server can count users per arm.

* **A step** is what decides who gets which variant: the flag's kill switch, salt, default
  and rollout variants, rollout and targeting rules (:attr:`~vibesdk.Flag.step_id` names it).
  When any of these changes (the guard advanced the rollout, an operator rolled back), the
  users met so far are forgotten and every user counts again, once, in the new step. A change
  elsewhere in the document (another flag, a variant's prompt) keeps the step. Each count is
  tagged with the step's id (``vibesdk.step``): most users are met again in a step's first
  seconds, and the server reads a step's users by that id, however its measurement intervals
  fall around the moment the step began.
* **Bounded**: at most ``limit`` users per flag and step are remembered (each as a 64-bit hash
  of variant and user id, so a set of 50,000 takes a few MB). Past it, users not met yet are
  not counted until the next step. Assignment does not depend on when a user first calls, so
  the users counted are still split as configured; forgetting and counting again instead
  would count the same users twice and make the split look more certain than it is.
* **Per client**: two processes (or two clients in one) that meet one user both count them,
  always in the same variant (assignment is deterministic). Each client therefore tags its
  counts with its own random :attr:`Exposures.client_id` (``vibesdk.client.id``): the users one
  client counted are distinct, so the server's sample-ratio test reads one client's counts
  (the client that met the most users) rather than a sum in which a user behind round-robin
  routing counts once per worker (see the guarded-releases docs).

Pure and thread-safe: no I/O, no clock; the client id is random.
"""

from __future__ import annotations

import secrets
import threading
from typing import Final

from vibesdk._flags.document import Flag

__all__ = ["MAX_USERS_PER_STEP", "Exposures"]

#: Users remembered per flag and step before new ones stop being counted (see the module).
MAX_USERS_PER_STEP: Final = 50_000


class _Step:
    __slots__ = ("key", "seen")

    def __init__(self, key: str) -> None:
        self.key = key  # flag.step_id (computed once per flag object, then cached on it)
        self.seen: set[int] = set()


class Exposures:
    """The users met per flag in its current step; :meth:`first` says whether one is new.

    ``client_id`` is 16 random hex digits, new for each instance: what the counts are tagged
    with (``vibesdk.client.id``), so the server can tell one client's users from another's.
    """

    def __init__(self, limit: int = MAX_USERS_PER_STEP) -> None:
        self.client_id = secrets.token_hex(8)
        self._limit = limit
        self._lock = threading.Lock()
        self._steps: dict[str, _Step] = {}

    def first(self, flag: Flag, variant: str, user_id: str) -> bool:
        """Whether ``user_id`` in ``variant`` is new in ``flag``'s current step (then remembered).

        ``False`` for a user met before in this step, and for every new user once the step has
        met ``limit`` users.
        """
        entry = hash((variant, user_id))
        with self._lock:
            step = self._steps.get(flag.key)
            if step is None or step.key != flag.step_id:
                step = self._steps[flag.key] = _Step(flag.step_id)
            seen = step.seen
            if entry in seen or len(seen) >= self._limit:
                return False
            seen.add(entry)
            return True
