"""`python -m bench litellm [--quick] [--keep]`: the model route's costs, with a real LiteLLM proxy.

1. Per-call overhead, sequential: (a) straight to the simulated upstream, (b) through a real LiteLLM proxy
   (`call_via_proxy`), (c) direct mode (`call_direct`: plain HTTP to an OpenAI-compatible provider) — p50/p99,
   ratios to (a).
2. Failover: an in-process orchestrator tree under a steady stream of `Complete` asks from a few threads;
   each round SIGKILLs the proxy's process group and times (i) the first answer on the `direct` route and
   (ii) the guard's route turning `direct`; then the bench restarts the proxy itself (`restart_proxy`) and
   waits for the guard to be back on `proxy`. Failed calls are counted.

Prints figures, never asserts.
"""
from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ._litellm_world import (FAILURES_TO_DOWN, PROBE_INTERVAL_S, PROXY_VENV_LITELLM, BenchHome, Tree, bench_config,
                             fresh_ports, kill_proxy_group, stop_process, wait_until, write_config)
from ._probes import sequential, warm_up
from ._stats import Figure, table

HELLO = ({"role": "user", "content": "ping 你好"},)
MAX_TOKENS = 64
CALL_TIMEOUT_S = 30.0
CALLERS = 3
CALLER_PAUSE_S = 0.05
FAILOVER_WAIT_S = 15.0
BACK_WAIT_S = 30.0
SETTLE_PROXY_ANSWERS = 5      # after the guard is back on proxy: this many answers through it before the next kill
SETTLE_S = (1.0, 2.0)         # then a random pause, so kills fall at random points of the 1 s probe cycle
TARGET_FAILOVER_S = 2.5


@dataclass(frozen=True)
class LitePlan:
    calls: int        # per overhead measurement, sequential
    warmup: int
    kills: int


FULL = LitePlan(calls=300, warmup=20, kills=10)
QUICK = LitePlan(calls=40, warmup=5, kills=3)


def quiet_litellm() -> None:
    """As the guard does: the library logs every call at INFO on its own stderr handler otherwise."""
    for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy"):
        logging.getLogger(name).setLevel(logging.WARNING)


# --- 1. per-call overhead ------------------------------------------------------------------------------------

async def _overhead_calls(plan: LitePlan, free_url: str, lite) -> list[Figure]:
    import httpx2

    from clients.model_calls import call_direct, call_via_proxy

    tier = lite.tiers["P1"]
    key = lite.proxy_key or "omni-proxy"
    body = {"model": "sandbox-free", "messages": list(HELLO), "max_tokens": MAX_TOKENS}
    async with httpx2.AsyncClient() as client:
        async def upstream() -> bool:
            response = await client.post(f"{free_url}/chat/completions", json=body,
                                          headers={"Authorization": f"Bearer {key}"}, timeout=CALL_TIMEOUT_S)
            return response.status_code == 200 and bool(response.json()["choices"][0]["message"]["content"])

        async def via_proxy() -> bool:
            answer = await call_via_proxy(client, lite.url, lite.proxy_key, tier, HELLO, MAX_TOKENS, CALL_TIMEOUT_S)
            return answer.text.startswith("[free]")

        async def direct() -> bool:
            answer = await call_direct(client, tier, HELLO, MAX_TOKENS, CALL_TIMEOUT_S)
            return answer.text.startswith("[direct]")

        figures = []
        for name, op in (("(a) upstream straight (httpx2 POST)", upstream),
                         ("(b) via LiteLLM proxy (call_via_proxy)", via_proxy),
                         ("(c) direct mode (call_direct)", direct)):
            await warm_up(op, plan.warmup)
            figures.append(await sequential(name, op, plan.calls))
        return figures


def overhead(plan: LitePlan, home: Path) -> tuple[list[Figure], dict[str, float]]:
    """Providers and a proxy of its own (free ports, home/overhead), measured, then stopped."""
    from clients.litellm_proxy import start_proxy, stop_proxy
    from sandbox.providers import start_providers

    own = home / "overhead"
    ports = fresh_ports()
    cfg = write_config(bench_config(ports), own / "bench-config.yaml")
    timings: dict[str, float] = {}
    providers = None
    try:
        started = time.perf_counter()
        providers, ready = start_providers({name: ports[name] for name in ("free", "paid", "direct")},
                                           ports["admin"], own / "providers.json")
        timings["providers_start_s"] = time.perf_counter() - started
        started = time.perf_counter()
        start_proxy(cfg.litellm, own)
        timings["proxy_start_s"] = time.perf_counter() - started
        started = time.perf_counter()
        import litellm  # noqa: F401  (timed: the direct route's one-off cost)
        timings["litellm_import_s"] = time.perf_counter() - started
        figures = asyncio.run(_overhead_calls(plan, ready["upstreams"]["free"], cfg.litellm))
        return figures, timings
    finally:
        try:
            stop_proxy(cfg.litellm, own)
        finally:
            kill_proxy_group(own)
            stop_process(providers)


def overhead_report(figures: list[Figure], timings: dict[str, float]) -> str:
    a, b, c = figures
    lines = [table(figures), ""]
    for label, fig in (("(b) proxy / (a) upstream", b), ("(c) direct / (a) upstream", c)):
        lines.append(f"{label:<30} p50 {fig.p50_ms / a.p50_ms:6.1f}x  (+{fig.p50_ms - a.p50_ms:.2f} ms)   "
                     f"p99 {fig.p99_ms / a.p99_ms:6.1f}x  (+{fig.p99_ms - a.p99_ms:.2f} ms)")
    lines.append(f"one-off: proxy start {timings['proxy_start_s']:.1f}s, providers start "
                 f"{timings['providers_start_s']:.1f}s, `import litellm` {timings['litellm_import_s']:.1f}s")
    return "\n".join(lines)


# --- 2. failover under steady calls --------------------------------------------------------------------------

@dataclass
class Outcome:
    done_at: float        # time.monotonic() when the caller got the answer (or the error)
    route: str | None     # None: the call failed
    error: str = ""


@dataclass
class Round:
    direct_answer_s: float | None = None   # SIGKILL → first Completion with route "direct"
    route_direct_s: float | None = None    # SIGKILL → guard's Introspect route == "direct"
    restart_s: float | None = None         # restart_proxy() wall time
    back_s: float | None = None            # restart_proxy() returned → guard route == "proxy"
    error: str = ""


@dataclass
class Failover:
    rounds: list[Round] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    tree_start_s: float = 0.0
    escalations: list[str] = field(default_factory=list)
    guard_calls: dict = field(default_factory=dict)


class SteadyCallers:
    """`CALLERS` threads asking the guard for a P1 completion back to back (short pause), recording outcomes."""

    def __init__(self, tree: Tree, outcomes: list[Outcome]) -> None:
        self._tree, self.outcomes = tree, outcomes
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, name=f"bench-caller-{i}", daemon=True)
                         for i in range(CALLERS)]

    def __enter__(self) -> SteadyCallers:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(CALL_TIMEOUT_S + 15)

    def _run(self) -> None:
        from messages import Complete
        while not self._stop.is_set():
            try:
                future = self._tree.ask("litellm_guard", Complete(HELLO, tier="P1", max_tokens=MAX_TOKENS,
                                                                  purpose="bench"))
                answer = future.result(timeout=CALL_TIMEOUT_S + 10)
                self.outcomes.append(Outcome(time.monotonic(), answer.route))
            except Exception as error:   # noqa: BLE001 (a failed call is a figure)
                self.outcomes.append(Outcome(time.monotonic(), None, f"{type(error).__name__}: {error}"[:160]))
            time.sleep(CALLER_PAUSE_S)


def _route(tree: Tree) -> str:
    from messages import Introspect
    return tree.ask("litellm_guard", Introspect())["route"]


def _answered_after(outcomes: list[Outcome], since: float, route: str, count: int = 1) -> float | None:
    """When the `count`-th answer on `route` finishing after `since` came back (None: not yet)."""
    times = [o.done_at for o in list(outcomes) if o.route == route and o.done_at > since]
    return times[count - 1] if len(times) >= count else None


def kill_round(tree: Tree, outcomes: list[Outcome]) -> Round:
    """SIGKILL the proxy, time the failover, restart the proxy ourselves, wait until the guard is back on it."""
    from clients.litellm_proxy import restart_proxy

    result = Round()
    home = tree.cfg.home
    pid = int((home / "litellm.pid").read_text().split()[0])
    killed_at = time.monotonic()
    os.killpg(pid, signal.SIGKILL)   # the proxy leads its own session: the whole proxy dies at once
    deadline = killed_at + FAILOVER_WAIT_S
    while result.direct_answer_s is None or result.route_direct_s is None:
        if result.direct_answer_s is None and (at := _answered_after(outcomes, killed_at, "direct")) is not None:
            result.direct_answer_s = at - killed_at
        if result.route_direct_s is None and _route(tree) == "direct":
            result.route_direct_s = time.monotonic() - killed_at
        if time.monotonic() > deadline:
            result.error = f"no failover within {FAILOVER_WAIT_S:g}s"
            return result
        time.sleep(0.005)
    started = time.monotonic()
    restart_proxy(tree.cfg.litellm, home)
    restarted = time.monotonic()
    result.restart_s = restarted - started
    wait_until(lambda: _route(tree) == "proxy", BACK_WAIT_S, "the guard back on the proxy")
    result.back_s = time.monotonic() - restarted
    back_at = time.monotonic()
    wait_until(lambda: _answered_after(outcomes, back_at, "proxy", SETTLE_PROXY_ANSWERS), BACK_WAIT_S,
               "answers through the restarted proxy")
    time.sleep(random.uniform(*SETTLE_S))
    return result


def failover(plan: LitePlan, home: BenchHome, progress) -> Failover:
    from messages import Introspect

    report = Failover()
    cfg = write_config(bench_config(fresh_ports()), home.path / "bench-config.yaml")
    tree = Tree(cfg, home.token)
    try:
        started = time.perf_counter()
        tree.start()
        tree.wait_ready()
        report.tree_start_s = time.perf_counter() - started
        with SteadyCallers(tree, report.outcomes):
            wait_until(lambda: _answered_after(report.outcomes, 0, "proxy", 20), 30, "calls through the proxy")
            for number in range(1, plan.kills + 1):
                try:
                    one = kill_round(tree, report.outcomes)
                except Exception as error:   # noqa: BLE001 (report what happened, stop killing)
                    one = Round(error=f"{type(error).__name__}: {error}"[:200])
                report.rounds.append(one)
                progress(f"  kill {number}/{plan.kills}: " + (_round_line(one) if not one.error else one.error))
                if one.error:
                    break
        report.guard_calls = tree.ask("litellm_guard", Introspect())["calls"]
    finally:
        report.escalations = list(tree.escalations)
        tree.stop()
    return report


def _round_line(one: Round) -> str:
    return (f"first direct answer {one.direct_answer_s:.3f}s, route direct {one.route_direct_s:.3f}s, "
            f"restart {one.restart_s:.1f}s, back on proxy {one.back_s:.1f}s after restart")


def _spread(values: list[float]) -> str:
    if not values:
        return f"{'-':>8} {'-':>8} {'-':>8}"
    return f"{min(values):>8.3f} {statistics.median(values):>8.3f} {max(values):>8.3f}"


def failover_report(report: Failover) -> str:
    rounds = [r for r in report.rounds if not r.error]
    outcomes = report.outcomes
    failed = [o for o in outcomes if o.route is None]
    by_route = {route: sum(o.route == route for o in outcomes) for route in ("proxy", "direct")}
    direct = [r.direct_answer_s for r in rounds]
    switch = [r.route_direct_s for r in rounds]
    lines = [
        f"failover: {len(rounds)} SIGKILLs of the proxy under {CALLERS} steady callers; "
        f"probe every {PROBE_INTERVAL_S} s, down after {FAILURES_TO_DOWN} failures "
        f"(a call that cannot reach the proxy counts as one and is retried direct)",
        f"{'seconds':<52} {'min':>8} {'median':>8} {'max':>8}",
        "-" * 80,
        f"{'SIGKILL -> first answer on the direct route':<52} {_spread(direct)}",
        f"{'SIGKILL -> guard route says direct (Introspect)':<52} {_spread(switch)}",
        f"{'restart_proxy() (bench restarts it)':<52} {_spread([r.restart_s for r in rounds])}",
        f"{'restart done -> guard back on proxy':<52} {_spread([r.back_s for r in rounds])}",
        "",
        f"calls: {len(outcomes)} in all, {by_route['proxy']} via proxy, {by_route['direct']} direct, "
        f"{len(failed)} FAILED" + (f" (e.g. {failed[0].error})" if failed else "")
        + f"; guard counters {report.guard_calls}",
    ]
    for number, one in enumerate(report.rounds, 1):
        if one.error:
            lines.append(f"kill {number}: ERROR {one.error}")
    if report.escalations:
        lines.append(f"supervisor escalations: {report.escalations}")
    lines.append("")
    for label, values in (("median failover, SIGKILL -> first direct answer", direct),
                          ("median SIGKILL -> route direct", switch)):
        value = statistics.median(values) if values else float("nan")
        verdict = "met" if values and value < TARGET_FAILOVER_S else "NOT met"
        lines.append(f"{label:<52} {value:>8.3f} s   target < {TARGET_FAILOVER_S:g} s   {verdict}")
    return "\n".join(lines)


# --- the whole thing -------------------------------------------------------------------------------------------

def run(quick: bool, keep: bool) -> int:
    plan = QUICK if quick else FULL
    if not PROXY_VENV_LITELLM.exists():
        print(f"the LiteLLM proxy's venv is missing ({PROXY_VENV_LITELLM}): run `make setup`")
        return 1
    started = time.perf_counter()
    with BenchHome(keep=keep) as home:
        if keep:
            print(f"home {home.path}", flush=True)
        print(f"litellm overhead: {plan.calls} sequential calls each (after {plan.warmup} warm-up) ...", flush=True)
        figures, timings = overhead(plan, home.path)
        print()
        print(overhead_report(figures, timings))
        print()
        print(f"litellm failover: in-process tree, {plan.kills} kills ...", flush=True)
        report = failover(plan, home, lambda line: print(line, flush=True))
        print(f"(tree + managed proxy ready in {report.tree_start_s:.1f}s)")
        print()
        print(failover_report(report))
        troubles = home.troubles()
        print(f"\nlog: {len(troubles)} WARNING/ERROR lines in this process's log"
              + (f"; last: {troubles[-1][:160]}" if troubles else ""))
    print(f"\n({'quick' if quick else 'full'} litellm run, {time.perf_counter() - started:.1f}s in all)")
    return 0
