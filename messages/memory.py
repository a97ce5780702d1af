"""The memory protocol: an executor asks for a task's memories (and hears them back as a message), the memory
actor's own news of its calls, and /forget."""
from __future__ import annotations

from dataclasses import dataclass

from .tasks import TaskView


@dataclass(frozen=True, slots=True)
class RecallMemories:
    """Search the memory for `task`'s text, as its sender's; answer `RecallEnded` to the executor `reply_to`."""

    task: TaskView
    reply_to: str


@dataclass(frozen=True, slots=True)
class RecallEnded:
    """What was recalled for a task (`context`, empty when nothing was), and a note for /why: why memory was
    unavailable, or what it gave. Told to the executor; the executor's own deadline tells it one too."""

    task_id: int
    context: str
    note: str
    available: bool


@dataclass(frozen=True, slots=True)
class SearchEnded:
    """A search call's outcome (internal to the Memory actor): the memories' texts, or why there are none."""

    task_id: int
    reply_to: str
    texts: tuple[str, ...]
    error: str | None
    link_generation: int
    link_lost: bool = False


@dataclass(frozen=True, slots=True)
class DeliveryEnded:
    """One queued add or forget delivered, or not (internal to the Memory actor)."""

    entry_id: int
    error: str | None
    link_generation: int
    link_lost: bool = False


@dataclass(frozen=True, slots=True)
class DeliverQueued:
    """Try the outbox again (internal to the Memory actor, told after `memory.retry_s`)."""


@dataclass(frozen=True, slots=True)
class ForgetSender:
    """Delete everything memory holds for `sender`. Answers a concurrent.futures.Future that settles with
    "forgotten" or "queued" (memory down: it is done when memory is back), or "unsupported" (no forget tool)."""

    sender: str
