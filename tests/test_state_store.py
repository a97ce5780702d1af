"""The StateStore on a real SQLite file: the transition table, the event rows, recovery after a crash."""
from __future__ import annotations

import sqlite3

import pytest

from runtime.supervisor import ChildSpec, Supervisor
from runtime.directory import Directory
from runtime.event_loop import EventLoopThread
from store.lifecycle import IllegalTransition
from actors import StateStore
from runtime.journal import Journal
from store.lifecycle import LEGAL_TRANSITIONS, check_transition
from vocabulary import TaskState
from config import SupervisionConfig
from messages import CountTasksByState, CreateTask, GetTaskHistory, ListTasks, Transition

from .conftest import wait_until


@pytest.fixture
def store(tmp_path):
    loop = EventLoopThread().start()
    journal = Journal(tmp_path / "logs")
    started = []

    def start(max_attempts: int = 3) -> Directory:
        directory = Directory()
        spec = ChildSpec("state_store", lambda ctx: StateStore.start(ctx, tmp_path / "omni.db", max_attempts,
                                                                     journal, {}))
        started.append(Supervisor.start([spec], SupervisionConfig(), loop, directory))
        wait_until(lambda: directory.ref("state_store"), 5, "the store")
        return directory

    yield start
    for ref in started:
        if ref.is_alive():
            ref.stop(timeout=10)
    loop.stop()
    journal.close()


@pytest.mark.parametrize("current", list(TaskState))
@pytest.mark.parametrize("target", list(TaskState))
def test_the_table_allows_exactly_its_moves(current, target):
    if target in LEGAL_TRANSITIONS[current]:
        check_transition(current, target)
    else:
        with pytest.raises(IllegalTransition):
            check_transition(current, target)


def test_an_illegal_move_is_refused_and_nothing_is_written(store, tmp_path):
    directory = store()
    task = directory.ask("state_store", CreateTask("hello"))
    with pytest.raises(IllegalTransition, match="a idle task cannot become completed"):
        directory.ask("state_store", Transition(task.task_id, "completed", "skipping ahead"))
    with sqlite3.connect(tmp_path / "omni.db") as db:
        assert db.execute("select state from task").fetchone() == ("idle",)
        assert db.execute("select count(*) from task_event").fetchone() == (1,)


def test_every_move_is_an_event_row_with_its_reason(store):
    directory = store()
    task = directory.ask("state_store", CreateTask("整理會議紀錄", sender="telegram:7"))
    directory.ask("state_store", Transition(task.task_id, "dispatching", "kind general → general", executor="general"))
    directory.ask("state_store", Transition(task.task_id, "executing", "calling run_task", count_attempt=True))
    history = directory.ask("state_store", GetTaskHistory(task.task_id))
    assert [(e["from"], e["to"], e["reason"]) for e in history] == [
        (None, "idle", "received from mcp (telegram:7)"),
        ("idle", "dispatching", "kind general → general"),
        ("dispatching", "executing", "calling run_task")]


def test_tasks_are_listed_by_state_and_executor_newest_or_oldest_first_up_to_the_limit(store):
    directory = store()
    ids = [directory.ask("state_store", CreateTask(f"task {n}")).task_id for n in range(5)]
    for task_id, executor in zip(ids[:3], ("coder", "general", "coder"), strict=True):
        directory.ask("state_store", Transition(task_id, "dispatching", "routed", executor=executor))

    def listed(**query) -> list[int]:
        return [task.task_id for task in directory.ask("state_store", ListTasks(**query))]
    assert listed() == ids[::-1]
    assert listed(state=TaskState.IDLE) == ids[:2:-1]
    assert listed(state=TaskState.DISPATCHING, executor="coder", oldest_first=True) == [ids[0], ids[2]]
    assert listed(executor="general") == [ids[1]] and listed(state=TaskState.IDLE, executor="coder") == []
    assert listed(limit=2, oldest_first=True) == ids[:2]
    task = directory.ask("state_store", ListTasks(state=TaskState.DISPATCHING, limit=1))[0]
    assert (task.task_id, task.description, task.executor, task.state) == (ids[2], "task 2", "coder", "dispatching")


def test_an_expected_state_guards_against_races(store):
    directory = store()
    task = directory.ask("state_store", CreateTask("x"))
    directory.ask("state_store", Transition(task.task_id, "cancelled", "user cancel"))
    with pytest.raises(IllegalTransition, match="the task is cancelled, not idle"):
        directory.ask("state_store", Transition(task.task_id, "dispatching", "late router", expect=frozenset({"idle"})))


def test_a_new_process_recovers_interrupted_tasks_and_fails_those_out_of_attempts(store, tmp_path):
    directory = store(max_attempts=2)
    ids = {}
    for label, attempts in (("dispatching", 0), ("executing_once", 1), ("executing_twice", 2)):
        task = directory.ask("state_store", CreateTask(label))
        directory.ask("state_store", Transition(task.task_id, "dispatching", "test", executor="coder"))
        for _ in range(attempts):
            directory.ask("state_store", Transition(task.task_id, "executing", "test", count_attempt=True))
            if _ < attempts - 1:
                directory.ask("state_store", Transition(task.task_id, "idle", "retry"))
                directory.ask("state_store", Transition(task.task_id, "dispatching", "again"))
        ids[label] = task.task_id
    finished = directory.ask("state_store", CreateTask("done"))
    directory.ask("state_store", Transition(finished.task_id, "cancelled", "user"))

    restarted = store(max_attempts=2)   # a second tree on the same file: incarnation 0, as after a SIGKILL
    counts = restarted.ask("state_store", CountTasksByState())
    with sqlite3.connect(tmp_path / "omni.db") as db:
        rows = dict(db.execute("select description, state from task"))
        error = db.execute("select error from task where id = ?", (ids["executing_twice"],)).fetchone()[0]
    assert rows == {"dispatching": "idle", "executing_once": "idle", "executing_twice": "failed", "done": "cancelled"}
    assert error == "interrupted by a restart on attempt 2 of 2"
    assert counts["idle"] == 2 and counts["failed"] == 1


def test_a_restarted_store_actor_does_not_touch_running_tasks(store, tmp_path):
    from messages import CrashNow
    directory = store()
    task = directory.ask("state_store", CreateTask("long"))
    directory.ask("state_store", Transition(task.task_id, "dispatching", "t"))
    directory.ask("state_store", Transition(task.task_id, "executing", "t", count_attempt=True))
    old = directory.ref("state_store")
    directory.tell("state_store", CrashNow())
    wait_until(lambda: directory.ref("state_store") not in (None, old), 5, "store restarted")
    assert directory.ask("state_store", CountTasksByState())["executing"] == 1
