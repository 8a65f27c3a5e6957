"""The libraries users would pick instead of sessionscope, doing the e2e unit of work.

Each runs on the engine the group's other SQLAlchemy variants share, in the
way its documentation shows for "commit on success, roll back on error":

- advanced-alchemy: ``SQLAlchemySyncConfig(engine_instance=engine)`` (and its
  async twin) with ``expire_on_commit=False``; ``with config.get_session() as
  session:`` around the work and ``session.commit()`` (``get_session()``
  closes the session, rolling back what was not committed);
- fastapi-sqla: ``with open_session() as session:`` (commits on success, rolls
  back on error). Its ``startup()`` makes an engine of its own from
  environment variables and registers ``sessionmaker(bind=engine)`` under a
  key; here the shared engine is registered under a key of its own the same
  way (the one step of ``startup()`` that matters once running), so that every
  variant runs on one pooled connection.

On SQLite each peer's sessionmaker also emits the BEGIN a manager's sessions
emit (workload.with_sqlite_begin), as the "+ the SQLite BEGIN" line of the
group does: the same database work (real transactions; without it the
``sqlite3`` driver runs the SELECT outside any) and the same listener.

A peer that is not installed is left out (the bench dependency group has both).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import sessionmaker

from .harness import AsyncBatch, SyncBatch, Variant
from .workload import unit_of_work, unit_of_work_async, with_sqlite_begin

__all__ = ["PEERS", "async_peers", "missing_peers", "sync_peers"]

# key -> (distribution, label)
PEERS = {
    "advanced_alchemy": ("advanced-alchemy", "advanced-alchemy config.get_session()"),
    "fastapi_sqla": ("fastapi-sqla", "fastapi-sqla open_session()"),
}
_KEY = "sessionscope_bench"  # fastapi-sqla's name for the shared engine


def missing_peers() -> list[str]:
    return [dist for key, (dist, _) in PEERS.items() if importlib.util.find_spec(key) is None]


def sync_peers(engine: Any) -> list[Variant[SyncBatch]]:
    variants: list[Variant[SyncBatch]] = []
    if importlib.util.find_spec("advanced_alchemy") is not None:
        from advanced_alchemy.config import SQLAlchemySyncConfig, SyncSessionConfig

        config = SQLAlchemySyncConfig(
            engine_instance=engine, session_config=SyncSessionConfig(expire_on_commit=False)
        )
        _same_work(engine, config.create_session_maker())

        def advanced_alchemy(keys: Sequence[int]) -> None:
            for key in keys:
                with config.get_session() as session:
                    unit_of_work(session, key)
                    session.commit()

        variants.append(_variant("advanced_alchemy", advanced_alchemy))
    if importlib.util.find_spec("fastapi_sqla") is not None:
        from fastapi_sqla import sqla

        sqla._session_factories[_KEY] = _same_work(
            engine, sessionmaker(bind=engine, class_=sqla.SqlaSession)
        )
        open_session = sqla.open_session

        def fastapi_sqla(keys: Sequence[int]) -> None:
            for key in keys:
                with open_session(_KEY) as session:
                    unit_of_work(session, key)

        variants.append(_variant("fastapi_sqla", fastapi_sqla))
    return variants


def async_peers(engine: Any) -> list[Variant[AsyncBatch]]:
    variants: list[Variant[AsyncBatch]] = []
    if importlib.util.find_spec("advanced_alchemy") is not None:
        from advanced_alchemy.config import AsyncSessionConfig, SQLAlchemyAsyncConfig

        config = SQLAlchemyAsyncConfig(
            engine_instance=engine, session_config=AsyncSessionConfig(expire_on_commit=False)
        )
        _same_work(engine, config.create_session_maker())

        async def advanced_alchemy(keys: Sequence[int]) -> None:
            for key in keys:
                async with config.get_session() as session:
                    await unit_of_work_async(session, key)
                    await session.commit()

        variants.append(_variant("advanced_alchemy", advanced_alchemy))
    if importlib.util.find_spec("fastapi_sqla") is not None:
        from fastapi_sqla import async_sqla
        from sqlalchemy.ext.asyncio import AsyncSession

        async_sqla._async_session_factories[_KEY] = _same_work(
            engine, sessionmaker(class_=AsyncSession, bind=engine, expire_on_commit=False)
        )
        open_session = async_sqla.open_session

        async def fastapi_sqla(keys: Sequence[int]) -> None:
            for key in keys:
                async with open_session(_KEY) as session:
                    await unit_of_work_async(session, key)

        variants.append(_variant("fastapi_sqla", fastapi_sqla))
    return variants


def _same_work(engine: Any, maker: Any) -> Any:
    """``maker``, with the SQLite BEGIN on SQLite."""
    if engine.dialect.name == "sqlite":
        # advanced-alchemy's async sessions make their sync session with a sessionmaker
        inner = maker.kw.get("sync_session_class")
        with_sqlite_begin(inner if isinstance(inner, sessionmaker) else maker)
    return maker


def _variant(key: str, run: Any) -> Variant[Any]:
    return Variant(key, PEERS[key][1], run)
