"""The durable inbox against the real OpenClaw (its gateway, its Telegram channel on the Bot API stand-in, the
real `openclaw mcp serve` bridge): every message from an allowed user handled exactly once across a SIGKILL of
the orchestrator and a restart of OpenClaw's gateway, bursts answered whole and in order, and each user hearing
only of their own tasks."""
from __future__ import annotations

import json
import re
import sqlite3
import time

from .conftest import wait_until
from .real_openclaw import USERS, wait_bridge_up

ALICE, BOB = (int(user.split(":")[1]) for user in USERS)
BURSTER = 7373
CATCH_UP = {"im": {"catch_up_s": 1}}
GATEWAY_LOST_S = 2      # well under a gateway restart (10 s and more): the bridge process is replaced meanwhile


def texts(telegram, chat_id: int) -> list[str]:
    return [message["text"] for message in telegram.sent(chat_id)]


def receipt_for(telegram, chat_id: int, text: str, timeout_s: float = 60) -> int:
    """Write `text` and wait for our receipt: the new task's number."""
    before = len(texts(telegram, chat_id))
    telegram.inbound(chat_id, text)
    found = wait_until(lambda: next((m for t in texts(telegram, chat_id)[before:]
                                     if (m := re.match(r"Task #(\d+) created", t))), None),
                       timeout_s, f"the receipt for {text!r}")
    return int(found.group(1))


def receipt_numbers(telegram, chat_id: int) -> list[int]:
    return [int(found.group(1)) for t in texts(telegram, chat_id) if (found := re.match(r"Task #(\d+) created", t))]


def all_delivered(db_path) -> bool:
    """Every reply queued so far went out and its delivery is on record (a crash right inside a delivery may
    repeat that one message: at least once, not exactly once, is what a send can promise)."""
    with sqlite3.connect(db_path) as db:
        return db.execute("select count(*) from im_outbound where sent_at is null").fetchone() == (0,)


def descriptions(db_path) -> list[str]:
    with sqlite3.connect(db_path) as db:
        return [text for (text,) in db.execute("select description from task order by id")]


def test_messages_written_while_the_orchestrator_is_down_are_each_handled_once(
        real_im_config, supervisor_process, telegram, openclaw_world, omni_home):
    config = real_im_config(**CATCH_UP)
    first = supervisor_process(config)
    receipt_for(telegram, ALICE, "before the outage")
    wait_until(lambda: all_delivered(omni_home / "omni.db"), 30, "the receipt's delivery on record")
    first.kill()                                          # SIGKILL: its bridge process dies with it
    for n in (1, 2):
        telegram.inbound(ALICE, f"while killed {n}")
    supervisor_process(config)                            # catches up from OpenClaw's transcript
    wanted = ["before the outage", "while killed 1", "while killed 2"]
    wait_until(lambda: descriptions(omni_home / "omni.db") == wanted, 90, "the messages written while down")
    wait_until(lambda: sum(" created" in t for t in texts(telegram, ALICE)) == 3, 30,
               "a receipt for each")
    marker = receipt_for(telegram, ALICE, "after the restart")   # anything repeated would have come before it
    assert marker == 4
    receipts = [t for t in texts(telegram, ALICE) if "created" in t]
    assert [int(re.match(r"Task #(\d+)", t).group(1)) for t in receipts] == [1, 2, 3, 4]


def test_a_restart_of_openclaws_gateway_loses_no_message(real_im_config, start_tree, telegram,
                                                        openclaw_world):
    tree = start_tree(real_im_config(im={**CATCH_UP["im"], "gateway_lost_s": GATEWAY_LOST_S}),
                      wait_for_executors=True)
    wait_bridge_up(tree)
    receipt_for(telegram, ALICE, "before the gateway restart")
    wait_until(lambda: all_delivered(tree.cfg.database_path), 30, "the receipt's delivery on record")
    openclaw_world.kill()                                 # SIGKILL, as a crash of OpenClaw would
    openclaw_world.start()
    for n in range(1, 4):                                 # right after its restart: the bridge is reconnecting
        telegram.inbound(ALICE, f"after the gateway restart {n}")
    wanted = ["before the gateway restart"] + [f"after the gateway restart {n}" for n in range(1, 4)]
    wait_until(lambda: descriptions(tree.cfg.database_path) == wanted, 90, "every message as a task")
    telegram.inbound(ALICE, "marker")
    # OpenClaw delivers what it took during its start-up later, with its own retries: wait for all five
    wait_until(lambda: len(receipt_numbers(telegram, ALICE)) >= 5, 120, "five receipts")
    assert receipt_numbers(telegram, ALICE) == [1, 2, 3, 4, 5]
    # not waiting out the bridge's own reconnects, 30 s apart at worst: a fresh bridge process replaced it
    journal = [json.loads(line) for line in (tree.cfg.log_dir / "events.jsonl").read_text().splitlines()]
    assert any(e.get("event") == "openclaw_bridge" and e.get("action") == "down"
               and "lost OpenClaw's gateway" in e.get("error", "") for e in journal)


def test_a_burst_is_answered_whole_and_each_tasks_news_follows_its_receipt(real_im_config, start_tree, telegram,
                                                                          openclaw_world):
    # A user of its own: the gateway is shared by the session, and a reply an earlier test's tree handed OpenClaw
    # just before a gateway restart can reach that test's user seconds later ("Task #5 completed" arrived here).
    tree = start_tree(real_im_config(allow=(*USERS, f"telegram:{BURSTER}"), **CATCH_UP))
    wait_bridge_up(tree)
    started = time.monotonic()
    for n in range(1, 6):                                 # 5 messages in 2.5 s
        telegram.inbound(BURSTER, f"burst {n}")
        time.sleep(0.5)
    def news() -> list[tuple[int, str]]:          # (task, "created" | "completed"), in the order received
        return [(int(m.group(1)), m.group(2)) for t in texts(telegram, BURSTER)
                if (m := re.match(r"Task #(\d+) (created|completed)", t))]
    wait_until(lambda: len(news()) >= 10, 120, "five receipts and five completions")
    print(f"\nburst: 5 messages, all answered and reported {time.monotonic() - started:.1f}s after the first")
    received = news()
    assert sorted(received) == [(n, what) for n in range(1, 6) for what in ("completed", "created")]
    for task_id in range(1, 6):
        assert received.index((task_id, "created")) < received.index((task_id, "completed")), received
    assert sorted(descriptions(tree.cfg.database_path)) == [f"burst {n}" for n in range(1, 6)]


def test_each_user_hears_only_of_their_own_tasks(real_im_config, start_tree, telegram, openclaw_world):
    tree = start_tree(real_im_config(**CATCH_UP))
    wait_bridge_up(tree)
    alice_task = receipt_for(telegram, ALICE, "Alice's errand")
    bob_task = receipt_for(telegram, BOB, "Bob's errand")
    for chat_id, task_id in ((ALICE, alice_task), (BOB, bob_task)):
        wait_until(lambda task_id=task_id, chat_id=chat_id: any(t.startswith(f"Task #{task_id} completed")
                                                               for t in texts(telegram, chat_id)),
                   60, f"the news of task {task_id}")
    assert not any(f"#{bob_task}" in t for t in texts(telegram, ALICE))
    assert not any(f"#{alice_task}" in t for t in texts(telegram, BOB))
