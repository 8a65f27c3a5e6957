"""A loopback TCP proxy that adds network latency: each byte waits ``rtt / 2`` on its
way to the server and ``rtt / 2`` on its way back, as on a network with that
round-trip time. Order is kept and nothing is throttled: a burst is delayed,
not spread. Threads, not an event loop: ``time.sleep`` keeps sub-millisecond
delays, where an event loop's timers round them up to whole milliseconds.

    with LatencyProxy("127.0.0.1", 5432, rtt=0.001) as proxy:
        engine = create_engine(proxy.url(url))
"""

from __future__ import annotations

import queue
import socket
import threading
import time

from sqlalchemy.engine import make_url

__all__ = ["LatencyProxy"]


class LatencyProxy:
    def __init__(self, target_host: str, target_port: int, rtt: float) -> None:
        self.target = (target_host, target_port)
        self.delay = rtt / 2
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, name="latency-proxy", daemon=True).start()

    def url(self, url: str) -> str:
        """``url`` with the proxy's host and port."""
        return make_url(url).set(host="127.0.0.1", port=self.port).render_as_string(False)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            server = socket.create_connection(self.target)
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._sockets += [client, server]
            self._pipe(client, server)
            self._pipe(server, client)

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        """Bytes from ``source`` to ``sink``, each chunk ``delay`` after it arrived."""
        chunks: queue.SimpleQueue[tuple[float, bytes]] = queue.SimpleQueue()

        def read() -> None:
            try:
                while data := source.recv(65536):
                    chunks.put((time.perf_counter() + self.delay, data))
            except OSError:
                pass
            chunks.put((0.0, b""))

        def write() -> None:
            while True:
                due, data = chunks.get()
                if not data:
                    break
                wait = due - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
                try:
                    sink.sendall(data)
                except OSError:
                    break
            try:
                sink.shutdown(socket.SHUT_WR)
            except OSError:
                pass

        threading.Thread(target=read, daemon=True).start()
        threading.Thread(target=write, daemon=True).start()

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                sock.close()

    def __enter__(self) -> LatencyProxy:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
