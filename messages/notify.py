"""The notification protocol: a sender's stored setting, news held for their quiet hours, progress's pacing."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping


@dataclass(frozen=True, slots=True)
class GetNotifySetting:
    """Answers what `sender` changed by `/notify` ({"events": "failed,completed", "quiet": "22:00-07:00", …};
    only the fields they set), {} when nothing."""

    sender: str


@dataclass(frozen=True, slots=True)
class SaveNotifySetting:
    """Store `changes` (field → value as text; None: back to the configured value) for `sender`; `reset`:
    forget everything they set. Answers the stored fields after the change."""

    sender: str
    changes: Mapping[str, Any] = field(default_factory=dict)
    reset: bool = False


@dataclass(frozen=True, slots=True)
class HoldNotification:
    """Keep `text` (in the sender's language) for `sender` until their quiet hours end. Answers its id."""

    sender: str
    event: str
    text: str


@dataclass(frozen=True, slots=True)
class PendingHeld:
    """Answers the held news not yet released, oldest first: [(id, sender, event, text, held_at)]."""


@dataclass(frozen=True, slots=True)
class ReleaseHeld:
    """In one transaction: queue held news `held_id` to `session_key` (im_outbound) and mark it released.
    Answers the outbound id (None when it was released already)."""

    held_id: int
    session_key: str


@dataclass(frozen=True, slots=True)
class SendProgress:
    """The bridge to itself: a task's progress report held back by the rate limit may go now."""

    task_id: int


@dataclass(frozen=True, slots=True)
class CheckHeld:
    """The bridge to itself, every `im.held_check_s`: release held news whose quiet hours are over."""
