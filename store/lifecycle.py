"""The task lifecycle: the one table of legal moves between its states (`vocabulary.TaskState`).

The StateStore refuses every transition not in this table; nothing else decides what may follow what.

>>> check_transition("idle", "dispatching")
>>> try:
...     check_transition("completed", "idle")
... except IllegalTransition as refused:
...     print(refused)
a completed task cannot become idle
"""
from __future__ import annotations

from vocabulary import TaskState


S = TaskState
LEGAL_TRANSITIONS: dict[TaskState, frozenset[TaskState]] = {
    S.IDLE: frozenset({S.DISPATCHING, S.WAITING, S.CANCELLED, S.FAILED}),
    S.DISPATCHING: frozenset({S.EXECUTING, S.IDLE, S.WAITING, S.CANCELLED, S.FAILED}),
    S.EXECUTING: frozenset({S.COMPLETED, S.FAILED, S.CANCELLED, S.IDLE, S.WAITING}),
    S.WAITING: frozenset({S.IDLE, S.CANCELLED, S.FAILED}),
    S.COMPLETED: frozenset(),
    S.FAILED: frozenset({S.IDLE}),        # /retry
    S.CANCELLED: frozenset({S.IDLE}),     # /retry
}
INTERRUPTED_BY_RESTART = frozenset({S.DISPATCHING, S.EXECUTING})


class IllegalTransition(ValueError):
    """The task is not in a state from which the asked move is allowed."""


class UnknownTask(LookupError):
    pass


class KeyReused(ValueError):
    """An idempotency key already names a task with another text: the client reused a key by mistake."""

    def __init__(self, key: str, task_id: int):
        super().__init__(f"was already used for task {task_id}, with another description")
        self.key, self.task_id = key, task_id


def check_transition(current: str, target: str, expect: frozenset[str] | None = None) -> None:
    try:
        allowed = LEGAL_TRANSITIONS[TaskState(current)]
        wanted = TaskState(target)
    except ValueError:
        raise IllegalTransition(f"unknown state in {current!r} -> {target!r}") from None
    if expect is not None and current not in expect:
        raise IllegalTransition(f"the task is {current}, not {' or '.join(sorted(expect))}")
    if wanted not in allowed:
        raise IllegalTransition(f"a {current} task cannot become {target}")
