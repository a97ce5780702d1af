"""A real `python supervisor.py` process, SIGKILLed with tasks executing, then started again."""
from __future__ import annotations

import asyncio
import sqlite3

import pytest

from clients.gateway_client import GatewaySession

from .conftest import TOKEN, task_states, wait_until

pytestmark = pytest.mark.slow   # runs supervisor.py as a process


def test_sigkill_with_tasks_executing_then_restart_completes_every_task(write_config, supervisor_process, omni_home):
    config = write_config(tasks={"max_attempts": 3})
    first = supervisor_process(config)

    async def submit(url, count):
        async with GatewaySession(url, TOKEN) as gateway:
            # kinds given: recovery is tested, not routing; coder and general together have the slots for 8
            return [(await gateway.call("submit_task", description=f"job {i} [sleep=6]" + (" code" if i % 2 else ""),
                                        kind="coding" if i % 2 else "general"))["task_id"] for i in range(count)]

    ids = asyncio.run(submit(first.url, 12))
    database = omni_home / "omni.db"
    wait_until(lambda: sum(state == "executing" for state in task_states(database).values()) >= 8, 20,
               "tasks executing")
    first.kill()
    interrupted = task_states(database)     # what the kill interrupted, read after it: a slow machine may have
    assert sum(state == "executing" for state in interrupted.values()) >= 1   # finished a task first

    second = supervisor_process(config)
    wait_until(lambda: all(state == "completed" for state in task_states(database).values()), 60,
               "every task completed after the restart")
    assert sorted(task_states(database)) == sorted(ids)

    async def history(url):
        async with GatewaySession(url, TOKEN) as gateway:
            return [await gateway.call("get_task", task_id=i) for i in ids]

    tasks = asyncio.run(history(second.url))
    expected = {"executing": 2, "completed": 1}     # interrupted mid-call: run again; done before the kill: once
    assert all(task["attempts"] == expected[interrupted[task["task_id"]]] for task in tasks
               if interrupted[task["task_id"]] in expected), [(t["task_id"], t["attempts"]) for t in tasks]
    assert second.stop() == 0, "a SIGTERM stops the tree in order and exits 0"


def test_every_task_the_gateway_acknowledged_is_on_disk_when_sigkilled_mid_burst(write_config, supervisor_process,
                                                                                 omni_home):
    """Eight clients submit as fast as they can (the StateStore commits their writes in groups); the process is
    SIGKILLed while submissions are in flight. Every acknowledged task is in the database, with its text."""
    first = supervisor_process(write_config())
    acknowledged: dict[int, str] = {}
    enough = asyncio.Event()

    async def client(url, n):
        async with GatewaySession(url, TOKEN) as gateway:
            for i in range(10_000):
                text = f"burst {n}.{i}"
                task = await gateway.call("submit_task", description=text)
                acknowledged[task["task_id"]] = text
                if len(acknowledged) >= 200:
                    enough.set()

    async def burst(url):
        clients = [asyncio.create_task(client(url, n)) for n in range(8)]
        await enough.wait()
        first.kill()          # mid-flight: the other clients are between a request and its answer
        await asyncio.gather(*clients, return_exceptions=True)

    asyncio.run(burst(first.url))
    with sqlite3.connect(omni_home / "omni.db") as db:
        stored = dict(db.execute("select id, description from task"))
    assert len(acknowledged) >= 200
    missing = {task_id: text for task_id, text in acknowledged.items() if stored.get(task_id) != text}
    assert not missing, f"{len(missing)} acknowledged tasks are not on disk, e.g. {next(iter(missing.items()))}"


def test_a_bad_config_stops_start_up_with_a_clear_error(omni_home, tmp_path):
    import subprocess
    import sys

    from config import PROJECT_ROOT
    bad = tmp_path / "bad.yaml"
    bad.write_text("executors:\n  coder:\n    transport: stdio\n    command: python\n    tool: claude_code\n"
                   "    arguments: {prompt: '{description}'}\n    slots: -1\n")
    finished = subprocess.run([sys.executable, "supervisor.py", "--config", str(bad)], cwd=PROJECT_ROOT,
                              capture_output=True, text=True, timeout=60)
    assert finished.returncode == 2
    assert f"{bad}: executors.coder.slots: expected a whole number >= 1, got -1" in finished.stderr
