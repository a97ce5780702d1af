"""The LiteLLMGuard owns the route to models: through the LiteLLM proxy, or — when the proxy is down —
directly to the providers with the backup keys. It also owns the tier rules (P1 free first, P2 paid when
P1 is cooling down or the work asks for it, only within budget) and the cost of every call it makes.

Proxy down means: `failures_to_down` consecutive failed liveliness probes, where a connection error on a
real call counts as one too (a probe whose timer fired late, this process starved, judges nothing:
clients/liveness.py). A proxy answering 429 `all_deployments_in_cooldown` is alive: that cools the
tier down, it does not bypass the proxy. A call that finds the proxy unreachable is retried once on the
direct route, so callers do not see the failover. Back is `successes_to_up` consecutive good probes,
whoever brought the proxy back (the repair task, its restart command, a user): calls take the working
route at once, even if the repair task has not reported yet. Every piece of evidence against the current
route (a failed probe or call while on the proxy, a good probe while direct) is a `route_evidence` line
in the journal, before the `route` line of the switch it leads to.

While a managed proxy starts (with the tree, or in a planned restart) its silence is no outage: calls
go direct until it answers, and the route shown says so. A start that fails, as the ProxyKeeper tells
(or answers a new guard), is an outage at once: direct, `LiteLLMDown`, the repair flow.

    future = directory.ask(ActorName.LITELLM_GUARD, Complete(({"role": "user", "content": "ping"},), purpose="health"))
    future.result(timeout=30).route                # 'proxy'
"""
from __future__ import annotations

import concurrent.futures
import logging
import time
from typing import Any

import httpx2

from clients import (Answer, Budget, BudgetExceeded, CallFailed, CallTimedOut, LivenessProbe, ProxyUnreachable,
                     RateLimited, call_direct, call_via_proxy, day_start, month_start, needs_litellm)
from config import BudgetConfig, LiteLLMConfig, TierConfig
from messages import (ChooseTier, CloudAnswered, Complete, Completion, CompletionFailed, CurrentRoute, LiteLLMDown,
                      LiteLLMUp, Notice, Probe, ProbeResult, ProxyRestarting, RecordCost, RecordSystemEvent,
                      RouteChanged, SumCosts, TierChoice)
from messages.budget import PaidSpendBooked
from messages.models import LastStartFailure, ProxyDidNotStart, Route
from redaction import redact_text
from runtime import ActorUnavailable, ChildContext, Journal, SupervisedActor, describe
from texts import say
from vocabulary import ActorName, Tier

log = logging.getLogger(__name__)
STORE = ActorName.STATE_STORE


class NoModelAvailable(RuntimeError):
    def __init__(self, reason: str, timed_out: bool = False):
        super().__init__(reason)
        self.timed_out = timed_out    # every tier tried timed out: the cloud may be unreachable


class LiteLLMGuard(SupervisedActor):
    def __init__(self, context: ChildContext, litellm: LiteLLMConfig, budget: BudgetConfig, journal: Journal,
                 locale: str, model_route_executors: tuple[str, ...] = ()):
        super().__init__(context)
        self._config = litellm
        self._budget_config = budget
        self._journal = journal
        self._locale = locale
        self._route_listeners = model_route_executors
        self._secrets = [t.backup_key for t in litellm.tiers.values() if t.backup_key] + \
            ([litellm.proxy_key] if litellm.proxy_key else [])
        self.route = "proxy"
        self._failures = self._successes = 0
        self._waiting_since: float | None = time.monotonic()   # a proxy starting: its silence is no outage
        self._answered_once = False
        self._cooling_until: dict[str, float] = {}
        self._client: httpx2.AsyncClient | None = None
        self._liveness = LivenessProbe(litellm.url)
        self._calls = {"proxy": 0, "direct": 0, "failed": 0}
        self._weighed = 0   # probe results (and calls that could not reach the proxy) taken into account
        self.budget: Budget | None = None

    # --- lifecycle -----------------------------------------------------------------------------------------
    def started(self) -> None:
        now = time.time()
        today = self.directory.ask(STORE, SumCosts(day_start(now)))
        month = self.directory.ask(STORE, SumCosts(month_start(now)))
        paid = [name for name, tier in self._config.tiers.items() if tier.paid]
        self.budget = Budget(self._budget_config, sum(today.get(t, {}).get("usd", 0.0) for t in paid),
                             sum(month.get(t, {}).get("usd", 0.0) for t in paid),
                             sum(today.get(t, {}).get("calls", 0) for t in paid))
        self._client = self.loop.submit(_new_client()).result(timeout=10)
        if any(needs_litellm(tier) for tier in self._config.tiers.values()):
            self.loop.loop.call_soon_threadsafe(self.loop.loop.run_in_executor, None, _warm_litellm)
        self.loop.tell_every(self._config.probe_interval_s, self.actor_ref, Probe())
        self.actor_ref.tell(Probe())
        self._learn_a_failed_start()

    def release(self) -> None:
        closing = [self._liveness.close()] + ([self._client.aclose()] if self._client is not None else [])
        for close in closing:   # each on its own: one that fails or times out leaves the other to close
            try:
                self.loop.submit(close).result(timeout=5)
            except Exception:
                pass

    def on_receive(self, message: Any) -> Any:
        match message:
            case Complete() as request:        return self._complete(request)
            case ChooseTier(wanted=wanted):    return self._choose_tier(wanted)
            case CurrentRoute():               return self._route_env()
            case Probe():                      self._probe()
            case ProbeResult() as result:      self._probed(result)
            case ProxyRestarting():            self._await_start()
            case ProxyDidNotStart(reason=why): self._start_failed(why)
            case _:                            return self.unhandled(message)

    def snapshot(self) -> dict[str, Any]:
        now = time.monotonic()
        return {"route": self._call_route(), "proxy_starting": self._starting_up(), "proxy_url": self._config.url,
                "proxy_answered": self._answered_once, "probe_failures": self._failures,
                "probe_results": self._weighed,
                "calls": dict(self._calls), "budget": self.budget.snapshot() if self.budget else {},
                "cooling": {tier: round(until - now, 1) for tier, until in self._cooling_until.items() if until > now}}

    # --- the route -----------------------------------------------------------------------------------------
    def _probe(self) -> None:
        future = self.loop.submit(self._liveness.check(self._config.probe_timeout_s))
        future.add_done_callback(lambda f: f.cancelled() or self.tell_self(
            ProbeResult(*f.result()) if not f.exception() else ProbeResult(False, describe(f.exception()))))

    def _probed(self, result: ProbeResult) -> None:
        if not result.judged:   # our own process was starved past the probe's deadline: nothing on the proxy
            self._journal.record("probe_not_judged", route=self.route, detail=result.detail[:200])
            return
        self._weighed += 1
        if result.ok:
            self._failures, self._successes, self._answered_once = 0, self._successes + 1, True
        elif self._starting_up():
            return   # a managed proxy takes seconds to start: silence then is not an outage
        else:
            self._failures, self._successes = self._failures + 1, 0
        if result.ok == (self.route == "direct"):   # evidence against the current route: why it changes
            self._journal.record("route_evidence", route=self.route, ok=result.ok, detail=result.detail[:200],
                                 consecutive_failures=self._failures, consecutive_successes=self._successes)
        if self.route == "proxy" and self._failures >= self._config.failures_to_down:
            self._switch("direct", result.detail)
        elif self.route == "direct" and self._successes >= self._config.successes_to_up:
            self._switch("proxy", f"{self._successes} good probes")

    def _await_start(self) -> None:
        """A planned restart: until the proxy answers again (or its start deadline passes) silence is
        expected; calls meanwhile are answered directly."""
        self._answered_once, self._waiting_since = False, time.monotonic()

    def _start_failed(self, reason: str) -> None:
        """A start that failed ends the wait at once: the proxy is down, not slow (degraded, repair flow)."""
        was_waiting, self._waiting_since = not self._answered_once, None
        if was_waiting and self.route == "proxy":
            self._switch("direct", f"the managed proxy did not start: {reason}")

    def _learn_a_failed_start(self) -> None:
        """A start that failed before this incarnation began was told to nobody: ask the keeper."""
        if self._config.mode != "managed":
            return
        try:
            reason = self.directory.ask(ActorName.PROXY_KEEPER, LastStartFailure(), timeout_s=2)
        except ActorUnavailable:
            return   # no keeper now: its next start's outcome will be told
        if reason is not None:
            self._start_failed(reason)

    def _starting_up(self) -> bool:
        return (self._waiting_since is not None and not self._answered_once
                and time.monotonic() - self._waiting_since < self._config.start_deadline_s)

    def _call_route(self) -> Route:
        """The route calls take now (and the one shown): the proxy only once it has answered since it
        (re)started; until then calls go direct rather than to a proxy that is not there yet."""
        return "proxy" if self.route == "proxy" and self._answered_once else "direct"

    def _switch(self, route: str, why: str) -> None:
        self.route = route
        self._journal.record("route", route=route, reason=why)
        self.directory.tell(STORE, RecordSystemEvent("route", f"model route → {route}: {why}"))
        self.directory.tell(ActorName.SYSTEM_MODE, LiteLLMDown(why) if route == "direct" else LiteLLMUp())
        changed = RouteChanged(route, self._route_env())
        for name in self._route_listeners:
            self.directory.tell(name, changed)

    def _route_env(self) -> dict[str, str]:
        names = self._config.route_env
        if self.route == "proxy":
            base, key = f"{self._config.url}/v1", self._config.proxy_key or "omni-proxy"
        else:
            p1 = next(iter(self._config.tiers.values()))
            base, key = p1.direct_api_base, p1.backup_key
        return {names[field]: value for field, value in (("base_url", base), ("api_key", key)) if field in names}

    # --- tiers ---------------------------------------------------------------------------------------------
    def _choose_tier(self, wanted: str) -> TierChoice:
        free, paid = self._config.tiers[Tier.P1], self._config.tiers[Tier.P2]
        refusal = self.budget.refusal()
        if wanted == free.name:
            if not self._cooling(free.name):
                return TierChoice(free.name, "the free tier")
            if refusal is None and not self._cooling(paid.name):
                return TierChoice(paid.name, f"P1 is cooling down for {self._cooling(free.name):.0f}s; "
                                             "the paid tier is within budget")
            return TierChoice(None, f"P1 is cooling down for {self._cooling(free.name):.0f}s and P2 is not "
                                    f"available ({refusal or 'cooling down too'})")
        if refusal is not None:
            return TierChoice(None, f"the task needs P2 but {refusal}")
        if self._cooling(paid.name):
            return TierChoice(None, f"the task needs P2, which is cooling down for {self._cooling(paid.name):.0f}s")
        return TierChoice(paid.name, "the task needs the paid tier and the budget allows it")

    def _cooling(self, tier: str) -> float:
        return max(0.0, self._cooling_until.get(tier, 0.0) - time.monotonic())

    def _cool_down(self, tier: str, seconds: float, why: str) -> None:
        self._cooling_until[tier] = max(self._cooling_until.get(tier, 0.0), time.monotonic() + seconds)
        self._journal.record("tier_cooling", tier=tier, seconds=seconds, reason=why)

    # --- calls ---------------------------------------------------------------------------------------------
    def _complete(self, request: Complete) -> concurrent.futures.Future[Completion]:
        future = self.loop.submit(self._call(request))
        if request.reply_to:
            future.add_done_callback(lambda f: self.directory.tell(request.reply_to, _outcome(f, request)))
        return future

    async def _call(self, request: Complete) -> Completion:
        plan = [request.tier] + ([Tier.P2] if request.tier == Tier.P1 and request.allow_fallback else [])
        refusals: list[str] = []
        timeouts = 0
        for name in plan:
            tier = self._config.tiers[name]
            if self._cooling(name) and not request.probe:
                refusals.append(f"{name} is cooling down for {self._cooling(name):.0f}s")
                continue
            try:
                return await self._call_tier(tier, request, notes=tuple(refusals))
            except BudgetExceeded as exceeded:
                refusals.append(str(exceeded))
            except RateLimited as limited:
                self._cool_down(name, limited.retry_after_s, str(limited))
                refusals.append(f"{name} rate-limited, cooling down for {limited.retry_after_s:g}s")
            except CallTimedOut as timed_out:
                timeouts += 1
                refusals.append(f"{name}: {timed_out}")
                if request.purpose != "health":   # a live call's timeout is evidence too (pings report their own)
                    self.directory.tell(ActorName.HEALTH_MONITOR,
                                        CloudAnswered(False, True, str(timed_out), real_call=True))
            except CallFailed as failed:
                refusals.append(f"{name}: {failed}")
        self._calls["failed"] += 1
        raise NoModelAvailable(redact_text("; ".join(refusals) or "no tier configured", self._secrets),
                               timed_out=timeouts > 0 and timeouts == len(refusals))

    async def _call_tier(self, tier: TierConfig, request: Complete, notes: tuple[str, ...]) -> Completion:
        reservation = self.budget.reserve() if tier.paid else None
        try:
            route, answer = await self._call_on_route(tier, request)
        except BaseException:
            if reservation:
                self.budget.release(reservation)
            raise
        usd = answer.usd if tier.paid else 0.0
        first_paid = self.budget.settle(reservation, usd) if reservation else False
        self._calls[route] += 1
        self.directory.tell(STORE, RecordCost(request.task_id, tier.name, answer.model, route, answer.tokens_in,
                                              answer.tokens_out, usd, request.purpose))
        if reservation:   # the warden tells when this brought spend to a warning share of a cap
            spent = self.budget.snapshot()
            self.directory.tell(ActorName.BUDGET_WARDEN, PaidSpendBooked(request.task_id, spent["spent_today_usd"],
                                                                 spent["spent_month_usd"], time.time()))
        if tier.paid and notes:   # P1 refused within this call: a P1→P2 moment, and why (the dashboard plots it)
            self.directory.tell(STORE, RecordSystemEvent("tier_fallback", f"P1 → {tier.name}: {notes[0]}",
                                                         {"task_id": request.task_id, "purpose": request.purpose}))
        if first_paid:
            reason = notes[0] if notes else f"{request.purpose} asked for {tier.name}"
            self.directory.tell(ActorName.SYSTEM_MODE, Notice("paid_tier_started",
                                                      say(self._locale, "paid_tier_started", reason=reason),
                                                      params=(("reason", reason),)))
        return Completion(answer.text, tier.name, answer.model, route, answer.tokens_in, answer.tokens_out, usd,
                          notes, request.correlation)

    async def _call_on_route(self, tier: TierConfig, request: Complete) -> tuple[str, Answer]:
        timeout = request.timeout_s or self._config.call_timeout_s
        if self._call_route() == "proxy":
            try:
                return "proxy", await call_via_proxy(self._client, self._config.url, self._config.proxy_key, tier,
                                                     request.messages, request.max_tokens, timeout)
            except ProxyUnreachable as unreachable:
                self.tell_self(ProbeResult(False, f"a call could not reach the proxy: {unreachable}"))
        return "direct", await call_direct(self._client, tier, request.messages, request.max_tokens, timeout)



def _outcome(future: concurrent.futures.Future[Completion], request: Complete) -> Completion | CompletionFailed:
    if future.cancelled():
        return CompletionFailed("cancelled", request.correlation)
    error = future.exception()
    if error is None:
        return future.result()
    return CompletionFailed(str(error), request.correlation, timed_out=getattr(error, "timed_out", False))


async def _new_client() -> httpx2.AsyncClient:
    return httpx2.AsyncClient(limits=httpx2.Limits(max_connections=64, max_keepalive_connections=32))


def _warm_litellm() -> None:
    try:
        import litellm
        litellm.suppress_debug_info = True
        logging.getLogger("LiteLLM").setLevel(logging.WARNING)
    except Exception:
        log.exception("importing litellm failed: direct mode will not work")
