"""REPL introspection: the helpers against a real in-process tree, and a real attach to `python supervisor.py`."""
from __future__ import annotations

import contextlib
import os
import re
import socket
import stat
import subprocess
import sys
from typing import Callable

import pytest

import messages as m
from config import PROJECT_ROOT
from surfaces.repl import ReplServer, repl_namespace, socket_path

from .conftest import TOKEN, wait_until


@pytest.fixture
def repl(write_config, start_tree, capsys):
    """The helpers of a REPL session over a real tree; `repl.said("actors")` calls one and returns what it printed."""
    tree = start_tree(write_config())
    namespace = repl_namespace(tree.directory, tree.cfg)

    class Session:
        def said(self, helper: str, *args, **kwargs) -> str:
            capsys.readouterr()
            namespace[helper](*args, **kwargs)
            return capsys.readouterr().out

    session = Session()
    session.tree, session.namespace = tree, namespace
    return session


def flat(text: str) -> str:
    """Text with every run of whitespace made one space: a table cell that wrapped reads as one line again."""
    return " ".join(text.split())


def finished_task(tree, description: str, sender: str | None = None) -> int:
    task = tree.ask("state_store", m.CreateTask(description, sender=sender))
    wait_until(lambda: tree.ask("state_store", m.GetTask(task.task_id)).is_terminal, 20, f"task {task.task_id} done")
    return task.task_id


def restarts(tree, name: str) -> int:
    return next(child["restarts"] for child in tree.ask("supervisor", m.Introspect()) if child["name"] == name)


def test_actors_lists_every_actor_and_a_crash_drill_shows_its_restart(repl):
    table = repl.said("actors")
    for name in ("state_store", "router", "gateway", "coder", "general"):
        assert re.search(rf"{name}\s+running\s+0\s+0", table), table

    assert "told router to crash" in repl.said("crash", "router")
    wait_until(lambda: restarts(repl.tree, "router") == 1 and repl.tree.directory.ref("router"), 10, "router restarted")
    assert re.search(r"router\s+running\s+1\s+DrillCrash: crash drill from the REPL\s+\d+", repl.said("actors"))
    assert "not a supervised actor" in repl.said("crash", "supervisor")


def test_tasks_task_and_why_show_a_finished_task_and_the_reason_for_each_move(repl):
    task_id = finished_task(repl.tree, "Summarise my unread mail", sender="telegram:1")

    assert re.search(rf"#{task_id}\s+completed\s+general\s+general\s+P1\s+1\s+\d+s\s+Summarise my unread mail",
                     repl.said("tasks"))
    assert f"#{task_id}" in repl.said("tasks", "completed")
    assert f"#{task_id}" not in repl.said("tasks", "failed")
    assert "the states are idle, dispatching" in repl.said("tasks", "finished")
    one = repl.said("task", task_id)
    assert re.search(r"state\s+completed", one) and "general done: Summarise my unread mail" in one

    why = flat(repl.said("why", task_id))
    assert f"task #{task_id} is completed: Summarise my unread mail" in why
    history = repl.tree.ask("state_store", m.GetTaskHistory(task_id))
    moves = [f"{event['from'] or 'new'} → {event['to']}" for event in history if event["kind"] == "transition"]
    assert moves == ["new → idle", "idle → dispatching", "dispatching → executing", "executing → completed"]
    for event in history:
        if event["kind"] != "progress":
            assert flat(event["reason"]) in why
    assert "received from mcp (telegram:1)" in why
    assert "there is no task #999" in repl.said("why", 999)


def test_mode_says_normal_and_cost_shows_each_tier_and_the_budget(repl):
    assert re.search(r"mode\s+normal", repl.said("mode"))
    assert "none: no model route is configured" in repl.said("mode")

    repl.tree.directory.tell("state_store", m.RecordCost(None, "P1", "free-model", "proxy", 10, 5, 0.0))
    repl.tree.directory.tell("state_store", m.RecordCost(None, "P2", "paid-model", "direct", 10, 5, 0.0123))
    today = repl.said("cost")
    assert re.search(r"P1\s+1\s+\$0\.0000", today) and re.search(r"P2\s+1\s+\$0\.0123", today)
    assert re.search(r"total\s+2\s+\$0\.0123", today)
    assert "paid budget: none (no model route is configured)" in today
    assert "cost month" in repl.said("cost", "month")
    assert "the periods are today, week, month" in repl.said("cost", "year")


def test_ask_and_tell_reach_actors_by_name_and_refuse_what_is_not_a_message(repl):
    assert "'decisions':" in repl.said("ask", "router", m.Introspect())
    assert "None" in repl.said("ask", "state_store", m.GetTask(999))
    assert "'name': 'state_store'" in repl.said("inspect", "state_store")
    assert "answered Transition with an error" in repl.said("ask", "state_store", m.Transition(999, "failed", "x"))
    assert "add the parentheses" in repl.said("ask", "router", m.Introspect)
    assert "not a message" in repl.said("tell", "router", "hello")

    assert "told router: Reconcile" in repl.said("tell", "router", m.Reconcile())
    assert "no live actor named 'nobody'" in repl.said("tell", "nobody", m.Reconcile())
    assert repl.tree.directory.ref("router").is_alive()


def test_no_secret_is_shown_even_when_an_answer_holds_one(repl):
    repl.said("tell", "state_store", m.RecordSystemEvent(
        "repl-test", "called with Authorization: Bearer abcdef123",
        {"api_key": "sk-live-abcdef123456", "nested": {"password": "hunter2", "OPENAI_API_KEY": "x1"}, "tokens_in": 7}))
    shown = repl.said("ask", "state_store", m.LastSystemEvent("repl-test"))
    for secret in ("abcdef123", "sk-live", "hunter2", "x1"):
        assert secret not in shown
    assert "'api_key': '***'" in shown and "'password': '***'" in shown and "Bearer ***" in shown
    assert "'tokens_in': 7" in shown

    task_id = finished_task(repl.tree, "retry with Bearer abcdef123 and key sk-abcdef123456")
    for helper in ("tasks", "task", "why"):
        shown = repl.said(helper, *(() if helper == "tasks" else (task_id,)))
        assert "abcdef123" not in shown and "Bearer ***" in shown and "sk-***" in shown
    assert TOKEN not in repl.said("inspect", "gateway")


def test_help_lists_every_helper_and_drills_run_from_the_repl(repl):
    listing = repl.said("help")
    for name in ("actors()", "inspect(name)", "tasks(state=None, limit=20)", "task(task_id)", "why(task_id",
                 "mode()", 'cost(period="today")', "ask(name, message", "tell(name, message)", "crash(name)",
                 "drill(name)", "heal()"):
        assert name in listing
    assert repl.namespace["m"] is m

    assert "told router to crash" in repl.said("drill", "actor-crash")
    wait_until(lambda: restarts(repl.tree, "router") == 1, 10, "router restarted")
    assert "unknown drill 'nope'" in repl.said("drill", "nope")
    assert "Healed: nothing was injected." in repl.said("heal")


def test_attach_relays_the_helpers_while_the_console_keeps_its_own_output(write_config, supervisor_process, omni_home):
    proc = supervisor_process(write_config())
    path = socket_path(omni_home)
    wait_until(path.exists, 10, "the REPL socket")
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    typed = 'actors()\nask("state_store", m.CreateTask("hello from the repl"))\nimport time; time.sleep(1)\ntasks()\n'
    client = subprocess.run([sys.executable, "supervisor.py", "repl"], cwd=PROJECT_ROOT, input=typed,
                            capture_output=True, text=True, timeout=60)
    assert client.returncode == 0, client.stderr
    assert "Omni-Orchestrator REPL" in client.stdout and "Ctrl-D detaches" in client.stdout
    assert re.search(r"actor\s+status\s+restarts\s+last error\s+mailbox", client.stdout)
    assert re.search(r"state_store\s+running", client.stdout) and re.search(r"router\s+running", client.stdout)
    assert re.search(r"#1\s+\w+.*hello from the repl", client.stdout)
    assert client.stdout.rstrip().endswith("detached")
    assert "event=transition" not in client.stdout   # the console's lines stayed on the supervisor's stdout
    console = (omni_home / "supervisor-stdout.log").read_text()
    assert re.search(r'event=transition task=1 from=new to=idle .*text="hello from the repl"', console)

    assert proc.stop() == 0
    assert not path.exists()


@pytest.mark.slow   # runs supervisor.py repl
def test_attach_without_a_running_supervisor_exits_1_with_a_clear_message(omni_home):
    def attach() -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "supervisor.py", "repl"], cwd=PROJECT_ROOT, input="actors()\n",
                              capture_output=True, text=True, timeout=60)

    nothing = attach()
    assert nothing.returncode == 1
    assert f"no supervisor is running with data in {omni_home}" in nothing.stderr

    path = socket_path(omni_home)   # a SIGKILLed supervisor leaves its socket behind: nobody listens on it
    path.parent.mkdir(mode=0o700)
    with socket.socket(socket.AF_UNIX) as stale:
        stale.bind(str(path))
    stale_run = attach()
    assert stale_run.returncode == 1 and "no supervisor is running" in stale_run.stderr


# --- the socket is owner-only at every moment it exists -------------------------------------------------------

_LOOKS: list[Callable[[str], None]] = []


def _look_at_every_operation(event: str, _args: tuple) -> None:
    for look in tuple(_LOOKS):
        look(event)


@contextlib.contextmanager
def at_every_operation(look: Callable[[str], None]):
    """Call `look(event)` just before every audited operation of this process, in every thread: each bind, chmod,
    rename, unlink, connect, open. An audit hook stays for the life of the process: it is added once, idle after."""
    if not hasattr(at_every_operation, "hooked"):
        sys.addaudithook(_look_at_every_operation)
        at_every_operation.hooked = True
    _LOOKS.append(look)
    try:
        yield
    finally:
        _LOOKS.remove(look)


def test_the_socket_never_exists_with_a_mode_wider_than_owner_only(omni_home):
    """Seen by the process itself before each of its own file and socket operations, not sampled by a watcher:
    a socket bound at its final path is seen there with the umask's mode (0755) by the very chmod that narrows it."""
    path = socket_path(omni_home)
    path.parent.mkdir()
    path.parent.chmod(0o755)              # made by hand, or by an older release: narrowed before the socket appears
    seen: list[tuple[str, int, int]] = []

    def look(event: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            seen.append((event, stat.S_IMODE(os.lstat(path).st_mode), stat.S_IMODE(os.stat(path.parent).st_mode)))

    with at_every_operation(look):
        for _ in range(3):
            server = ReplServer(omni_home, repl_namespace(None)).start()
            assert stat.S_ISSOCK(path.lstat().st_mode), "the REPL listens once start() returns"
            server.stop()
            assert not path.exists()
    assert seen, "the socket was seen at least once"
    wider = [f"{event}: socket {mode:04o}, directory {parent:04o}" for event, mode, parent in seen
             if (mode, parent) != (0o600, 0o700)]
    assert not wider, wider


def test_a_run_directory_that_is_a_link_is_refused_and_nothing_goes_through_it(omni_home, tmp_path, caplog):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    elsewhere.chmod(0o755)
    socket_path(omni_home).parent.symlink_to(elsewhere)

    ReplServer(omni_home, repl_namespace(None)).start().stop()
    assert "no REPL" in caplog.text and "must be a directory of ours, not a symbolic link" in caplog.text
    assert list(elsewhere.iterdir()) == [] and stat.S_IMODE(elsewhere.stat().st_mode) == 0o755
