"""The monitor on its own: listeners' rules and constant memory. No database needed."""

from __future__ import annotations

import gc
import threading
import tracemalloc

import pytest

from sessionscope import SessionMonitor
from sessionscope._frames import Level
from sessionscope.monitor import MonitorEvent


def test_a_coroutine_listener_is_refused() -> None:
    async def listener(event: MonitorEvent) -> None:
        pass

    monitor = SessionMonitor("m")
    with pytest.raises(TypeError, match="coroutine"):
        monitor.add_listener(listener)
    with pytest.raises(TypeError, match="callable"):
        monitor.add_listener("not callable")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not a listener"):
        monitor.remove_listener(print)


def test_memory_stays_constant_over_100_000_transactions() -> None:
    monitor = SessionMonitor("m")

    def run(transactions: int) -> None:
        for n in range(transactions):
            monitor.connected(0.0001 * (n % 7), Level(None, is_async=False, transaction_id=n))
            if n % 10:
                monitor.closed(0.001 * (n % 97), n)
            else:
                monitor.closed(0.5, n, "exception", ValueError())

    run(1_000)  # warm up: every bucket and counter that will ever exist, exists
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    run(100_000)
    gc.collect()
    grown = sum(
        stat.size_diff for stat in tracemalloc.take_snapshot().compare_to(before, "filename")
    )
    tracemalloc.stop()
    snapshot = monitor.snapshot()
    assert snapshot["transactions"]["committed"] + snapshot["transactions"]["rolled_back"] == (
        101_000
    )
    assert snapshot["transaction_duration"]["count"] == 101_000
    assert grown < 16_384, f"the monitor grew by {grown} bytes over 100 000 transactions"


def test_lock_free_events_add_up_exactly_across_threads_and_reads() -> None:
    # connected() and closed() take no lock; a snapshot read meanwhile must
    # still neither lose nor double-count any of them.
    monitor = SessionMonitor("m")
    threads, per_thread = 8, 20_000
    done = threading.Event()

    def work() -> None:
        for n in range(per_thread):
            monitor.connected(0.0001, Level(None, is_async=False, transaction_id=n))
            monitor.closed(0.001, n)

    def read() -> None:
        while not done.is_set():
            snapshot = monitor.snapshot()
            assert snapshot["sessions"]["closed"] <= threads * per_thread

    reader = threading.Thread(target=read)
    reader.start()
    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    done.set()
    reader.join()
    snapshot = monitor.snapshot()
    total = threads * per_thread
    assert snapshot["sessions"] == {"opened": total, "closed": total, "active": 0}
    assert snapshot["transactions"]["committed"] == total
    assert snapshot["transaction_duration"]["count"] == total
    assert snapshot["connection_wait"]["count"] == total
    monitor.reset()
    assert monitor.snapshot()["sessions"]["opened"] == 0
