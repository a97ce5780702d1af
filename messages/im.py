"""The IM protocol: what the OpenClaw bridge hears from its MCP calls, and the small durable state it keeps.

The bridge's calls run on the shared loop; their outcomes come back to it as these messages.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping


@dataclass(frozen=True, slots=True)
class EventWaited:
    """One `events_wait` long-poll ended: `event` is the bridge's event (None: the wait timed out), or
    `error` says why the call failed (the link still open)."""

    generation: int
    event: Mapping[str, Any] | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class MessageSent:
    """A `messages_send` call ended (`error` None when the bridge took the message)."""

    session_key: str
    what: str                     # reply | task | notice
    error: str | None = None


@dataclass(frozen=True, slots=True)
class WaitAgain:
    """Backoff over after a failed `events_wait`: poll again (internal to the bridge)."""

    generation: int


# --- asked of the StateStore -----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class SaveState:
    """Keep `owner`'s small state document (JSON-able), replacing the previous one."""

    owner: str
    state: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LoadState:
    """Answers `owner`'s last saved state document, or None."""

    owner: str
