"""The supervision protocol, and the control messages every supervised actor understands."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ChildExited:
    """A child stopped: `error` is None for a normal stop, else what killed it."""

    name: str
    actor_urn: str
    error: str | None


@dataclass(frozen=True, slots=True)
class RestartChild:
    """Sent by the Supervisor to itself when a child's backoff delay has passed."""

    name: str
    actor_urn: str  # the incarnation that died: a restart already done for it is not repeated


@dataclass(frozen=True, slots=True)
class SweepChildren:
    """Periodic: find children that died without a word (a stopped thread, a lost exit notice)."""


@dataclass(frozen=True, slots=True)
class Introspect:
    """Answer a snapshot of your state (plain data, no secrets)."""


@dataclass(frozen=True, slots=True)
class CrashNow:
    """Drills: raise, as a real fault would, so that supervision can be seen working."""

    reason: str = "crash drill"


@dataclass(frozen=True, slots=True)
class Reconcile:
    """Periodic: make good any message lost while a peer was restarting, from the durable store."""
