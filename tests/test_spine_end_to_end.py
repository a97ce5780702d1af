"""MCP client → our gateway (Streamable HTTP) → actors → stdio MCP executors → SQLite, for real."""
from __future__ import annotations

import asyncio
import time

import httpx2
import pytest

from clients.gateway_client import GatewayError, GatewaySession
from messages import CrashNow, Introspect

from .conftest import TOKEN, task_states, wait_until


def run(coroutine):
    return asyncio.run(coroutine)


def test_tasks_complete_on_the_executor_their_text_routes_them_to(write_config, start_tree):
    tree = start_tree(write_config())

    async def scenario():
        async with GatewaySession(tree.url, TOKEN) as gateway:
            coding = await gateway.call("submit_task", description="用 Python 写一个函数", sender="telegram:1")
            general = await gateway.call("submit_task", description="Summarise my unread mail")
            return (await gateway.call("get_task", task_id=coding["task_id"], wait_s=20),
                    await gateway.call("get_task", task_id=general["task_id"], wait_s=20))

    coding, general = run(scenario())
    assert (coding["state"], coding["kind"], coding["executor"], coding["tier"]) == ("completed", "coding", "coder",
                                                                                     "P1")
    assert coding["result"].startswith("coder done: 用 Python 写一个函数")
    assert (general["state"], general["kind"], general["executor"]) == ("completed", "general", "general")
    with tree.db() as db:
        moves = db.execute("select from_state, to_state from task_event where task_id = ? and kind = 'transition' "
                           "order by id", (coding["task_id"],)).fetchall()
    assert moves == [(None, "idle"), ("idle", "dispatching"), ("dispatching", "executing"),
                     ("executing", "completed")]


def test_submit_task_with_wait_s_answers_the_finished_task_in_one_call(write_config, start_tree):
    tree = start_tree(write_config())

    async def scenario():
        async with GatewaySession(tree.url, TOKEN) as gateway:
            # kind given: wait_s is tested, not routing ("chore 2" reads as coding to the classifier)
            done = await asyncio.gather(*(gateway.call("submit_task", description=f"chore {n}", wait_s=20,
                                                       kind="general") for n in range(20)))
            slow = await gateway.call("submit_task", description="long report [sleep=3]", wait_s=0.2, kind="general")
            failed = await gateway.call("submit_task", description="book a flight [fail]", wait_s=20, kind="general")
            return done, slow, failed, await gateway.call("get_task", task_id=slow["task_id"])

    done, slow, failed, slow_now = run(scenario())
    assert [(task["state"], task["executor"]) for task in done] == [("completed", "general")] * 20
    assert [task["result"].startswith(f"general done: chore {n}") for n, task in enumerate(done)] == [True] * 20
    assert len({task["task_id"] for task in done}) == 20
    assert slow["state"] in ("idle", "dispatching", "executing") and slow_now["task_id"] == slow["task_id"]
    assert (failed["state"], failed["executor"]) == ("failed", "general") and failed["error"]


def test_progress_is_recorded_as_task_events(write_config, start_tree):
    tree = start_tree(write_config())

    async def scenario():
        async with GatewaySession(tree.url, TOKEN) as gateway:
            task = await gateway.call("submit_task", description="long report [sleep=0.6]")
            return await gateway.call("get_task", task_id=task["task_id"], wait_s=20)

    task = run(scenario())
    assert task["state"] == "completed"
    with tree.db() as db:
        progress = db.execute("select count(*) from task_event where task_id = ? and kind = 'progress'",
                              (task["task_id"],)).fetchone()[0]
    assert progress >= 3


def test_a_tool_error_fails_the_task_with_the_servers_reason(write_config, start_tree):
    tree = start_tree(write_config())

    async def scenario():
        async with GatewaySession(tree.url, TOKEN) as gateway:
            task = await gateway.call("submit_task", description="book a table [fail]")
            return await gateway.call("get_task", task_id=task["task_id"], wait_s=20)

    task = run(scenario())
    assert task["state"] == "failed" and task["attempts"] == 1
    assert "fail" in task["error"]


def test_a_crashing_server_is_respawned_and_the_task_retried_until_max_attempts(write_config, start_tree):
    tree = start_tree(write_config(tasks={"max_attempts": 3}))

    async def scenario():
        async with GatewaySession(tree.url, TOKEN) as gateway:
            task = await gateway.call("submit_task", description="general chore [crash]")
            crashed = await gateway.call("get_task", task_id=task["task_id"], wait_s=30)
            after = await gateway.call("submit_task", description="general chore after the crashes")
            return crashed, await gateway.call("get_task", task_id=after["task_id"], wait_s=30)

    crashed, after = run(scenario())
    assert crashed["state"] == "failed" and crashed["attempts"] == 3
    assert "died" in crashed["error"]
    assert after["state"] == "completed", "the respawned server serves the next task"
    with tree.db() as db:
        retries = db.execute("select count(*) from task_event where task_id = ? and from_state = 'executing' "
                             "and to_state = 'idle'", (crashed["task_id"],)).fetchone()[0]
    assert retries == 2


def test_cancel_stops_a_running_task_long_before_it_would_end(write_config, start_tree):
    tree = start_tree(write_config())
    cancel_deadline_s = 10   # the task would run 30 s: stopped well before, even on a loaded machine

    async def scenario():
        async with GatewaySession(tree.url, TOKEN) as gateway:
            task = await gateway.call("submit_task", description="slow chore [sleep=30]")
            while (await gateway.call("get_task", task_id=task["task_id"]))["state"] != "executing":
                await asyncio.sleep(0.02)
            started = time.monotonic()
            await gateway.call("cancel_task", task_id=task["task_id"])
            while tree.ask("general", Introspect())["running"]:
                if time.monotonic() - started > cancel_deadline_s:
                    pytest.fail(f"the cancelled task still runs after {cancel_deadline_s} s")
                await asyncio.sleep(0.01)
            return time.monotonic() - started, await gateway.call("get_task", task_id=task["task_id"])

    elapsed, task = run(scenario())
    assert task["state"] == "cancelled"
    print(f"\n[measure] cancel -> the executor's slot free: {elapsed * 1000:.0f} ms")


def test_cancelling_a_finished_task_is_refused_with_a_clear_error(write_config, start_tree):
    tree = start_tree(write_config())

    async def scenario():
        async with GatewaySession(tree.url, TOKEN) as gateway:
            task = await gateway.call("submit_task", description="quick chore")
            await gateway.call("get_task", task_id=task["task_id"], wait_s=20)
            with pytest.raises(GatewayError,
                               match="^cancel_task: task \\d+ cannot be cancelled: "
                                     "a completed task cannot become cancelled"):
                await gateway.call("cancel_task", task_id=task["task_id"])
            with pytest.raises(GatewayError, match="^get_task: 'task_id' 999999 is not a known task$"):
                await gateway.call("get_task", task_id=999999)
            with pytest.raises(GatewayError, match="^submit_task: 'description': expected non-empty text of at most "
                               "20,000 characters, got \"   \" \\(text\\)$"):
                await gateway.call("submit_task", description="   ")
            with pytest.raises(GatewayError, match="^submit_task: 'kind': expected one of repair, coding, research, "
                               "heavy, gpu, general, got \"painting\" \\(text\\)$"):
                await gateway.call("submit_task", description="x", kind="painting")

    run(scenario())


@pytest.mark.parametrize("header", [None, "Bearer wrong-token", f"Basic {TOKEN}"])
def test_a_wrong_or_missing_bearer_token_is_refused(write_config, start_tree, header):
    tree = start_tree(write_config())
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    if header:
        headers["Authorization"] = header
    body = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t",
                                                                                           "version": "0"}}}
    response = httpx2.post(tree.url, json=body, headers=headers)
    assert response.status_code == 401
    assert "bearer token" in response.text
    with tree.db() as db:
        assert db.execute("select count(*) from task").fetchone()[0] == 0


def test_system_status_shows_actors_executors_and_counts(write_config, start_tree):
    tree = start_tree(write_config())
    tree.directory.tell("router", CrashNow("drill"))
    wait_until(lambda: next(a for a in tree.ask("supervisor", Introspect()) if a["name"] == "router")["restarts"] == 1
               and tree.directory.ref("router").is_alive(), 10, "the router to be restarted")

    async def scenario():
        async with GatewaySession(tree.url, TOKEN) as gateway:
            await gateway.call("get_task", task_id=(await gateway.call("submit_task", description="hi"))["task_id"],
                               wait_s=20)
            return await gateway.call("system_status")

    status = run(scenario())
    router = next(actor for actor in status["actors"] if actor["name"] == "router")
    assert router["restarts"] == 1 and "drill" in router["last_error"]
    assert status["executors"]["coder"]["link"] == "up"
    assert status["tasks"]["completed"] == 1
    assert status["mode"] == "normal"


def test_killing_router_executor_and_store_with_200_tasks_in_flight_loses_none(write_config, start_tree):
    tree = start_tree(write_config(tasks={"max_attempts": 5}))
    submitted: list[int] = []

    async def submit_all():
        async with GatewaySession(tree.url, TOKEN) as gateway:
            for i in range(200):
                description = f"task {i} [sleep=0.05]" + (" python code" if i % 2 else "")
                submitted.append((await gateway.call("submit_task", description=description,   # coder must run
                                                     kind="coding" if i % 2 else "general"))["task_id"])
                if i in (40, 90, 140):
                    victim = {40: "router", 90: "coder", 140: "state_store"}[i]
                    tree.directory.tell(victim, CrashNow(f"kill {victim} under load"))

    run(submit_all())
    assert len(submitted) == 200
    wait_until(lambda: all(state == "completed" for state in task_states(tree.cfg.database_path).values()),
               timeout_s=90, what="all 200 tasks completed")
    states = task_states(tree.cfg.database_path)
    assert sorted(states) == sorted(submitted)
    restarts = {actor["name"]: actor["restarts"] for actor in tree.ask("supervisor", Introspect())}
    assert restarts["router"] >= 1 and restarts["coder"] >= 1 and restarts["state_store"] >= 1
    assert not tree.escalations


def test_a_request_from_a_foreign_origin_is_refused_even_with_the_token(write_config, start_tree):
    tree = start_tree(write_config())
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json",
               "Authorization": f"Bearer {TOKEN}", "Origin": "http://evil.example"}
    body = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t",
                                                                                           "version": "0"}}}
    response = httpx2.post(tree.url, json=body, headers=headers)
    assert response.status_code == 403


def test_the_sandbox_generates_an_owner_only_token_when_none_is_set(write_config, start_tree, omni_home, monkeypatch):
    monkeypatch.delenv("OMNI_GATEWAY_TOKEN")
    from gateway.auth import gateway_token
    from config import load_config
    cfg = load_config(write_config(gateway={"generate_token": True}))
    token = gateway_token(cfg.gateway, cfg.home)
    path = omni_home / "gateway.token"
    assert path.read_text() == token and len(token) >= 32
    assert path.stat().st_mode & 0o777 == 0o600
    assert gateway_token(cfg.gateway, cfg.home) == token, "the same token on the next start"


@pytest.mark.slow   # runs supervisor.py
def test_without_a_token_a_real_install_refuses_to_start(write_config, omni_home, monkeypatch):
    import subprocess
    import sys

    from config import PROJECT_ROOT
    monkeypatch.delenv("OMNI_GATEWAY_TOKEN")
    finished = subprocess.run([sys.executable, "supervisor.py", "--config", str(write_config())], cwd=PROJECT_ROOT,
                              capture_output=True, text=True, timeout=60)
    assert finished.returncode == 2
    assert "set the environment variable OMNI_GATEWAY_TOKEN (gateway.token_env)" in finished.stderr
