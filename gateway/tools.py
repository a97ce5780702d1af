"""The tools of our MCP server. Each answers plain JSON-able data.

Their arguments are checked strictly against one table (`ARGUMENTS`, also the published inputSchema);
refusals name the tool and the argument once: `submit_task: 'kind': expected one of …, got 'x' (text)`.
A task's text is at most `DESCRIPTION_LIMIT` characters; `list_tasks` shows the start of long texts only
(`get_task` has them whole), so no answer grows with what clients stored.
"""
from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Iterator

from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from config.schema import ImConfig
from messages import (DESCRIPTION_LIMIT, KEY_LIMIT, MAX_TASK_ID, CreateTask, GetTask,
                      GetTaskHistory,
                      Introspect, ListTasks, ReplyWhileDown, SumCosts, Transition)
from commands import interpreter as im_commands, system_status
from routing.explain import latest_evidence

from clients import PERIOD_STARTS as PERIODS
from runtime import ActorUnavailable, Caller, Directory
from .arguments import CheckedTool, Choice, Integer, Number, Text, require_object_arguments
from store import IllegalTransition, KeyReused
from vocabulary import ActorName, Mode, TIERS, TaskState

STORE = ActorName.STATE_STORE
GUARD = ActorName.LITELLM_GUARD
MAX_WAIT_S = 300.0
MAX_LIST = 500
LIST_PREVIEW = 300                   # characters of a description, result or error in `list_tasks`
SETTLED_KEPT = 4096                  # finished tasks remembered for a waiter that registers just after the news


def arguments_of(kinds: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """Every tool's arguments: the check and the published schema, in one place."""
    task_id = Integer(1, MAX_TASK_ID, required=True)
    return {
        "submit_task": {"description": Text(DESCRIPTION_LIMIT, required=True), "kind": Choice(kinds),
                        "sender": Text(KEY_LIMIT), "tier": Choice(TIERS), "idempotency_key": Text(KEY_LIMIT),
                        "wait_s": Number(0, MAX_WAIT_S)},
        "get_task": {"task_id": task_id, "wait_s": Number(0, MAX_WAIT_S)},
        "list_tasks": {"state": Choice(tuple(TaskState)), "limit": Integer(1, MAX_LIST)},
        "cancel_task": {"task_id": task_id},
        "system_status": {},
        "cost_report": {"period": Choice(tuple(PERIODS))},
        "command": {"text": Text(DESCRIPTION_LIMIT, required=True, blank_ok=True),
                    "sender": Text(KEY_LIMIT, required=True), "idempotency_key": Text(KEY_LIMIT)},
    }


@dataclass(eq=False, slots=True)
class _Watch:
    """One caller waiting for a task: woken with each view of it the StateStore announces."""
    event: asyncio.Event = field(default_factory=asyncio.Event)
    view: Any = None


class GatewayTools:
    def __init__(self, directory: Directory | Caller, kinds: tuple[str, ...], executors: tuple[str, ...],
                 models: bool = False, im: ImConfig | None = None):
        self._directory = directory
        self._models = models
        self.mode = Mode.NORMAL       # kept current by the Gateway actor (ModeChanged)
        self._executors = executors
        self.waiting: dict[int, list[_Watch]] = {}
        self._settled: OrderedDict[int, Any] = OrderedDict()   # task → its finished view, newest last
        specs = arguments_of(kinds)
        tools = [CheckedTool.of(tool, specs[tool.__name__]) for tool in (
            self.submit_task, self.get_task, self.list_tasks, self.cancel_task, self.system_status,
            self.cost_report, self.command)]
        self.server = MCPServer("omni-orchestrator", instructions="Submit tasks to Omni-Orchestrator and follow "
                                "them; tasks are routed to an executor and a model tier, and survive restarts.",
                                tools=tools, middleware=[require_object_arguments])
        self.dashboard_url = ""       # set by the Gateway actor once it listens
        self._commands = im_commands.CommandInterpreter(self._ask, directory.tell, im or ImConfig(), executors, models,
                                                        dashboard_url=lambda: self.dashboard_url)

    # --- the tools -------------------------------------------------------------------------------------------
    async def submit_task(self, description: str, kind: str | None = None, sender: str | None = None,
                          tier: str | None = None, idempotency_key: str | None = None,
                          wait_s: float | None = None) -> dict[str, Any]:
        """Create a task (`description`: at most 20,000 characters); it is stored before this answers.
        `kind` (optional) overrides the routing rules; `sender` says who asked; `tier` P2 asks for the paid
        model tier (granted only within budget). `idempotency_key`: a retry with the same key answers the task
        created the first time, across restarts. `wait_s` (at most 300): also wait up to that many seconds for
        the task to finish, and answer the task as `get_task` does (one call instead of submit, then get_task)."""
        key = None if idempotency_key is None else f"mcp:{idempotency_key}"
        try:
            task = await self._ask(STORE, CreateTask(description.strip(), kind=kind, sender=sender, source="mcp",
                                                     tier=tier, idempotency_key=key))
        except KeyReused as reused:
            raise ToolError(f"'idempotency_key' {reused}") from None
        answer = {"task_id": task.task_id, "state": task.state}
        if self.mode == Mode.BRAINSTEM:   # the cloud is down: say so, in the brainstem's words
            answer["note"] = await self._ask(ActorName.BRAINSTEM, ReplyWhileDown(description), timeout_s=30)
        if wait_s is None:
            return answer
        with self._watching(task.task_id) as watch:   # news since the answer above is in `_settled` or comes
            task = await self._wait_until_finished(task, watch, time.monotonic() + wait_s)
        return {**_public(task), **({"note": answer["note"]} if "note" in answer else {})}

    async def get_task(self, task_id: int, wait_s: float = 0.0) -> dict[str, Any]:
        """One task. With `wait_s` > 0, wait up to that many seconds (at most 300) for it to finish."""
        deadline = time.monotonic() + wait_s
        with self._watching(task_id) as watch:   # watch first, then read: no change slips between
            task = await self._task(task_id)
            finished = await self._wait_until_finished(task, watch, deadline)
            history = await self._ask(STORE, GetTaskHistory(task_id))
            return {**_public(finished), "routing": latest_evidence(history)}

    async def list_tasks(self, state: str | None = None, limit: int = 50) -> dict[str, Any]:
        """The most recent tasks (at most 500), optionally only those in `state`. Texts longer than 300
        characters are cut (`"truncated": true`); `get_task` has them whole."""
        tasks = await self._ask(STORE, ListTasks(state=state, limit=limit))
        return {"tasks": [_public(task, preview=LIST_PREVIEW) for task in tasks]}

    async def cancel_task(self, task_id: int) -> dict[str, Any]:
        """Cancel a task that has not finished; a running MCP call is cancelled too."""
        await self._task(task_id)
        try:
            task = await self._ask(STORE, Transition(task_id, TaskState.CANCELLED, "cancelled through the gateway"))
        except IllegalTransition as refused:
            raise ToolError(f"task {task_id} cannot be cancelled: {refused}") from None
        return {"task_id": task.task_id, "state": task.state}

    async def system_status(self) -> dict[str, Any]:
        """The system mode, the model route and the cloud, the actors (with restarts and last errors), the
        executors' health, task counts."""
        return await system_status(self._ask, self._executors)

    async def cost_report(self, period: str = "today") -> dict[str, Any]:
        """Model spend per tier for `today`, `week` (the last 7 days) or `month`, against the paid budget."""
        since = PERIODS[period](time.time())
        tiers = await self._ask(STORE, SumCosts(since))
        budget = (await self._ask(GUARD, Introspect()))["budget"] if self._models else {}
        return {"period": period, "since": since, "tiers": tiers,
                "total_usd": round(sum(t["usd"] for t in tiers.values()), 6), "budget": budget}

    async def command(self, text: str, sender: str, idempotency_key: str | None = None) -> dict[str, Any]:
        """One IM message from `sender` (as OpenClaw names them, e.g. telegram:4242): a command (`/help` lists
        them) or the text of a new task. Senders not in the config's `im.allow` are refused. Answers
        {"reply": text}, in the configured IM locale. `idempotency_key`: a message sent again with the same
        key makes no second task."""
        key = None if idempotency_key is None else f"command:{idempotency_key}"
        return {"reply": await self._commands.handle(text, sender.strip(), idempotency_key=key)}

    # --- plumbing ------------------------------------------------------------------------------------------------
    async def _ask(self, name: str, message: Any, timeout_s: float = 10.0) -> Any:
        try:
            return await self._directory.ask_async(name, message, timeout_s)
        except ActorUnavailable as unavailable:
            raise ToolError(f"the orchestrator is busy restarting a part: {unavailable}; try again") from None

    async def _task(self, task_id: int) -> Any:
        task = await self._ask(STORE, GetTask(task_id))
        if task is None:
            raise ToolError(f"'task_id' {task_id} is not a known task")
        return task

    @staticmethod
    async def _wait_until_finished(task: Any, watch: _Watch, deadline: float) -> Any:
        """The task once it has finished, or as last known at `deadline`: each announced view is newer news,
        so no second read is needed."""
        while True:
            if watch.view is not None and watch.view.updated_at >= task.updated_at:
                task = watch.view
            remaining = deadline - time.monotonic()
            if task.is_terminal or remaining <= 0:
                return task
            watch.event.clear()
            try:
                async with asyncio.timeout(remaining):
                    await watch.event.wait()
            except TimeoutError:
                pass

    @contextlib.contextmanager
    def _watching(self, task_id: int) -> Iterator[_Watch]:
        watch = _Watch(view=self._settled.get(task_id))
        self.waiting.setdefault(task_id, []).append(watch)
        try:
            yield watch
        finally:
            watches = self.waiting.get(task_id, [])
            watches.remove(watch)
            if not watches:
                self.waiting.pop(task_id, None)

    def wake(self, task: Any) -> None:
        """Called on the loop with each view the StateStore announces of a waited-for or finished task."""
        if task.is_terminal:
            self._settled[task.task_id] = task
            self._settled.move_to_end(task.task_id)
            if len(self._settled) > SETTLED_KEPT:
                self._settled.popitem(last=False)
        else:
            self._settled.pop(task.task_id, None)   # /retry: it runs again
        for watch in self.waiting.get(task.task_id, []):
            watch.view = task
            watch.event.set()


def _public(task: Any, preview: int | None = None) -> dict[str, Any]:
    texts = {"description": task.description, "result": task.result, "error": task.error}
    shown = {name: _cut(text, preview) for name, text in texts.items()}
    public = {"task_id": task.task_id, "state": task.state, "kind": task.kind, "executor": task.executor,
              "tier": task.tier, "attempts": task.attempts, **shown, "sender": task.sender,
              "progress": task.progress}
    if shown != texts:
        public["truncated"] = True
    return public


def _cut(text: str | None, limit: int | None) -> str | None:
    if text is None or limit is None or len(text) <= limit:
        return text
    return text[:limit - 1] + "…"
