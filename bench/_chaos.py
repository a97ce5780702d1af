"""Chaos: tasks submitted while the whole supervisor is SIGKILLed again and again, by clients that retry until
they get an answer (so some retries follow a lost answer). With an idempotency key per task, no task may be
created twice and none lost; without keys, the duplicates a retrying client makes are counted for comparison.
"""
from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections import Counter

from clients.gateway_client import GatewaySession

from ._orchestrator import Orchestrator

CLIENTS = 8
CALL_TIMEOUT_S = 5.0


async def _submit_until_answered(orchestrator: Orchestrator, text: str, key: str | None) -> int:
    """One task; every failure (refused connection, lost answer, timeout) is retried, as a client would."""
    retries = 0
    while True:
        arguments = {"description": text} | ({"idempotency_key": key} if key else {})
        try:
            async with asyncio.timeout(CALL_TIMEOUT_S):
                async with GatewaySession(orchestrator.url, orchestrator.token, timeout_s=CALL_TIMEOUT_S) as gateway:
                    await gateway.call("submit_task", **arguments)
            return retries
        except Exception:  # noqa: BLE001 (the point of the exercise)
            retries += 1
            await asyncio.sleep(0.1)


async def _clients(orchestrator: Orchestrator, tasks: int, keyed: bool, label: str) -> int:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(tasks):
        queue.put_nowait(i)
    retries = 0

    async def client() -> None:
        nonlocal retries
        while not queue.empty():
            i = queue.get_nowait()
            retries += await _submit_until_answered(orchestrator, f"chaos {label} {i}",
                                                    f"{label}-{i}" if keyed else None)

    await asyncio.gather(*(client() for _ in range(CLIENTS)))
    return retries


def _killer(orchestrator: Orchestrator, kills: int, interval_s: float, done: threading.Event) -> list[int]:
    count = [0]

    def run() -> None:
        while count[0] < kills and not done.wait(interval_s):
            orchestrator.kill_and_restart()
            count[0] += 1
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return count


def round_of(tasks: int, kills: int, keyed: bool, keep: bool) -> dict[str, float]:
    label = "keyed" if keyed else "unkeyed"
    with Orchestrator(keep=keep) as orchestrator:
        done = threading.Event()
        started = time.perf_counter()
        kill_count = _killer(orchestrator, kills, interval_s=max(2.5, 0.02 * tasks / max(kills, 1)), done=done)
        retries = asyncio.run(_clients(orchestrator, tasks, keyed, label))
        done.set()
        wall_s = time.perf_counter() - started
        with sqlite3.connect(orchestrator.home / "omni.db") as db:
            texts = Counter(text for (text,) in db.execute("select description from task"))
    expected = {f"chaos {label} {i}" for i in range(tasks)}
    return {"tasks": tasks, "kills": kill_count[0], "retries": retries,
            "duplicated": sum(n - 1 for text, n in texts.items() if n > 1),
            "lost": len(expected - set(texts)), "wall_s": wall_s}


def run(quick: bool = False, keep: bool = False) -> int:
    tasks, kills = (200, 5) if quick else (2000, 50)
    logging.getLogger("mcp").setLevel(logging.CRITICAL)   # each kill breaks sessions: expected, not news
    print(f"chaos: {tasks} tasks by {CLIENTS} retrying clients, the supervisor SIGKILLed up to {kills} times")
    for keyed in (True, False):
        figures = round_of(tasks, kills, keyed, keep)
        print(f"  {'with idempotency keys' if keyed else 'without keys (before)':<24} "
              f"kills {figures['kills']:>3}  retries {figures['retries']:>4}  duplicated {figures['duplicated']:>3}  "
              f"lost {figures['lost']:>3}  ({figures['wall_s']:.1f}s)", flush=True)
    return 0
