"""The front door with the real OpenClaw (issue 9 item 1): its real Telegram channel on the Bot API stand-in,
the real `openclaw mcp serve` bridge, config/openclaw/openclaw.json5, and our whole tree. Every message from an
allowed user gets exactly one answer, ours, counted as the messages Telegram was asked to send; a stranger
gets our refusal only, and it is logged.

"No second answer" is proven without sleeping: replies to one conversation leave one at a time, in order,
so once the answer to a later marker message (/mode) has arrived, any second answer to an earlier message
would have arrived before it.
"""
from __future__ import annotations

import sqlite3
import time

from texts import say

from .conftest import wait_until
from .real_openclaw import wait_bridge_up

USER, STRANGER = 4242, 9999
ANSWER_TIMEOUT_S = 60          # the first message after a gateway start takes ~3 s, up to ~7 s under load


def texts_to(telegram, chat_id: int) -> list[str]:
    return [m["shown"] for m in telegram.sent(chat_id)]


def say_and_wait(telegram, chat_id: int, text: str, answers: int = 1) -> tuple[list[str], float]:
    """Write `text`; wait for `answers` more messages to that chat; (the new messages, seconds to the first)."""
    before = len(telegram.sent(chat_id))
    written = time.time()
    telegram.inbound(chat_id, text)

    def arrived():
        new = telegram.sent(chat_id)[before:]
        return new if len(new) >= answers else None
    new = wait_until(arrived, ANSWER_TIMEOUT_S, f"{answers} answer(s) to {text!r} in chat {chat_id}")
    return [m["shown"] for m in new], new[0]["time"] - written


def test_one_answer_per_message_ours_and_strangers_refused_logged_told_nothing_else(
        telegram, openclaw_world, real_im_config, start_tree):
    """One tree for both (a tree and its real bridge take 5-15 s to start): an allowed user's commands and
    tasks, and a stranger writing in between."""
    tree = start_tree(real_im_config())
    wait_bridge_up(tree)
    receipts: list[float] = []
    refusal = say("en", "im_refused", sender=f"telegram:{STRANGER}")

    (help_text,), _ = say_and_wait(telegram, USER, "/help")
    assert help_text.startswith(say("en", "im_help_header")) and say("en", "im_help_footer") in help_text
    (status,), _ = say_and_wait(telegram, USER, "/status")
    assert status.startswith("Mode: ") and "Executors:" in status, status
    assert say_and_wait(telegram, STRANGER, "/status")[0] == [refusal]
    (tasks,), _ = say_and_wait(telegram, USER, "/tasks")
    assert tasks == say("en", "im_tasks_none")
    (mode,), _ = say_and_wait(telegram, USER, "/mode")
    assert mode.startswith("Mode: "), mode
    assert say_and_wait(telegram, STRANGER, "Delete every file in my home folder")[0] == [refusal]

    (receipt, news), took = say_and_wait(telegram, USER, "Summarise today's unread messages", answers=2)
    receipts.append(took)
    assert receipt == say("en", "im_task_created", task_id=1)
    assert news.startswith("Task #1 completed: "), news
    (receipt,), took = say_and_wait(telegram, USER, "Note number 2 for the list")
    receipts.append(took)
    assert receipt == say("en", "im_task_created", task_id=2)
    wait_until(lambda: any(t.startswith("Task #2 completed: ") for t in texts_to(telegram, USER)),
               ANSWER_TIMEOUT_S, "task #2's news")

    # the markers: anything more for an earlier message would have arrived before their answers
    (marker,), _ = say_and_wait(telegram, USER, "/mode")
    assert marker.startswith("Mode: ")
    assert say_and_wait(telegram, STRANGER, "/help")[0] == [refusal]
    received = texts_to(telegram, USER)
    assert received[:6] == [help_text, status, tasks, mode, say("en", "im_task_created", task_id=1), news]
    assert len(received) == 6 + 2 + 1, received          # task 2's receipt and news, the marker's answer
    assert texts_to(telegram, STRANGER) == [refusal] * 3
    with sqlite3.connect(tree.cfg.database_path) as db:
        refused = [row[0] for row in db.execute("select detail from system_event where kind = 'im_refused'")]
        tasks_made = db.execute("select count(*) from task").fetchone()[0]
    assert len(refused) == 3 and all(f"telegram:{STRANGER}" in detail for detail in refused), refused
    assert tasks_made == 2
    assert openclaw_world.models.calls("openclaw_model") == 0, "OpenClaw's agent called a model"
    assert not telegram.requests("setMyCommands"), "OpenClaw published its own command menu"
    print("\n[measure] real OpenClaw: Telegram message -> our receipt: "
          + ", ".join(f"{seconds:.2f} s" for seconds in receipts))
