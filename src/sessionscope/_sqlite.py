"""Real SAVEPOINTs on SQLite with the ``sqlite3`` and ``aiosqlite`` drivers.

In its legacy transaction mode (the default before Python 3.16) ``sqlite3``
emits BEGIN only before DML, never before SAVEPOINT: a released savepoint's
rows then survive the rollback of the enclosing transaction. SQLAlchemy's
documented recipe turns the driver's own BEGIN off (``isolation_level = None``)
and emits BEGIN itself from the ``begin`` event; it is applied here to every
SQLite engine a manager uses, borrowed ones included.
"""

from __future__ import annotations

from sqlalchemy import Connection, Engine, event

__all__ = ["ensure_real_savepoints"]

_DRIVERS = frozenset({"pysqlite", "aiosqlite"})


def _emit_begin(connection: Connection) -> None:
    # Private, but the only way to see an AUTOCOMMIT isolation level without a
    # round trip; in AUTOCOMMIT a BEGIN of ours would never be committed.
    if connection._is_autocommit_isolation():
        return
    dbapi_connection = connection.connection.dbapi_connection
    if getattr(dbapi_connection, "autocommit", None) is False:
        return  # Python >= 3.12 PEP 249 mode: sqlite3 begins transactions properly itself.
    # Checked on every BEGIN, not once per connection: SQLAlchemy sets
    # isolation_level back to "" whenever it applies an isolation level.
    if dbapi_connection.isolation_level is not None:  # type: ignore[union-attr]
        dbapi_connection.isolation_level = None  # type: ignore[union-attr]
    connection.exec_driver_sql("BEGIN")


def ensure_real_savepoints(engine: Engine) -> None:
    """Install the BEGIN recipe on a (sync) SQLite engine, once."""
    if engine.dialect.name != "sqlite" or engine.dialect.driver not in _DRIVERS:
        return
    if not event.contains(engine, "begin", _emit_begin):
        event.listen(engine, "begin", _emit_begin)
