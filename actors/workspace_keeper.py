"""The WorkspaceKeeper owns the coding tasks' git worktrees (config `workspaces:`).

For each configured repository one fresh worktree, on a new branch from the repo's base, is kept ready, so
that a coding task starts at once in a clean tree. An executor claims it for a task (`ClaimWorkspace`, an ask:
the keeper is started before the executors); the claim is written on the task's row before it is answered,
so a keeper that restarts mid-claim rebuilds who holds which worktree from SQLite and never hands one out
twice. When the task ends its worktree stays, with its branch, for review (`/task ID` says where) and a new
one is prepared; after the repo's `keep_s` the folder is removed and the branch stays (what a task left
uncommitted is first committed onto its branch, so removing loses nothing). A ready worktree whose base branch
has moved is replaced.

Which repository a task means: a repo named in its text (a whole word), else the sender's default
(`workspaces.senders`, fnmatch patterns), else `workspaces.default`, else the first repo. A task that
continues an earlier one (`/continue`) gets the earlier task's worktree, made again at its path on its kept
branch when it was removed by age meanwhile.

git runs as asyncio subprocesses on the shared loop (clients/git_worktrees.py); outcomes come back as messages.
"""
from __future__ import annotations

import fnmatch
import os
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clients import GitFailed, add_worktree, base_head, git, prune, remove_worktree, save_changes
from config.schema import RepoConfig, WorkspacesConfig
from messages import GetTask, TaskChanged, TaskView
from messages.workspaces import (BaseHeads, ClaimWorkspace, ListWorkspaceClaims, RecordWorkspace, SweepWorkspaces,
                                 WorkspaceClaimed, WorkspacePrepared, WorkspaceRemoved, WorkspacesReady)
from runtime import ChildContext, Journal, SupervisedActor
from vocabulary import TERMINAL_STATES, ActorName

READY_PER_REPO = 1     # one clean worktree waiting per repository: the next task's
REMOVING = float("inf")  # a kept worktree's ended_at while git removes it: never swept twice, never claimed


@dataclass
class Worktree:
    repo: str
    path: str
    branch: str
    head: str = ""                 # the base commit it was made from ("" until known)
    task_id: int | None = None     # claimed by
    ended_at: float | None = None  # its task ended: kept for review until ended_at + keep_s


def choose_repo(workspaces: WorkspacesConfig, text: str, sender: str | None) -> RepoConfig:
    """The repository a task means.

    >>> from config.schema import RepoConfig as R
    >>> ws = WorkspacesConfig(repos={"app": R("app", "/a"), "docs": R("docs", "/d")}, executors=("coder",),
    ...                       senders={"telegram:7": "docs"})
    >>> choose_repo(ws, "fix the build in app", "telegram:7").name, choose_repo(ws, "fix it", "telegram:7").name
    ('app', 'docs')
    >>> choose_repo(ws, "fix it", "cli:me").name
    'app'
    """
    for name, repo in workspaces.repos.items():
        if re.search(rf"(?<![\w.-]){re.escape(name)}(?![\w-])", text, re.IGNORECASE):
            return repo
    for pattern, name in workspaces.senders.items():
        if sender and fnmatch.fnmatchcase(sender, pattern):
            return workspaces.repos[name]
    return workspaces.repos[workspaces.default or next(iter(workspaces.repos))]


class WorkspaceKeeper(SupervisedActor):
    def __init__(self, context: ChildContext, workspaces: WorkspacesConfig, home: Path, journal: Journal):
        super().__init__(context)
        self._config = workspaces
        self._root = Path(workspaces.root or home / "workspaces")
        self._journal = journal
        self._trees: dict[str, Worktree] = {}          # by path
        self._preparing: dict[str, int] = {name: 0 for name in workspaces.repos}
        self._waiting: set[str] = set()                # executors told WorkspacesReady when one is prepared
        self._reopening: dict[int, bool] = {}          # follow-ups whose earlier worktree is being made again:
                                                       # True while git runs, False once it failed (use a fresh one)

    # --- lifecycle ---------------------------------------------------------------------------------------------
    def started(self) -> None:
        self._rebuild()
        self.loop.tell_every(self._config.sweep_interval_s, self.actor_ref, SweepWorkspaces())
        self.actor_ref.tell(SweepWorkspaces())
        self._top_up()

    def on_receive(self, message: Any) -> Any:
        match message:
            case ClaimWorkspace(task=task):            return self._claim(task)
            case TaskChanged(task=task):               self._task_changed(task)
            case WorkspacePrepared() as prepared:      self._prepared(prepared)
            case WorkspaceRemoved() as removed:        self._removed(removed)
            case SweepWorkspaces():                    self._sweep()
            case BaseHeads() as heads:                 self._refresh(heads)
            case _:                                    return self.unhandled(message)

    def snapshot(self) -> dict[str, Any]:
        return {"root": str(self._root), "preparing": dict(self._preparing),
                "worktrees": [{"repo": t.repo, "path": t.path, "branch": t.branch, "task": t.task_id,
                               "state": self._state_of(t)} for t in self._trees.values()]}

    def _rebuild(self) -> None:
        """Claims from the tasks' rows; every other worktree folder under the root is a ready one."""
        claimed: set[str] = set()
        for task_id, path, branch, state, updated_at in self.directory.ask(ActorName.STATE_STORE,
                                                                            ListWorkspaceClaims()):
            claimed.add(path)
            repo = self._repo_of(path)
            if repo is not None and os.path.isdir(path):
                self._trees[path] = Worktree(repo, path, branch, task_id=task_id,
                                             ended_at=updated_at if state in TERMINAL_STATES else None)
        for name in self._config.repos:
            folder = self._root / name
            for entry in sorted(folder.iterdir()) if folder.is_dir() else ():
                if entry.is_dir() and str(entry) not in claimed:
                    self._trees[str(entry)] = Worktree(name, str(entry), _branch_for(name, entry.name))

    # --- claims ------------------------------------------------------------------------------------------------
    def _claim(self, task: TaskView) -> WorkspaceClaimed | None:
        held = next((t for t in self._trees.values() if t.task_id == task.task_id), None)
        if held is None and task.continues is not None and self._reopening.get(task.task_id) is not False:
            held, wait = self._continued(task)
            if wait:
                self._waiting.add(task.executor or "")
                return None
        if held is None:
            repo = choose_repo(self._config, task.description, task.sender)
            held = next((t for t in self._trees.values() if t.repo == repo.name and self._state_of(t) == "ready"
                         and t.head), None)
            if held is None:
                self._waiting.add(task.executor or "")
                self._top_up()
                return None
        # Written before it is answered: after a restart the row says whose it is.
        self.directory.ask(ActorName.STATE_STORE, RecordWorkspace(task.task_id, held.path, held.branch))
        held.task_id, held.ended_at = task.task_id, None
        self._journal.record("workspace_claimed", task_id=task.task_id, repo=held.repo, path=held.path,
                             branch=held.branch)
        self._top_up()
        return WorkspaceClaimed(held.path, held.branch, held.repo)

    def _continued(self, task: TaskView) -> tuple[Worktree | None, bool]:
        """(the earlier task's worktree, whether to wait for it). Removed by age meanwhile, it is made again at
        the same path on its kept branch (so that the work and a Claude Code session, which lives in its folder,
        go on); the follow-up waits until it is ready, or until a removal under way has ended (its folder may be
        gone already: asked again then, it is reopened, or taken as it is if git could not remove it)."""
        earlier = self.directory.ask(ActorName.STATE_STORE, GetTask(task.continues))
        if earlier is None or earlier.workspace is None:
            return None, False
        tree = self._trees.get(earlier.workspace)
        if tree is not None:
            return (None, True) if tree.ended_at == REMOVING else (tree, False)
        repo = self._repo_of(earlier.workspace)
        if repo is not None and earlier.branch and task.task_id not in self._reopening:
            self._reopening[task.task_id] = True
            self._run(_prepare(self._config.repos[repo], earlier.workspace, earlier.branch, task.task_id))
        return None, task.task_id in self._reopening

    def _task_changed(self, task: TaskView) -> None:
        for tree in self._trees.values():
            if tree.task_id == task.task_id and task.state in TERMINAL_STATES and tree.ended_at is None:
                tree.ended_at = time.time()
                self._journal.record("workspace_kept", task_id=task.task_id, path=tree.path, branch=tree.branch)

    # --- preparing and removing ----------------------------------------------------------------------------------
    def _top_up(self) -> None:
        for name, repo in self._config.repos.items():
            ready = sum(1 for t in self._trees.values() if t.repo == name and self._state_of(t) == "ready")
            while ready + self._preparing[name] < READY_PER_REPO:
                self._preparing[name] += 1
                slug = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
                self._run(_prepare(repo, str(self._root / name / slug), _branch_for(name, slug)))

    def _prepared(self, prepared: WorkspacePrepared) -> None:
        if prepared.for_task is not None:
            self._reopened(prepared)
            return
        self._preparing[prepared.repo] -= 1
        if prepared.error is not None:
            self._journal.record("workspace_failed", repo=prepared.repo, error=prepared.error)
            return   # the next sweep tries again
        self._trees[prepared.path] = Worktree(prepared.repo, prepared.path, prepared.branch, prepared.head)
        self._tell_waiting()

    def _reopened(self, prepared: WorkspacePrepared) -> None:
        if prepared.error is None:
            self._reopening.pop(prepared.for_task, None)
            self._trees[prepared.path] = Worktree(prepared.repo, prepared.path, prepared.branch, prepared.head,
                                                  task_id=prepared.for_task)
            self._journal.record("workspace_reopened", task_id=prepared.for_task, path=prepared.path,
                                 branch=prepared.branch)
        else:   # the follow-up takes a fresh worktree, its prompt carrying the earlier task (workspace_arguments)
            self._reopening[prepared.for_task] = False
            self._journal.record("workspace_not_reopened", task_id=prepared.for_task, path=prepared.path,
                                 error=prepared.error)
        self._tell_waiting()

    def _tell_waiting(self) -> None:
        for executor in self._waiting:
            self.directory.tell(executor, WorkspacesReady())
        self._waiting.clear()

    def _sweep(self) -> None:
        ready = {t.path: t.repo for t in self._trees.values() if self._state_of(t) == "ready"}
        self._run(_heads(self._config, ready))
        now = time.time()
        for tree in list(self._trees.values()):
            keep_s = self._config.repos[tree.repo].keep_s
            if tree.ended_at is not None and now - tree.ended_at > keep_s and tree.task_id is not None:
                tree.ended_at = REMOVING
                self._run(_remove(self._config.repos[tree.repo], tree.path, None))
        self._top_up()

    def _refresh(self, heads: BaseHeads) -> None:
        """Ready worktrees made from an older base commit are replaced by fresh ones."""
        for path, head in heads.ready_heads.items():
            tree = self._trees.get(path)
            if tree is not None and self._state_of(tree) == "ready":
                tree.head = tree.head or head
                base = heads.heads.get(tree.repo)
                if base and tree.head != base:
                    del self._trees[path]
                    self._run(_remove(self._config.repos[tree.repo], path, tree.branch))
        self._top_up()

    def _removed(self, removed: WorkspaceRemoved) -> None:
        tree = self._trees.get(removed.path)
        if removed.error is not None:
            self._journal.record("workspace_not_removed", path=removed.path, error=removed.error)
            if tree is not None and tree.ended_at == REMOVING:
                tree.ended_at = time.time()   # try again after another keep_s
        else:
            self._trees.pop(removed.path, None)
            self._journal.record("workspace_removed", repo=removed.repo, path=removed.path)
        self._tell_waiting()   # a follow-up may be waiting for this removal to end

    # --- helpers -----------------------------------------------------------------------------------------------
    def _run(self, coroutine: Any) -> None:
        """Run a git coroutine on the loop; its message (it answers failures as messages too) comes back here."""
        def done(future: Any) -> None:
            if not future.cancelled():
                self.tell_self(future.result())
        self.loop.submit(coroutine).add_done_callback(done)

    def _state_of(self, tree: Worktree) -> str:
        if tree.task_id is None:
            return "ready"
        if tree.ended_at is None:
            return "in use"
        return "removing" if tree.ended_at == REMOVING else "kept"

    def _repo_of(self, path: str) -> str | None:
        parent = Path(path).parent
        return next((name for name in self._config.repos if parent == self._root / name), None)


def _branch_for(repo: str, slug: str) -> str:
    return f"omni/{repo}/{slug}"


async def _prepare(repo: RepoConfig, path: str, branch: str, for_task: int | None = None) -> WorkspacePrepared:
    """A fresh worktree on a new branch from the base; or, `for_task` given, one on the existing `branch`."""
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        await prune(repo.path)
        head = await add_worktree(repo.path, path, branch, None if for_task is not None else repo.base)
        return WorkspacePrepared(repo.name, path, branch, head, for_task=for_task)
    except (GitFailed, OSError) as failure:
        return WorkspacePrepared(repo.name, path, branch, "", error=str(failure), for_task=for_task)


async def _remove(repo: RepoConfig, path: str, unused_branch: str | None) -> WorkspaceRemoved:
    """A kept worktree keeps its branch (the task's work; what it left uncommitted is committed onto it first);
    a ready one never used loses its branch too."""
    try:
        if unused_branch is None:
            await save_changes(path, f"omni: what the task left uncommitted in {Path(path).name}, kept on removal")
        await remove_worktree(repo.path, path, delete_branch=unused_branch, force=unused_branch is not None)
        return WorkspaceRemoved(repo.name, path)
    except GitFailed as failure:
        return WorkspaceRemoved(repo.name, path, error=str(failure))


async def _heads(config: WorkspacesConfig, ready: dict[str, str]) -> BaseHeads:
    heads: dict[str, str] = {}
    for name, repo in config.repos.items():
        try:
            heads[name] = await base_head(repo.path, repo.base)
        except GitFailed:
            pass   # validate names it; a ready worktree is kept meanwhile
    ready_heads: dict[str, str] = {}
    for path in ready:
        try:
            ready_heads[path] = await git(path, "rev-parse", "HEAD")
        except GitFailed:
            pass
    return BaseHeads(heads, ready_heads)


def workspace_arguments(arguments: dict[str, Any], template: Any, takes: Any, claim: WorkspaceClaimed,
                        task: TaskView, earlier: TaskView | None) -> dict[str, Any]:
    """A coding task's call arguments in its worktree (what an Executor with workspaces sends):
    `workFolder` is the worktree; a continuation resumes the earlier session where the tool takes `session_id`,
    else its prompt (the template's `{description}` argument) carries the earlier task and result as context.
    `takes(argument)`: whether the server's tool has that input property.

    >>> claim = WorkspaceClaimed("/ws/app/1", "omni/app/1", "app")
    >>> now, before = TaskView(2, "and the tests", "executing", continues=1), TaskView(1, "fix", "completed",
    ...                       result="fixed", session_id="s1", workspace="/ws/app/1")
    >>> workspace_arguments({"prompt": "and the tests", "workFolder": "/tmp"}, {"prompt": "{description}"},
    ...                     lambda name: True, claim, now, before)
    {'prompt': 'and the tests', 'workFolder': '/ws/app/1', 'session_id': 's1'}
    >>> workspace_arguments({"prompt": "and the tests"}, {"prompt": "{description}"}, lambda name: name != "session_id",
    ...                     claim, now, before)["prompt"].splitlines()[0]
    'This continues task #1 (in this same folder): fix'
    >>> moved = WorkspaceClaimed("/ws/app/2", "omni/app/2", "app")     # the earlier one removed by age meanwhile
    >>> workspace_arguments({"prompt": "memories\\n\\nand the tests"}, {"prompt": "{description}"},
    ...                     lambda name: True, moved, now, before)["prompt"].splitlines()[:3]
    ['memories', '', 'This continues task #1 (whose folder has since been removed; its branch stays): fix']
    """
    arguments = {**arguments, "workFolder": claim.path} if takes("workFolder") or "workFolder" in arguments \
        else dict(arguments)
    if earlier is None:
        return arguments
    same_folder = earlier.workspace == claim.path    # a session lives in its folder: elsewhere it cannot resume
    if earlier.session_id and same_folder and takes("session_id"):
        return {**arguments, "session_id": earlier.session_id}
    where = "in this same folder" if same_folder else "whose folder has since been removed; its branch stays"
    context = (f"This continues task #{earlier.task_id} ({where}): {earlier.description}\n"
               f"Its result was:\n{earlier.result or earlier.error or '(none)'}\n\nNow: {task.description}")
    for key, value in template.items():       # in the rendered text, so that what else it holds (memory) stays
        if isinstance(value, str) and "{description}" in value and isinstance(arguments.get(key), str):
            arguments[key] = arguments[key].replace(task.description, context, 1)
    return arguments
