"""IM commands, through both routes in: the OpenClaw bridge (the stub `openclaw mcp serve`, real MCP over
stdio, messages injected on its admin endpoint and our replies read back from it) and our gateway's
`command` tool (real MCP over Streamable HTTP); and `python supervisor.py send`."""
from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from clients.gateway_client import GatewaySession
from config import PROJECT_ROOT, ConfigError, load_config
from messages import CloudDown, CloudUp, CrashNow, GetTask, Introspect
from sandbox.openclaw_stub import READY_FILE, StubAdmin
from texts import say

from .conftest import TOKEN, task_states, wait_until

USER = "telegram:4242"
_sessions = itertools.count(1)


def im_config(write_config, locale: str = "en", **overrides):
    """The sandbox config with IM on: the stub bridge on an ephemeral admin port, fast respawns."""
    bridge = {"command": "python", "args": ["-m", "sandbox.openclaw_stub", "--admin-port", "0"],
              "env": {"OMNI_HOME": os.environ["OMNI_HOME"]}, "respawn_initial_s": 0.05, "respawn_max_s": 0.5}
    return write_config(im={"allow": [USER, "cli:*"], "locale": locale, "wait_ms": 2000, "openclaw": bridge},
                        brainstem={"model_path": None}, **overrides)


def start_im_tree(start_tree, config_path):
    tree = start_tree(config_path)
    wait_until(lambda: bridge(tree)["link"] == "up", 30, "the OpenClaw bridge's link up")
    return tree


def bridge(tree) -> dict:
    return tree.ask("openclaw_bridge", Introspect())


class Chat:
    """Someone writing to the orchestrator on Telegram, through the stub bridge. Each message is sent in
    a session of its own, so that its reply is told apart from news about tasks."""

    def __init__(self, home: Path, to: str = USER):
        self.home, self.to = home, to
        self.admin = wait_until(lambda: _admin(home), 30, "the stub bridge's admin URL")

    def send(self, text: str) -> str:
        """Inject `text`; the session key its reply will go to."""
        session_key = f"agent:main:telegram:direct:{self.to.split(':')[1]}:{next(_sessions)}"
        self.admin.inbound("telegram", self.to, text, session_key=session_key)
        return session_key

    def replies(self, session_key: str) -> list[str]:
        return [m["text"] for m in self.admin.outbound() if m["session_key"] == session_key]

    def ask(self, text: str, timeout_s: float = 15) -> str:
        session_key = self.send(text)
        return wait_until(lambda: self.replies(session_key), timeout_s, f"a reply to {text!r}")[0]

    def news(self, needle: str, timeout_s: float = 20) -> str:
        """Wait for a message to this user, in any of their sessions, containing `needle`."""
        def found():
            return next((m["text"] for m in self.admin.outbound()
                         if m["to"] == self.to and needle in m["text"]), None)
        return wait_until(found, timeout_s, f"a message to {self.to} with {needle!r}")


def _admin(home: Path) -> StubAdmin | None:
    try:
        admin = StubAdmin.of(home)
        admin.health()
        return admin
    except (OSError, ValueError, KeyError):
        return None


class GatewayChat:
    """The same conversation through our gateway's `command` tool."""

    def __init__(self, url: str, sender: str = USER):
        self.url, self.sender = url, sender

    def ask(self, text: str, sender: str | None = None) -> str:
        async def call():
            async with GatewaySession(self.url, TOKEN) as gateway:
                return (await gateway.call("command", text=text, sender=sender or self.sender))["reply"]
        return asyncio.run(call())


def wait_for_state(tree, task_id: int, states: set[str], timeout_s: float = 20):
    return wait_until(lambda: (t := tree.ask("state_store", GetTask(task_id))) and t.state in states and t,
                      timeout_s, f"task {task_id} in {states}")


def created_id(reply: str) -> int:
    assert reply.startswith("Task #"), reply
    return int(reply.split("#")[1].split()[0].rstrip(".:"))


def with_im_section(path: Path, im: dict) -> Path:
    """The config at `path` with its `im:` section replaced by `im` (not merged into the sandbox's)."""
    raw = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump({**raw, "im": im}, allow_unicode=True))
    return path


@pytest.mark.parametrize("im, key_path, expected", [
    ({"allow": ["4242"]}, "im.allow[0]", "a sender as <channel>:<id> (telegram:4242), or a pattern such as cli:*"),
    ({"locale": "fr"}, "im.locale", "one of en, zh-Hant, zh-Hans"),
    ({"openclaw": {"args": ["mcp", "serve"]}}, "im.openclaw.command", "a non-empty string"),
    ({"openclaw": {"command": "openclaw", "tool": "x"}}, "im.openclaw.tool", "one of the keys"),
    ({"wait_ms": 0}, "im.wait_ms", "a whole number >= 1 <= 300000"),
])
def test_im_config_mistakes_name_the_key_path(write_config, im, key_path, expected):
    path = with_im_section(write_config(), im)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert str(error.value).startswith(f"{path}: {key_path}: expected {expected}")


def test_the_im_section_defaults_to_the_top_level_locale_and_no_bridge(write_config):
    cfg = load_config(with_im_section(write_config(locale="zh-Hant"), {"allow": ["telegram:1"]}))
    assert (cfg.im.locale, cfg.im.openclaw, cfg.im.allow) == ("zh-Hant", None, ("telegram:1",))


@pytest.mark.parametrize("route", ["openclaw", "gateway"])
def test_every_command_answers_through_both_routes(route, write_config, start_tree, omni_home):
    tree = start_im_tree(start_tree, im_config(write_config))
    chat = Chat(omni_home) if route == "openclaw" else GatewayChat(tree.url)

    done = created_id(chat.ask("Summarise my unread mail"))
    assert wait_for_state(tree, done, {"completed"}).source == "im"
    failing = created_id(chat.ask("Book a table for two [fail]"))
    wait_for_state(tree, failing, {"failed"})

    help_text = chat.ask("/help")
    assert help_text.startswith("Omni-Orchestrator commands:") and "/cost [today|week|month]" in help_text
    assert all(f"/{name}" in help_text for name in ("status", "tasks", "task", "why", "cancel", "retry", "mode"))
    status = chat.ask("/status")
    assert status.startswith("Mode: normal · model route: none") and "Executors: coder up · general up" in status
    assert "1 completed · 1 failed" in status and "Actors: all" in status
    assert f"#{done} completed · Summarise my unread mail" in chat.ask("/tasks")
    assert chat.ask("/tasks failed") == f"Latest failed tasks:\n#{failing} failed · Book a table for two [fail]"
    assert chat.ask("/tasks bogus").startswith("/tasks: bogus is not one of idle, dispatching, executing")
    detail = chat.ask(f"/task {done}")
    assert detail.startswith(f"Task #{done}: completed\nSummarise my unread mail\nkind general · executor general")
    assert "Result: general done: Summarise my unread mail" in detail
    assert chat.ask("/task abc") == "/task: abc is not a task number. Usage: /task ID"
    assert chat.ask("/task") == "/task needs a task number. Usage: /task ID"
    assert chat.ask("/task 999") == "There is no task #999."
    why = chat.ask(f"/why #{done}")
    assert why.startswith(f"Task #{done} is completed. Its history:")
    assert "created: received from im (telegram:4242)" in why and "idle → dispatching: kind general" in why
    assert "executing → completed: run_task returned" in why
    cost = chat.ask("/cost")
    assert cost.startswith("Model spend today:\nno model calls\nTotal: $0.0000")
    assert chat.ask("/cost week").startswith("Model spend over the last 7 days:")
    assert chat.ask("/cost year") == "/cost: year is not one of today, week, month. Usage: /cost [today|week|month]"
    assert chat.ask("/mode") == ("Mode: normal. No model route is configured. The cloud is not watched: tasks go "
                                 "straight to their executors.")
    assert chat.ask("/frobnicate") == "Unknown command /frobnicate. Send /help to see the commands."

    slow = created_id(chat.ask("Write a long report [sleep=30]"))
    wait_for_state(tree, slow, {"executing"})
    assert chat.ask(f"/cancel {slow}") == f"Task #{slow} cancelled."
    assert chat.ask(f"/cancel {slow}") == f"Task #{slow} is cancelled: only unfinished tasks can be cancelled."
    assert chat.ask(f"/retry {done}") == f"Task #{done} is completed: only failed or cancelled tasks can be retried."
    assert chat.ask(f"/retry {failing}") == f"Task #{failing} will run again."
    again = wait_until(lambda: (t := tree.ask("state_store", GetTask(failing))).attempts == 2 and t.state == "failed"
                       and t, 20, "the retried task to run and fail again")
    assert "task failed on purpose" in again.error
    with tree.db() as db:
        moves = [row for row in db.execute("select from_state, to_state, reason from task_event where task_id = ? "
                                           "and kind = 'transition' order by id", (failing,))]
    assert ("failed", "idle", "retried through IM by telegram:4242") in moves
    assert moves[-1][:2] == ("executing", "failed")


def test_replies_come_in_the_configured_chinese_locale_and_full_width_commands_work(write_config, start_tree,
                                                                                    omni_home):
    tree = start_im_tree(start_tree, im_config(write_config, locale="zh-Hant"))
    chat = Chat(omni_home)
    task = created_id(chat.ask("幫我整理本週的會議紀錄").replace("任務 ", "Task "))
    wait_for_state(tree, task, {"completed"})
    assert chat.ask("／ｓｔａｔｕｓ").startswith("模式：normal · 模型路由：無\n任務：1 已完成")
    assert chat.ask(f"/task {task}").startswith(f"任務 #{task}：已完成\n幫我整理本週的會議紀錄")
    assert chat.ask("/task 一") == "/task：一 不是任務編號。用法：/task ID"
    assert chat.ask("/cost 本月").startswith("模型花費（本月）：\n沒有模型調用")
    assert chat.ask("/mode") == "模式：normal。未設定模型路由。不監測雲端：任務直接交給執行器。"
    assert chat.ask("/nope") == "未知的指令 /nope。傳送 /help 查看所有指令。"
    assert chat.news(f"任務 #{task} 已完成：general done: 幫我整理本週的會議紀錄")


def test_the_gateway_route_answers_in_simplified_chinese(write_config, start_tree):
    tree = start_tree(write_config(im={"allow": ["cli:*"], "locale": "zh-Hans"}))
    chat = GatewayChat(tree.url, sender="cli:ops")
    assert chat.ask("/why 5") == "没有编号 #5 的任务。"
    assert chat.ask("/tasks").startswith("尚无任务。")
    assert chat.ask("/help").startswith("Omni-Orchestrator 指令：")


def test_an_unknown_sender_is_refused_logged_and_creates_no_task(write_config, start_tree, omni_home):
    tree = start_im_tree(start_tree, im_config(write_config))
    stranger = Chat(omni_home, to="telegram:9999")
    assert stranger.ask("delete all my files") == ("Sorry, telegram:9999 may not give commands here. "
                                                   "(This was logged.)")
    assert stranger.ask("/status").startswith("Sorry, telegram:9999 may not")
    assert GatewayChat(tree.url).ask("run [sleep=1]", sender="discord:77").startswith("Sorry, discord:77 may not")
    assert GatewayChat(tree.url).ask("/help", sender="cli").startswith("Sorry, cli may not")
    assert task_states(tree.cfg.database_path) == {}
    assert bridge(tree)["senders"] == []       # never told of tasks or notices
    with tree.db() as db:
        refused = db.execute("select detail from system_event where kind = 'im_refused' order by id").fetchall()
    assert [detail for (detail,) in refused] == [
        "refused telegram:9999: delete all my files", "refused telegram:9999: /status",
        "refused discord:77: run [sleep=1]", "refused cli: /help"]
    journal = (tree.cfg.log_dir / "events.jsonl").read_text()
    assert '"kind": "im_refused", "detail": "refused discord:77' in journal


def test_a_task_from_im_reports_its_completion_and_failure_to_its_conversation(write_config, start_tree,
                                                                               omni_home):
    start_im_tree(start_tree, im_config(write_config))
    chat = Chat(omni_home)
    done = created_id(chat.ask("Summarise the week [sleep=0.5]"))
    failed = created_id(chat.ask("Book a flight [fail]"))
    assert chat.news(f"Task #{done} completed: general done: Summarise the week [sleep=0.5]")
    assert "task failed on purpose" in chat.news(f"Task #{failed} failed: ")
    bystander = [m for m in chat.admin.outbound() if m["to"] != USER]
    assert bystander == []


def test_brainstem_mode_answers_new_tasks_with_the_brainstem_reply_and_notices_reach_the_user(
        write_config, start_tree, omni_home):
    tree = start_im_tree(start_tree, im_config(write_config))
    chat = Chat(omni_home)
    running = created_id(chat.ask("Long research [sleep=30]"))
    wait_for_state(tree, running, {"executing"})
    tree.directory.tell("system_mode", CloudDown("test: the cloud is unreachable"))
    assert chat.news(say("en", "cloud_down"))
    assert chat.news("Brainstem mode without a local model")     # a notice for everyone who wrote recently
    reply = chat.ask("Summarise my inbox")
    assert reply == f"Task #{running + 1}: {say('en', 'queued_while_down')}"
    assert chat.ask("/mode") == ("Mode: brainstem. No model route is configured. The cloud is offline: tasks wait "
                                 "until it is back; no local model is loaded, so notices are fixed texts.")
    tree.directory.tell("system_mode", CloudUp("test: the cloud answers"))
    assert chat.news(say("en", "cloud_up"))
    assert chat.news(f"Task #{running + 1} completed")


def test_a_crash_of_the_bridge_actor_neither_loses_nor_repeats_a_message(write_config, start_tree, omni_home):
    tree = start_im_tree(start_tree, im_config(write_config))
    chat = Chat(omni_home)
    bridge_pid = chat.admin.health()["pid"]
    sessions = [chat.send("note 1"), chat.send("note 2")]
    tree.directory.tell("openclaw_bridge", CrashNow("test: mid-conversation"))
    sessions += [chat.send("note 3"), chat.send("note 4")]          # while it restarts
    wait_until(lambda: all(chat.replies(s) for s in sessions), 20, "replies to notes 1-4")
    tree.directory.tell("openclaw_bridge", CrashNow("test: again"))
    sessions += [chat.send("note 5"), chat.send("/tasks")]
    wait_until(lambda: all(chat.replies(s) for s in sessions), 20, "replies to every message")
    # A message handled twice would be queued before this marker's reply (messages are handled in order),
    # and sent once nothing is left unsent.
    assert chat.ask("/mode").startswith("Mode: ")
    wait_until(lambda: bridge(tree)["unsent"] == 0, 20, "every queued reply sent")
    answers = [[r for r in chat.replies(s) if " completed: " not in r] for s in sessions]   # not the tasks' news
    assert [len(a) for a in answers] == [1] * 6, answers
    with tree.db() as db:
        notes = sorted(d for (d,) in db.execute("select description from task"))
    assert notes == [f"note {n}" for n in range(1, 6)]
    status = tree.ask("supervisor", Introspect())
    assert next(a for a in status if a["name"] == "openclaw_bridge")["restarts"] == 2
    assert chat.admin.health()["pid"] == bridge_pid                   # the bridge process outlived both crashes


def test_a_dead_bridge_process_is_respawned_and_listened_to_again(write_config, start_tree, omni_home):
    tree = start_im_tree(start_tree, im_config(write_config))
    chat = Chat(omni_home)
    assert chat.ask("/mode").startswith("Mode: normal")
    old_pid = chat.admin.health()["pid"]
    os.kill(old_pid, signal.SIGKILL)
    wait_until(lambda: json.loads((omni_home / READY_FILE).read_text())["pid"] != old_pid, 30, "a new bridge process")
    wait_until(lambda: bridge(tree)["link"] == "up", 30, "the link up again")
    chat = Chat(omni_home)
    assert chat.ask("/mode").startswith("Mode: normal")
    done = created_id(chat.ask("After the respawn"))
    assert chat.news(f"Task #{done} completed")           # the sender's conversation survived in OpenClaw's state


def run_send(omni_home: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMNI_HOME": str(omni_home), "OMNI_GATEWAY_TOKEN": TOKEN, **(env or {})}
    return subprocess.run([sys.executable, "supervisor.py", "send", *args], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def test_send_prints_the_reply_of_a_running_supervisor_and_fails_clearly_without_one(
        write_config, supervisor_process, omni_home):
    missing = run_send(omni_home, "/status")
    assert missing.returncode == 1 and "no supervisor is running" in missing.stderr
    supervisor = supervisor_process(im_config(write_config))
    status = run_send(omni_home, "/status")
    assert status.returncode == 0, status.stderr
    assert status.stdout.startswith("Mode: normal · model route: none\nTasks: none\nExecutors: coder")
    refused = run_send(omni_home, "/status", "--sender", "telegram:1")
    assert refused.returncode == 0 and refused.stdout.startswith("Sorry, telegram:1 may not")
    wrong = run_send(omni_home, "/status", env={"OMNI_GATEWAY_TOKEN": "not-the-token-" + "y" * 20})
    assert wrong.returncode == 1 and "refused the token" in wrong.stderr, wrong.stderr
    supervisor.stop()
    gone = run_send(omni_home, "/status")
    assert gone.returncode == 1 and "no supervisor answers at http://127.0.0.1:" in gone.stderr
