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
class InboundMessage:
    """A user's message as OpenClaw keeps it, from a live event or from a conversation's transcript."""

    key: str                      # "<session key>:<OpenClaw message id>": its identity in both
    session_key: str
    sender: str                   # telegram:4242
    text: str
    written_at: float             # seconds; OpenClaw's record time


@dataclass(frozen=True, slots=True)
class TranscriptsRead:
    """A catch-up ended: the user messages found in the conversations' transcripts (or why it failed)."""

    generation: int
    messages: tuple[InboundMessage, ...] = ()
    error: str | None = None
    newest_change: float = 0.0    # the latest change (s) among the conversations read: the next read starts there


@dataclass(frozen=True, slots=True)
class CatchUp:
    """Time to read the transcripts again (internal to the bridge)."""

    generation: int


@dataclass(frozen=True, slots=True)
class MessageSent:
    """A `messages_send` call ended (`error` None when the bridge took the message)."""

    outbound_id: int
    session_key: str
    error: str | None = None


@dataclass(frozen=True, slots=True)
class SendAgain:
    """Backoff over after a failed send to `session_key` (internal to the bridge)."""

    session_key: str


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


@dataclass(frozen=True, slots=True)
class SeenInbound:
    """Answers which of `keys` were handled already (a frozenset)."""

    keys: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RecordInbound:
    """`message` is handled: remember it, and queue `reply` to its conversation in the same transaction.
    Answers the reply's outbound id (None without a reply); raises KeyError if it was handled before."""

    message: InboundMessage
    reply: str | None


@dataclass(frozen=True, slots=True)
class QueueOutbound:
    """Queue `text` to a conversation; answers its outbound id."""

    session_key: str
    text: str
    what: str                     # task | notice


@dataclass(frozen=True, slots=True)
class MarkSent:
    outbound_id: int


@dataclass(frozen=True, slots=True)
class PendingOutbound:
    """Answers the outbound messages not delivered yet, oldest first: (id, session key, text, created_at) tuples."""
