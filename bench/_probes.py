"""What is timed: raw stdio MCP calls, raw gateway calls, and no-op tasks end to end.

Every probe is a coroutine `op()` that does one unit of work and returns True when it succeeded;
`sequential` and `concurrent` time many of them into a `Figure`.
"""
from __future__ import annotations

import asyncio
import resource
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack

from clients.gateway_client import GatewaySession
from clients.mcp_link import McpLink
from config import PROJECT_ROOT, ExecutorConfig

from ._stats import Figure, Stopwatch

Op = Callable[[], Awaitable[bool]]
TERMINAL = {"completed", "failed", "cancelled"}
NOOP = "noop bench task"
READY_DEADLINE_S = 30.0


async def _time_one(op: Op, figure: Figure) -> None:
    start = time.perf_counter()
    try:
        ok = await op()
    except Exception as error:  # noqa: BLE001 (a failed call is a figure, not a crash of the bench)
        ok, figure.note = False, f"{type(error).__name__}: {error}"[:60]
    if ok:
        figure.latencies.append(time.perf_counter() - start)
    else:
        figure.failures += 1


async def sequential(name: str, op: Op, n: int) -> Figure:
    """`n` calls of `op`, one after another."""
    figure = Figure(name)
    with Stopwatch() as sw:
        for _ in range(n):
            await _time_one(op, figure)
    figure.wall_s = sw.elapsed
    return figure


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def concurrent(name: str, ops: list[Op], n_each: int, cpu: Callable[[], float] | None = None) -> Figure:
    """Each of `ops` (one per caller) run `n_each` times in its own task, all callers at once. `cpu`: the
    orchestrator's CPU seconds so far, read before and after (`figure.cpu_s`)."""
    figure = Figure(name)

    async def caller(op: Op) -> None:
        for _ in range(n_each):
            await _time_one(op, figure)

    server0, client0 = (cpu() if cpu else float("nan")), own_cpu_seconds()
    with Stopwatch() as sw:
        await asyncio.gather(*(caller(op) for op in ops))
    figure.wall_s = sw.elapsed
    figure.cpu_s = (cpu() if cpu else float("nan")) - server0
    figure.client_cpu_s = own_cpu_seconds() - client0
    return figure


async def warm_up(op: Op, n: int) -> None:
    for _ in range(n):
        await op()


# --- the floor: a raw stdio call to the sandbox executor ---------------------------------------------------

def general_executor() -> ExecutorConfig:
    """Like config/sandbox.yaml's `general` executor."""
    return ExecutorConfig(name="general", transport="stdio", command=sys.executable,
                          args=("-m", "sandbox.executors", "general"), tool="run_task",
                          arguments={"prompt": "{description}"}, cwd=str(PROJECT_ROOT))


async def stdio_floor(n_seq: int, n_each: int, callers: int) -> list[Figure]:
    """`run_task` on one open stdio session: sequential, then `callers` concurrent callers."""
    link = McpLink(general_executor())
    await link.open()
    try:
        async def op() -> bool:
            return (await link.call("run_task", {"prompt": NOOP}, timeout_s=30)).ok
        await warm_up(op, 20)
        return [await sequential("raw stdio call_tool (sequential)", op, n_seq),
                await concurrent(f"raw stdio call_tool ({callers} concurrent)", [op] * callers, n_each)]
    finally:
        await link.close()


# --- the floor: a raw call to our gateway ----------------------------------------------------------------

def list_tasks_op(gateway: GatewaySession) -> Op:
    async def op() -> bool:
        return "tasks" in await gateway.call("list_tasks", limit=1)
    return op


async def gateway_floor(url: str, token: str, n_seq: int, n_each: int, sessions: int) -> list[Figure]:
    """`list_tasks(limit=1)`: on one session sequentially, then on `sessions` sessions at once."""
    async with AsyncExitStack() as stack:
        gateways = [await stack.enter_async_context(GatewaySession(url, token)) for _ in range(sessions)]
        ops = [list_tasks_op(gateway) for gateway in gateways]
        await warm_up(ops[0], 20)
        return [await sequential("raw gateway list_tasks (sequential)", ops[0], n_seq),
                await concurrent(f"raw gateway list_tasks ({sessions} sessions)", ops, n_each)]


# --- end to end: no-op tasks through the gateway -----------------------------------------------------------

async def wait_ready(url: str, token: str) -> None:
    """Until the gateway answers and the `general` executor's MCP link is up."""
    deadline = time.monotonic() + READY_DEADLINE_S
    async with GatewaySession(url, token) as gateway:
        while time.monotonic() < deadline:
            status = await gateway.call("system_status")
            if status["executors"].get("general", {}).get("link") == "up":
                return
            await asyncio.sleep(0.1)
    raise RuntimeError(f"the general executor was not up within {READY_DEADLINE_S:g}s")


def noop_task_op(gateway: GatewaySession, misrouted: list[str]) -> Op:
    """Submit a no-op task and wait for it in the same call (`wait_s`), long-polling on if it has not
    finished by then; True when it completed on `general`."""
    async def op() -> bool:
        task = await gateway.call("submit_task", description=NOOP, kind="general", wait_s=30)
        while task["state"] not in TERMINAL:
            task = await gateway.call("get_task", task_id=task["task_id"], wait_s=30)
        if task["executor"] != "general":
            misrouted.append(str(task["executor"]))
        return task["state"] == "completed"
    return op


async def end_to_end(url: str, token: str, n_single: int, n_each: int, submitters: int,
                     cpu: Callable[[], float] | None = None) -> list[Figure]:
    """One submitter, then `submitters` submitters, each on its own gateway session."""
    misrouted: list[str] = []
    async with AsyncExitStack() as stack:
        gateways = [await stack.enter_async_context(GatewaySession(url, token)) for _ in range(submitters)]
        ops = [noop_task_op(gateway, misrouted) for gateway in gateways]
        await warm_up(ops[0], 10)
        figures = [await sequential("e2e no-op task (1 submitter)", ops[0], n_single),
                   await concurrent(f"e2e no-op task ({submitters} submitters)", ops, n_each, cpu)]
    if misrouted:
        figures[-1].note = f"{len(misrouted)} not on 'general' (e.g. {misrouted[0]})"
    return figures
