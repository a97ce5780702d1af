"""Routing by the local classifier, end to end through the real tree: rules win, the confidence threshold
decides whether a P1 model is asked, the classifier's kind stands when no model answers, needs pick an
executor that provides them (or the task waits saying why), and `/why` and `get_task` show the evidence."""
from __future__ import annotations

import asyncio
import sqlite3

from clients.gateway_client import GatewaySession
from config.schema import RoutingConfig, RoutingRule
from messages import TaskView
from routing.decide import decide_kind

from .conftest import TOKEN, wait_until
from .test_executors import submit_and_wait
from .test_litellm_failover import admin, start_with_models

GPU_TEXT = "Render the product video on a GPU"


def routing(threshold: float) -> RoutingConfig:
    return RoutingConfig(rules=(RoutingRule("general", ("general",)),), default_kind="general",
                         confidence_threshold=threshold)


def test_the_confidence_threshold_alone_decides_whether_a_model_is_asked():
    task = TaskView(1, "nginx 一直回 502，幫我查原因", "idle")
    sure = decide_kind(task, routing(0.0))
    assert (sure.kind, sure.ask_model) == ("coding", False)
    unsure = decide_kind(task, routing(1.0))
    assert (unsure.kind, unsure.ask_model) == ("coding", True), "the kind is the classifier's either way"
    assert unsure.evidence["confidence"] == sure.evidence["confidence"] < 1.0


def test_a_rule_wins_over_the_classifier(write_config, start_tree):
    tree = start_tree(write_config())
    [task] = submit_and_wait(tree, ["#code write a poem about rain"])
    assert (task["kind"], task["executor"], task["state"]) == ("coding", "coder", "completed")
    assert task["routing"]["by"] == "rule" and task["routing"]["matched"].strip() == "#code"


def test_the_classifier_routes_what_no_rule_matches_and_get_task_shows_why(write_config, start_tree):
    tree = start_tree(write_config())
    snake, endpoint = submit_and_wait(tree, ["I saw a python in the garden, is it dangerous?",
                                             "訂單列表的 API 分頁有問題，第二頁跟第一頁重複"])
    assert (snake["kind"], snake["executor"]) == ("general", "general")
    assert (endpoint["kind"], endpoint["executor"]) == ("coding", "coder")
    evidence = endpoint["routing"]
    assert evidence["by"] == "classifier" and evidence["model_asked"] is False
    assert evidence["confidence"] >= evidence["threshold"] and evidence["features"] and evidence["neighbours"]


def test_a_need_goes_to_the_executor_that_provides_it(write_config, start_tree):
    tree = start_tree(write_config())
    [task] = submit_and_wait(tree, [GPU_TEXT])
    assert (task["kind"], task["executor"], task["state"]) == ("gpu", "moltworker", "completed")
    assert task["routing"]["needs"] == ["gpu"]


def test_a_need_no_healthy_executor_has_waits_with_that_reason(write_config, start_tree):
    tree = start_tree(write_config(executors={"moltworker": {"command": "/nonexistent/mcp-server",
                                                             "connect_timeout_s": 2, "respawn_initial_s": 1}}),
                      wait_for_executors=False)
    wait_until(lambda: tree.ask("router", _introspect())["executors_down"].get("moltworker"), 10,
               "the router to hear moltworker is down")
    [task] = submit_and_wait(tree, [GPU_TEXT], wait_s=0)
    reasons = wait_until(lambda: _decisions(tree, task["task_id"]), 10, "the waiting reason")
    assert reasons[0].startswith("waiting: needs gpu: moltworker is down (")
    assert tree.ask("state_store", _get(task["task_id"])).state == "idle", \
        "it waits; no executor without a GPU takes it"


def test_why_shows_the_evidence_in_the_im_locale(write_config, start_tree):
    tree = start_tree(write_config(im={"locale": "zh-Hant"}))
    [task] = submit_and_wait(tree, ["這條 SQL 查詢要跑三十秒，幫我看要加什麼索引"])

    async def why():
        async with GatewaySession(tree.url, TOKEN) as gateway:
            return (await gateway.call("command", text=f"/why {task['task_id']}", sender="cli:test"))["reply"]
    reply = asyncio.run(why())
    assert "本機分類器判定為 coding，信心" in reply and "最相近的標註範例：coding" in reply
    assert "未詢問模型。" in reply and "判斷依據：" in reply


def test_below_the_threshold_a_model_is_asked_and_without_its_answer_the_classifier_stands(
        start_tree, write_config, live_models):
    tree = start_with_models(start_tree, write_config, live_models, routing={"confidence_threshold": 1.0})
    admin(tree).set("free", reply="I would rather not say")
    [task] = submit_and_wait(tree, ["這條 SQL 查詢要跑三十秒，幫我看要加什麼索引"])
    assert (task["kind"], task["executor"], task["state"]) == ("coding", "coder", "completed")
    assert task["routing"]["model_asked"] is True and "rather not say" in task["routing"]["model"]
    admin(tree).set("free", reply=None)
    [asked] = submit_and_wait(tree, ["幫我整理本週的會議紀錄 overnight batch"])
    assert asked["routing"]["model_asked"] is True


def _decisions(tree, task_id) -> list[str]:
    with sqlite3.connect(tree.cfg.database_path) as db:
        return [row[0] for row in db.execute("select reason from task_event where task_id = ? and kind = 'decision'",
                                             (task_id,))]


def _introspect():
    from messages import Introspect
    return Introspect()


def _get(task_id):
    from messages import GetTask
    return GetTask(task_id)
