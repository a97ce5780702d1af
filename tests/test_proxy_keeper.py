"""The managed proxy's keeper, with a real LiteLLM proxy process in front of the simulated providers:
a start that fails is reported at once (the route goes direct, the mode degraded, the repair flow
begins), a proxy of ours left running by an earlier run is adopted rather than called a failed start,
and its snapshot never waits on the proxy.
"""
from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import threading
import time

import pytest

from clients.gateway_client import GatewaySession
from clients.litellm_proxy import start_proxy
from config import load_config
from messages import GetMode, Introspect

from .conftest import TOKEN, wait_until
from .test_litellm_failover import ask_model, guard, journal, notices, proxy_pid, start_with_models

HUNG_READING_S = 15      # the probe timeout in the snapshot test: a snapshot that waited on the proxy takes that
SNAPSHOT_BOUND_S = 5     # long enough for a busy machine, far below HUNG_READING_S
ASK_INTERVAL_S = 0.05    # the snapshot test asks 20 times a second (the console: 3), not in a loop that takes a core


def system_status(tree) -> dict:
    async def ask():
        async with GatewaySession(tree.url, TOKEN) as gateway:
            return await gateway.call("system_status")
    return asyncio.run(ask())


def keeper(tree, timeout_s: float = 10) -> dict:
    return tree.ask("proxy_keeper", Introspect(), timeout_s=timeout_s)


def repair_tasks(tree) -> list[str]:
    with sqlite3.connect(tree.cfg.database_path) as db:
        return [row[0] for row in db.execute("select state from task where kind = 'repair'")]


def reported_down_at_once(tree, bound_s: float = 20) -> float:
    """What a user sees once the keeper's start failed: direct calls, degraded mode, a repair under way.
    The seconds it took to reach degraded mode (`bound_s`: far below the start deadline of 60 s, which
    is when a keeper that did not report would be noticed)."""
    began = time.monotonic()
    wait_until(lambda: tree.ask("system_mode", GetMode())["mode"] == "degraded", bound_s, "degraded mode")
    took = time.monotonic() - began
    # the simulated providers start on an actor thread of their own: the direct call below needs them up
    wait_until(lambda: (tree.cfg.home / "providers.json").exists(), 30, "the simulated providers")
    status = system_status(tree)
    assert (status["mode"], status["route"]) == ("degraded", "direct")
    assert guard(tree)["route"] == "direct"
    assert ask_model(tree).route == "direct"
    wait_until(lambda: repair_tasks(tree), 10, "a repair task")
    assert any("LiteLLM model router is down" in text for text in notices(tree))
    return took


def test_a_proxy_killed_while_starting_is_reported_at_once(start_tree, write_config, models_world, omni_home):
    models_world["litellm"]["restart_command"] = "/bin/false"   # the repair fails: the proxy stays down
    tree = start_tree(write_config(models=models_world), wait_for_executors=False)
    pid_file = omni_home / "litellm.pid"
    wait_until(pid_file.exists, 30, "the keeper spawning the proxy")
    os.kill(proxy_pid(omni_home), signal.SIGKILL)   # a fresh process: it is seconds from answering
    assert not guard(tree)["proxy_answered"], "killed while starting"
    took = reported_down_at_once(tree)   # not after the start deadline (60 s here)
    print(f"\n[measure] SIGKILL while starting -> degraded mode: {took:.2f} s")
    assert keeper(tree)["start_failure"].startswith("LiteLLM proxy exited")


def test_a_taken_port_is_reported_at_once(start_tree, write_config, models_world):
    port = int(models_world["litellm"]["url"].rsplit(":", 1)[1])
    with socket.socket() as squatter:   # listens and never answers: not a proxy
        squatter.bind(("127.0.0.1", port))
        squatter.listen(16)
        models_world["litellm"]["restart_command"] = "/bin/false"
        tree = start_tree(write_config(models=models_world), wait_for_executors=False)
        reported_down_at_once(tree)
        assert any(f"already listens on 127.0.0.1:{port}" in text for text in notices(tree))


def test_a_proxy_left_running_by_an_earlier_run_is_adopted_not_a_failed_start(start_tree, write_config,
                                                                             models_world, omni_home):
    """A SIGKILLed supervisor leaves its detached proxy running. The next keeper finds it not answering yet
    (here: stopped until the keeper has acted) and waits for it as for a start of its own."""
    models_world["litellm"]["restart_command"] = "/bin/false"   # no repair may hide a failed start
    config = write_config(models=models_world)
    cfg = load_config(config)
    earlier_run = threading.Thread(target=start_proxy, args=(cfg.litellm, cfg.home), daemon=True)
    earlier_run.start()
    wait_until((omni_home / "litellm.pid").exists, 30, "the earlier run's proxy spawned")
    orphan = proxy_pid(omni_home)
    os.kill(orphan, signal.SIGSTOP)
    try:
        tree = start_tree(config, wait_for_executors=False)
        wait_until(lambda: keeper(tree)["action"] == "start", 30, "the keeper acting on a proxy that does not answer")
    finally:
        os.kill(orphan, signal.SIGCONT)
    wait_until(lambda: guard(tree)["proxy_answered"] and guard(tree)["route"] == "proxy", 90,
               "the guard to see the adopted proxy answer")
    wait_until(lambda: keeper(tree)["last"], 30, "the keeper's start to end")
    assert keeper(tree)["last"] == "adopt: ok"
    assert proxy_pid(omni_home) == orphan and keeper(tree)["start_failure"] is None
    assert tree.ask("system_mode", GetMode())["mode"] == "normal"
    assert journal(tree, "route", "mode") == [] and repair_tasks(tree) == []
    assert ask_model(tree).route == "proxy"
    earlier_run.join(30)


def test_snapshots_answer_at_once_while_the_proxy_hangs(start_tree, write_config, models_world, omni_home):
    models_world["litellm"].update(restart_command="/bin/false",   # keep the hung proxy in place
                                   probe_timeout_s=HUNG_READING_S)
    tree = start_with_models(start_tree, write_config, models_world)
    wait_until(lambda: keeper(tree)["answers"], 30, "the keeper reading a live proxy")
    pid = proxy_pid(omni_home)
    os.kill(pid, signal.SIGSTOP)   # its socket still accepts; nothing answers
    try:
        asked, mailboxes, slowest = 0, [], 0.0
        deadline = time.monotonic() + HUNG_READING_S + 60
        while True:   # asking as the console does, only faster: every answer comes within the bound
            began = time.perf_counter()
            reading = keeper(tree, timeout_s=SNAPSHOT_BOUND_S)
            slowest = max(slowest, time.perf_counter() - began)
            mailboxes += [reading["mailbox"],
                          tree.ask("litellm_guard", Introspect(), timeout_s=SNAPSHOT_BOUND_S)["mailbox"]]
            asked += 1
            if reading["answers"] is False and asked >= 12:
                break   # meanwhile the slow reading went on, on the keeper's own timer, and saw the hang
            if time.monotonic() > deadline:
                pytest.fail(f"the keeper's snapshot never said the hung proxy does not answer: {reading}")
            time.sleep(ASK_INTERVAL_S)
        print(f"\n[measure] {asked} keeper snapshots of a hung proxy (a reading takes {HUNG_READING_S} s), "
              f"slowest {slowest * 1000:.1f} ms, fullest mailbox {max(mailboxes)}")
    finally:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:   # the keeper may have killed the hung proxy meanwhile (on a starved machine)
            pass
