"""Notifications through the real OpenClaw 2026.9.6 (its gateway and Telegram channel on the Bot API stand-in,
the real `openclaw mcp serve` bridge): an executor's progress reaches the chat, paced, and a `/notify` setting
made through that route is stored, shown and obeyed."""
from __future__ import annotations

import re

from .conftest import wait_until
from .real_openclaw import USERS, wait_bridge_up

WATCHER = 5151          # a user of its own: the gateway is shared by the session's tests


def texts(telegram, chat_id: int) -> list[str]:
    return [message["text"] for message in telegram.sent(chat_id)]


def answer(telegram, chat_id: int, text: str, pattern: str, timeout_s: float = 60) -> re.Match[str]:
    before = len(texts(telegram, chat_id))
    telegram.inbound(chat_id, text)
    return wait_until(lambda: next((m for t in texts(telegram, chat_id)[before:]
                                    if (m := re.search(pattern, t, re.DOTALL))), None),
                      timeout_s, f"an answer to {text!r} matching {pattern!r}")


def test_progress_and_a_notify_setting_through_the_real_route(real_im_config, start_tree, telegram,
                                                              openclaw_world):
    tree = start_tree(real_im_config(allow=(*USERS, f"telegram:{WATCHER}"),
                                     im={"catch_up_s": 1, "progress_interval_s": 1, "held_check_s": 0.5}))
    wait_bridge_up(tree)
    task_id = int(answer(telegram, WATCHER, "#code tidy the parser [sleep=3]", r"Task #(\d+) created").group(1))
    wait_until(lambda: any(t.startswith(f"Task #{task_id} completed") for t in texts(telegram, WATCHER)), 90,
               "the task's completion")
    progress = [t for t in texts(telegram, WATCHER) if re.fullmatch(rf"Task #{task_id}: [\d.]+/3 step \d+/10", t)]
    print(f"\nreal route: 10 progress reports, {len(progress)} in the chat (interval 1 s)")
    assert 1 <= len(progress) < 10, progress          # ten reports, at most one a second in the chat
    assert answer(telegram, WATCHER, f"/task {task_id}", r"Progress: 3/3 step 10/10")

    shown = answer(telegram, WATCHER, "/notify off progress,completed", r"Events: [^\n]*").group(0)
    assert shown == "Events: created, failed, mode, paid, budget"
    with tree.db() as db:
        assert db.execute("SELECT events FROM notify_setting WHERE sender = ?", (f"telegram:{WATCHER}",)) \
            .fetchone() == ("created,failed,mode,paid,budget",)
    quiet_task = int(answer(telegram, WATCHER, "#code once more [sleep=1.5]", r"Task #(\d+) created").group(1))
    failing = int(answer(telegram, WATCHER, "#code this one fails [fail]", r"Task #(\d+) created").group(1))
    wait_until(lambda: any(t.startswith(f"Task #{failing} failed") for t in texts(telegram, WATCHER)), 90,
               "the failure's news (still on)")
    wait_until(lambda: tree.db().execute("SELECT state FROM task WHERE id = ?", (quiet_task,)).fetchone()
               == ("completed",), 60, "the quiet task completed")
    answer(telegram, WATCHER, "/notify", r"Events: created, failed")   # a marker: anything sent before is in
    assert not any(t.startswith(f"Task #{quiet_task}") and "created" not in t for t in texts(telegram, WATCHER))
