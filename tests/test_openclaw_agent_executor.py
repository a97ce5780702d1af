"""OpenClaw's agent as the general executor (mcp_servers/openclaw_agent.py), against the REAL OpenClaw gateway.

The session's one gateway (tests/real_openclaw.py: a start takes 13–30 s), offline: its model providers are
sandbox/providers.py upstreams on loopback. Agents: `main` (upstream `openclaw_model`, answers), `slow` (upstream
`slow`, answers after 10 minutes: for cancel and timeout), `broken` (upstream `broken`, HTTP 500: OpenClaw retries
it), `ghost` (a model no provider has). The tests' own WebSocket probe (`rpc`) asks the gateway what became of a
run.
"""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from mcp import ClientSession, StdioServerParameters, stdio_client

from clients.gateway_client import GatewaySession
from config import PROJECT_ROOT
from mcp_servers.openclaw_agent import GatewayRefused, RunWatch, _turn_on, task_scope
from sandbox.openclaw_world import OpenClawWorld

from .conftest import TOKEN, free_port, wait_until
from .real_openclaw import MODEL_UPSTREAM

TURN_S = 120.0          # a first turn in a fresh workspace took 18 s on a loaded machine


# --- the world: the session's real gateway (tests/real_openclaw.py), and our own look at it --------------------
def rpc(world: OpenClawWorld, method: str, params: dict[str, Any], timeout_s: float = 30) -> dict[str, Any]:
    """The test's own look at the gateway: one request on a fresh connection, its response frame."""
    async def ask() -> dict[str, Any]:
        async with aiohttp.ClientSession() as http, http.ws_connect(world.url, max_msg_size=0) as ws:
            await ws.receive_json(timeout=10)
            await ws.send_json({"type": "req", "id": "c", "method": "connect", "params": {
                "minProtocol": 4, "maxProtocol": 4, "role": "operator", "caps": [],
                "client": {"id": "cli", "version": "test", "platform": "linux", "mode": "cli"},
                "scopes": ["operator.read", "operator.write"], "auth": {"token": world.token}}})
            while (await ws.receive_json(timeout=10)).get("id") != "c":
                pass
            await ws.send_json({"type": "req", "id": "q", "method": method, "params": params})
            while (frame := await ws.receive_json(timeout=timeout_s)).get("id") != "q":
                pass
            return frame
    return asyncio.run(ask())


@pytest.fixture
def gateway(openclaw_world) -> OpenClawWorld:
    """The session's gateway, its upstreams reset (`openclaw_world`)."""
    return openclaw_world


# --- calling our MCP server the way an executor does --------------------------------------------------------
def server_args(url: str, *extra: str) -> list[str]:
    return ["-m", "mcp_servers.openclaw_agent", "--url", url, *extra]


def call_tool(args: list[str], arguments: dict[str, Any], env: dict[str, str]) -> tuple[Any, list[str]]:
    """One run_agent_turn over stdio: (result, progress messages)."""
    async def call():
        params = StdioServerParameters(command=sys.executable, args=args, cwd=str(PROJECT_ROOT), env=env)
        messages: list[str] = []

        async def progress(done, total, message):
            messages.append(message or "")
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            result = await session.call_tool("run_agent_turn", arguments, read_timeout_seconds=TURN_S,
                                             progress_callback=progress)
            return result, messages
    return asyncio.run(call())


def text(result) -> str:
    return " ".join(part.text for part in result.content)


def executor(gateway: OpenClawWorld, monkeypatch, *extra: str, **settings: Any) -> dict[str, Any]:
    """The `general` executor as config/default.yaml has it, on the test gateway."""
    monkeypatch.setenv("OMNI_TEST_OPENCLAW_TOKEN", gateway.token)
    return {"general": {"transport": "stdio", "command": "python", "args": server_args(gateway.url, *extra),
                        "env": {"OPENCLAW_GATEWAY_TOKEN": "${OMNI_TEST_OPENCLAW_TOKEN}"},
                        "tool": "run_agent_turn",
                        "arguments": {"prompt": "{description}", "task_id": "{task_id}"},
                        "call_timeout_s": TURN_S, **settings}}


async def submit(tree, description: str) -> dict[str, Any]:
    async with GatewaySession(tree.url, TOKEN) as omni:
        return await omni.call("submit_task", description=description, kind="general")   # routing is not tested here


async def task_when(tree, task_id: int, wait_s: float = TURN_S) -> dict[str, Any]:
    async with GatewaySession(tree.url, TOKEN) as omni:
        return await omni.call("get_task", task_id=task_id, wait_s=wait_s)


# --- through the tree -----------------------------------------------------------------------------------------
def test_a_general_task_is_answered_by_openclaws_agent(gateway, write_config, start_tree, monkeypatch):
    answer = "Your calendar is free after 3 pm (from the model behind OpenClaw)."
    gateway.models.set(MODEL_UPSTREAM, reply=answer)
    tree = start_tree(write_config(executors=executor(gateway, monkeypatch)))
    started = time.monotonic()
    task = asyncio.run(submit(tree, "What is on my calendar this afternoon?"))
    done = asyncio.run(task_when(tree, task["task_id"]))
    print(f"\none general task through OpenClaw's agent: {time.monotonic() - started:.1f}s")
    assert done["state"] == "completed", done
    assert done["result"] == answer
    scope = task_scope(str(task["task_id"]), "What is on my calendar this afternoon?")
    history = rpc(gateway, "chat.history", {"sessionKey": f"agent:main:omni-task-{scope}", "limit": 5})
    said = [m.get("content") for m in history["payload"]["messages"] if m.get("role") == "user"]
    assert said == ["What is on my calendar this afternoon?"], "the task ran in its own session, with its text"


def test_cancel_aborts_the_run_on_the_gateway(gateway, write_config, start_tree, monkeypatch):
    tree = start_tree(write_config(executors=executor(gateway, monkeypatch, "--agent", "slow")))
    calls_before = gateway.models.calls("slow")
    description = "Summarise every message of this year"
    task = asyncio.run(submit(tree, description))
    wait_until(lambda: gateway.models.calls("slow") > calls_before, TURN_S / 2, "the run to reach the model",
               interval_s=0.1)
    scope = task_scope(str(task["task_id"]), description)

    async def cancel():
        async with GatewaySession(tree.url, TOKEN) as omni:
            await omni.call("cancel_task", task_id=task["task_id"])
    cancelled_at = time.time()
    asyncio.run(cancel())
    ended = rpc(gateway, "agent.wait", {"runId": f"omni-task-{scope}.1", "timeoutMs": 30_000}, timeout_s=40)["payload"]
    print(f"\ncancel → run ended on the gateway: {ended.get('endedAt', 0) / 1000 - cancelled_at:.2f}s")
    assert ended["status"] == "error" and ended["stopReason"] == "rpc", ended
    session = rpc(gateway, "chat.history", {"sessionKey": f"agent:slow:omni-task-{scope}", "limit": 1})
    assert session["payload"]["sessionInfo"]["abortedLastRun"] is True
    assert asyncio.run(task_when(tree, task["task_id"], wait_s=0))["state"] == "cancelled"


def test_a_turn_past_its_timeout_is_aborted_and_fails_the_task_clearly(gateway, write_config, start_tree, monkeypatch):
    settings = executor(gateway, monkeypatch, "--agent", "slow")
    settings["general"]["arguments"]["timeout_s"] = 3
    tree = start_tree(write_config(executors=settings))
    task = asyncio.run(submit(tree, "Read the whole web"))
    done = asyncio.run(task_when(tree, task["task_id"]))
    run_id = f"omni-task-{task_scope(str(task['task_id']), 'Read the whole web')}.1"
    assert done["state"] == "failed"
    assert done["error"] == f"Error executing tool run_agent_turn: OpenClaw's agent did not finish within 3s: " \
                            f"run {run_id} aborted"
    ended = rpc(gateway, "agent.wait", {"runId": run_id, "timeoutMs": 10_000})["payload"]
    assert ended["status"] == "error" and ended["stopReason"] == "rpc", "the gateway's run was aborted too"


# --- the server's own answers ---------------------------------------------------------------------------------
def env_for(token: str, **extra: str) -> dict[str, str]:
    return {"OPENCLAW_GATEWAY_TOKEN": token, "PATH": os.environ.get("PATH", ""), **extra}


def test_a_wrong_token_and_a_down_gateway_are_named(gateway):
    wrong, _ = call_tool(server_args(gateway.url), {"prompt": "hello", "task_id": "w1"}, env_for("not-the-token"))
    assert wrong.is_error and text(wrong).endswith(
        f"OpenClaw gateway at {gateway.url} refused the token (AUTH_TOKEN_MISMATCH): check OPENCLAW_GATEWAY_TOKEN")
    assert "not-the-token" not in text(wrong)
    down = f"ws://127.0.0.1:{free_port()}"
    refused, _ = call_tool(server_args(down), {"prompt": "hello"}, env_for(gateway.token))
    assert refused.is_error
    assert text(refused).endswith(f"OpenClaw gateway at {down} is not reachable: connection refused")
    missing, _ = call_tool(server_args(gateway.url), {"prompt": "hello"}, env_for(""))
    assert missing.is_error and text(missing).endswith(
        "no OpenClaw gateway token: the environment variable OPENCLAW_GATEWAY_TOKEN is unset or empty "
        "(give it in the executor's env)")


def test_no_model_and_a_failing_model_say_what_the_run_said(gateway):
    ghost, _ = call_tool(server_args(gateway.url), {"prompt": "hello", "session_key": "agent:ghost:omni-test-1"},
                         env_for(gateway.token))
    assert ghost.is_error and "OpenClaw's agent failed run " in text(ghost)
    assert "Unknown model: ghost/none" in text(ghost)
    # 30 s: on a loaded machine OpenClaw's first model call (which fails at once) came 8–20 s and more after the
    # turn started, and the turn was aborted before any model error was seen
    failing, progress = call_tool(server_args(gateway.url, "--agent", "broken", "--wait-slice", "1"),
                                  {"prompt": "hello", "task_id": "b1", "timeout_s": 30}, env_for(gateway.token))
    assert failing.is_error
    assert f"OpenClaw's agent did not finish within 30s: run omni-task-{task_scope('b1', 'hello')}.1 aborted; " \
                                "last model error: ⚠️ broken/sim request failed (provider internal error, HTTP 500)" \
                                in text(failing)
    assert any("Retrying in" in message for message in progress), progress


def test_an_im_users_session_is_refused(gateway):
    refused, _ = call_tool(server_args(gateway.url), {"prompt": "hello", "session_key": "agent:main:main"},
                           env_for(gateway.token))
    assert refused.is_error and text(refused).endswith(
        "argument session_key 'agent:main:main': expected a session of this executor's own, agent:<agent>:omni-…, "
        "never an IM user's session")


def test_a_repeated_call_reattaches_and_a_retry_after_an_abort_starts_afresh(gateway):
    gateway.models.set(MODEL_UPSTREAM, reply="the same answer")
    calls = gateway.models.calls(MODEL_UPSTREAM)
    first, _ = call_tool(server_args(gateway.url), {"prompt": "hello", "task_id": "r1"}, env_for(gateway.token))
    model_calls = gateway.models.calls(MODEL_UPSTREAM) - calls
    again, _ = call_tool(server_args(gateway.url), {"prompt": "hello", "task_id": "r1"}, env_for(gateway.token))
    assert (text(first), text(again)) == ("the same answer", "the same answer") and not first.is_error
    assert gateway.models.calls(MODEL_UPSTREAM) - calls == model_calls, "the repeated call started no second run"
    aborted, _ = call_tool(server_args(gateway.url, "--agent", "slow"), {"prompt": "x", "task_id": "r2",
                                                                         "timeout_s": 2},
                           env_for(gateway.token))
    retried, _ = call_tool(server_args(gateway.url, "--agent", "slow"), {"prompt": "x", "task_id": "r2",
                                                                         "timeout_s": 2},
                           env_for(gateway.token))
    scope = task_scope("r2", "x")
    assert f"run omni-task-{scope}.1 aborted" in text(aborted) and f"run omni-task-{scope}.2 aborted" in text(retried)


class ScriptedGateway:
    """The gateway's answers to `agent` by idempotency key, as OpenClaw 2026.9.6 gave them (a refusal's text is the
    one a slow gateway gave for an aborted run's key); every run it accepts ends ok. Leaves out the WebSocket, events
    and aborts: it is for the retry rule of `_turn_on` alone."""
    where = "OpenClaw gateway at ws://scripted"
    settings = SimpleNamespace(wait_slice_s=1.0)
    on_agent_event = None

    def __init__(self, refused_keys: set[str]):
        self.refused_keys, self.asked = refused_keys, []

    async def request(self, method: str, params: dict[str, Any], timeout_s: float = 30) -> dict[str, Any]:
        if method == "agent.wait":
            return {"status": "ok", "runId": params["runId"], "terminalReply": {"text": f"done by {params['runId']}"}}
        self.asked.append(key := params["idempotencyKey"])
        if key in self.refused_keys:
            raise GatewayRefused(f"{self.where} refused agent: embedded attempt reached dispatch without an active "
                                 "admitted run")
        return {"status": "accepted", "runId": key}


async def no_progress(done: float, total: float, message: str) -> None:
    pass


def test_a_refused_key_of_an_earlier_run_moves_to_the_next_and_a_second_refusal_is_the_error():
    aborted_first = ScriptedGateway({"omni-task-s.1"})
    answer = asyncio.run(_turn_on(aborted_first, "x", "agent:main:omni-s", "s", 10, no_progress))
    assert (answer, aborted_first.asked) == ("done by omni-task-s.2", ["omni-task-s.1", "omni-task-s.2"])
    refusing = ScriptedGateway({"omni-task-s.1", "omni-task-s.2", "omni-task-s.3"})
    with pytest.raises(GatewayRefused, match="refused agent: embedded attempt"):
        asyncio.run(_turn_on(refusing, "x", "agent:main:omni-s", "s", 10, no_progress))
    assert refusing.asked == ["omni-task-s.1", "omni-task-s.2"], "a fresh key refused too is the request's fault"


def test_an_abort_after_a_model_error_leaves_the_model_error_as_the_explanation():
    watch = RunWatch(run_id="r")
    for error in ("⚠️ broken/sim request failed (provider internal error, HTTP 500)",
                  "aborted | This operation was aborted | 20"):
        watch.hear({"runId": "r", "stream": "lifecycle", "data": {"error": error}})
    assert watch.last_error == "⚠️ broken/sim request failed (provider internal error, HTTP 500)"
    watch.hear({"runId": "r", "stream": "lifecycle", "data": {"error": "Run cancelled", "aborted": True}})
    assert watch.last_error == "⚠️ broken/sim request failed (provider internal error, HTTP 500)", "flagged aborted"
    alone = RunWatch(run_id="r")
    alone.hear({"runId": "r", "stream": "lifecycle", "data": {"error": "aborted | This operation was aborted | 20"}})
    assert alone.last_error == "aborted | This operation was aborted | 20"


# --- Moltworker: a remote OpenClaw (here the local gateway on ws://, with a stand-in of its /api/status) --------
@pytest.fixture
def moltworker_status(tmp_path):
    started = []

    def start(starting_s: float) -> str:
        ready = tmp_path / f"molt-{len(started)}.json"
        process = subprocess.Popen(
            [sys.executable, "-m", "mcp_servers.moltworker_status", "--port", "0", "--starting-s", str(starting_s),
             "--require-header", "CF-Access-Client-Id=CFID", "--ready-file", str(ready)],
            cwd=PROJECT_ROOT, env={**os.environ, "CFID": "access-id-1"}, stdout=subprocess.DEVNULL)
        started.append(process)
        wait_until(ready.exists, 20, "the Moltworker status stand-in")
        return json.loads(ready.read_text())["url"]
    yield start
    for process in started:
        process.kill()
        process.wait(5)


def moltworker_args(gateway: OpenClawWorld, status_url: str, tmp_path: Path, connect_timeout_s: float) -> list[str]:
    return server_args(gateway.url, "--token-env", "MOLTWORKER_GATEWAY_TOKEN", "--connect-timeout",
                       str(connect_timeout_s), "--health-url", f"{status_url}/api/status", "--health-interval", "0.5",
                       "--header", "CF-Access-Client-Id=CF_ACCESS_CLIENT_ID",
                       "--header", "CF-Access-Client-Secret=CF_ACCESS_CLIENT_SECRET",
                       "--device-key", str(tmp_path / "moltworker-device.pem"))


def molt_env(gateway: OpenClawWorld) -> dict[str, str]:
    return {"MOLTWORKER_GATEWAY_TOKEN": gateway.token, "CF_ACCESS_CLIENT_ID": "access-id-1",
            "CF_ACCESS_CLIENT_SECRET": "access-secret-1", "PATH": os.environ.get("PATH", "")}


def test_a_moltworker_style_remote_waits_out_its_cold_start(gateway, moltworker_status, tmp_path):
    gateway.models.set(MODEL_UPSTREAM, reply="done on the remote gateway")
    status_url = moltworker_status(starting_s=2)
    result, progress = call_tool(moltworker_args(gateway, status_url, tmp_path, 60),
                                 {"prompt": "render the video overnight", "task_id": "m1"}, molt_env(gateway))
    assert not result.is_error and text(result) == "done on the remote gateway"
    assert any('"status": "starting"' in message for message in progress), progress
    with urllib.request.urlopen(f"{status_url}/admin/requests", timeout=5) as response:
        seen = json.loads(response.read())["requests"]
    assert seen and all(request["access_headers_ok"] for request in seen), "the Access headers went with each probe"
    assert (tmp_path / "moltworker-device.pem").stat().st_mode & 0o777 == 0o600, "the device key is owner-only"


def test_a_remote_that_never_gets_ready_fails_within_its_connect_timeout(gateway, moltworker_status, tmp_path):
    status_url = moltworker_status(starting_s=10_000)
    result, _ = call_tool(moltworker_args(gateway, status_url, tmp_path, 3), {"prompt": "x", "task_id": "m2"},
                          molt_env(gateway))
    assert result.is_error and text(result).endswith(
        f'{status_url}/api/status did not report ready within 3s (the connect timeout): last answer '
        '{"ok": false, "status": "starting"}')
    no_access, _ = call_tool(moltworker_args(gateway, status_url, tmp_path, 3), {"prompt": "x", "task_id": "m3"},
                             {**molt_env(gateway), "CF_ACCESS_CLIENT_ID": "someone-else"})
    assert no_access.is_error and text(no_access).endswith(
        f"{status_url}/api/status refused us: HTTP 403 "
        "(Cloudflare Access: check the CF-Access-Client-Id/-Secret headers)")
