"""Dashboard: how long the figures take to read over a busy 90 days, and whether a reader holds up the
StateStore's writes (WAL: it should not). The database is synthesised: a health ping's cost row every 15 s,
a paid call every 5 minutes, 200 tasks a day with their transitions."""
from __future__ import annotations

import statistics
import tempfile
import threading
import time
from pathlib import Path

from store.schema import CostEntry, Task, TaskEvent, open_database
from dashboard import Caps, read_figures

DAYS = 90


def synthesise(path: Path, days: int) -> int:
    database = open_database(str(path))
    now = time.time()
    start = now - days * 86400
    with database.atomic():
        pings = [{"at": at, "tier": "P1", "model": "free-tier", "route": "proxy", "usd": 0}
                 for at in range(int(start), int(now), 15)]
        paid = [{"at": at, "tier": "P2", "model": "paid-tier", "route": "proxy", "usd": 0.002}
                for at in range(int(start), int(now), 300)]
        for rows in (pings, paid):
            for i in range(0, len(rows), 5000):
                CostEntry.insert_many(rows[i:i + 5000]).execute()
        for day in range(days):
            for n in range(200):
                at = start + day * 86400 + n * 400
                task = Task.create(description="bench", state="completed", executor="general", tier="P1",
                                   created_at=at, updated_at=at + 12)
                TaskEvent.insert_many([
                    {"task": task, "at": at, "kind": "transition", "to_state": "idle", "reason": "created"},
                    {"task": task, "at": at + 1, "kind": "transition", "from_state": "idle",
                     "to_state": "dispatching", "reason": "tier P2 (the task needs the paid tier)" if n % 20 == 0
                     else "tier P1 (the free tier)"},
                    {"task": task, "at": at + 2, "kind": "transition", "from_state": "dispatching",
                     "to_state": "executing", "reason": "started"},
                    {"task": task, "at": at + 12, "kind": "transition", "from_state": "executing",
                     "to_state": "completed", "reason": "done"}]).execute()
    database.close()
    return len(pings) + len(paid)


def run(quick: bool = False, keep: bool = False) -> int:
    days = 14 if quick else DAYS
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "omni.db"
        rows = synthesise(path, days)
        caps = Caps(2.0, 30.0, (0.8,))
        reads = []
        for _ in range(5):
            began = time.perf_counter()
            read_figures(path, caps, ("P2",), days)
            reads.append(time.perf_counter() - began)
        print(f"dashboard: {rows:,} cost rows, {days * 200:,} tasks over {days} days")
        print(f"  read_figures(days={days}): median {statistics.median(reads) * 1000:.0f} ms, "
              f"max {max(reads) * 1000:.0f} ms (5 reads)")
        print(f"  a write while no one reads: {_write_ms(path, reading=False)}")
        print(f"  a write while the dashboard reads in a loop: {_write_ms(path, reading=True)}")
    return 0


def _write_ms(path: Path, reading: bool) -> str:
    """Single-row inserts, each its own transaction, as the StateStore writes a cost row."""
    stop = threading.Event()
    reader = threading.Thread(target=lambda: [read_figures(path, Caps(2, 30), ("P2",), 30)
                                              for _ in iter(lambda: stop.is_set(), True)], daemon=True)
    if reading:
        reader.start()
    database = open_database(str(path))
    times = []
    for _ in range(200):
        began = time.perf_counter()
        with database.atomic():
            CostEntry.create(at=time.time(), tier="P1", model="free-tier", route="proxy", usd=0)
        times.append(time.perf_counter() - began)
        time.sleep(0.005)
    database.close()
    stop.set()
    if reading:
        reader.join()
    times.sort()
    return f"median {statistics.median(times) * 1000:.2f} ms, p99 {times[int(len(times) * 0.99)] * 1000:.2f} ms"


if __name__ == "__main__":
    raise SystemExit(run())
