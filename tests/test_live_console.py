"""The Rich live console: each panel rendered to text from a hand-made snapshot, `gather()` against a real
tree, the structured log lines when stdout is not a terminal, and the real program under a pseudo-terminal."""
from __future__ import annotations

import asyncio
import fcntl
import io
import os
import pty
import select
import signal
import struct
import sys
import termios
import threading
import time

import pykka
import pytest
from rich.console import Console

from runtime.directory import Directory
from actors.transition_feed import event_of, log_line
from clients.gateway_client import GatewaySession
from config import PROJECT_ROOT
from messages import CreateTask, GetTask, ModeChanged, RecordCost, TaskChanged, TaskView
from surfaces.live_console import (BUSY, gather, render_actors, render_costs, render_events, render_header,
                                   render_screen, render_tasks)

from .conftest import TOKEN, wait_until

NOW = 1_760_000_000.0


def text_of(renderable, width: int = 100, height: int | None = None) -> str:
    console = Console(file=io.StringIO(), width=width, height=height, color_system=None)
    console.print(renderable)
    return console.file.getvalue()


def actor(name: str, restarts: int = 0, last_error: str | None = None, mailbox=0, status: str = "running"):
    return {"name": name, "status": status, "alive": True, "restarts": restarts, "last_error": last_error,
            "mailbox": mailbox}


def a_snapshot(**overrides):
    snapshot = {
        "now": NOW, "config": "/home/me/.omni/config.yaml", "uptime_s": 3725, "mode": "brainstem", "route": "direct",
        "cooling": {}, "cloud": "down", "cloud_timeouts": 3,
        "actors": [actor("state_store", mailbox=2), actor("router", restarts=2, last_error="DrillCrash: crash drill"),
                   actor("coder", mailbox=BUSY), actor("gateway", status="restarting", mailbox=None)],
        "tasks": [{"task_id": 7, "state": "waiting", "kind": "coding", "executor": "coder", "tier": "P1",
                   "created_at": NOW - 125, "description": "Fix the parser\nand its tests", "cost_usd": 0.0123},
                  {"task_id": 6, "state": "completed", "kind": "general", "executor": "general", "tier": "P2",
                   "created_at": NOW - 4000, "description": "Summarise my inbox", "cost_usd": None}],
        "costs": {"today": {"P1": {"usd": 0.0, "calls": 12}, "P2": {"usd": 0.21, "calls": 3}},
                  "month": {"P1": {"usd": 0.0, "calls": 300}, "P2": {"usd": 1.5, "calls": 40}}},
        "budget": {"spent_today_usd": 0.21, "daily_cap_usd": 0.5, "spent_month_usd": 1.5, "monthly_cap_usd": 5.0,
                   "held_usd": 0.0},
        "events": [event_of(TaskChanged(TaskView(7, "Fix the parser", "executing", executor="coder", tier="P1"),
                                        "dispatching", "calling claude_code"), at=NOW - 60),
                   event_of(ModeChanged("brainstem", "normal"), at=NOW - 30)],
    }
    return snapshot | overrides


# --- the panels ----------------------------------------------------------------------------------------------------
def test_header_shows_mode_route_cloud_uptime_and_config():
    text = text_of(render_header(a_snapshot()))
    assert "mode brainstem" in text and "route direct" in text
    assert "cloud down (3 timeouts in a row)" in text and "uptime 1h02m" in text
    assert "config /home/me/.omni/config.yaml" in text


def test_header_without_a_model_route_shows_dashes():
    text = text_of(render_header(a_snapshot(mode="normal", route=None, cloud=None, cloud_timeouts=None)))
    assert "mode normal" in text and "route —" in text and "cloud —" in text


def test_actors_panel_shows_restarts_last_error_mailbox_and_busy_actors():
    text = text_of(render_actors(a_snapshot()))
    router = next(line for line in text.splitlines() if "router " in line and "running" in line)
    assert router.split()[1:5] == ["router", "running", "2", "0"]
    assert "router: DrillCrash: crash drill" in text
    assert "Actors (4, 1 restarted)" in text
    coder = next(line for line in text.splitlines() if " coder " in line)
    assert "busy" in coder
    assert "restarting" in next(line for line in text.splitlines() if "gateway" in line)


def test_compact_actors_panel_keeps_every_actor_and_the_error():
    text = text_of(render_actors(a_snapshot(), compact=True), width=80)
    assert all(name in text for name in ("state_store", "router", "coder", "gateway restarting"))
    assert "↻2" in text and "router: DrillCrash: crash drill" in text


def test_tasks_panel_lists_state_kind_executor_tier_age_and_cost():
    text = text_of(render_tasks(a_snapshot()))
    row = next(line for line in text.splitlines() if line.strip("│ ").startswith("7 "))
    assert row.split()[1:9] == ["7", "waiting", "coding", "coder", "P1", "2m05s", "$0.0123", "Fix"]
    assert "Fix the parser and its tests" in row            # one line, however the text was written
    done = next(line for line in text.splitlines() if line.strip("│ ").startswith("6 "))
    assert done.split()[1:9] == ["6", "completed", "general", "general", "P2", "1h06m", "—", "Summarise"]
    assert "Tasks (1 active)" in text


def test_tasks_panel_says_when_the_store_did_not_answer():
    assert "the state store did not answer" in text_of(render_tasks(a_snapshot(tasks=None)))


def test_cost_panel_draws_the_paid_budget_as_bars_with_the_numbers():
    text = text_of(render_costs(a_snapshot()))
    assert "$0.21 of $0.50 42%" in text and "$1.50 of $5.00 30%" in text
    assert "━" in next(line for line in text.splitlines() if "paid today" in line)
    p2 = next(line for line in text.splitlines() if line.strip("│ ").startswith("P2"))
    assert "$0.2100 (3)" in p2 and "$1.5000 (40)" in p2


def test_cost_panel_without_a_model_route():
    text = text_of(render_costs(a_snapshot(budget={}, costs={"today": {}, "month": {}})))
    assert "no paid budget" in text and "no model calls this month" in text


def test_events_panel_shows_the_newest_first():
    lines = [line for line in text_of(render_events(a_snapshot())).splitlines() if ":" in line]
    assert "mode normal → brainstem" in lines[0]
    assert "#7 dispatching → executing  coder P1  · calling claude_code" in lines[1]


def test_the_whole_screen_fits_120x40_and_80x24():
    for width, height in ((120, 40), (80, 24)):
        lines = text_of(render_screen(a_snapshot(), width, height), width, height).splitlines()
        assert len(lines) == height and all(len(line) <= width for line in lines)
        screen = "\n".join(lines)
        for seen in ("mode brainstem", "router", "DrillCrash", "waiting", "paid today", "mode normal → brainstem"):
            assert seen in screen, (width, seen)


# --- the structured log lines ----------------------------------------------------------------------------------------
def test_log_line_is_logfmt_and_still_readable():
    changed = TaskChanged(TaskView(7, 'fix "it"', "completed", executor="coder", tier="P1"), "executing",
                          "claude_code returned")
    line = log_line(event_of(changed, at=NOW))
    assert line.startswith(f"ts={time.strftime('%Y-%m-%dT%H:%M:%S', time.localtime(NOW))} event=transition ")
    assert ('task=7 from=executing to=completed executor=coder tier=P1 reason="claude_code returned" '
            'text="fix \\"it\\""') in line


def test_without_a_terminal_every_event_is_one_structured_line(write_config, supervisor_process, omni_home):
    proc = supervisor_process(write_config())

    async def scenario():
        async with GatewaySession(proc.url, TOKEN) as gateway:
            task = await gateway.call("submit_task", description="general chore")
            return await gateway.call("get_task", task_id=task["task_id"], wait_s=20)

    assert asyncio.run(scenario())["state"] == "completed"
    assert proc.stop() == 0
    output = (omni_home / "supervisor-stdout.log").read_text()
    assert "\x1b[" not in output
    transitions = [line for line in output.splitlines() if " event=transition task=1 " in line]
    assert [line.split(" to=")[1].split()[0] for line in transitions] == ["idle", "dispatching", "executing",
                                                                          "completed"]
    assert all(line.startswith("ts=") for line in transitions)


# --- gather ------------------------------------------------------------------------------------------------------
def test_gather_reflects_the_tree_a_task_and_its_cost(write_config, start_tree):
    tree = start_tree(write_config())
    task = tree.ask("state_store", CreateTask("Summarise my unread mail"))
    wait_until(lambda: tree.ask("state_store", GetTask(task.task_id)).state == "completed", 20, "the task done")
    tree.directory.tell("state_store", RecordCost(task.task_id, "P1", "free-tier", "proxy", 10, 5, 0.0042))

    snapshot = wait_until(lambda: (s := gather(tree.directory, config="test.yaml", started_at=time.monotonic()))
                          ["tasks"][0].get("cost_usd") and s, 10, "the task's cost")
    assert {"now", "config", "uptime_s", "mode", "route", "cloud", "actors", "tasks", "costs", "budget",
            "events"} <= set(snapshot)
    assert (snapshot["mode"], snapshot["route"], snapshot["budget"]) == ("normal", None, {})
    actors = {a["name"]: a for a in snapshot["actors"]}
    assert {"state_store", "router", "coder", "general", "gateway", "transition_feed"} <= set(actors)
    assert actors["router"]["status"] == "running" and isinstance(actors["router"]["mailbox"], int)
    first = snapshot["tasks"][0]
    assert (first["task_id"], first["state"], first["executor"], first["cost_usd"]) == \
        (task.task_id, "completed", "general", 0.0042)
    assert snapshot["costs"]["today"]["P1"] == {"usd": 0.0042, "calls": 1}
    moves = [(e["from"], e["to"]) for e in snapshot["events"] if e.get("task") == task.task_id]
    assert moves == [("new", "idle"), ("idle", "dispatching"), ("dispatching", "executing"),
                     ("executing", "completed")]


class Stuck(pykka.ThreadingActor):
    """Busy with its first message until the test releases it."""

    def __init__(self, release: threading.Event):
        super().__init__()
        self.release = release

    def on_receive(self, message):
        self.release.wait(60)


def test_gather_never_waits_for_a_busy_or_missing_actor():
    assert gather(Directory())["actors"] == [] and gather(Directory())["tasks"] is None
    directory, release = Directory(), threading.Event()
    directory.register("stuck", Stuck.start(release))
    try:
        snapshot = gather(directory)          # back while the actor is still stuck: it did not wait for it
    finally:
        release.set()
    assert snapshot["actors"] == [{"name": "stuck", "status": "?", "alive": True, "restarts": None,
                                   "last_error": None, "mailbox": BUSY}]
    assert "busy" in text_of(render_actors(snapshot))


# --- the real program under a pseudo-terminal ----------------------------------------------------------------------
def read_until(fd: int, output: bytearray, done, timeout_s: float) -> bool:
    """Read the terminal into `output` until `done(output)` or the deadline; False when the deadline passed."""
    deadline = time.monotonic() + timeout_s
    while not done(output):
        if time.monotonic() > deadline:
            return False
        if select.select([fd], [], [], 0.1)[0]:
            try:
                chunk = os.read(fd, 65536)
            except OSError:   # EIO: the child closed the terminal
                return done(output)
            if not chunk:
                return done(output)
            output += chunk
    return True


@pytest.mark.slow   # runs supervisor.py in a pty
def test_the_program_draws_the_console_in_a_terminal_and_ctrl_c_exits_0(write_config):
    config = write_config()
    env = {key: value for key, value in os.environ.items() if key not in ("COLUMNS", "LINES")} | \
        {"TERM": "xterm-256color"}
    pid, master = pty.fork()
    if pid == 0:   # the child: a 120x40 terminal, then the program
        try:
            fcntl.ioctl(pty.STDOUT_FILENO, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
            os.chdir(PROJECT_ROOT)
            os.execve(sys.executable, [sys.executable, "supervisor.py", "--config", str(config)], env)
        finally:
            os._exit(127)
    output = bytearray()
    try:
        drawn = read_until(master, output, lambda out: all(
            seen in out for seen in (b"mode ", b"normal", str(config).encode(), b"state_store", b"router",
                                     b"Tasks (", b"Latest events")), timeout_s=30)
        assert drawn, output.decode(errors="replace")[-3000:]
        assert b"\x1b[?1049h" in output   # the alternate screen: the terminal is restored afterwards
        os.write(master, b"\x03")          # Ctrl-C, as a user types it
        read_until(master, output, lambda out: b"stopped:" in out, timeout_s=60)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, output.decode(errors="replace")[-3000:]
        tail = output[output.rindex(b"\x1b[?1049l"):]   # what stays on the screen after the console
        assert b"stopped: every actor shut down in order" in tail
    finally:
        try:
            os.killpg(pid, signal.SIGKILL)   # the program and its MCP servers, if anything is left
        except ProcessLookupError:
            pass
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        os.close(master)
