"""The model protocol: calls through the LiteLLMGuard, its probes, the route it takes, and the cost ledger."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Mapping

from vocabulary import Tier

Route = Literal["proxy", "direct"]


@dataclass(frozen=True, slots=True)
class Complete:
    """Ask a model. The ask answers a `concurrent.futures.Future[Completion]` at once; with `reply_to`,
    the outcome is also told to that actor as `Completion` or `CompletionFailed`."""

    messages: tuple[Mapping[str, str], ...]
    tier: str = Tier.P1
    task_id: int | None = None
    purpose: str = "call"
    max_tokens: int = 256
    allow_fallback: bool = True          # P1 rate-limited or timing out → P2, budget permitting
    timeout_s: float | None = None       # None: the configured call timeout
    probe: bool = False                  # a health ping: asks even a cooling tier (a 429 proves the cloud answers)
    reply_to: str | None = None
    correlation: Any = None


@dataclass(frozen=True, slots=True)
class Completion:
    text: str
    tier: str
    model: str
    route: Route
    tokens_in: int
    tokens_out: int
    usd: float
    notes: tuple[str, ...] = ()          # what happened on the way (fallbacks, retries)
    correlation: Any = None


@dataclass(frozen=True, slots=True)
class CompletionFailed:
    reason: str
    correlation: Any = None
    timed_out: bool = False              # every tier tried timed out: evidence that the cloud is unreachable


@dataclass(frozen=True, slots=True)
class ChooseTier:
    """Which tier may this task use now? Answers `TierChoice`."""

    wanted: str


@dataclass(frozen=True, slots=True)
class TierChoice:
    tier: str | None                     # None: wait; `reason` says why
    reason: str


@dataclass(frozen=True, slots=True)
class CurrentRoute:
    """Answers the environment for executors whose model traffic uses our route."""


@dataclass(frozen=True, slots=True)
class RouteChanged:
    route: Route
    env: Mapping[str, str] = field(repr=False)


@dataclass(frozen=True, slots=True)
class Probe:
    """Periodic: check the proxy's liveliness."""


@dataclass(frozen=True, slots=True)
class ProbeResult:
    ok: bool
    detail: str
    judged: bool = True   # False: the probe's own process was too starved to tell (its timer fired late)


@dataclass(frozen=True, slots=True)
class RecordCost:
    task_id: int | None
    tier: str
    model: str
    route: str
    tokens_in: int
    tokens_out: int
    usd: float
    purpose: str = "call"


@dataclass(frozen=True, slots=True)
class SumCosts:
    """Spend since `since` (epoch seconds): answers {tier: {"usd": float, "calls": int}}."""

    since: float


# --- the managed proxy's keeper (ProxyKeeper) and the guard ----------------------------------------

@dataclass(frozen=True, slots=True)
class ProxyDidNotStart:
    """The ProxyKeeper's start or restart of the managed proxy failed (the process exited, the deadline
    passed, the port is taken): told to the LiteLLMGuard, which stops waiting for it and goes direct."""

    reason: str


@dataclass(frozen=True, slots=True)
class LastStartFailure:
    """Ask the ProxyKeeper: why its last start of the proxy failed, or None (none failed, or the proxy
    answers since). A guard that starts after the failure learns it this way."""


@dataclass(frozen=True, slots=True)
class ReadProxy:
    """Periodic (ProxyKeeper): read the proxy (pid, RSS, liveliness) afresh, off the actor thread."""


@dataclass(frozen=True, slots=True)
class ProxyRead:
    """A reading of the managed proxy, as `proxy_status` gives it; `generation` fences readings taken
    across a start or restart."""

    status: Mapping[str, Any]
    generation: int
