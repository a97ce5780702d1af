"""`python -m bench [core|spine|rest|litellm|brainstem|chaos|dashboard|routing|memory|all] [--quick] [--keep]`:
print the figures.

- `core` (the default): `spine`, then `rest`.
- `spine`: the floor and no-op tasks end to end, against a real supervisor.py, with the CPU each task cost.
- `rest`: the sandbox without demo traffic: start to the gateway answering, the supervisor's RSS, idle CPU
  (bench/_sandbox.py).
- `litellm`: per-call overhead of the model route and failover after SIGKILL of the LiteLLM proxy
  (bench/_litellm.py).
- `brainstem`: the local model's cold load, memory and generation, and cloud-outage timings (suspend,
  resume) in an in-process tree with a real LiteLLM proxy (bench/_brainstem.py).
- `chaos`: tasks submitted by retrying clients while the supervisor is SIGKILLed again and again: how many
  were duplicated or lost, with idempotency keys and without (bench/_chaos.py).
- `dashboard`: reading the cost dashboard's figures over 90 busy days, and a store write while it reads
  (bench/_dashboard.py).
- `routing`: the local routing classifier on the held-out set: accuracy per kind and language, confusion,
  latency, and the model fallback's round trip (bench/_routing.py).
- `memory`: a task's wait for its memories: search (and add) through the MemOS stand-in at 100 and 1000 memories
  (bench/_memory.py).
- `warm`: dispatch to the executor's first progress, its session warm vs cold (bench/_warm.py).
- `all`: spine, rest, litellm and brainstem, in that order.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import time
from dataclasses import dataclass

from ._orchestrator import Orchestrator
from ._probes import end_to_end, gateway_floor, stdio_floor, wait_ready
from ._stats import Figure, cpu_per_op_ms, table

CONCURRENCY = 8


@dataclass(frozen=True)
class Plan:
    """How many calls/tasks each measurement makes (the concurrent ones: per caller)."""
    stdio_seq: int
    stdio_each: int
    gateway_seq: int
    gateway_each: int
    e2e_seq: int
    e2e_each: int


FULL = Plan(stdio_seq=1000, stdio_each=250, gateway_seq=300, gateway_each=100, e2e_seq=200, e2e_each=125)
QUICK = Plan(stdio_seq=50, stdio_each=10, gateway_seq=30, gateway_each=10, e2e_seq=20, e2e_each=10)


def machine() -> str:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"machine: nproc={cpus}, load average {load} (the machine may be shared), "
            f"Python {platform.python_version()} ({platform.python_implementation()}), "
            f"{platform.system()} {platform.machine()}")


async def measure(orchestrator: Orchestrator, plan: Plan) -> dict[str, Figure]:
    """All measurements, in order: stdio floor, gateway floor, end to end."""
    await wait_ready(orchestrator.url, orchestrator.token)
    figures = [*await stdio_floor(plan.stdio_seq, plan.stdio_each, CONCURRENCY),
               *await gateway_floor(orchestrator.url, orchestrator.token, plan.gateway_seq, plan.gateway_each,
                                    CONCURRENCY),
               *await end_to_end(orchestrator.url, orchestrator.token, plan.e2e_seq, plan.e2e_each, CONCURRENCY,
                                 orchestrator.cpu_seconds)]
    return dict(zip(("stdio", "stdio_n", "gateway", "gateway_n", "e2e", "e2e_n"), figures, strict=True))


def verdicts(f: dict[str, Figure]) -> list[str]:
    """The ratios the targets are about, each with its target and whether it was met."""
    floor_p50 = f["gateway"].p50_ms + f["stdio"].p50_ms
    rows = [
        (f"e2e p50 / floor p50  ({f['e2e'].p50_ms:.2f} / ({f['gateway'].p50_ms:.2f} + {f['stdio'].p50_ms:.2f}) ms)",
         f["e2e"].p50_ms / floor_p50, "<= 1.5x", lambda v: v <= 1.5),
        (f"{CONCURRENCY}-submitter tasks/s / raw stdio calls/s at {CONCURRENCY} "
         f"({f['e2e_n'].rate:.1f} / {f['stdio_n'].rate:.1f})",
         f["e2e_n"].rate / f["stdio_n"].rate, ">= 0.5", lambda v: v >= 0.5),
        (f"tasks/s with {CONCURRENCY} submitters", f["e2e_n"].rate, ">= 300", lambda v: v >= 300),
    ]
    lines = [f"{label:<72} {value:>8.2f}   target {target:<8} {'met' if ok(value) else 'NOT met'}"
             for label, value, target, ok in rows]
    server_ms, client_ms = cpu_per_op_ms(f["e2e_n"])
    lines.append(f"{f'CPU per task, {CONCURRENCY} submitters: orchestrator (supervisor + MCP servers) ms':<72} "
                 f"{server_ms:>8.2f}   (the bench's own callers: {client_ms:.2f} ms)")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench",
                                     description="Measure and print the figures (never asserts a target).")
    parser.add_argument("which", nargs="?",
                        choices=("core", "spine", "rest", "litellm", "brainstem", "chaos", "dashboard", "routing",
                                 "memory", "warm", "all"),
                        default="core",
                        help="core (default): spine and rest; spine: floor and no-op tasks end to end; rest: the "
                             "sandbox at rest (start time, RSS, idle CPU); litellm: model-route overhead "
                             "and proxy failover; brainstem: local model load/memory and outage timings; "
                             "chaos: duplicates and losses under SIGKILLs; all: spine, rest, litellm, brainstem")
    parser.add_argument("--quick", action="store_true", help="few iterations: a smoke check")
    parser.add_argument("--keep", action="store_true", help="keep the temp $OMNI_HOME (logs) and print its path")
    args = parser.parse_args(argv)
    status = 0
    if args.which in ("core", "spine", "all"):
        status = spine(args)
    if args.which in ("core", "rest", "all"):
        from ._sandbox import run as rest_bench
        if args.which == "rest":
            print(machine(), flush=True)
        else:
            print()
        status = rest_bench(quick=args.quick, keep=args.keep) or status
    if args.which in ("litellm", "all"):
        from ._litellm import run as litellm_bench
        if args.which == "all":
            print()
        else:
            print(machine(), flush=True)
        status = litellm_bench(quick=args.quick, keep=args.keep) or status
    if args.which in ("brainstem", "all"):
        from ._brainstem import run as brainstem_bench
        if args.which == "all":
            print()
        else:
            print(machine(), flush=True)
        status = brainstem_bench(quick=args.quick, keep=args.keep) or status
    if args.which == "dashboard":
        from ._dashboard import run as dashboard_bench
        print(machine(), flush=True)
        status = dashboard_bench(quick=args.quick)
    if args.which == "routing":
        from ._routing import run as routing_bench
        print(machine(), flush=True)
        status = routing_bench(quick=args.quick, keep=args.keep)
    if args.which == "memory":
        from ._memory import run as memory_bench
        print(machine(), flush=True)
        status = memory_bench(quick=args.quick)
    if args.which == "warm":
        from ._warm import run as warm_bench
        print(machine(), flush=True)
        status = warm_bench(quick=args.quick, keep=args.keep)
    if args.which == "chaos":
        from ._chaos import run as chaos_bench
        print(machine(), flush=True)
        status = chaos_bench(quick=args.quick, keep=args.keep)
    return status


def spine(args: argparse.Namespace) -> int:
    plan = QUICK if args.quick else FULL
    print(machine(), flush=True)
    started = time.perf_counter()
    with Orchestrator(keep=args.keep) as orchestrator:
        print(f"orchestrator: supervisor.py pid {orchestrator.process.pid} at {orchestrator.url}"
              f"{f' (home {orchestrator.home})' if args.keep else ''}", flush=True)
        figures = asyncio.run(measure(orchestrator, plan))
        print(f"supervisor: {orchestrator.summary()}")
    print()
    print(table(list(figures.values())))
    print()
    print("\n".join(verdicts(figures)))
    print(f"\n({'quick' if args.quick else 'full'} run, {time.perf_counter() - started:.1f}s in all; "
          f"load average now {' '.join(f'{x:.2f}' for x in os.getloadavg())})")
    return 0

if __name__ == "__main__":
    sys.exit(main())
