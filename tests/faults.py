"""A loopback TCP proxy that breaks PostgreSQL connections on purpose.

Put it between a client and the test server, point the client at ``proxy.url(url)``
and arm a fault::

    with FaultProxy(pg_server.host, pg_server.port) as proxy:
        engine = create_engine(proxy.url(pg_server.url("psycopg")), poolclass=NullPool)
        ...
        proxy.cut_after_forwarding(b"COMMIT")  # the server commits, the client never hears
        ...
        assert proxy.fired.is_set()
        proxy.wait_server_done()  # the backend has finished and gone

The proxy runs on its own thread with its own asyncio loop, never on the test's loop,
so sync clients (in any thread) and async clients (asyncpg, psycopg async) can share it.
It listens on 127.0.0.1 only, and ``close()`` (or leaving the ``with`` block) closes
every socket and joins the thread.

Markers are found by framing the client's messages of the PostgreSQL protocol: they
match the SQL of a simple Query ('Q') or of an extended-protocol Parse ('P') as a whole
word, ignoring case, so b"COMMIT" matches "COMMIT" and "commit;" but not "BEGIN
ISOLATION LEVEL READ COMMITTED". The proxy itself answers "no" to an SSLRequest or
GSSENCRequest, so the session stays in clear text whatever ``sslmode`` the client
prefers (a client that *requires* TLS fails), and ``url()`` changes only host and port.

Cutting a connection closes the client's socket at once (it sees the server close the
connection) and half-closes the server's: the server gets everything forwarded so far,
then end-of-file, so its backend finishes that work (commits or rolls back) and exits;
the proxy drains and discards whatever the server still sends.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Coroutine
from typing import Any

from sqlalchemy.engine import make_url

_ENCRYPTION_REQUESTS = (80877103, 80877104)  # the codes of SSLRequest and GSSENCRequest
_TIMEOUT = 10.0  # seconds; nothing in a test should take longer


class _Link:
    """One client connection and the proxy's connection to the server for it."""

    def __init__(self, task: asyncio.Task[None], client: Any, server: Any) -> None:
        self.task = task
        self.client: asyncio.StreamWriter = client
        self.server: asyncio.StreamWriter = server
        self.cut = False
        self.swallowed = bytearray()  # what the server sent after the cut


class FaultProxy:
    """Forwards 127.0.0.1:``port`` to ``target_host:target_port``, breaking it on demand."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.fired = threading.Event()  # set when an armed one-shot fault has cut
        # The armed one-shot fault: (what to do, marker, delay in seconds).
        self._fault: tuple[str, re.Pattern[bytes], float] | None = None
        self._fired_link: _Link | None = None
        self._refusing = False
        self._links: set[_Link] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="FaultProxy", daemon=True
        )
        self._thread.start()
        try:
            self._server = self._call(asyncio.start_server(self._serve, "127.0.0.1", 0))
        except BaseException:
            self.close()
            raise
        self.port: int = self._server.sockets[0].getsockname()[1]

    def url(self, url: str) -> str:
        """``url`` (a SQLAlchemy URL) with host and port replaced by the proxy's."""
        proxied = make_url(url).set(host="127.0.0.1", port=self.port)
        return proxied.render_as_string(hide_password=False)

    # -- faults (callable from any thread) ------------------------------------------

    def cut_after_forwarding(self, marker: bytes) -> None:
        """One shot: forward the next message with ``marker``, then cut its connection.

        The server executes that statement; its reply never reaches the client.
        """
        self._arm("cut after", marker)

    def cut_before_forwarding(self, marker: bytes) -> None:
        """One shot: drop the next message with ``marker`` and cut its connection."""
        self._arm("cut before", marker)

    def delay_forwarding(self, marker: bytes, seconds: float) -> None:
        """One shot: hold the next message with ``marker`` for ``seconds``, then forward it.

        The client waits for the reply meanwhile: a window to cancel it in.
        """
        self._arm("delay", marker, seconds)

    def _arm(self, action: str, marker: bytes, seconds: float = 0.0) -> None:
        self.fired.clear()
        # Plain assignments: the loop thread reads them between two reads of a socket.
        self._fired_link = None
        pattern = re.compile(rb"(?<!\w)%s(?!\w)" % re.escape(marker), re.I)
        self._fault = (action, pattern, seconds)

    def cut_all(self) -> None:
        """Cut every open connection now, as a network failure would."""
        self._call(self._cut_all())

    def refuse(self, refusing: bool = True) -> None:
        """While refusing, close each new connection once the client has spoken.

        As if the server were unreachable; open connections are left alone.
        """
        self._refusing = refusing

    @property
    def swallowed(self) -> bytes:
        """What the server sent, after the cut, on the connection the last fault cut."""
        link = self._fired_link
        return b"" if link is None else bytes(link.swallowed)

    def wait_server_done(self, timeout: float = _TIMEOUT) -> None:
        """Block until the server has closed every cut connection.

        Then their backends have done what they were sent and are gone. (From
        an async test: ``await asyncio.to_thread(proxy.wait_server_done)``.)
        """
        self._call(self._wait_cut_links(), timeout)

    # -- life cycle -------------------------------------------------------------------

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Cut every connection, stop listening and join the thread (idempotent)."""
        if self._loop.is_closed():
            return
        try:
            if hasattr(self, "_server"):
                self._call(self._shutdown())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(_TIMEOUT)
            self._loop.close()

    def _call(self, coro: Coroutine[Any, Any, Any], timeout: float = _TIMEOUT) -> Any:
        """Run ``coro`` on the proxy's loop and wait for its result."""
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout)
        finally:
            future.cancel()  # a no-op unless it timed out

    async def _shutdown(self) -> None:
        self._server.close()
        await self._cut_all()
        if self._tasks:  # each ends when the server has closed its side
            _, pending = await asyncio.wait(self._tasks, timeout=2)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await self._server.wait_closed()

    async def _cut_all(self) -> None:
        for link in list(self._links):
            self._cut(link)

    async def _wait_cut_links(self) -> None:
        tasks = [link.task for link in self._links if link.cut]
        if tasks:
            await asyncio.wait(tasks)

    # -- the proxy's loop -----------------------------------------------------------

    async def _serve(self, client_reader: asyncio.StreamReader, client: Any) -> None:
        """One client connection, from accept to close."""
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        writers = [client]
        try:
            if self._refusing:
                # Read the client's first message before closing: then it always sees
                # a plain close, not a reset whose timing varies from run to run.
                await asyncio.wait_for(client_reader.read(65536), _TIMEOUT)
                return
            server_reader, server = await asyncio.open_connection(*self.target)
            writers.append(server)
            link = _Link(task, client, server)
            self._links.add(link)
            try:
                await asyncio.gather(
                    self._client_to_server(link, client_reader),
                    self._server_to_client(link, server_reader),
                )
            finally:
                self._links.discard(link)
        except OSError:  # the server is unreachable, or (refusing) the client was silent
            pass  # either way the client sees its connection closed
        finally:
            for writer in writers:
                writer.close()
            # Wait for the sockets to be closed, or they would be left to the GC.
            await asyncio.gather(*(w.wait_closed() for w in writers), return_exceptions=True)
            self._tasks.discard(task)

    def _cut(self, link: _Link) -> None:
        if not link.cut:
            link.cut = True
            link.client.close()
            if not link.server.is_closing():
                link.server.write_eof()  # after what was written: the server gets it all

    async def _client_to_server(self, link: _Link, reader: asyncio.StreamReader) -> None:
        """Frame the client's messages, forward them, and fire an armed fault."""
        buffer = bytearray()
        started = False  # the untyped startup message has been forwarded
        try:
            while not link.cut and (data := await reader.read(65536)):
                buffer += data
                out = bytearray()
                while (size := _message_size(buffer, started)) is not None:
                    message = bytes(buffer[:size])
                    del buffer[:size]
                    if not started and int.from_bytes(message[4:8]) in _ENCRYPTION_REQUESTS:
                        link.client.write(b"N")  # "no encryption": carry on in clear text
                        continue
                    started = True
                    fault = self._fault
                    if fault and message[:1] in (b"Q", b"P") and fault[1].search(message[5:]):
                        self._fault = None
                        self._fired_link = link
                        self.fired.set()
                        action, _, seconds = fault
                        if action == "delay":
                            link.server.write(out)
                            out = bytearray()
                            await asyncio.sleep(seconds)
                        else:
                            link.server.write(out + message if action == "cut after" else out)
                            self._cut(link)
                            return
                    out += message
                if out:
                    link.server.write(out)
                    await link.server.drain()
        except OSError:
            pass
        finally:
            self._cut(link)  # the client has gone: let the server know

    async def _server_to_client(self, link: _Link, reader: asyncio.StreamReader) -> None:
        """Pass the server's bytes through as they come, until the server closes."""
        try:
            while data := await reader.read(65536):
                if link.cut:
                    link.swallowed += data
                else:
                    link.client.write(data)
                    await link.client.drain()
        except OSError:
            pass
        finally:
            self._cut(link)  # the server has gone: so must the client's connection


def _message_size(buffer: bytearray, started: bool) -> int | None:
    """Size of the first message in ``buffer``, or None until it has all arrived.

    A startup-phase message is int32 length + body; later ones are a type byte, then
    int32 length (counting itself) + body.
    """
    head = 5 if started else 4
    if len(buffer) < head:
        return None
    size = int.from_bytes(buffer[head - 4 : head]) + head - 4
    if size < head:
        raise ConnectionError("not the PostgreSQL protocol")
    return size if len(buffer) >= size else None
