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
    """A user-facing notice (already in the configured locale), for everyone or for the senders in `to`."""

    key: str
    text: str
    to: tuple[str, ...] = ()
    wording: str = ""             # the local model's own wording, when the brainstem has it loaded
    params: tuple[tuple[str, str], ...] = ()   # the text's parameters: the bridge says it in each sender's language


@dataclass(frozen=True, slots=True)
class GetMode:
    """Answers {"mode": ..., "route": ...}."""


@dataclass(frozen=True, slots=True)
class CloudDown:
    reason: str


@dataclass(frozen=True, slots=True)
class CloudUp:
    reason: str


@dataclass(frozen=True, slots=True)
class ModeChanged:
    """Told by SystemMode to everyone whose behaviour depends on the mode."""

    mode: str                     # normal | degraded | brainstem
    previous: str


@dataclass(frozen=True, slots=True)
class PingCloud:
    """Periodic (HealthMonitor): the smallest real call on P1, through the current route."""


@dataclass(frozen=True, slots=True)
class CloudAnswered:
    """A ping's outcome, or a real call's timeout reported by the LiteLLMGuard (`real_call`)."""

    ok: bool
    timed_out: bool
    detail: str
    real_call: bool = False


@dataclass(frozen=True, slots=True)
class LocalModelSettled:
    """The brainstem's local model finished loading (or failed to) or unloading, in its worker thread."""

    action: str                   # load | unload
    seconds: float
    error: str | None = None


@dataclass(frozen=True, slots=True)
class ReplyWhileDown:
    """Answers the short reply for a user who writes while the cloud is down (model-worded when loaded)."""

    text: str
