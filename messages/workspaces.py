"""The workspace protocol: coding tasks' git worktrees, owned by the WorkspaceKeeper (actors/workspace_keeper.py)."""
from __future__ import annotations

from dataclasses import dataclass

from .tasks import TaskView


@dataclass(frozen=True, slots=True)
class ClaimWorkspace:
    """An executor asks for the task's worktree. Answers a `WorkspaceClaimed`, or None while none is ready yet
    (then `WorkspacesReady` follows). The same task asking again gets the same worktree (idempotent)."""

    task: TaskView


@dataclass(frozen=True, slots=True)
class WorkspaceClaimed:
    path: str
    branch: str
    repo: str


@dataclass(frozen=True, slots=True)
class WorkspacesReady:
    """Told to the waiting executors: a worktree they may claim has been prepared."""


@dataclass(frozen=True, slots=True)
class SweepWorkspaces:
    """The keeper's own tick: refresh ready worktrees whose base moved, remove kept ones past their age."""


@dataclass(frozen=True, slots=True)
class WorkspacePrepared:
    """A background `git worktree add` ended (`error` None: `path` is ready, from commit `head`; or, `for_task`
    given, `path` is the earlier worktree made again on its kept branch, held for that task)."""

    repo: str
    path: str
    branch: str
    head: str
    error: str | None = None
    for_task: int | None = None    # reopened on a kept branch for this task's /continue (not a ready one)


@dataclass(frozen=True, slots=True)
class WorkspaceRemoved:
    repo: str
    path: str
    error: str | None = None


@dataclass(frozen=True, slots=True)
class BaseHeads:
    """The sweep's answer: each repo's base commit now, and the commit each ready worktree is at."""

    heads: dict[str, str]
    ready_heads: dict[str, str]


# --- asked of the StateStore: the claim is recorded on the task, so it survives a restart ------------------------

@dataclass(frozen=True, slots=True)
class RecordWorkspace:
    task_id: int
    workspace: str
    branch: str


@dataclass(frozen=True, slots=True)
class ListWorkspaceClaims:
    """Answers every task with a workspace: [(task_id, workspace, branch, state, updated_at)]."""


@dataclass(frozen=True, slots=True)
class RecordSession:
    """The executor's session the task ran in (Claude Code's session_id), for `/continue`."""

    task_id: int
    session_id: str
