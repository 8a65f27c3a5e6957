"""What a manager does differently while a test isolates it (``sessionscope.testing``).

An isolation holds one connection per manager, in a transaction it rolls back
at its end. While it is active, every outermost scope of the manager gets a
session bound to that connection with SQLAlchemy's
``join_transaction_mode="create_savepoint"``: its transaction is a SAVEPOINT,
its commit releases it, its rollback rolls back to it, and the body's own
``session.commit()`` does the same and goes on in a new savepoint. A nested
isolation is a savepoint of the enclosing one's transaction, on its connection.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Callable
from contextlib import closing
from typing import Any, Literal, NoReturn

from sqlalchemy import Connection, Engine, create_engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from ._settings import placeholder
from .errors import ConfigurationError, SessionScopeError

__all__ = [
    "FAULTS",
    "ON_COMMIT_MODES",
    "TURN",
    "Faults",
    "Isolated",
    "check_isolation_arguments",
    "raise_sqlite_busy",
    "server_raise",
]

OnCommit = Literal["run", "capture"]
ON_COMMIT_MODES: tuple[OnCommit, ...] = ("run", "capture")


# What a scope waits for when another holds the isolation's connection.
TURN = (
    "the connection of a test's isolation (sessionscope.testing), which runs one scope "
    "at a time: code started inside a scope (a thread, a task) that opens a scope of "
    "its own waits for that scope to end; pass it the session instead"
)

# The faults iso.inject() can make a virtual COMMIT fail with: the SQLSTATE the
# server raises, and whether it comes while COMMIT is in flight (else just before).
FAULTS: dict[str, tuple[str, bool]] = {
    "serialization_failure": ("40001", True),
    "deadlock": ("40P01", True),
    "connection_lost": ("08006", False),
    "commit_outcome_unknown": ("08006", True),
}


# SQLite is embedded: no connection to lose, and a COMMIT that either happens or
# raises. What it does raise, BUSY, is both of these.
SQLITE_FAULTS = ("serialization_failure", "deadlock")


class Faults:
    """The faults still to inject, in order: each is used by one virtual COMMIT."""

    def __init__(self) -> None:
        self.pending: list[str] = []

    def add(self, fault: object, times: object, dialects: set[str]) -> None:
        if fault not in FAULTS:
            raise ConfigurationError(
                f"inject({fault!r}): choose one of {', '.join(repr(f) for f in FAULTS)}"
            )
        if not isinstance(times, int) or isinstance(times, bool) or times < 1:
            raise ConfigurationError(f"inject(times={times!r}): a whole number, 1 or more")
        if "sqlite" in dialects and fault not in SQLITE_FAULTS:
            raise ConfigurationError(
                f"inject({fault!r}) is not available on SQLite, an embedded database: it has "
                "no connection to lose, and its COMMIT either happens or raises. Inject "
                "'serialization_failure' or 'deadlock' (SQLite's BUSY) there"
            )
        others = sorted(dialects - {"postgresql", "sqlite"})
        if others:
            raise ConfigurationError(
                f"inject() is available on PostgreSQL and SQLite, not on {', '.join(others)}"
            )
        self.pending.extend([str(fault)] * times)

    def due(self, in_flight: bool) -> str | None:
        """The next fault, taken if it is due now (while COMMIT is in flight, or before)."""
        if not self.pending or FAULTS[self.pending[0]][1] is not in_flight:
            return None
        return self.pending.pop(0)


def server_raise(fault: str) -> str:
    """The SQL that makes PostgreSQL raise ``fault`` with its SQLSTATE."""
    return (
        f"DO $$ BEGIN RAISE EXCEPTION 'sessionscope.testing injected {fault}' "
        f"USING ERRCODE = '{FAULTS[fault][0]}'; END $$"
    )


# SQLite's BUSY, for real: a deadlock between two connections to a small database
# of this process's. Not on the isolation's connection: SQLite refuses ATTACH
# inside a transaction, and attaching at every isolation's start would cost each
# test about a fifth more (the connection's prepared statements are re-prepared
# after a schema change). The error is the driver's own, through SQLAlchemy.
_fault_engine: Engine | None = None


def _fault_database() -> Engine:
    global _fault_engine
    if _fault_engine is None:
        directory = tempfile.mkdtemp(prefix="sessionscope-faults-")
        atexit.register(shutil.rmtree, directory, True)
        path = os.path.join(directory, "faults.sqlite")
        with closing(sqlite3.connect(path)) as connection:
            connection.execute("CREATE TABLE fault (n INTEGER)")
            connection.execute("INSERT INTO fault VALUES (0)")
            connection.commit()
        _fault_engine = create_engine(f"sqlite:///{path}", poolclass=NullPool)
    return _fault_engine


def raise_sqlite_busy(fault: str) -> NoReturn:
    """Raise SQLITE_BUSY as SQLite raises it in a deadlock. One connection reads (a
    shared lock, kept to the end of its transaction); another takes the write lock
    and tries to commit, which needs the first one's lock gone, and keeps a pending
    lock. The first one's write then waits for the second, which waits for it:
    SQLite fails that write at once with BUSY rather than call its busy handler."""
    engine = _fault_database()
    path = engine.url.database
    assert path is not None
    with engine.connect() as reader, closing(sqlite3.connect(path, timeout=0)) as partner:
        partner.isolation_level = None  # BEGIN and COMMIT as written
        reader.connection.driver_connection.execute("BEGIN")  # type: ignore[union-attr]
        reader.exec_driver_sql("SELECT n FROM fault")
        partner.execute("BEGIN IMMEDIATE")
        partner.execute("UPDATE fault SET n = n + 1")
        try:
            partner.execute("COMMIT")
        except sqlite3.OperationalError:
            pass  # BUSY: the reader's lock is there
        try:
            reader.exec_driver_sql("UPDATE fault SET n = n + 1")
        except DBAPIError as error:
            error.add_note(f"injected by sessionscope.testing: iso.inject({fault!r})")
            raise
    raise SessionScopeError(f"iso.inject({fault!r}): SQLite did not fail")


class Isolated:
    """A manager's state under one isolation (``manager._isolation``)."""

    __slots__ = (
        "begun",
        "capture",
        "connection",
        "dialect",
        "faults",
        "loop",
        "outer",
        "saved",
        "transaction",
        "turns",
        "undo_read_only",
    )

    def __init__(
        self,
        connection: Any,
        transaction: Any,
        outer: Isolated | None,
        turns: Any,
        capture: list[Callable[[], object]] | None,
        loop: object,
        faults: Faults,
    ) -> None:
        self.connection = connection  # the flavour's Connection
        self.transaction = transaction  # rolled back at the isolation's end
        self.outer = outer  # the enclosing isolation's, restored at the end
        # One statement at a time on the one connection: the scopes of concurrent
        # tasks or threads take turns, as on a pool of one connection.
        self.turns = turns
        # The list on_commit callbacks go to instead of running (on_commit="capture").
        self.capture = capture
        # The event loop the connection belongs to (async), or None (sync).
        self.loop = loop
        self.faults = faults  # the isolation's: iso.inject()
        # What ends a read-only scope's mode beside rolling back to its savepoint: on
        # SQLite, its pragma (PostgreSQL takes SET TRANSACTION READ ONLY back itself).
        self.dialect = dialect = connection.dialect.name
        self.undo_read_only = "PRAGMA query_only = OFF" if dialect == "sqlite" else None
        # The (sync) sessions of open scopes with a transaction begun, in that order:
        # their savepoints are a stack on the one connection.
        self.begun: list[Any] = []
        # What the settings of open scopes replaced, by id of their Level.
        self.saved: dict[int, tuple[Any, list[tuple[str, str | None]]]] = {}

    def session(self, manager: Any, loop: object) -> Any:
        """A session of ``manager`` whose transactions are savepoints on the connection."""
        if loop is not self.loop:
            raise SessionScopeError(
                f"a scope of {manager.name} was opened in another event loop than the "
                "test's isolation, whose connection belongs to the test's loop (Starlette's "
                "TestClient runs the app in a thread and loop of its own): call the app "
                "with httpx's AsyncClient(transport=ASGITransport(app)) in the test instead"
            )
        maker = manager._isolation_maker
        if maker is None:
            maker = type(manager.sessionmaker)(
                class_=manager.sessionmaker.class_,
                **{**manager.sessionmaker.kw, "join_transaction_mode": "create_savepoint"},
            )
            manager._flavour.listen_session_events(maker, {"after_begin": _check_begin})
            manager._isolation_maker = maker
        return maker(bind=self.connection)

    def save_settings(self, level: Any, connection: Connection) -> None:
        """As a scope's transaction begins (PostgreSQL): the values its settings
        replace. PostgreSQL keeps what set_config(..., true) sets to the end of the
        (isolation's one) transaction, past a released savepoint, so restore()
        puts them back when the scope's savepoint is released."""
        names = _names_set(level)
        if names:
            values = connection.exec_driver_sql(
                "SELECT " + ", ".join(f"current_setting('{name}', true)" for name in names)
            ).one()
            # By the Level itself too: a rolled-back savepoint undid its settings, and
            # its entry, left here, must not match a later Level of the same id.
            self.saved[id(level)] = (level, list(zip(names, values, strict=True)))

    def restore(self, level: Any, paramstyle: str) -> tuple[str, tuple[Any, ...]] | None:
        """The statement that puts back what ``level``'s transaction replaced (a
        setting that did not exist before reads '' afterwards, as on any connection
        that once had it)."""
        entry = self.saved.pop(id(level), None)
        if entry is None or entry[0] is not level:
            return None
        saved = entry[1]
        calls = ", ".join(
            f"set_config('{name}', {placeholder(paramstyle, number)}, true)"
            for number, (name, _) in enumerate(saved, 1)
        )
        return "SELECT " + calls, tuple("" if value is None else value for _, value in saved)

    def check_order(self, session: Any, doing: str) -> None:
        """Only the session whose savepoint is the connection's last may end it or begin
        another: ending the one below would end it too, and a savepoint begun above
        it would end with it. Scopes of one task nest, and tasks take turns, so only a
        caller's session used inside its ``requires_new`` scope (independent in
        production) breaks the order."""
        session = getattr(session, "sync_session", session)
        begun = self.begun
        while begun and begun[-1] is not session and begun[-1]._sessionscope_scope is None:
            begun.pop()  # its scope has ended
        if begun and begun[-1] is not session and session in begun:
            inner = begun[-1]._sessionscope_scope
            raise SessionScopeError(
                f"{doing} a session whose scope is open around the scope opened "
                f"at {inner.opened_at()}, inside a test's isolation (sessionscope.testing): "
                "there propagation='requires_new' is a savepoint of its caller's "
                "transaction, on the one connection, not a transaction of its own. Use the "
                "caller's session before that scope or after it ends"
            )


def _names_set(level: Any) -> list[str]:
    """The names of what a PostgreSQL transaction of ``level`` sets (_settings.py)."""
    setup = level.setup
    names = [name for name, _ in setup.settings] if setup is not None else []
    if level.deadline_at is not None or (setup and setup.statement_timeout is not None):
        names.append("statement_timeout")
    if setup is not None and setup.lock_timeout is not None:
        names.append("lock_timeout")
    if setup is not None and setup.idle_in_transaction_timeout is not None:
        names.append("idle_in_transaction_session_timeout")
    return names


def _check_begin(session: Any, transaction: Any, connection: Connection) -> None:
    """The ``after_begin`` listener of an isolation's sessions: see check_order()."""
    scope = session._sessionscope_scope
    isolated = scope.manager._isolation if scope is not None else None
    if isolated is None:
        return
    try:
        isolated.check_order(session, "a new transaction of")
    except SessionScopeError:
        # Not left above the other session's: that one ending would end it.
        nested = connection.get_nested_transaction()
        if nested is not None:
            nested.rollback()
        raise
    if session not in isolated.begun:
        isolated.begun.append(session)


def check_isolation_arguments(
    managers: tuple[Any, ...], manager_class: type[Any], on_commit: object, function: str
) -> None:
    """The earliest clear error for what an isolation is asked to do."""
    if not managers:
        raise ConfigurationError(f"{function}() needs at least one {manager_class.__name__}")
    for manager in managers:
        if not isinstance(manager, manager_class):
            raise ConfigurationError(
                f"{function}() takes {manager_class.__name__} objects, got {manager!r}"
            )
    if len({id(manager) for manager in managers}) != len(managers):
        raise ConfigurationError(f"{function}() got the same manager twice")
    if on_commit not in ON_COMMIT_MODES:
        raise ConfigurationError(
            f"on_commit={on_commit!r}: choose 'run' (callbacks run when the scope's "
            "savepoint is released, as after a COMMIT) or 'capture' (kept for the test)"
        )
