"""Cloud outages: detect, suspend, load the local model from cold, notify, resume, unload — with the real
proxy in front of simulated providers that hang, and small timeouts."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import time

import pytest

from clients.gateway_client import GatewaySession
from messages import GetMode, Introspect
from sandbox.providers import ProvidersAdmin
from sandbox.tiny_model import make_tiny_qwen2

from .conftest import TOKEN, task_states, wait_until
from .test_litellm_failover import admin, guard, notices, proxy_pid, start_with_models

FAST_HEALTH = {"interval_s": 0.25, "timeout_s": 0.6, "timeouts_to_down": 3, "brainstem_interval_s": 0.4,
               "successes_to_up": 2}
CLOUD = ("free", "paid", "direct")


def set_cloud(providers: ProvidersAdmin, mode: str) -> None:
    for name in CLOUD:
        providers.set(name, mode)


def mode(tree) -> str:
    return tree.ask("system_mode", GetMode())["mode"]


def journal(tree, event: str) -> list[dict]:
    lines = (tree.cfg.log_dir / "events.jsonl").read_text().splitlines()
    return [entry for entry in map(json.loads, lines) if entry["event"] == event]


def journal_of(home, event: str, since: float) -> list[dict]:
    """The journal's `event` entries from wall-clock `since` on (a supervisor process's: read from its home)."""
    lines = (home / "logs" / "events.jsonl").read_text(encoding="utf-8").splitlines()
    return [entry for entry in map(json.loads, lines) if entry["event"] == event and entry["ts"] >= since]


def submit_all(url, descriptions, **fields):
    async def scenario():
        async with GatewaySession(url, TOKEN) as gateway:
            return [await gateway.call("submit_task", description=d, **fields) for d in descriptions]
    return asyncio.run(scenario())


@pytest.fixture
def tiny_model(tmp_path_factory):
    return make_tiny_qwen2(tmp_path_factory.mktemp("tiny-qwen2"))


def test_an_outage_suspends_waits_and_resumes_with_the_seeds_thresholds(start_tree, write_config, live_models,
                                                                         tiny_model):
    tree = start_with_models(start_tree, write_config, live_models, health=FAST_HEALTH, locale="zh-Hant",
                             brainstem={"model_path": str(tiny_model)})
    running = submit_all(tree.url, [f"長任務 {i} [sleep=6]" for i in range(3)], sender="telegram:42",
                         kind="general")   # the outage is tested, not routing: the classifier reads 長任務 as heavy
    ids = [task["task_id"] for task in running]
    wait_until(lambda: all(task_states(tree.cfg.database_path)[i] == "executing" for i in ids), 10, "executing")

    hang_started = time.time()
    set_cloud(admin(tree), "hang")
    wait_until(lambda: mode(tree) == "brainstem", 15, "brainstem mode")
    # After the hang: on a starved machine the fast health settings' 0.6 s pings may time out while the tree
    # starts too (an episode of its own, before this one).
    entered = next(e for e in journal(tree, "mode") if e["mode"] == "brainstem" and e["ts"] >= hang_started)
    before = [e["consecutive_timeouts"] for e in journal(tree, "cloud_evidence")
              if hang_started <= e["ts"] <= entered["ts"]]
    assert before[-1] == 3, "entered at the third consecutive timeout"
    assert all(count < 3 for count in before[:-1]), "and not before it"
    assert guard(tree)["route"] == "proxy", "the proxy is alive: this is the cloud, not LiteLLM"

    wait_until(lambda: all(task_states(tree.cfg.database_path)[i] == "waiting" for i in ids), 5, "suspended")
    wait_until(lambda: all(not tree.ask(name, Introspect())["running"] for name in tree.cfg.executors), 10,
               "every suspended MCP call cancelled: nothing runs")
    wait_until(lambda: "雲端離線，任務已掛起" in notices(tree), 5, "the outage notice")
    with sqlite3.connect(tree.cfg.database_path) as db:
        # The latest (this outage's): a start-up episode may have left one before, with nothing running.
        to = json.loads(db.execute("select data from system_event where detail = '雲端離線，任務已掛起' order by rowid "
                                   "desc").fetchone()[0])["to"]
        snapshot = json.loads(db.execute("select data from system_event where kind = 'snapshot' order by rowid desc")
                              .fetchone()[0])
    assert to == ["telegram:42"] and sorted(snapshot["waiting"]) == sorted(ids)
    [late] = submit_all(tree.url, ["幫我查明天的天氣"], sender="telegram:42")
    assert late["note"].startswith("收到。雲端目前離線，任務已排隊")
    wait_until(lambda: task_states(tree.cfg.database_path)[late["task_id"]] == "waiting", 5, "a new task waits")
    wait_until(lambda: tree.ask("brainstem", Introspect())["model"] == "loaded", 30, "the local model loaded")

    back = time.time()
    set_cloud(admin(tree), "ok")
    wait_until(lambda: mode(tree) == "normal", 15, "back to normal")
    recovery = [e for e in journal(tree, "cloud_evidence") if e["ok"] and e["ts"] >= back]
    assert [e["consecutive_answers"] for e in recovery[:2]] == [1, 2], "resumed after exactly 2 good pings"
    wait_until(lambda: all(task_states(tree.cfg.database_path)[i] == "completed" for i in ids + [late["task_id"]]),
               30, "every task completed")
    assert "雲端已恢復，任務恢復中" in notices(tree)
    wait_until(lambda: tree.ask("brainstem", Introspect())["model"] == "unloaded", 10, "the model unloaded")
    loads = [e["action"] for e in journal(tree, "local_model") if e["ts"] >= entered["ts"]]
    assert loads == ["load", "unload"], "loaded once, unloaded once"


def test_without_a_model_brainstem_works_with_fixed_texts_and_says_so(start_tree, write_config, live_models):
    tree = start_with_models(start_tree, write_config, live_models, health=FAST_HEALTH,
                             brainstem={"model_path": None})
    set_cloud(admin(tree), "hang")
    wait_until(lambda: mode(tree) == "brainstem", 15, "brainstem mode")
    wait_until(lambda: any("without a local model" in text for text in notices(tree)), 10, "the no-model notice")
    [late] = submit_all(tree.url, ["what's on my calendar?"])
    assert late["note"] == "Got it. The cloud is offline, so this task is queued; it will run when the cloud is back."
    set_cloud(admin(tree), "ok")
    wait_until(lambda: task_states(tree.cfg.database_path)[late["task_id"]] == "completed", 20, "completed after")


def test_a_dead_proxy_is_degraded_mode_not_brainstem(start_tree, write_config, models_world, omni_home):
    tree = start_with_models(start_tree, write_config, models_world, health=FAST_HEALTH,
                             litellm={"restart_command": "/bin/false"})
    os.kill(proxy_pid(omni_home), signal.SIGKILL)
    wait_until(lambda: mode(tree) == "degraded", 10, "degraded mode")
    degraded_at = next(e for e in journal(tree, "mode") if e["mode"] == "degraded")["ts"]
    wait_until(lambda: sum(e["ts"] > degraded_at and e["ok"] for e in journal(tree, "cloud_evidence")) >= 6, 30,
               "six pings answered on the direct route")
    assert [e["mode"] for e in journal(tree, "mode") if e["ts"] >= degraded_at] == ["degraded"], "never brainstem"
    assert mode(tree) == "degraded"


def test_a_flapping_cloud_loses_and_duplicates_no_task(start_tree, write_config, live_models):
    tree = start_with_models(start_tree, write_config, live_models, health=FAST_HEALTH)
    providers = admin(tree)
    ids = []
    deadline = time.monotonic() + 6
    flips = 0
    while time.monotonic() < deadline:   # up/down every ping, with work arriving all along
        set_cloud(providers, "hang" if flips % 2 == 0 else "ok")
        flips += 1
        ids += [task["task_id"] for task in submit_all(tree.url, [f"job {len(ids)} [sleep=0.3]"], kind="general")]
        time.sleep(FAST_HEALTH["interval_s"] + FAST_HEALTH["timeout_s"])
    set_cloud(providers, "ok")
    wait_until(lambda: mode(tree) == "normal" and all(
        task_states(tree.cfg.database_path).get(i) == "completed" for i in ids), 60, "every task completed")
    assert sorted(task_states(tree.cfg.database_path)) == sorted(ids), "no task lost, none duplicated"
    with sqlite3.connect(tree.cfg.database_path) as db:
        completions = db.execute("select task_id, count(*) from task_event where to_state = 'completed' "
                                 "group by task_id").fetchall()
    assert all(count == 1 for _, count in completions) and len(completions) == len(ids)


def test_sigkill_during_the_outage_comes_back_in_brainstem_and_resumes(write_config, models_world,
                                                                      supervisor_process, omni_home):
    config = write_config(models=models_world, health={**FAST_HEALTH, "brainstem_interval_s": 1.5})
    first = supervisor_process(config)
    wait_until(lambda: (omni_home / "providers.json").exists(), 30, "the providers")
    providers = ProvidersAdmin(json.loads((omni_home / "providers.json").read_text())["admin"])
    ids = [task["task_id"] for task in submit_all(first.url, [f"job {i} [sleep=5]" for i in range(4)],
                                                      kind="general")]
    wait_until(lambda: any(s == "executing" for s in task_states(omni_home / "omni.db").values()), 60, "executing")
    set_cloud(providers, "hang")
    wait_until(lambda: set(task_states(omni_home / "omni.db").values()) == {"waiting"}, 30, "all suspended")
    first.kill()

    restarted_at = time.time()
    second = supervisor_process(config)   # new providers answer: the cloud is back, but the mode is remembered

    async def status():
        async with GatewaySession(second.url, TOKEN) as gateway:
            return await gateway.call("system_status")
    wait_until(lambda: journal_of(omni_home, "mode", restarted_at), 30, "the restarted run's first mode")
    first_mode = journal_of(omni_home, "mode", restarted_at)[0]
    assert (first_mode["mode"], first_mode["reason"]) == ("brainstem", "still offline after a restart: staying in "
                                                                       "brainstem mode")
    wait_until(lambda: all(task_states(omni_home / "omni.db")[i] == "completed" for i in ids), 60,
               "every task completed after the restart")
    wait_until(lambda: asyncio.run(status())["mode"] == "normal", 60, "normal mode after the restart")
    # The proxy the killed run left behind is ours: the new keeper adopts it (or finds it answering), never
    # calls that a failed start.
    keeper_actions = [e["detail"] for e in journal_of(omni_home, "proxy", restarted_at)
                      if e["detail"].startswith(("proxy start", "proxy adopt", "proxy restart"))]
    assert all(detail.endswith(": ok") for detail in keeper_actions), keeper_actions
