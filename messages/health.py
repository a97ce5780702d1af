"""The health protocol: what executors say about their MCP servers."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ExecutorHealth:
    name: str
    up: bool
    detail: str = ""
    free_slots: int = 0


@dataclass(frozen=True, slots=True)
class LinkOpened:
    """An executor's MCP session is initialised (internal to the Executor)."""

    generation: int
    tools: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class LinkDown:
    """An executor's MCP session died or could not be opened (internal to the Executor)."""

    generation: int
    error: str


@dataclass(frozen=True, slots=True)
class Respawn:
    """Backoff over: open a new MCP session (internal to the Executor)."""

    generation: int


@dataclass(frozen=True, slots=True)
class CheckProxyMemory:
    """Periodic (ProxyKeeper): restart the managed proxy if its memory passed the ceiling."""


@dataclass(frozen=True, slots=True)
class ProxyActionDone:
    """A start or restart of the managed proxy finished (ProxyKeeper); `error` None when it worked."""

    action: str
    error: str | None


@dataclass(frozen=True, slots=True)
class ProxyRestarting:
    """The ProxyKeeper is restarting the managed proxy on purpose: its silence until it answers again
    is not an outage (told to the LiteLLMGuard, which then treats it as starting up)."""
