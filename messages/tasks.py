"""The task protocol: what is asked of the StateStore, what it announces, and the executors' work orders."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Mapping

from vocabulary import TERMINAL_STATES

DESCRIPTION_LIMIT = 20_000               # characters of a task's text, from any route in (the contract: README)
MAX_TASK_ID = 2**63 - 1                  # SQLite's INTEGER: no larger number can name a task
KEY_LIMIT = 200                          # characters of an idempotency key or a sender's name


@dataclass(frozen=True, slots=True)
class TaskView:
    """A task as stored, at one moment. Everyone outside the StateStore sees tasks only as these."""

    task_id: int
    description: str
    state: str
    kind: str | None = None
    executor: str | None = None
    tier: str | None = None
    attempts: int = 0
    sender: str | None = None
    source: str = "mcp"
    result: str | None = None
    error: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    idempotency_key: str | None = None
    workspace: str | None = None         # the git worktree a coding task ran in (kept for review)
    branch: str | None = None
    session_id: str | None = None        # its executor's session (Claude Code), which `/continue` resumes
    continues: int | None = None         # the earlier task this one continues (`/continue ID TEXT`)
    progress: str | None = None          # the executor's latest progress report

    @property
    def is_terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


# --- asked of the StateStore ---------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class CreateTask:
    description: str
    kind: str | None = None
    sender: str | None = None
    source: str = "mcp"
    tier: str | None = None              # asked for by the submitter; the Router decides
    idempotency_key: str | None = None   # the same key answers the task already created, across restarts
    continues: int | None = None         # the finished task this one continues (its worktree and session)


@dataclass(frozen=True, slots=True)
class RecordDecision:
    """A routing decision that moves nothing (e.g. why a task keeps waiting), kept for `/why`."""

    task_id: int
    reason: str


@dataclass(frozen=True, slots=True)
class Transition:
    """Move a task to `to`, if the transition table allows it from its current state (and from one of
    `expect`, when given). Fields left None are kept. `count_attempt` adds one to the task's attempts."""

    task_id: int
    to: str
    reason: str
    expect: frozenset[str] | None = None
    kind: str | None = None
    executor: str | None = None
    tier: str | None = None
    result: str | None = None
    error: str | None = None
    count_attempt: bool = False


@dataclass(frozen=True, slots=True)
class GetTask:
    task_id: int


@dataclass(frozen=True, slots=True)
class ListTasks:
    state: str | None = None
    executor: str | None = None
    limit: int = 50
    oldest_first: bool = False


@dataclass(frozen=True, slots=True)
class CountTasksByState:
    pass


@dataclass(frozen=True, slots=True)
class GetTaskHistory:
    task_id: int


@dataclass(frozen=True, slots=True)
class SumCostsByTask:
    """Model spend of each task in `task_ids`: answers {task_id: usd}, only for tasks that have cost rows."""

    task_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class RecordProgress:
    task_id: int
    progress: float
    total: float | None = None
    message: str | None = None


@dataclass(frozen=True, slots=True)
class RecordSystemEvent:
    kind: str
    detail: str
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LastSystemEvent:
    """Answers the newest system_event of `kind` as {"at", "detail", "data"}, or None."""

    kind: str


# --- announced by the StateStore -----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class TaskChanged:
    """A task moved; sent to the task's executor and to every subscriber."""

    task: TaskView
    previous: str | None
    reason: str


@dataclass(frozen=True, slots=True)
class TaskProgressed:
    """An executor reported progress on a task (told to the IM bridge and the console's feed)."""

    task: TaskView                       # with `progress` the new report


# --- between Router and Executors ----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Execute:
    """Run this task (already `dispatching` to this executor). Idempotent: a task already running is ignored."""

    task: TaskView


@dataclass(frozen=True, slots=True)
class CallEnded:
    """The outcome of one MCP tool call, reported by the coroutine that made it to its executor."""

    task_id: int
    outcome: Literal["completed", "failed", "timed_out", "link_lost", "cancelled"]
    detail: str
    duration_s: float
    link_generation: int
    structured: Mapping[str, Any] | None = None   # the tool's structured content (a session_id to continue)
