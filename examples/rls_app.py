"""Row-level security per tenant: PostgreSQL keeps each tenant to its own rows.

Every row of ``rls_notes`` has a ``tenant_id``, and a policy on the table lets
a transaction see and write only the rows of the tenant named by its setting
``app.tenant_id``. The app never filters by tenant itself: it resolves the
tenant from the request's bearer token (a FastAPI dependency; no token or an
unknown one is a 401) and hands it to ``session_dependency(manager,
settings=...)``, which runs ``SELECT set_config('app.tenant_id', $1, true)``
at the start of the request's transaction, before the endpoint runs. The
setting is transaction-local (``true``): it ends with the COMMIT or ROLLBACK,
so the next user of the pooled connection never inherits it.

PostgreSQL superusers, roles with BYPASSRLS and (without FORCE) the table's
owner ignore the policies. So ``setup_database()``, run once as a superuser,
creates the table, its policy and a plain login role, ``rls_app_user``, with
only the privileges the app needs; the app connects as that role.

Run ``python examples/rls_app.py postgresql+asyncpg://postgres@127.0.0.1/db``
(a superuser's URL; ``postgresql+psycopg://`` works too) for a short demo; it
calls the app through Starlette's ``TestClient`` (``pip install httpx2``) and
drops what it created at the end.
"""

# No ``from __future__ import annotations``: FastAPI reads the endpoints'
# annotations, and ``SessionDep`` is local to create_app().
import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException
from pydantic import BaseModel
from sqlalchemy import String, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from sessionscope import AsyncSessionManager
from sessionscope.fastapi import session_dependency

APP_ROLE = "rls_app_user"
APP_PASSWORD = "rls-app-demo"  # a real app reads it from its secrets; trust auth ignores it

# Who is who: a real app would verify a JWT or look the token up in a database.
TOKENS = {"token-acme": 1, "token-globex": 2}

# The tenant of the transaction, or NULL when the setting is missing. NULLIF: once
# set_config() has run on a connection, later transactions there read '' (not
# NULL) when it is unset, and ''::int would be an error instead of "no rows".
CURRENT_TENANT = "NULLIF(current_setting('app.tenant_id', true), '')::int"


class Base(DeclarativeBase):
    pass


class Note(Base):
    __tablename__ = "rls_notes"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Filled in by the database from the transaction's tenant when not given.
    tenant_id: Mapped[int] = mapped_column(server_default=text(CURRENT_TENANT), index=True)
    body: Mapped[str] = mapped_column(String(500))


# -- setup, as a superuser ------------------------------------------------------------------


async def setup_database(admin_url: str) -> None:
    """Create the table, its policy and the app's role; run it again at will.

    ``admin_url`` is a superuser's (an async driver's URL). An app would do this
    in its migrations.
    """
    async with AsyncSessionManager(admin_url) as admin, admin.session_scope() as session:
        await session.run_sync(lambda s: Base.metadata.create_all(s.connection()))
        for statement in (
            # ENABLE turns the policies on; FORCE applies them to the table's owner too.
            "ALTER TABLE rls_notes ENABLE ROW LEVEL SECURITY",
            "ALTER TABLE rls_notes FORCE ROW LEVEL SECURITY",
            # No CREATE POLICY IF NOT EXISTS: drop and create, in this one transaction.
            "DROP POLICY IF EXISTS tenant_isolation ON rls_notes",
            # USING filters what is read, updated and deleted; WITH CHECK refuses
            # the rows written (inserted, or updated) for another tenant.
            f"CREATE POLICY tenant_isolation ON rls_notes"
            f" USING (tenant_id = {CURRENT_TENANT}) WITH CHECK (tenant_id = {CURRENT_TENANT})",
            # The app's role: CREATE ROLE has no IF NOT EXISTS either.
            f"DO $$ BEGIN CREATE ROLE {APP_ROLE};"
            f" EXCEPTION WHEN duplicate_object THEN NULL; END $$",
            # Whatever it was before: a plain login role, subject to the policies.
            f"ALTER ROLE {APP_ROLE} LOGIN NOSUPERUSER NOBYPASSRLS PASSWORD '{APP_PASSWORD}'",
            # Only what the endpoints do, and the sequence of the id column.
            f"GRANT USAGE ON SCHEMA public TO {APP_ROLE}",
            f"GRANT SELECT, INSERT ON rls_notes TO {APP_ROLE}",
            f"GRANT USAGE ON SEQUENCE rls_notes_id_seq TO {APP_ROLE}",
        ):
            await session.execute(text(statement))


async def drop_database_objects(admin_url: str) -> None:
    """Drop what ``setup_database()`` created (the role's privileges first)."""
    async with AsyncSessionManager(admin_url) as admin, admin.session_scope() as session:
        await session.execute(text("DROP TABLE IF EXISTS rls_notes"))
        await session.execute(
            text(
                f"DO $$ BEGIN IF EXISTS (SELECT FROM pg_roles WHERE rolname = '{APP_ROLE}')"
                f" THEN DROP OWNED BY {APP_ROLE}; DROP ROLE {APP_ROLE}; END IF; END $$"
            )
        )


# -- the app, as rls_app_user -----------------------------------------------------------------


def tenant_id(authorization: Annotated[str | None, Header()] = None) -> int:
    """The tenant of the request's bearer token; 401 without one or for an unknown one."""
    scheme, _, token = (authorization or "").partition(" ")
    tenant = TOKENS.get(token) if scheme.lower() == "bearer" else None
    if tenant is None:
        raise HTTPException(401, "unknown tenant", headers={"WWW-Authenticate": "Bearer"})
    return tenant


def tenant_settings(tenant: Annotated[int, Depends(tenant_id)]) -> dict[str, str]:
    """The settings of the request's transaction: set before the endpoint runs."""
    return {"app.tenant_id": str(tenant)}


class NewNote(BaseModel):
    body: str
    # Defaults to the caller's tenant; another one is refused by the policy.
    tenant_id: int | None = None


def note_json(note: Note) -> dict[str, Any]:
    return {"id": note.id, "tenant_id": note.tenant_id, "body": note.body}


def create_app(url: str, **engine_options: Any) -> tuple[FastAPI, AsyncSessionManager]:
    """The app and its manager (an async driver's URL; its user is replaced by the
    app's role). ``engine_options`` go to the engine (``pool_size=...``, say)."""
    app_url = make_url(url).set(username=APP_ROLE, password=APP_PASSWORD)
    manager = AsyncSessionManager(app_url, **engine_options)
    # One scope per request; tenant_settings() is resolved per request (FastAPI
    # caches tenant_id() within a request, so the endpoints can ask for it too).
    SessionDep = session_dependency(manager, settings=tenant_settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with manager:
            yield

    app = FastAPI(lifespan=lifespan)

    @app.post("/notes", status_code=201)
    async def create_note(session: SessionDep, new: NewNote) -> dict[str, Any]:
        note = Note(body=new.body)
        if new.tenant_id is not None:
            note.tenant_id = new.tenant_id
        session.add(note)
        try:
            # The INSERT, where the policy's WITH CHECK applies; its RETURNING brings
            # back the id and the tenant_id the database filled in.
            await session.flush()
        except DBAPIError as error:
            # 42501: "new row violates row-level security policy"
            if getattr(error.orig, "sqlstate", None) == "42501":
                raise HTTPException(403, "not your tenant") from error
            raise
        return note_json(note)

    @app.get("/notes")
    async def list_notes(session: SessionDep) -> list[dict[str, Any]]:
        # No WHERE tenant_id = ...: the policy sees to it.
        notes = await session.scalars(select(Note).order_by(Note.id))
        return [note_json(note) for note in notes]

    return app, manager


def main() -> None:
    from fastapi.testclient import TestClient

    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} postgresql+asyncpg://SUPERUSER@HOST/DB")
    admin_url = sys.argv[1]
    asyncio.run(setup_database(admin_url))
    try:
        app, _ = create_app(admin_url)
        acme = {"Authorization": "Bearer token-acme"}
        globex = {"Authorization": "Bearer token-globex"}
        with TestClient(app) as client:
            client.post("/notes", json={"body": "acme's plan"}, headers=acme)
            client.post("/notes", json={"body": "globex's plan"}, headers=globex)
            print("acme sees:", [n["body"] for n in client.get("/notes", headers=acme).json()])
            print("globex sees:", [n["body"] for n in client.get("/notes", headers=globex).json()])
            response = client.post("/notes", json={"body": "x", "tenant_id": 2}, headers=acme)
            print("acme writes for globex:", response.status_code, response.json()["detail"])
            print("no token:", client.get("/notes").status_code)
    finally:
        asyncio.run(drop_database_objects(admin_url))


if __name__ == "__main__":
    main()
