"""Executors as config makes them: any MCP server, over stdio or Streamable HTTP, with slots and timeouts."""
from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys

import pytest

from clients.gateway_client import GatewaySession
from config import PROJECT_ROOT
from messages import Introspect

from .conftest import TOKEN, wait_until


def submit_and_wait(tree, descriptions, wait_s=30, **extra):
    async def scenario():
        async with GatewaySession(tree.url, TOKEN) as gateway:
            ids = [(await gateway.call("submit_task", description=d, **extra))["task_id"] for d in descriptions]
            return [await gateway.call("get_task", task_id=i, wait_s=wait_s) for i in ids]
    return asyncio.run(scenario())


@pytest.fixture
def http_executor():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "sandbox.executors", "general", "--http", str(port)],
                              cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: socket.socket().connect_ex(("127.0.0.1", port)) == 0, 20, "the HTTP executor")
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        server.kill()
        server.wait(10)


def test_an_executor_over_streamable_http_runs_tasks(write_config, start_tree, http_executor):
    tree = start_tree(write_config(executors={"general": {
        "transport": "http", "url": http_executor, "command": None, "args": None,
        "tool": "run_task", "arguments": {"prompt": "{description}"}}}))
    [task] = submit_and_wait(tree, ["整理會議紀錄 [sleep=0.3]"])
    assert task["state"] == "completed" and task["result"] == "general done: 整理會議紀錄 [sleep=0.3]"


def test_a_call_past_its_hard_timeout_fails_the_task(write_config, start_tree):
    tree = start_tree(write_config(executors={"general": {"call_timeout_s": 0.5}}))
    [task] = submit_and_wait(tree, ["write a poem, slowly [sleep=20]"])
    assert task["state"] == "failed" and "no answer within 0.5s" in task["error"]
    [after] = submit_and_wait(tree, ["quick one"])
    assert after["state"] == "completed", "the session stays usable after a timeout"


def test_an_executor_runs_at_most_its_slots_at_once(write_config, start_tree):
    """Counted from the store's record of every start and end, not sampled while the tasks run."""
    tree = start_tree(write_config(executors={"general": {"slots": 2}}))
    tasks = submit_and_wait(tree, [f"chore {i} [sleep=1]" for i in range(6)], kind="general")   # all on general
    assert [task["state"] for task in tasks] == ["completed"] * 6
    ids = [task["task_id"] for task in tasks]
    with tree.db() as db:
        moves = db.execute(f"select at, from_state, to_state from task_event where kind = 'transition' and "
                           f"'executing' in (from_state, to_state) and task_id in ({','.join('?' * len(ids))})",
                           ids).fetchall()
    running = peak = 0
    for _, _, to in sorted(moves, key=lambda move: (move[0], move[2] == "executing")):   # ends first at a tie
        running += 1 if to == "executing" else -1
        peak = max(peak, running)
    assert len(moves) == 2 * len(ids) and peak == 2


def test_the_argument_template_shapes_the_tool_call(write_config, start_tree):
    tree = start_tree(write_config(executors={"coder": {
        "arguments": {"prompt": "[task {task_id} from {sender}] {description}", "workFolder": "{home}/work"}}}))
    [task] = submit_and_wait(tree, ["fix the python bug {not a field}"], sender="telegram:42")
    assert task["executor"] == "coder"
    assert task["result"] == f"coder done: [task {task['task_id']} from telegram:42] fix the python bug {{not a field}}"


def test_every_mcp_call_and_transition_is_a_json_line(write_config, start_tree):
    tree = start_tree(write_config())
    [task] = submit_and_wait(tree, ["log me"], kind="general")   # the classifier reads "log me" as heavy
    lines = [json.loads(line) for line in (tree.cfg.log_dir / "events.jsonl").read_text().splitlines()]
    calls = [line for line in lines if line["event"] == "mcp_call" and line["task_id"] == task["task_id"]]
    moves = [line["to_state"] for line in lines if line["event"] == "transition" and line["task_id"] == task["task_id"]]
    assert calls and calls[0]["executor"] == "general" and calls[0]["tool"] == "run_task"
    assert calls[0]["outcome"] == "completed" and calls[0]["duration_s"] >= 0
    assert moves == ["idle", "dispatching", "executing", "completed"]


def test_list_tasks_filters_by_state_and_checks_its_arguments(write_config, start_tree):
    tree = start_tree(write_config())
    submit_and_wait(tree, ["one", "two [fail]", "three"])

    async def scenario():
        async with GatewaySession(tree.url, TOKEN) as gateway:
            failed = await gateway.call("list_tasks", state="failed")
            recent = await gateway.call("list_tasks", limit=2)
            try:
                await gateway.call("list_tasks", state="sleeping")
            except Exception as error:
                return failed, recent, str(error)

    failed, recent, error = asyncio.run(scenario())
    assert [t["description"] for t in failed["tasks"]] == ["two [fail]"]
    assert [t["description"] for t in recent["tasks"]] == ["three", "two [fail]"]
    assert error.startswith("list_tasks: 'state': expected one of idle, dispatching, executing")
    assert 'got "sleeping"' in error


def test_an_unreachable_executor_is_marked_down_without_crashing_the_actor(write_config, start_tree):
    tree = start_tree(write_config(executors={"general": {"command": "/nonexistent/mcp-server", "connect_timeout_s": 2,
                                                          "respawn_initial_s": 0.05, "respawn_max_s": 0.2}}),
                      wait_for_executors=False)
    wait_until(lambda: tree.ask("general", Introspect())["link"].startswith("down: "), 10, "general marked down")
    assert "/nonexistent/mcp-server" in tree.ask("general", Introspect())["link"]
    restarts = {actor["name"]: actor["restarts"] for actor in tree.ask("supervisor", Introspect())}
    assert restarts["general"] == 0, "a dead MCP server is the executor's business, not a crash"


def test_tasks_queued_on_a_dead_executor_are_routed_to_a_healthy_alternative(write_config, start_tree):
    tree = start_tree(write_config(executors={"coder": {"command": "/nonexistent/mcp-server", "connect_timeout_s": 2,
                                                        "respawn_initial_s": 1, "respawn_max_s": 5}}),
                      wait_for_executors=False)
    wait_until(lambda: tree.ask("coder", Introspect())["link"].startswith("down: "), 10, "coder marked down")
    [task] = submit_and_wait(tree, ["refactor the python module"])
    assert task["state"] == "completed" and task["kind"] == "coding" and task["executor"] == "general"


def test_24_7_and_gpu_work_goes_to_the_moltworker_stand_in_by_its_needs(write_config, start_tree):
    tree = start_tree(write_config())
    heavy, general, zh = submit_and_wait(tree, ["Render the launch video on a GPU", "Summarise my inbox",
                                                "每天爬取新聞並整理"])
    assert (heavy["kind"], heavy["executor"], heavy["state"]) == ("gpu", "moltworker", "completed")
    assert heavy["result"] == "moltworker done: Render the launch video on a GPU"
    assert (zh["kind"], zh["executor"]) == ("heavy", "moltworker")
    assert (general["kind"], general["executor"]) == ("general", "general")
