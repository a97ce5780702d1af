"""Coding tasks' git worktrees (actors/workspace_keeper.py) and `/continue`, on real git repositories the tests
make, with the whole tree running (real SQLite, the sandbox coder as a real stdio MCP server).

The life cycle: a worktree is prepared before any task, a coding task runs in it (its `workFolder`), it is kept
with its branch when the task ends and a fresh one is prepared, kept ones are removed after `keep_s`, a ready
one is replaced when the base branch moves, and a claim survives the keeper restarting. `/continue` runs in the
same worktree, with the earlier result as context on the sandbox coder (no sessions), resuming the Claude Code
session on the real mcp_servers/claude_code.py (the last test).
"""
from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from cli.validate import check_workspaces
from commands.interpreter import CommandInterpreter
from config import ConfigError, load_config
from messages import CreateTask, CrashNow, GetTask, Introspect
from messages.workspaces import ClaimWorkspace
from store import open_database
from texts import say

from .conftest import wait_until

KEEPER = "workspace_keeper"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True,
                          env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
                               "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org"}).stdout.strip()


def make_repo(folder: Path) -> Path:
    folder.mkdir(parents=True)
    git(folder, "init", "-q", "-b", "main")
    (folder / "README").write_text("hello\n")
    git(folder, "add", "README")
    git(folder, "commit", "-q", "-m", "first")
    return folder


@pytest.fixture
def repos(tmp_path) -> dict[str, Path]:
    return {"app": make_repo(tmp_path / "src" / "app"), "docs": make_repo(tmp_path / "src" / "docs")}


def workspaces(repos: dict[str, Path], **overrides) -> dict:
    section = {"executors": ["coder"], "sweep_interval_s": 0.2, "senders": {"telegram:7": "docs"},
               "repos": {name: {"path": str(path), "base": "main"} for name, path in repos.items()}}
    return {"workspaces": section | overrides}


def worktrees(tree, state: str | None = None, repo: str | None = None) -> list[dict]:
    return [t for t in tree.ask(KEEPER, Introspect())["worktrees"]
            if (state is None or t["state"] == state) and (repo is None or t["repo"] == repo)]


def ready(tree, repo: str = "app") -> dict:
    return wait_until(lambda: next(iter(worktrees(tree, "ready", repo)), None), 20, f"a ready worktree of {repo}")


def run(tree, text: str, sender: str = "telegram:1") -> dict:
    task = tree.ask("state_store", CreateTask(text, kind="coding", sender=sender, source="im"))
    return finished(tree, task.task_id)


def finished(tree, task_id: int):
    return wait_until(lambda: (t := tree.ask("state_store", GetTask(task_id))).is_terminal and t, 30,
                      f"task {task_id} finished")


def interpreter(tree) -> CommandInterpreter:
    im = dataclasses.replace(tree.cfg.im, allow=("telegram:*",))
    return CommandInterpreter(tree.directory.ask_async, tree.directory.tell, im, tuple(tree.cfg.executors), False)


def command(tree, text: str, sender: str) -> str:
    return asyncio.run(interpreter(tree).handle(text, sender))


# --- the life cycle --------------------------------------------------------------------------------------------

def test_a_worktree_is_ready_before_the_first_task(write_config, start_tree, repos):
    tree = start_tree(write_config(**workspaces(repos)))
    for name, repo in repos.items():
        prepared = ready(tree, name)
        folder = Path(prepared["path"])
        assert git(folder, "rev-parse", "--abbrev-ref", "HEAD") == prepared["branch"]
        assert prepared["branch"].startswith(f"omni/{name}/")
        assert git(folder, "rev-parse", "HEAD") == git(repo, "rev-parse", "main")
        assert git(folder, "status", "--porcelain") == ""


def test_a_coding_task_runs_in_its_worktree_which_is_kept_with_its_branch_and_replaced(write_config, start_tree,
                                                                                        repos):
    tree = start_tree(write_config(**workspaces(repos)))
    prepared = ready(tree)
    task = run(tree, "[touch fix.txt] fix the app build")
    assert task.state == "completed", task.error
    assert (task.workspace, task.branch) == (prepared["path"], prepared["branch"])
    assert (Path(task.workspace) / "fix.txt").exists()            # the task's workFolder was the worktree
    assert not (repos["app"] / "fix.txt").exists()
    assert prepared["branch"] in git(repos["app"], "branch", "--list", "omni/*")
    assert wait_until(lambda: [t["path"] for t in worktrees(tree, "kept")] == [task.workspace], 10, "kept")
    fresh = ready(tree)
    assert fresh["path"] != task.workspace and git(Path(fresh["path"]), "status", "--porcelain") == ""
    detail = command(tree, f"/task {task.task_id}", "telegram:1")
    assert say("en", "im_task_workspace", path=task.workspace, branch=task.branch) in detail
    second = run(tree, "[touch two.txt] fix the app again")
    assert second.workspace == fresh["path"] and not (Path(second.workspace) / "fix.txt").exists()


def test_kept_worktrees_are_removed_after_keep_s_and_their_branches_stay(write_config, start_tree, repos):
    config = workspaces(repos)
    config["workspaces"]["repos"]["app"]["keep_s"] = 0.5
    tree = start_tree(write_config(**config))
    ready(tree)
    task = run(tree, "[touch done.txt] fix the app")
    wait_until(lambda: not Path(task.workspace).exists(), 15, "the kept worktree removed after keep_s")
    assert task.branch in git(repos["app"], "branch", "--list", "omni/*")   # the work stays reviewable:
    assert "done.txt" in git(repos["app"], "show", "--name-only", "--format=", task.branch)   # committed onto it
    assert task.workspace not in git(repos["app"], "worktree", "list")
    assert ready(tree)["path"] != task.workspace


def test_a_ready_worktree_is_replaced_when_the_base_branch_moves(write_config, start_tree, repos):
    tree = start_tree(write_config(**workspaces(repos)))
    old = ready(tree)
    (repos["app"] / "NEW").write_text("new\n")
    git(repos["app"], "add", "NEW")
    git(repos["app"], "commit", "-q", "-m", "moved")
    head = git(repos["app"], "rev-parse", "main")
    fresh = wait_until(lambda: next((t for t in worktrees(tree, "ready", "app") if t["path"] != old["path"]), None),
                       20, "a worktree from the new base")
    assert git(Path(fresh["path"]), "rev-parse", "HEAD") == head
    wait_until(lambda: not Path(old["path"]).exists(), 10, "the stale ready worktree removed")
    assert old["branch"] not in git(repos["app"], "branch", "--list", "omni/*")   # never used: its branch too


def test_which_repo_from_the_text_else_the_senders_default_else_the_first(write_config, start_tree, repos):
    tree = start_tree(write_config(**workspaces(repos)))
    ready(tree, "app"), ready(tree, "docs")
    named = run(tree, "fix the typo in docs", sender="telegram:1")
    by_sender = run(tree, "fix the typo", sender="telegram:7")
    first = run(tree, "fix the typo", sender="telegram:1")
    assert Path(named.workspace).parent.name == "docs"
    assert Path(by_sender.workspace).parent.name == "docs"
    assert Path(first.workspace).parent.name == "app"


def test_a_claim_survives_the_keeper_restarting(write_config, start_tree, repos):
    tree = start_tree(write_config(**workspaces(repos)))
    prepared = ready(tree)
    task = tree.ask("state_store", CreateTask("[sleep=3] fix the app", kind="coding", sender="telegram:1"))
    wait_until(lambda: tree.ask("state_store", GetTask(task.task_id)).workspace, 10, "the claim written")
    tree.directory.tell(KEEPER, CrashNow("test: mid-task"))
    wait_until(lambda: next(a for a in tree.ask("supervisor", Introspect()) if a["name"] == KEEPER)["restarts"] == 1,
               20, "the keeper restarted")
    wait_until(lambda: any(t["task"] == task.task_id for t in worktrees(tree, "in use")), 20, "the claim rebuilt")
    view = tree.ask("state_store", GetTask(task.task_id))
    again = tree.ask(KEEPER, ClaimWorkspace(view))
    assert again.path == prepared["path"]                       # the same task gets the same worktree
    assert ready(tree)["path"] != prepared["path"]              # and nobody else gets it
    done = finished(tree, task.task_id)
    assert done.state == "completed" and done.workspace == prepared["path"]
    wait_until(lambda: any(t["path"] == prepared["path"] for t in worktrees(tree, "kept")), 10, "kept")


# --- /continue -------------------------------------------------------------------------------------------------

def test_continue_runs_in_the_same_worktree_with_the_earlier_result_as_context(write_config, start_tree, repos):
    tree = start_tree(write_config(**workspaces(repos)))
    ready(tree)
    first = run(tree, "[touch a.txt] fix the app")
    reply = command(tree, f"/continue {first.task_id} [touch b.txt] now add a test", "telegram:1")
    follow_id = first.task_id + 1
    assert reply == say("en", "im_continue_created", task_id=follow_id, earlier=first.task_id)
    follow = finished(tree, follow_id)
    assert follow.state == "completed" and follow.continues == first.task_id
    assert follow.workspace == first.workspace and follow.branch == first.branch
    assert {"a.txt", "b.txt"} <= set(os.listdir(follow.workspace))
    # The sandbox coder takes no session_id: the prompt carried the earlier task and result.
    assert follow.result.startswith(f"coder done: This continues task #{first.task_id} (in this same folder)")


def test_continue_after_the_worktree_was_removed_reopens_it_on_its_kept_branch(write_config, start_tree, repos):
    config = workspaces(repos)
    config["workspaces"]["repos"]["app"]["keep_s"] = 0.5
    tree = start_tree(write_config(**config))
    ready(tree)
    first = run(tree, "[touch a.txt] fix the app")
    wait_until(lambda: not Path(first.workspace).exists(), 15, "the kept worktree removed after keep_s")
    command(tree, f"/continue {first.task_id} [touch b.txt] now add a test", "telegram:1")
    follow = finished(tree, first.task_id + 1)
    assert follow.state == "completed", follow.error
    assert (follow.workspace, follow.branch) == (first.workspace, first.branch)   # the same folder, made again
    assert follow.result.startswith(f"coder done: This continues task #{first.task_id} (in this same folder)")
    # Kept 0.5 s, it is removed again, its leftovers committed: the branch holds both tasks' work, so the
    # follow-up ran on the kept branch (a fresh worktree from main would have no a.txt).
    wait_until(lambda: not Path(follow.workspace).exists(), 15, "the reopened worktree removed after keep_s")
    assert {"a.txt", "b.txt"} <= set(git(repos["app"], "ls-tree", "-r", "--name-only", first.branch).split())


def test_continue_while_the_kept_worktree_is_being_removed_waits_and_reopens_it(write_config, start_tree, repos,
                                                                                 tmp_path, monkeypatch):
    # git stays 2 s in `worktree remove` after the folder is gone, so the follow-up comes while the keeper still
    # holds the worktree as being removed: it must wait for the removal and reopen the folder, not take a
    # folder that no longer exists.
    slow = tmp_path / "bin"
    slow.mkdir()
    (slow / "git").write_text(f'#!/bin/sh\n{shutil.which("git")} "$@"; status=$?\n'
                              'case "$*" in *"worktree remove"*) sleep 2;; esac\nexit $status\n')
    (slow / "git").chmod(0o755)
    monkeypatch.setenv("PATH", f"{slow}{os.pathsep}{os.environ['PATH']}")
    config = workspaces(repos)
    config["workspaces"]["repos"]["app"]["keep_s"] = 0.5
    tree = start_tree(write_config(**config))
    ready(tree)
    first = run(tree, "[touch a.txt] fix the app")
    wait_until(lambda: not Path(first.workspace).exists()
               and [t["state"] for t in worktrees(tree) if t["path"] == first.workspace] == ["removing"], 15,
               "the kept worktree's folder gone while git is still removing it")
    command(tree, f"/continue {first.task_id} [touch b.txt] now add a test", "telegram:1")
    follow = finished(tree, first.task_id + 1)
    assert follow.state == "completed", follow.error
    assert (follow.workspace, follow.branch) == (first.workspace, first.branch)
    wait_until(lambda: not worktrees(tree, repo="app", state="kept") and not worktrees(tree, "removing", "app")
               and not Path(follow.workspace).exists(), 20, "the reopened worktree removed after keep_s")
    assert {"a.txt", "b.txt"} <= set(git(repos["app"], "ls-tree", "-r", "--name-only", first.branch).split())


def test_continue_is_refused_for_another_user_and_for_an_unfinished_task(write_config, start_tree, repos):
    tree = start_tree(write_config(**workspaces(repos)))
    ready(tree)
    first = run(tree, "fix the app")
    assert command(tree, f"/continue {first.task_id} more", "telegram:2") == \
        say("en", "im_continue_not_yours", task_id=first.task_id)
    running = tree.ask("state_store", CreateTask("[sleep=3] fix", kind="coding", sender="telegram:1"))
    assert "can be continued once it has finished" in command(tree, f"/continue {running.task_id} more",
                                                              "telegram:1")
    assert say("en", "im_expect_continue_text") in command(tree, f"/continue {first.task_id}", "telegram:1")
    assert command(tree, "/continue 999 more", "telegram:1") == say("en", "im_no_task", task_id=999)
    created = tree.ask("state_store", GetTask(running.task_id + 1))
    assert created is None                                        # nothing was created by a refusal


# --- config, validate, migration -------------------------------------------------------------------------------

def test_validate_names_the_repo_key_for_a_missing_folder_a_non_repository_and_a_missing_base(write_config, repos,
                                                                                            tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    config = workspaces(repos)
    config["workspaces"]["repos"] |= {"gone": {"path": str(tmp_path / "gone")}, "plain": {"path": str(plain)},
                                      "nobase": {"path": str(repos["app"]), "base": "release"}}
    checks = {c.subject: c for c in asyncio.run(check_workspaces(load_config(write_config(**config))))}
    assert checks["workspaces.repos.app"].ok and checks["workspaces.repos.docs"].ok
    assert not checks["workspaces.repos.gone"].ok and "no such folder" in checks["workspaces.repos.gone"].detail
    assert "not a git repository" in checks["workspaces.repos.plain"].detail
    assert "has no branch or commit 'release'" in checks["workspaces.repos.nobase"].detail
    assert "workspaces.repos.nobase.path / .base" in checks["workspaces.repos.nobase"].detail


@pytest.mark.parametrize(("change", "key"), [
    (lambda w: w["senders"].update({"telegram:9": "nowhere"}), "workspaces.senders.telegram:9"),
    (lambda w: w.update(executors=["nobody"]), "workspaces.executors[0]"),
    (lambda w: w["repos"]["app"].update(path="relative/app"), "workspaces.repos.app.path"),
    (lambda w: w.update(default="nowhere"), "workspaces.default"),
])
def test_config_mistakes_name_the_key(write_config, repos, change, key):
    config = workspaces(repos)
    change(config["workspaces"])
    with pytest.raises(ConfigError) as error:
        load_config(write_config(**config))
    assert key in str(error.value)


def test_an_existing_database_gains_the_workspace_columns_and_keeps_its_tasks(tmp_path):
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as old:
        old.execute('CREATE TABLE "task" ("id" INTEGER PRIMARY KEY, "description" TEXT, "state" VARCHAR(255), '
                    '"kind" VARCHAR(255), "executor" VARCHAR(255), "tier" VARCHAR(255), "attempts" INTEGER, '
                    '"sender" VARCHAR(255), "source" VARCHAR(255), "result" TEXT, "error" TEXT, '
                    '"created_at" REAL, "updated_at" REAL, "idempotency_key" VARCHAR(255))')
        old.execute("INSERT INTO task VALUES (1, 'old', 'completed', NULL, NULL, NULL, 1, NULL, 'mcp', 'r', NULL, "
                    "0, 0, NULL)")
    open_database(str(path)).close()
    with sqlite3.connect(path) as db:
        columns = {row[1] for row in db.execute("PRAGMA table_info(task)")}
        assert {"workspace", "branch", "session_id", "continues"} <= columns
        assert db.execute("SELECT description, result, workspace FROM task").fetchall() == [("old", "r", None)]


# --- the real Claude Code server ---------------------------------------------------------------------------------

@pytest.mark.slow
def test_continue_resumes_the_claude_code_session_in_the_same_worktree(write_config, start_tree, repos, omni_home,
                                                                       monkeypatch):
    """mcp_servers/claude_code.py with the real claude-agent-sdk CLI, its model the loopback Anthropic stand-in:
    the follow-up is given the first task's session_id and worktree, and the model sees the earlier turn."""
    from mcp_servers import claude_sdk
    from sandbox.anthropic_api import AnthropicStandIn
    if not claude_sdk.installed():
        pytest.fail(f"claude-agent-sdk is not installed in {claude_sdk.sdk_dir()}: {claude_sdk.INSTALL_HINT}")
    (omni_home / "claude-home").mkdir()
    monkeypatch.setenv("OMNI_TEST_ANTHROPIC_KEY", "sk-ant-omni-test-not-a-key")   # the stand-in's fake key
    model = AnthropicStandIn().start()
    try:
        coder = {"transport": "stdio", "command": sys.executable, "args": ["-m", "mcp_servers.claude_code"],
                 "tool": "claude_code", "arguments": {"prompt": "{description}", "workFolder": "{home}/work"},
                 "call_timeout_s": 120, "connect_timeout_s": 30,
                 "env": {"HOME": str(omni_home / "claude-home"), "ANTHROPIC_BASE_URL": model.base_url,
                         "ANTHROPIC_API_KEY": "${OMNI_TEST_ANTHROPIC_KEY}",
                         "OMNI_CACHE": str(claude_sdk.cache_dir())}}
        tree = start_tree(write_config(executors={"coder": coder}, **workspaces(repos)))
        ready(tree)
        first = run(tree, "Please remember PINEAPPLE in the app")
        assert first.state == "completed", first.error
        assert first.result == "I will remember PINEAPPLE." and first.session_id
        command(tree, f"/continue {first.task_id} what word was it?", "telegram:1")
        follow = finished(tree, first.task_id + 1)
        assert follow.state == "completed", follow.error
        assert follow.result == "The word was PINEAPPLE."                 # the session was resumed
        assert follow.workspace == first.workspace and follow.session_id == first.session_id
        resumed = [r for r in model.requests if "what word was it?" in str(r.messages)]
        assert resumed and "PINEAPPLE" in str(resumed[-1].messages)
    finally:
        model.stop()
