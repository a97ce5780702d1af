"""`python supervisor.py drill NAME` against a running sandbox: each fault is put in place, shows its
failover, and `drill heal` removes it."""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest

from clients.gateway_client import GatewaySession
from config import PROJECT_ROOT

from .conftest import TOKEN, wait_until
from .test_brainstem import FAST_HEALTH

pytestmark = pytest.mark.slow   # runs supervisor.py as a process


def drill(config, name) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "supervisor.py", "--config", str(config), "drill", name],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)


def status(url) -> dict:
    async def ask():
        async with GatewaySession(url, TOKEN) as gateway:
            return await gateway.call("system_status")
    return asyncio.run(ask())


def shows(url, **expected) -> bool:
    """Whether one system_status answer holds every expected value."""
    now = status(url)
    return all(now[name] == value for name, value in expected.items())


def journal(home, event) -> list[dict]:
    lines = (home / "logs" / "events.jsonl").read_text().splitlines()
    return [entry for entry in map(json.loads, lines) if entry["event"] == event]


def test_every_drill_puts_its_fault_in_place_and_heal_removes_them(write_config, models_world, supervisor_process,
                                                                   omni_home):
    config = write_config(models=models_world, health=FAST_HEALTH, litellm={"restart_command": "/bin/true"})
    supervisor = supervisor_process(config)
    wait_until(lambda: status(supervisor.url)["route"] == "proxy" and any(
        e["ok"] for e in journal(omni_home, "cloud_evidence")), 90, "the proxy answering pings")

    done = drill(config, "rate-limit")
    assert done.returncode == 0 and "429" in done.stdout
    wait_until(lambda: any(e["tier"] == "P1" for e in journal(omni_home, "tier_cooling")), 10, "P1 cooling down")

    done = drill(config, "actor-crash")
    assert done.returncode == 0, done.stderr
    wait_until(lambda: next(a for a in status(supervisor.url)["actors"] if a["name"] == "router")["restarts"] == 1,
               10, "the router restarted")

    done = drill(config, "executor-crash")
    assert done.returncode == 0, done.stderr
    wait_until(lambda: any(e["event"] == "executor_down" for e in map(json.loads, (
        omni_home / "logs" / "events.jsonl").read_text().splitlines())), 10, "an executor noticed down")
    wait_until(lambda: all(e["link"] == "up" for e in status(supervisor.url)["executors"].values()), 20, "respawned")

    done = drill(config, "litellm-kill")
    assert done.returncode == 0 and "SIGKILLed the LiteLLM proxy" in done.stdout
    wait_until(lambda: shows(supervisor.url, route="direct", mode="degraded"), 10,
               "direct route, degraded mode")     # two actors: the mode follows the route a moment later

    done = drill(config, "cloud-outage")
    assert done.returncode == 0 and "hangs" in done.stdout
    wait_until(lambda: status(supervisor.url)["mode"] == "brainstem", 20, "brainstem mode")

    done = drill(config, "heal")
    assert done.returncode == 0 and "providers back to ok" in done.stdout and "LiteLLM proxy restarted" in done.stdout
    wait_until(lambda: status(supervisor.url)["mode"] == "normal" and status(supervisor.url)["route"] == "proxy",
               60, "healed: normal mode on the proxy route")


def test_an_unknown_drill_or_no_supervisor_is_a_clear_error(write_config):
    done = drill(write_config(), "meteor-strike")
    assert done.returncode == 1 and "unknown drill 'meteor-strike'; the drills are: litellm-kill" in done.stderr
    done = drill(write_config(), "cloud-outage")
    assert done.returncode == 1 and "no supervisor is running" in done.stderr
