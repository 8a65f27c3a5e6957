"""Read replicas: what is known of each, and which ones a read-only scope may use.

A manager made with ``replicas=[...]`` runs its read-only scopes that start a
transaction on a replica, everything else on the primary. Replicas are tried
in turn (round robin), skipping those that are not fit:

- one that refused a connection, or lost one, is skipped for
  ``SessionConfig.replica_cool_down`` seconds;
- one whose replay lag was over ``max_replica_lag`` when it was last
  measured is skipped until it is measured again.

Lag is measured at most once per ``replica_check_interval`` per replica, by
the scope that finds the figure stale, on a connection of its own before its
transaction starts (``_async/routing.py``); every other scope goes straight
to its replica. A scope with ``after=token`` runs only where the token's WAL
position has been replayed: it uses what is known of the replica, asks again
while the replica has not got that far, and waits at most ``replica_wait``
seconds in all before the primary takes it.

Tokens are the primary's WAL position after every commit finished before
``commit_token()`` was called (``pg_current_wal_insert_lsn()``), as
PostgreSQL prints it: ``"16/B374D848"``. Everything here is bookkeeping under a
lock; nothing awaits.
"""

from __future__ import annotations

import itertools
import logging
import math
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .config import SessionConfig
from .errors import ConfigurationError

logger = logging.getLogger("sessionscope")

__all__ = [
    "LAG_QUERY",
    "Replica",
    "ReplicaSet",
    "check_token",
    "connection_level",
    "lsn_of",
    "read_committed",
]

_LSN = re.compile(r"([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})")

# What a replica has replayed, and how far behind it is:
# - a server not in recovery is no replica of the primary (a promoted one, in a split
#   brain or a failover): never fit, whatever it has;
# - no WAL receiver streaming (the primary is gone, or the replica was cut off): it
#   learns nothing new, however small its lag looks: never fit (a role that may not
#   read pg_stat_wal_receiver's status sees NULL: taken as streaming);
# - streaming, nothing received that is not replayed (an idle primary sends nothing,
#   and the age of the last replayed commit would grow for no reason; after a restart
#   the received position starts behind the replayed one): no lag;
# - else the age of the last commit it replayed (none since it started: the time since
#   it started, at most as far behind as that).
LAG_QUERY = """\
SELECT pg_is_in_recovery(),
       COALESCE(pg_last_wal_replay_lsn(), pg_current_wal_insert_lsn())::text,
       CASE WHEN NOT pg_is_in_recovery()
                 OR NOT EXISTS (SELECT FROM pg_stat_wal_receiver
                                WHERE status IS NULL OR status = 'streaming')
                 THEN 'Infinity'::float8
            WHEN pg_last_wal_receive_lsn() IS NULL
                 OR pg_last_wal_receive_lsn() <= pg_last_wal_replay_lsn() THEN 0.0
            ELSE EXTRACT(EPOCH FROM now() - COALESCE(pg_last_xact_replay_timestamp(),
                                                     pg_postmaster_start_time()))::float8
       END"""

# WAL pages are 8 kB; each starts with a header of 24 bytes (40 on a segment's first
# page). A position just past one is where the last record before it ended: the
# insert position after a record that filled its page, or after pg_switch_wal().
_PAGE = 8192
_PAGE_HEADERS = (24, 40)


def lsn_of(text: str) -> int:
    """A WAL position as a number (``"16/B374D848"`` -> ``0x16B374D848``)."""
    match = _LSN.fullmatch(text)
    if match is None:
        raise ValueError(text)
    return (int(match[1], 16) << 32) + int(match[2], 16)


def check_token(value: object) -> int | None:
    """``after=``'s value as the WAL position a replica must have replayed; None (no
    token yet) passes."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            position = lsn_of(value.strip())
        except ValueError:
            pass
        else:
            # No record ends inside a page header: one ending just before it has been
            # replayed when the replica reports the page's start.
            header = position % _PAGE
            return position - header if header in _PAGE_HEADERS else position
    raise ConfigurationError(
        f"after={value!r} is not a commit token: pass what manager.commit_token() "
        "returned (a WAL position such as '0/3001190'), or None"
    )


@dataclass(eq=False, slots=True)
class Replica:
    """One replica: its engine and what the manager knows of it."""

    engine: Any
    name: str
    owned: bool  # made by the manager from a URL, and disposed by it
    down_until: float = 0.0  # time.monotonic() until which it is skipped
    checked_at: float = -math.inf  # when lag and replayed were learned
    lag: float | None = None  # seconds, when last measured
    replayed: int = -1  # the WAL position replayed, when last measured
    routed: int = 0  # scopes that ran on it
    refused: int = 0  # connections refused or lost
    isolated_binds: dict[str, Any] = field(default_factory=dict)

    def bind_for(self, isolation_level: str | None, fast_read: bool) -> tuple[Any, bool]:
        """The engine a scope at ``isolation_level`` uses on this replica, and whether
        it is the fast path's (the server refuses writes, so it needs nothing else)."""
        if fast_read and read_committed(self.engine):
            isolation_level = "AUTOCOMMIT"
        elif isolation_level is None:
            return self.engine, False
        bind = self.isolated_binds.get(isolation_level)
        if bind is None:
            bind = self.engine.execution_options(isolation_level=isolation_level)
            self.isolated_binds[isolation_level] = bind
        return bind, isolation_level == "AUTOCOMMIT"


def _known(lag: float | None) -> float | None:
    """A lag for the figures (JSON has no infinity): None when never measured, or when
    the server is no live replica (not streaming, promoted)."""
    return lag if lag is not None and math.isfinite(lag) else None


def connection_level(engine: Any) -> str | None:
    """The level the engine sets on every connection (``create_engine(isolation_level=)``,
    which SQLAlchemy keeps on its dialect), else the server's default, learned at the
    engine's first connection; None before it."""
    dialect = engine.dialect
    return getattr(dialect, "_on_connect_isolation_level", None) or getattr(
        dialect, "default_isolation_level", None
    )


def read_committed(engine: Any) -> bool:
    """Whether the engine's transactions run at READ COMMITTED: a statement per
    transaction then sees what a transaction would."""
    return connection_level(engine) == "READ COMMITTED"


class ReplicaSet:
    """The replicas of one manager, their health, and the choice among them."""

    def __init__(self, replicas: Sequence[Replica], config: SessionConfig) -> None:
        self.replicas = tuple(replicas)
        self.max_lag = config.max_replica_lag
        self.cool_down = config.replica_cool_down
        self.check_interval = config.replica_check_interval
        self.wait = config.replica_wait
        self.fallbacks = 0  # read-only scopes the primary took: no replica fit
        self._turn = itertools.count()
        self._lock = threading.Lock()

    def candidates(self, now: float) -> list[Replica]:
        """The replicas a read-only scope may try, in this scope's round-robin order."""
        replicas = self.replicas
        start = next(self._turn) % len(replicas)
        ordered = replicas[start:] + replicas[:start]
        return [
            replica
            for replica in ordered
            if replica.down_until <= now
            and (
                replica.lag is None
                or replica.lag <= self.max_lag
                or now - replica.checked_at >= self.check_interval
            )
        ]

    def needs_check(self, replica: Replica, token: int | None, now: float) -> bool:
        """Whether the scope must ask the replica first: its figures are stale, or it
        was not known to have replayed ``token``. Claimed by the scope that asks, so
        that the other scopes of the moment do not ask too."""
        if token is not None and replica.replayed < token:
            return True
        if now - replica.checked_at < self.check_interval:
            return False
        with self._lock:
            if now - replica.checked_at < self.check_interval:
                return False
            replica.checked_at = now
        return True

    def learned(
        self, replica: Replica, now: float, in_recovery: bool, replayed: str, lag: float
    ) -> None:
        replica.checked_at = now
        replica.lag = float(lag)
        replica.replayed = lsn_of(replayed) if in_recovery else -1
        if not in_recovery:
            logger.warning(
                "replica %s is not in recovery (promoted?): it takes no read-only scopes",
                replica.name,
            )

    def fit(self, replica: Replica) -> bool:
        return replica.lag is None or replica.lag <= self.max_lag

    def went_down(self, replica: Replica, now: float) -> None:
        """It refused a connection or lost one: skip it for the cool-down."""
        with self._lock:
            replica.down_until = now + self.cool_down
            replica.refused += 1

    def routed(self, replica: Replica) -> None:
        with self._lock:
            replica.routed += 1

    def fell_back(self) -> None:
        with self._lock:
            self.fallbacks += 1

    def reset_counts(self) -> None:
        """Counters back to zero, with the monitor's (what is known of health stays)."""
        with self._lock:
            self.fallbacks = 0
            for replica in self.replicas:
                replica.routed = replica.refused = 0

    def figures(self, now: float) -> list[dict[str, Any]]:
        """Per replica, for the monitor's snapshot."""
        return [
            {
                "name": replica.name,
                "role": "replica",
                "routed": replica.routed,
                "refused": replica.refused,
                # None: never measured, or no live replica (not streaming, promoted).
                "lag": replica.lag
                if replica.lag is not None and math.isfinite(replica.lag)
                else None,
                "healthy": replica.down_until <= now and self.fit(replica),
            }
            for replica in self.replicas
        ]
