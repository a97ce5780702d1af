"""The tools of our MCP server, with their argument checks. Each answers plain JSON-able data.

Errors name the tool and the argument: `submit_task: 'description' must be non-empty text`.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import time
from typing import Any, Iterator

from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from config.schema import ImConfig
from messages import CountTasksByState, CreateTask, GetMode, GetTask, Introspect, ReplyWhileDown, SumCosts, ListTasks, Transition
from surfaces import commands as im_commands   # a module import: surfaces.commands imports actors in turn

from .budget import PERIOD_STARTS as PERIODS
from .directory import ActorUnavailable, Directory
from .task_lifecycle import IllegalTransition, TaskState

STORE = "state_store"
GUARD = "litellm_guard"
TIERS = ("P1", "P2")
MAX_WAIT_S = 300.0
MAX_LIST = 500


class GatewayTools:
    def __init__(self, directory: Directory, pool: concurrent.futures.Executor, kinds: tuple[str, ...],
                 executors: tuple[str, ...], models: bool = False, im: ImConfig | None = None):
        self._directory = directory
        self._models = models
        self.mode = "normal"          # kept current by the Gateway actor (ModeChanged)
        self._pool = pool
        self._kinds = kinds
        self._executors = executors
        self.waiting: dict[int, list[asyncio.Event]] = {}
        self.server = MCPServer("omni-orchestrator", instructions="Submit tasks to Omni-Orchestrator and follow "
                                "them; tasks are routed to an executor and a model tier, and survive restarts.")
        self._commands = im_commands.CommandInterpreter(self._ask, directory.tell, im or ImConfig(), executors, models)
        for tool in (self.submit_task, self.get_task, self.list_tasks, self.cancel_task, self.system_status,
                     self.cost_report, self.command):
            self.server.add_tool(tool)

    # --- the tools -------------------------------------------------------------------------------------------
    async def submit_task(self, description: str, kind: str | None = None, sender: str | None = None,
                          tier: str | None = None) -> dict[str, Any]:
        """Create a task. `kind` (optional) overrides the routing rules; `sender` says who asked; `tier` P2
        asks for the paid model tier (granted only within budget)."""
        if not description.strip():
            raise ToolError("submit_task: 'description' must be non-empty text")
        if kind is not None and kind not in self._kinds:
            raise ToolError(f"submit_task: 'kind' must be one of {', '.join(self._kinds)}, not {kind!r}")
        if tier is not None and tier not in TIERS:
            raise ToolError(f"submit_task: 'tier' must be one of {', '.join(TIERS)}, not {tier!r}")
        task = await self._ask(STORE, CreateTask(description.strip(), kind=kind, sender=sender, source="mcp",
                                                 tier=tier))
        if self.mode == "brainstem":   # the cloud is down: say so, in the brainstem's words
            return {"task_id": task.task_id, "state": task.state,
                    "note": await self._ask("brainstem", ReplyWhileDown(description), timeout_s=30)}
        return {"task_id": task.task_id, "state": task.state}

    async def get_task(self, task_id: int, wait_s: float = 0.0) -> dict[str, Any]:
        """One task. With `wait_s` > 0, wait up to that many seconds (at most 300) for it to finish."""
        if not 0 <= wait_s <= MAX_WAIT_S:
            raise ToolError(f"get_task: 'wait_s' must be between 0 and {MAX_WAIT_S:g}, not {wait_s}")
        deadline = time.monotonic() + wait_s
        while True:
            with self._watching(task_id) as changed:   # watch first, then read: no change slips between
                task = await self._task(task_id, "get_task")
                remaining = deadline - time.monotonic()
                if task.is_terminal or remaining <= 0:
                    return _public(task)
                try:
                    await asyncio.wait_for(changed.wait(), remaining)
                except TimeoutError:
                    pass

    async def list_tasks(self, state: str | None = None, limit: int = 50) -> dict[str, Any]:
        """The most recent tasks, optionally only those in `state`."""
        if state is not None and state not in set(TaskState):
            raise ToolError(f"list_tasks: 'state' must be one of {', '.join(TaskState)}, not {state!r}")
        if not 1 <= limit <= MAX_LIST:
            raise ToolError(f"list_tasks: 'limit' must be between 1 and {MAX_LIST}, not {limit}")
        tasks = await self._ask(STORE, ListTasks(state=state, limit=limit))
        return {"tasks": [_public(task) for task in tasks]}

    async def cancel_task(self, task_id: int) -> dict[str, Any]:
        """Cancel a task that has not finished; a running MCP call is cancelled too."""
        await self._task(task_id, "cancel_task")
        try:
            task = await self._ask(STORE, Transition(task_id, TaskState.CANCELLED, "cancelled through the gateway"))
        except IllegalTransition as refused:
            raise ToolError(f"cancel_task: task {task_id} cannot be cancelled: {refused}") from None
        return {"task_id": task.task_id, "state": task.state}

    async def system_status(self) -> dict[str, Any]:
        """The system mode, the actors (with restarts and last errors), the executors' health, task counts."""
        actors, counts = await asyncio.gather(self._ask("supervisor", Introspect()),
                                              self._ask(STORE, CountTasksByState()))
        executors = {}
        for name in self._executors:
            try:
                executors[name] = await self._ask(name, Introspect(), timeout_s=2)
            except ActorUnavailable as down:
                executors[name] = {"link": f"down: {down}"}
        mode = await self._ask("system_mode", GetMode())
        route = (await self._ask(GUARD, Introspect()))["route"] if self._models else None
        return {"mode": mode["mode"], "route": route, "actors": actors, "executors": executors, "tasks": counts}

    async def cost_report(self, period: str = "today") -> dict[str, Any]:
        """Model spend per tier for `today`, `week` (the last 7 days) or `month`, against the paid budget."""
        if period not in PERIODS:
            raise ToolError(f"cost_report: 'period' must be one of {', '.join(PERIODS)}, not {period!r}")
        since = PERIODS[period](time.time())
        tiers = await self._ask(STORE, SumCosts(since))
        budget = (await self._ask(GUARD, Introspect()))["budget"] if self._models else {}
        return {"period": period, "since": since, "tiers": tiers,
                "total_usd": round(sum(t["usd"] for t in tiers.values()), 6), "budget": budget}

    async def command(self, text: str, sender: str) -> dict[str, Any]:
        """One IM message from `sender` (as OpenClaw names them, e.g. telegram:4242): a command (`/help` lists
        them) or the text of a new task. Senders not in the config's `im.allow` are refused. Answers
        {"reply": text}, in the configured IM locale."""
        if not sender.strip():
            raise ToolError("command: 'sender' must be non-empty text, e.g. telegram:4242")
        return {"reply": await self._commands.handle(text, sender.strip())}

    # --- plumbing ------------------------------------------------------------------------------------------------
    async def _ask(self, name: str, message: Any, timeout_s: float = 10.0) -> Any:
        call = functools.partial(self._directory.ask, name, message, timeout_s)
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, call)
        except ActorUnavailable as unavailable:
            raise ToolError(f"the orchestrator is busy restarting a part: {unavailable}; try again") from None

    async def _task(self, task_id: int, tool: str) -> Any:
        task = await self._ask(STORE, GetTask(task_id))
        if task is None:
            raise ToolError(f"{tool}: 'task_id' {task_id} is not a known task")
        return task

    @contextlib.contextmanager
    def _watching(self, task_id: int) -> Iterator[asyncio.Event]:
        event = asyncio.Event()
        self.waiting.setdefault(task_id, []).append(event)
        try:
            yield event
        finally:
            events = self.waiting.get(task_id, [])
            events.remove(event)
            if not events:
                self.waiting.pop(task_id, None)

    def wake(self, task_id: int) -> None:
        """Called on the loop when the StateStore announces a change to `task_id`."""
        for event in self.waiting.get(task_id, []):
            event.set()


def _public(task: Any) -> dict[str, Any]:
    return {"task_id": task.task_id, "state": task.state, "kind": task.kind, "executor": task.executor,
            "tier": task.tier, "attempts": task.attempts, "result": task.result, "error": task.error,
            "description": task.description, "sender": task.sender}
