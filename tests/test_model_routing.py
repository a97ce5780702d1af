"""Tiers and routes as tasks see them: model classification, P2 by rule within budget, waiting with a
reason, and executors respawned onto the current model route."""
from __future__ import annotations

import asyncio
import os
import signal
import sqlite3

from clients.gateway_client import GatewaySession
from messages import Introspect

from .conftest import TOKEN, wait_until
from .test_litellm_failover import guard, proxy_pid, start_with_models


def submit(tree, description, wait_s=30, **fields):
    async def scenario():
        async with GatewaySession(tree.url, TOKEN) as gateway:
            task = await gateway.call("submit_task", description=description, **fields)
            return await gateway.call("get_task", task_id=task["task_id"], wait_s=wait_s)
    return asyncio.run(scenario())


def decisions(tree, task_id) -> list[str]:
    with sqlite3.connect(tree.cfg.database_path) as db:
        return [row[0] for row in db.execute("select reason from task_event where task_id = ? and kind = 'decision'",
                                             (task_id,))]


def test_text_the_classifier_is_unsure_of_is_classified_by_a_p1_model_and_its_rule_picks_p2(start_tree, write_config,
                                                                                            live_models):
    # research is no kind of the local classifier: only a model can name it, and it is asked only below the
    # confidence threshold (1.0 here: every verdict is below it)
    tree = start_with_models(start_tree, write_config, live_models, routing={"confidence_threshold": 1.0})
    task = submit(tree, "研究一下台灣的電動車市場")
    assert (task["state"], task["kind"], task["tier"]) == ("completed", "research", "P2")
    with sqlite3.connect(tree.cfg.database_path) as db:
        why = db.execute("select reason from task_event where task_id = ? and to_state = 'dispatching'",
                         (task["task_id"],)).fetchone()[0]
        classify_cost = db.execute("select tier, route, usd from cost_entry where task_id = ?",
                                   (task["task_id"],)).fetchall()
    assert "a P1 model classified it" in why and "the task needs the paid tier and the budget allows it" in why
    assert classify_cost == [("P1", "proxy", 0)]


def test_a_task_asking_for_p2_beyond_the_budget_waits_idle_with_the_reason(start_tree, write_config, live_models):
    tree = start_with_models(start_tree, write_config, live_models, budget={"daily_usd": 0.0})
    task = submit(tree, "write the quarterly report", tier="P2", wait_s=2)
    assert task["state"] == "idle"
    reasons = wait_until(lambda: decisions(tree, task["task_id"]), 5, "the waiting reason")
    assert reasons == ["waiting: the task needs P2 but the daily budget for paid models ($0.00) is used up "
                       "($0.00 spent, $0.00 held)"]
    free = submit(tree, "write the weekly report")
    assert (free["state"], free["tier"]) == ("completed", "P1"), "free work goes on"


def test_executors_on_the_model_route_are_respawned_onto_the_direct_route(start_tree, write_config, models_world,
                                                                         omni_home):
    tree = start_with_models(start_tree, write_config, models_world, executors={"general": {"model_route": True}})
    assert submit(tree, "[route]")["result"] == f"general route: {tree.cfg.litellm.url}/v1"
    os.kill(proxy_pid(omni_home), signal.SIGKILL)
    wait_until(lambda: guard(tree)["route"] == "direct", 10, "direct mode")
    wait_until(lambda: tree.ask("general", Introspect())["link"] == "up", 20, "general respawned")
    direct = tree.cfg.litellm.tiers["P1"].direct_api_base
    assert submit(tree, "[route]")["result"] == f"general route: {direct}"
