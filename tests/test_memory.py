"""Memory through MemOS over MCP, against the stand-in (sandbox/memos.py: a real MCP server over stdio, its memories
in a real SQLite file): searched before a task runs, the exchange added after, per sender, /forget, and memory
down (tasks run without it, /why says so, adds wait in the outbox and are delivered when it is back)."""
from __future__ import annotations

import asyncio
import re
import sqlite3
from pathlib import Path

import pytest
import yaml

from clients.gateway_client import GatewaySession
from clients.memory import MemoryOutbox, user_id
from config import ConfigError, load_config
from messages import CrashNow, GetTask, Introspect
from texts import say

from .conftest import TOKEN, wait_until
from .test_im_commands import GatewayChat, wait_for_state

ALICE, BOB = "telegram:4242", "telegram:777"


def memory_config(write_config, locale: str = "en", memory: dict | None = None, **overrides) -> Path:
    """The sandbox with its memory stand-in, IM through the gateway only (no bridge process), fast respawns."""
    return write_config(keep_memory=True, im={"allow": [ALICE, BOB], "locale": locale, "openclaw": None},
                        **{"memory": {"respawn_initial_s": 0.05, "respawn_max_s": 0.3, "retry_s": 0.2,
                                      **(memory or {})}}, **overrides)


def stored(home: Path, sender: str) -> list[str]:
    """What the stand-in holds for `sender`, read from its SQLite file."""
    path = home / "memos.db"
    if not path.exists():
        return []
    with sqlite3.connect(path) as db:
        try:
            return [text for (text,) in db.execute("select memory from memory where user_id = ? order by "
                                                   "created_at", (user_id(sender),))]
        except sqlite3.OperationalError:   # the stand-in is creating its table
            return []


def run_task(tree, chat: GatewayChat, text: str, sender: str):
    reply = chat.ask(text, sender=sender)
    assert "#" in reply, reply
    task_id = int(re.search(r"#(\d+)", reply).group(1))
    return wait_for_state(tree, task_id, {"completed"})


def why(chat: GatewayChat, task_id: int, sender: str) -> str:
    return chat.ask(f"/why {task_id}", sender=sender)


def memory_up(tree) -> dict:
    return wait_until(lambda: (m := tree.ask("memory", Introspect()))["link"] == "up" and m, 20, "memory's link up")


def test_memories_are_searched_before_a_task_and_the_exchange_added_after(write_config, start_tree, omni_home):
    tree = start_tree(memory_config(write_config))
    chat = GatewayChat(tree.url)
    memory_up(tree)

    first = run_task(tree, chat, "My plants need water every Friday", ALICE)
    assert "memory: nothing relevant recalled" in why(chat, first.task_id, ALICE)
    memories = wait_until(lambda: stored(omni_home, ALICE), 10, "the exchange added to memory")
    assert memories == [f"user: My plants need water every Friday\nassistant: {first.result}"]

    second = run_task(tree, chat, "When do the plants need water?", ALICE)
    assert second.result.startswith("general done: Relevant memories of this user:\n- user: My plants need water")
    assert "memory: 1 recalled" in why(chat, second.task_id, ALICE)
    assert len(wait_until(lambda: len(stored(omni_home, ALICE)) == 2 and stored(omni_home, ALICE), 10,
                          "the second exchange")) == 2


def test_recalled_memories_are_cut_to_the_configured_size(write_config, start_tree, omni_home):
    tree = start_tree(memory_config(write_config, memory={"recall_chars": 60}))
    chat = GatewayChat(tree.url)
    memory_up(tree)
    run_task(tree, chat, "garden " + "tomatoes " * 30, ALICE)
    wait_until(lambda: stored(omni_home, ALICE), 10, "the exchange added")
    task = run_task(tree, chat, "garden plans", ALICE)
    added = re.search(r"memory: 1 recalled \((\d+) characters", why(chat, task.task_id, ALICE))
    assert added and 40 < int(added.group(1)) <= 60
    assert task.result.startswith("general done: Relevant memories of this user:\n- user: garden tomatoes")
    assert "…\n\ngarden plans" in task.result


def test_memory_is_never_shared_across_senders(write_config, start_tree, omni_home):
    tree = start_tree(memory_config(write_config))
    chat = GatewayChat(tree.url)
    memory_up(tree)
    run_task(tree, chat, "My locker code is 4711", ALICE)
    wait_until(lambda: stored(omni_home, ALICE), 10, "Alice's exchange added")

    bob = run_task(tree, chat, "What is my locker code?", BOB)
    assert "4711" not in bob.result and "Relevant memories" not in bob.result
    assert "memory: nothing relevant recalled" in why(chat, bob.task_id, BOB)
    alice = run_task(tree, chat, "What is my locker code?", ALICE)
    assert "4711" in alice.result
    wait_until(lambda: stored(omni_home, BOB), 10, "Bob's exchange added")
    with sqlite3.connect(omni_home / "memos.db") as db:
        users = {row[0] for row in db.execute("select distinct user_id from memory")}
    assert users == {user_id(ALICE), user_id(BOB)}            # one user per sender, never the sender's own id
    assert not any(ALICE in user or BOB in user for user in users)


def test_forget_deletes_what_was_stored_for_the_sender_only(write_config, start_tree, omni_home):
    tree = start_tree(memory_config(write_config, locale="zh-Hant"))
    chat = GatewayChat(tree.url)
    memory_up(tree)
    run_task(tree, chat, "I prefer green tea", ALICE)
    run_task(tree, chat, "I prefer black coffee", BOB)
    wait_until(lambda: stored(omni_home, ALICE) and stored(omni_home, BOB), 10, "both exchanges added")

    assert chat.ask("/forget", sender=ALICE) == say("zh-Hant", "im_forget_forgotten")
    assert stored(omni_home, ALICE) == [] and len(stored(omni_home, BOB)) == 1
    after = run_task(tree, chat, "Which tea do I prefer?", ALICE)
    assert "green tea" not in after.result


def test_memory_down_never_blocks_a_task_and_its_adds_wait_until_it_is_back(write_config, start_tree, omni_home):
    down = omni_home / "memos-down"
    down.touch()
    tree = start_tree(memory_config(write_config, memory={"args": ["-m", "sandbox.memos", "--db",
                                                                   str(omni_home / "memos.db"),
                                                                   "--down-while", str(down)]}))
    chat = GatewayChat(tree.url)
    wait_until(lambda: tree.ask("memory", Introspect())["link"].startswith("down"), 20, "memory down")

    alice = run_task(tree, chat, "Water the ferns on Sunday", ALICE)
    assert alice.result.endswith(" done: Water the ferns on Sunday")          # ran, without memory
    assert "memory unavailable (" in why(chat, alice.task_id, ALICE)
    run_task(tree, chat, "Feed the cat at six", BOB)
    assert chat.ask("/forget", sender=BOB) == say("en", "im_forget_queued")   # Bob's add dropped, his forget queued
    wait_until(lambda: tree.ask("memory", Introspect())["outbox_waiting"] == 2, 10, "Alice's add and Bob's forget")

    tree.directory.tell("memory", CrashNow("drill: the queue must survive a restart"))
    wait_until(lambda: (m := tree.ask("memory", Introspect()))["incarnation"] == 1 and m, 10, "memory restarted")
    assert tree.ask("memory", Introspect())["outbox_waiting"] == 2              # in SQLite, not in the actor

    down.unlink()                                                                # the server is back
    wait_until(lambda: stored(omni_home, ALICE), 20, "Alice's queued add delivered")
    wait_until(lambda: tree.ask("memory", Introspect())["outbox_waiting"] == 0, 10, "the outbox emptied")
    assert stored(omni_home, BOB) == []
    later = run_task(tree, chat, "When do the ferns need water?", ALICE)
    assert "Water the ferns on Sunday" in later.result


def test_exchanges_of_tasks_completed_while_memory_was_away_are_added_when_it_is_back(write_config, start_tree,
                                                                                     omni_home):
    with_memory = memory_config(write_config)
    written = with_memory.read_text()               # write_config writes one file: kept for the third start
    tree = start_tree(with_memory)
    memory_up(tree)
    run_task(tree, GatewayChat(tree.url), "Water the ferns on Sunday", ALICE)
    wait_until(lambda: stored(omni_home, ALICE), 10, "the first exchange added")
    tree.supervisor.stop(block=True, timeout=30)

    without = start_tree(write_config(im={"allow": [ALICE], "openclaw": None}))   # the same home, no memory actor
    missed = run_task(without, GatewayChat(without.url), "Feed the cat at six", ALICE)
    without.supervisor.stop(block=True, timeout=30)

    with_memory.write_text(written)
    again = start_tree(with_memory)
    memory_up(again)
    memories = wait_until(lambda: len(stored(omni_home, ALICE)) == 2 and stored(omni_home, ALICE), 10,
                          "the missed exchange added")
    assert memories[1] == f"user: Feed the cat at six\nassistant: {missed.result}"


def test_an_add_the_server_always_refuses_is_set_aside_after_max_tries_and_the_next_goes_on(tmp_path):
    outbox = MemoryOutbox(tmp_path / "outbox.db")
    try:
        refused = outbox.queue("add", ALICE, {"doc_path": "x"}, task_id=1)
        later = outbox.queue("add", BOB, {"memory_content": "y"}, task_id=2)
        assert [outbox.failed(refused, "Error adding memory", max_tries=3) for _ in range(3)] == [False, False, True]
        assert outbox.next().entry_id == later and outbox.waiting() == 1
        assert outbox.queue("add", ALICE, {"doc_path": "x"}, task_id=1) is None      # kept: never queued twice
    finally:
        outbox.close()
    with sqlite3.connect(tmp_path / "outbox.db") as db:
        assert db.execute("select state, tries, last_error from outbox where id = ?", (refused,)).fetchone() == (
            "failed", 3, "Error adding memory")


def test_adds_the_server_refuses_do_not_hold_up_the_outbox(write_config, start_tree, omni_home):
    tree = start_tree(memory_config(write_config, memory={
        "max_tries": 2, "add": {"tool": "add_memory", "arguments": {"doc_path": "{request}", "user_id": "{user_id}"}}}))
    chat = GatewayChat(tree.url)
    memory_up(tree)
    run_task(tree, chat, "Water the ferns on Sunday", ALICE)
    run_task(tree, chat, "Feed the cat at six", BOB)
    wait_until(lambda: tree.ask("memory", Introspect())["outbox_waiting"] == 0, 20, "both refused adds set aside")
    with sqlite3.connect(omni_home / "memory-outbox.db") as db:
        assert db.execute("select state, tries from outbox order by id").fetchall() == [("failed", 2), ("failed", 2)]


def test_a_search_slower_than_the_timeout_leaves_the_task_to_run_without_memory(write_config, start_tree, omni_home):
    tree = start_tree(memory_config(write_config, memory={
        "search_timeout_s": 0.3, "args": ["-m", "sandbox.memos", "--db", str(omni_home / "memos.db"),
                                          "--search-delay", "30"]}))
    chat = GatewayChat(tree.url)
    memory_up(tree)
    task = run_task(tree, chat, "Summarise my unread mail", ALICE)
    assert task.result.endswith("done: Summarise my unread mail")
    assert "memory unavailable (no answer within 0.3s (memory.search_timeout_s)): running without it" in why(
        chat, task.task_id, ALICE)
    wait_until(lambda: stored(omni_home, ALICE), 10, "its exchange added all the same")


def test_a_memory_server_missing_a_configured_tool_is_down_and_tasks_still_run(write_config, start_tree):
    tree = start_tree(memory_config(write_config, memory={"search": {"tool": "search_memory"}}))
    chat = GatewayChat(tree.url)
    link = wait_until(lambda: (m := tree.ask("memory", Introspect()))["link"].startswith("down") and m["link"], 20,
                      "memory down")
    assert "offers no tool 'search_memory'" in link
    task = run_task(tree, chat, "Summarise my unread mail", ALICE)
    assert "memory unavailable (" in why(chat, task.task_id, ALICE)     # (down: no such tool, or starting again)


def test_forget_without_memory_configured_says_so(write_config, start_tree):
    tree = start_tree(write_config(im={"allow": [ALICE], "locale": "zh-Hans", "openclaw": None}))
    chat = GatewayChat(tree.url)
    assert chat.ask("/forget", sender=ALICE) == say("zh-Hans", "im_forget_no_memory")
    assert "/forget" in chat.ask("/help", sender=ALICE)
    task = run_task(tree, chat, "Summarise my unread mail", ALICE)
    assert "memory" not in why(chat, task.task_id, ALICE)


def test_tasks_without_a_sender_skip_memory(write_config, start_tree, omni_home):
    tree = start_tree(memory_config(write_config))
    memory_up(tree)

    async def submit() -> int:
        async with GatewaySession(tree.url, TOKEN) as gateway:
            return (await gateway.call("submit_task", description="Summarise my unread mail"))["task_id"]
    task = wait_for_state(tree, asyncio.run(submit()), {"completed"})
    assert task.result == "general done: Summarise my unread mail"
    assert tree.ask("memory", Introspect())["recalled"] == 0
    assert tree.ask("state_store", GetTask(task.task_id)).sender is None


@pytest.mark.parametrize("memory, key_path, expected", [
    ({"search": None}, "memory.search", "a mapping {tool: …, arguments: {…}}"),
    ({"add": {"arguments": {"memory_content": "{exchange}"}}}, "memory.add.arguments",
     "argument templates that name the sender"),
    ({"search": {"arguments": {"query": "{description}"}}}, "memory.search.arguments.query",
     "template fields among {query}"),
    ({"recall_char": 10}, "memory.recall_char", "one of the keys"),
    ({"recall_chars": 0}, "memory.recall_chars", "a whole number >= 1"),
    ({"search_timeout_s": -1}, "memory.search_timeout_s", "a positive number of seconds"),
    ({"result_keys": []}, "memory.result_keys", "at least one key"),
    ({"command": None}, "memory.command", "a non-empty string"),
])
def test_memory_config_mistakes_name_the_key_path(write_config, memory, key_path, expected):
    path = write_config(keep_memory=True)
    raw = yaml.safe_load(path.read_text())
    for key, value in memory.items():
        if isinstance(value, dict) and isinstance(raw["memory"].get(key), dict):
            raw["memory"][key].update(value)
        elif value is None:
            raw["memory"].pop(key)
        else:
            raw["memory"][key] = value
    path.write_text(yaml.safe_dump(raw, allow_unicode=True))
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert f"{key_path}: expected {expected}" in str(error.value)
