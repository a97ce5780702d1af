"""IM replies name a bad argument as a bad argument in the user's language, never show an internal error's
text (the user gets an id that is in the log), and every status text says what the state it describes is."""
from __future__ import annotations

import logging
import os
import re
import signal
import sqlite3
import time

import pytest


from .conftest import wait_until
from .test_brainstem import FAST_HEALTH, mode, set_cloud
from .test_im_commands import GatewayChat
from .test_litellm_failover import admin, proxy_pid, start_with_models

HUGE = "9" * 5000
BAD_IDS = {
    "en": ["/task: 999999999999999999999 is not a task number from 1 to 9223372036854775807. Usage: /task ID",
           f"/why: {'9' * 59}… is not a task number from 1 to 9223372036854775807. Usage: /why ID",
           "/cancel: 0 is not a task number from 1 to 9223372036854775807. Usage: /cancel ID"],
    "zh-Hant": ["/task：999999999999999999999 不是1 至 9223372036854775807 之間的任務編號。用法：/task ID",
                f"/why：{'9' * 59}… 不是1 至 9223372036854775807 之間的任務編號。用法：/why ID",
                "/cancel：0 不是1 至 9223372036854775807 之間的任務編號。用法：/cancel ID"],
    "zh-Hans": ["/task：999999999999999999999 不是1 至 9223372036854775807 之间的任务编号。用法：/task ID",
                f"/why：{'9' * 59}… 不是1 至 9223372036854775807 之间的任务编号。用法：/why ID",
                "/cancel：0 不是1 至 9223372036854775807 之间的任务编号。用法：/cancel ID"],
}
MODE_WITHOUT_MODELS = {
    "en": "Mode: normal. No model route is configured. The cloud is not watched: tasks go straight to their executors.",
    "zh-Hant": "模式：normal。未設定模型路由。不監測雲端：任務直接交給執行器。",
    "zh-Hans": "模式：normal。未配置模型路由。不监测云端：任务直接交给执行器。",
}


@pytest.mark.parametrize("locale", ["en", "zh-Hant", "zh-Hans"])
def test_out_of_range_task_numbers_are_bad_arguments_and_mode_says_what_runs(write_config, start_tree, locale):
    tree = start_tree(write_config(im={"locale": locale}))
    chat = GatewayChat(tree.url, sender="cli:me")
    assert [chat.ask(text) for text in ("/task 999999999999999999999", f"/why {HUGE}", "/cancel 0")] == BAD_IDS[locale]
    assert chat.ask("/mode") == MODE_WITHOUT_MODELS[locale]
    assert chat.ask("/status").split("\n")[0].endswith(("model route: none", "模型路由：無", "模型路由：无"))


def test_an_internal_error_reaches_the_user_as_an_id_that_is_in_the_log(write_config, start_tree, caplog):
    tree = start_tree(write_config(im={"openclaw": None}))   # no bridge: nothing else writes while it is locked
    chat = GatewayChat(tree.url, sender="cli:me")
    locker = sqlite3.connect(tree.cfg.database_path, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")             # another program holds the write lock past busy_timeout
    try:
        with caplog.at_level(logging.ERROR, logger="commands.interpreter"):
            reply = chat.ask("Summarise my inbox")
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    found = re.fullmatch(r"The orchestrator could not answer just now \(error ([0-9a-f]{8}), noted in its log\)\. "
                         r"Please try again\.", reply)
    assert found, reply
    logged = [record for record in caplog.records if found.group(1) in record.getMessage()]
    assert logged and "database is locked" in str(logged[0].exc_info[1])
    assert chat.ask("Summarise my inbox").startswith("Task #1 created")      # nothing was half-written


def mode_reply_becomes(chat: GatewayChat, expected: str, timeout_s: float = 15) -> None:
    """`/mode` answers `expected` within `timeout_s`. On a loaded machine one of the 0.6 s cloud pings can miss, and
    `/mode` then says, truthfully, that the cloud did not answer the last check, until the next ping answers."""
    deadline = time.monotonic() + timeout_s
    while (reply := chat.ask("/mode")) != expected:
        assert time.monotonic() < deadline, f"/mode still answers {reply!r} after {timeout_s}s, not {expected!r}"
        time.sleep(0.1)


def test_mode_follows_the_route_and_the_cloud(start_tree, write_config, models_world, omni_home):
    tree = start_with_models(start_tree, write_config, models_world, health=FAST_HEALTH,
                             litellm={"restart_command": "/bin/false"}, brainstem={"model_path": None})
    chat = GatewayChat(tree.url, sender="cli:me")
    mode_reply_becomes(chat, "Mode: normal. Model calls go through LiteLLM. The cloud answers.")
    os.kill(proxy_pid(omni_home), signal.SIGKILL)
    wait_until(lambda: mode(tree) == "degraded", 10, "degraded mode")
    mode_reply_becomes(chat, "Mode: degraded. LiteLLM is down: model calls go directly to the providers with "
                             "backup keys while it is repaired. The cloud answers.")
    set_cloud(admin(tree), "hang")
    wait_until(lambda: mode(tree) == "brainstem", 15, "brainstem mode")
    assert chat.ask("/mode") == ("Mode: brainstem. LiteLLM is down: model calls go directly to the providers with "
                                 "backup keys while it is repaired. The cloud is offline: tasks wait until it is back; "
                                 "no local model is loaded, so notices are fixed texts.")
