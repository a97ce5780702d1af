"""The system-mode protocol: what moves the system between normal, degraded and brainstem, and notices."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LiteLLMDown:
    reason: str


@dataclass(frozen=True, slots=True)
class LiteLLMUp:
    pass


@dataclass(frozen=True, slots=True)
class VerifyRepair:
    """Sent by SystemMode to itself once a repair task has ended and the proxy had time to come back."""

    task_id: int


@dataclass(frozen=True, slots=True)
class RepairDue:
    """Backoff over: try another repair if the proxy is still down."""


@dataclass(frozen=True, slots=True)
class Notice:
    """A user-facing notice (already in the configured locale)."""

    key: str
    text: str


@dataclass(frozen=True, slots=True)
class GetMode:
    """Answers {"mode": ..., "route": ...}."""
