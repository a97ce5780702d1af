"""A task is created once per idempotency key: a client retrying after a lost answer (across a SIGKILL of the
whole supervisor), `command` sent twice, and an IM message handled twice all make one task."""
from __future__ import annotations

import asyncio
import sqlite3

import pytest

from clients.gateway_client import GatewayError, GatewaySession
from messages import CrashNow, CreateTask
from messages.im import LoadState, SaveState

from .conftest import TOKEN, wait_until
from .test_im_commands import Chat, created_id, im_config, start_im_tree, wait_for_state
from .test_state_store import store  # noqa: F401  (the fixture)


def call(url: str, tool: str, **arguments):
    async def once():
        async with GatewaySession(url, TOKEN) as gateway:
            return await gateway.call(tool, **arguments)
    return asyncio.run(once())


def test_a_retried_submit_returns_the_task_created_before_a_sigkill(write_config, supervisor_process, omni_home):
    config = write_config()
    first = supervisor_process(config)
    created = call(first.url, "submit_task", description="整理會議紀錄", idempotency_key="req-1")
    first.kill()                                   # the client never saw the answer: it retries
    second = supervisor_process(config)
    again = call(second.url, "submit_task", description="整理會議紀錄", idempotency_key="req-1")
    other = call(second.url, "submit_task", description="整理會議紀錄", idempotency_key="req-2")
    assert again["task_id"] == created["task_id"] and other["task_id"] != created["task_id"]
    with pytest.raises(GatewayError) as reused:
        call(second.url, "submit_task", description="another text", idempotency_key="req-1")
    assert str(reused.value) == (f"submit_task: 'idempotency_key' was already used for task {created['task_id']}, "
                                 "with another description")
    with sqlite3.connect(omni_home / "omni.db") as db:
        assert db.execute("select count(*) from task").fetchone() == (2,)


def test_a_command_sent_twice_with_one_key_makes_one_task(write_config, start_tree):
    tree = start_tree(write_config())
    replies = [call(tree.url, "command", text="Summarise my inbox", sender="cli:me", idempotency_key="m-7")["reply"]
               for _ in range(2)]
    assert replies[0] == replies[1] and replies[0].startswith("Task #")
    with tree.db() as db:
        assert db.execute("select count(*) from task").fetchone() == (1,)


def test_an_im_message_read_twice_is_handled_once(write_config, start_tree, omni_home):
    """The bridge's cursor save is lost (rewound in the store) and the bridge actor crashes: it reads the same
    message from the bridge again, and the message's own identity keeps it from being handled twice."""
    tree = start_im_tree(start_tree, im_config(write_config))
    chat = Chat(omni_home)
    session = chat.send("Plan my week")
    first = wait_until(lambda: chat.replies(session), 15, "the receipt")[0]
    task_id = created_id(first)
    wait_for_state(tree, task_id, {"completed"})
    saved = tree.ask("state_store", LoadState("openclaw_bridge"))
    tree.ask("state_store", SaveState("openclaw_bridge", {**saved, "cursor": 0}))
    tree.directory.tell("openclaw_bridge", CrashNow("test: the cursor save was lost"))
    later = created_id(chat.ask("And my weekend"))      # read after the replayed events, in queue order
    assert later == task_id + 1
    assert [reply for reply in chat.replies(session) if "created" in reply] == [first]
    with tree.db() as db:
        assert db.execute("select count(*) from task").fetchone() == (2,)


def test_a_database_from_before_keys_gains_the_column_and_keeps_its_tasks(store, tmp_path):  # noqa: F811
    with sqlite3.connect(tmp_path / "omni.db") as db:   # the task table as the previous release made it
        db.execute('CREATE TABLE "task" ("id" INTEGER NOT NULL PRIMARY KEY, "description" TEXT NOT NULL, '
                   '"state" VARCHAR(255) NOT NULL, "kind" VARCHAR(255), "executor" VARCHAR(255), "tier" VARCHAR(255), '
                   '"attempts" INTEGER NOT NULL, "sender" VARCHAR(255), "source" VARCHAR(255) NOT NULL, '
                   '"result" TEXT, "error" TEXT, "created_at" REAL NOT NULL, "updated_at" REAL NOT NULL)')
        db.execute("INSERT INTO task (description, state, attempts, source, result, created_at, updated_at) "
                   "VALUES ('older task', 'completed', 1, 'mcp', 'done', 1.0, 1.0)")
    directory = store()
    keyed = [directory.ask("state_store", CreateTask("newer task", idempotency_key="mcp:k")) for _ in range(2)]
    assert keyed[0].task_id == keyed[1].task_id == 2
    with sqlite3.connect(tmp_path / "omni.db") as db:
        rows = db.execute("select id, description, state, result, idempotency_key from task order by id").fetchall()
    assert rows == [(1, "older task", "completed", "done", None), (2, "newer task", "idle", None, "mcp:k")]
