"""The sandbox's general executor is OpenClaw's real agent when OpenClaw is installed (config `sandbox_openclaw`):
a real gateway started by the tree, our `mcp_servers.openclaw_agent` as the executor, the agent's model a
simulated provider on loopback. Without the install the stub stays."""
from __future__ import annotations

import asyncio
import os

import pytest

from clients.gateway_client import GatewaySession
from config import EMBEDDED_DEFAULT, load_config
from messages import Introspect
from sandbox.openclaw_world import free_port

from .conftest import TOKEN
from .real_openclaw import _require_install


def test_without_openclaw_installed_the_sandbox_keeps_its_stub_general_executor(monkeypatch, tmp_path):
    monkeypatch.setenv("OMNI_CACHE", str(tmp_path / "empty-cache"))
    cfg = load_config(EMBEDDED_DEFAULT)
    assert cfg.sandbox_openclaw is None
    assert cfg.executors["general"].args == ("-m", "sandbox.executors", "general")


@pytest.mark.slow   # needs `make openclaw`, which `make test-fast` does not run
def test_with_openclaw_installed_the_general_executor_is_our_openclaw_agent_server():
    _require_install()
    cfg = load_config(EMBEDDED_DEFAULT)
    general = cfg.executors["general"]
    assert (general.tool, general.args[:2]) == ("run_agent_turn", ("-m", "mcp_servers.openclaw_agent"))
    assert f"ws://127.0.0.1:{cfg.sandbox_openclaw.port}" in general.args
    assert cfg.sandbox_openclaw.token not in repr(cfg.sandbox_openclaw)


def test_a_general_task_is_answered_by_the_real_openclaw_agent_and_the_gateway_stops_with_the_tree(
        write_config, start_tree, openclaw_models, monkeypatch):
    _require_install()
    monkeypatch.setenv("OMNI_SANDBOX_OPENCLAW_TOKEN", "sandbox-test-gateway-token")
    openclaw_models.reset()
    tree = start_tree(write_config(sandbox_openclaw={
        "port": free_port(), "executor": "general", "model_url": openclaw_models.base_url,
        "token": "${OMNI_SANDBOX_OPENCLAW_TOKEN}"}))
    assert tree.cfg.executors["general"].tool == "run_agent_turn"

    async def scenario():
        async with GatewaySession(tree.url, TOKEN, timeout_s=200) as gateway:
            task = await gateway.call("submit_task", description="Summarise my notes",
                                      kind="general")
            return await gateway.call("get_task", task_id=task["task_id"], wait_s=180)

    done = asyncio.run(scenario())
    assert (done["state"], done["executor"]) == ("completed", "general"), done
    assert "[openclaw_model]" in done["result"] and "Summarise my notes" in done["result"]
    pid = tree.ask("sandbox_openclaw", Introspect())["pid"]
    assert pid and openclaw_models.calls("openclaw_model") >= 1
    tree.supervisor.stop(block=True, timeout=30)
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)
