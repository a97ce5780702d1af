"""An Executor owns one MCP server: its session, its child process, its concurrency slots.

It turns a task into one call of the configured tool (arguments from a template in config),
records progress, enforces the hard per-call timeout, cancels on demand, and, when the server
dies, respawns it with backoff and sends the interrupted tasks back for another attempt.

The call itself is a coroutine on the shared loop; its outcome comes back as `CallEnded`, so the
mailbox stays free for `Execute`, cancellations and `Introspect` while a 30-minute task runs.

>>> spec = ExecutorConfig(name="coder", transport="stdio", command="npx", args=("-y", "@steipete/claude-code-mcp"),
...                       tool="claude_code", arguments={"prompt": "{description}", "workFolder": "/Users/me/src"})
>>> spec.slots, spec.call_timeout_s                 # the defaults: 4 calls at once, 30 minutes each
(4, 1800.0)
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import time
from collections import deque
from pathlib import Path
from typing import Any, Mapping

from clients import LinkLost, McpLink
from config import ExecutorConfig, fill_template
from config.schema import MemoryConfig
from actors.workspace_keeper import workspace_arguments
from messages.workspaces import ClaimWorkspace, RecordSession, WorkspacesReady
from messages import (CallEnded, CurrentRoute, Execute, GetTask, ExecutorHealth, LinkDown, LinkOpened, ListTasks,
                      RecallEnded, RecallMemories, RecordDecision, RecordProgress, Respawn, RouteChanged, TaskChanged,
                      TaskView, Transition)
from runtime import ChildContext, Journal, LinkSupervisor, SupervisedActor, describe
from store import IllegalTransition
from vocabulary import ActorName, TaskState

STORE = ActorName.STATE_STORE
RECALL_GRACE_S = 1.0     # past memory.search_timeout_s, a task whose memories have not come runs without them


def render_arguments(template: Mapping[str, Any], task: TaskView, home: Path,
                     tier_models: Mapping[str, str] | None = None, memory: str = "") -> dict[str, Any]:
    """Fill the config's argument template: `{description}`, `{task_id}`, `{kind}`, `{sender}`, `{home}`,
    `{tier}`, `{model}` (the tier's model group on the LiteLLM proxy) and `{memory}` (what memory recalled for
    the task; a template without `{memory}` gets it before the `{description}`).

    >>> task = TaskView(7, "fix the parser", "executing")
    >>> render_arguments({"prompt": "{description}", "workFolder": "{home}/work"}, task, Path("/h"))
    {'prompt': 'fix the parser', 'workFolder': '/h/work'}
    >>> render_arguments({"prompt": "{description}"}, task, Path("/h"), memory="- uses tabs")
    {'prompt': '- uses tabs\\n\\nfix the parser'}
    """
    description = task.description
    if memory and "{memory}" not in repr(template):
        description = f"{memory}\n\n{description}"
    fields = {"description": description, "task_id": task.task_id, "kind": task.kind or "",
              "sender": task.sender or "", "home": str(home), "tier": task.tier or "",
              "model": (tier_models or {}).get(task.tier or "", ""), "memory": memory}
    return fill_template(template, fields)


class Executor(SupervisedActor):
    def __init__(self, context: ChildContext, spec: ExecutorConfig, max_attempts: int, journal: Journal,
                 home: Path, tier_models: Mapping[str, str] | None = None, memory: MemoryConfig | None = None,
                 workspaces: bool = False):
        super().__init__(context)
        self.spec = spec
        self._memory = memory
        self._recalling: dict[int, TaskView] = {}   # started, waiting for their memories (RecallEnded)
        self._tier_models = tier_models or {}
        self._uses_route = spec.model_route and bool(tier_models)
        self._route_env: dict[str, str] = {}
        self._respawn_for_route = False
        self._max_attempts = max_attempts
        self._journal = journal
        self._home = home
        self._links = LinkSupervisor(self, self._new_link, (spec.tool,), spec.respawn_initial_s, spec.respawn_max_s,
                                     on_up=self._link_opened, on_down=self._link_down)
        self._running: dict[int, tuple[TaskView, concurrent.futures.Future[None]]] = {}
        self._queue: deque[TaskView] = deque()
        self._completed = self._failed = 0
        self._workspaces = workspaces      # its tasks run in worktrees of the WorkspaceKeeper's
        self._claims: dict[int, Any] = {}  # started tasks' worktrees (WorkspaceClaimed), until their call

    # --- lifecycle ---------------------------------------------------------------------------------------
    def started(self) -> None:
        if self._uses_route:
            self._route_env = self.directory.ask(ActorName.LITELLM_GUARD, CurrentRoute())
        self._links.open()
        if self.context.incarnation > 0:
            self._retry_calls_lost_with_previous_incarnation()
        for task in self.directory.ask(STORE, ListTasks(state=TaskState.DISPATCHING, executor=self.name,
                                                        limit=10_000, oldest_first=True)):
            self._accept(task)

    def release(self) -> None:
        for _, future in self._running.values():
            future.cancel()
        if self._links.link is not None:
            try:
                self.loop.submit(self._links.link.close()).result(timeout=10)
            except Exception:   # the loop may be stopping; the child then dies with its pipes
                pass

    def on_receive(self, message: Any) -> Any:
        match message:
            case Execute(task=task):                        self._accept(task)
            case CallEnded() as ended:                      self._finish(ended)
            case RecallEnded() as recalled:                 self._recalled(recalled)
            case TaskChanged(task=task):                    self._withdraw_if_moved(task)
            case RouteChanged(env=env):                     self._route_changed(env)
            case WorkspacesReady():                         self._drain()
            case LinkOpened() | LinkDown() | Respawn():     self._links.handle(message)
            case _:                                         return self.unhandled(message)

    def snapshot(self) -> dict[str, Any]:
        return {"link": self._links.status, "transport": self.spec.transport,
                "tool": self.spec.tool, "slots": self.spec.slots, "running": sorted(self._running),
                "queued": [task.task_id for task in self._queue], "completed": self._completed,
                "failed": self._failed}

    # --- tasks ---------------------------------------------------------------------------------------------
    def _accept(self, task: TaskView) -> None:
        if task.task_id in self._running or any(q.task_id == task.task_id for q in self._queue):
            return   # Execute is idempotent: the Router may re-send it after a restart
        self._queue.append(task)
        self._drain()

    def _drain(self) -> None:
        while (self._queue and self._links.up and not self._respawn_for_route
               and len(self._running) + len(self._recalling) < self.spec.slots):
            task = self._queue.popleft()
            claim = self.directory.ask(ActorName.WORKSPACE_KEEPER, ClaimWorkspace(task)) if self._workspaces else None
            if self._workspaces and claim is None:
                self._queue.appendleft(task)   # no worktree ready yet: WorkspacesReady drains again
                return
            self._start(task, claim)

    def _start(self, task: TaskView, claim: Any = None) -> None:
        try:
            task = self.directory.ask(STORE, Transition(
                task.task_id, TaskState.EXECUTING, f"calling {self.spec.tool} on {self.name} "
                f"(attempt {task.attempts + 1} of {self._max_attempts})",
                expect=frozenset({TaskState.DISPATCHING}), executor=self.name, count_attempt=True))
        except IllegalTransition:
            return   # cancelled, or already taken by another incarnation
        if claim is not None:
            self._claims[task.task_id] = claim
        if self._memory is None or not task.sender:
            self._call_tool(task, "")
            return
        self._recalling[task.task_id] = task    # memory answers, or our deadline does: a task never waits on it
        if not self.directory.tell(ActorName.MEMORY, RecallMemories(task, self.name)):
            self._recalled(RecallEnded(task.task_id, "", "memory unavailable (its actor is restarting): running "
                                       "without it", available=False))
            return
        self.loop.tell_later(self._memory.search_timeout_s + RECALL_GRACE_S, self.actor_ref, RecallEnded(
            task.task_id, "", f"memory unavailable (no answer within {self._memory.search_timeout_s:g}s): "
            "running without it", available=False))

    def _recalled(self, recalled: RecallEnded) -> None:
        task = self._recalling.pop(recalled.task_id, None)
        if task is None:
            return   # answered already (memory, or the deadline), or withdrawn meanwhile
        self.directory.tell(STORE, RecordDecision(task.task_id, recalled.note))
        self._call_tool(task, recalled.context)   # a link lost meanwhile: the call's LinkLost retries the task

    def _call_tool(self, task: TaskView, memory: str) -> None:
        arguments = render_arguments(self.spec.arguments, task, self._home, self._tier_models, memory)
        if (claim := self._claims.pop(task.task_id, None)) is not None:
            link = self._links.link
            earlier = self.directory.ask(STORE, GetTask(task.continues)) if task.continues else None
            arguments = workspace_arguments(arguments, self.spec.arguments, lambda name: link.takes(self.spec.tool,
                                                                                                     name),
                                            claim, task, earlier)
        future = self.loop.submit(self._call(task.task_id, arguments, self._links.link,
                                                 self._links.generation))
        self._running[task.task_id] = (task, future)

    async def _call(self, task_id: int, arguments: dict[str, Any], link: McpLink, generation: int) -> None:
        started = time.monotonic()

        def progress(done: float, total: float | None, message: str | None) -> None:
            self.directory.tell(STORE, RecordProgress(task_id, done, total, message))

        try:
            outcome = await link.call(self.spec.tool, arguments, self.spec.call_timeout_s, progress)
            verdict = "completed" if outcome.ok else "timed_out" if outcome.timed_out else "failed"
            ended = CallEnded(task_id, verdict, outcome.text, time.monotonic() - started, generation,
                              outcome.structured)
        except LinkLost as lost:
            ended = CallEnded(task_id, "link_lost", str(lost), time.monotonic() - started, generation)
        except asyncio.CancelledError:
            ended = CallEnded(task_id, "cancelled", "cancelled", time.monotonic() - started, generation)
        except Exception as error:   # an unexpected client fault fails this task, not the executor
            ended = CallEnded(task_id, "failed", describe(error), time.monotonic() - started, generation)
        self.tell_self(ended)

    def _finish(self, ended: CallEnded) -> None:
        entry = self._running.pop(ended.task_id, None)
        self._journal.record("mcp_call", executor=self.name, tool=self.spec.tool, task_id=ended.task_id,
                             duration_s=round(ended.duration_s, 6), outcome=ended.outcome)
        if entry is not None and ended.outcome != "cancelled":
            self._settle(entry[0], ended)
        if ended.outcome == "link_lost":
            self._links.down(ended.link_generation, ended.detail)
        self._respawn_if_route_changed()
        self._drain()

    def _settle(self, task: TaskView, ended: CallEnded) -> None:
        match ended.outcome:
            case "completed":
                self._completed += 1
                if ended.structured and isinstance(ended.structured.get("session_id"), str):   # for /continue
                    self.directory.tell(STORE, RecordSession(task.task_id, ended.structured["session_id"]))
                self._move(task, TaskState.COMPLETED, f"{self.spec.tool} returned after {ended.duration_s:.2f}s",
                           result=ended.detail)
            case "timed_out":
                self._failed += 1
                self._move(task, TaskState.FAILED, "hard timeout", error=f"no answer within "
                           f"{self.spec.call_timeout_s:g}s (the executor's call_timeout_s)")
            case "failed":
                self._failed += 1
                self._move(task, TaskState.FAILED, f"{self.spec.tool} reported an error", error=ended.detail)
            case "link_lost":
                self._retry_or_fail(task, f"{self.name}'s MCP server died mid-call: {ended.detail}")

    def _retry_or_fail(self, task: TaskView, why: str) -> None:
        if task.attempts < self._max_attempts:
            self._move(task, TaskState.IDLE, f"{why}; retrying (attempt {task.attempts} of {self._max_attempts} "
                       "used)")
        else:
            self._failed += 1
            self._move(task, TaskState.FAILED, f"{why}; no attempts left",
                       error=f"{why} (on each of {self._max_attempts} attempts)")

    def _move(self, task: TaskView, to: str, reason: str, **fields: Any) -> None:
        try:
            self.directory.ask(STORE, Transition(task.task_id, to, reason, expect=frozenset({TaskState.EXECUTING}),
                                                 **fields))
        except IllegalTransition:
            pass   # cancelled or suspended meanwhile: that move stands

    def _withdraw_if_moved(self, task: TaskView) -> None:
        """A task of ours was cancelled or suspended elsewhere: stop its call, or drop it from the queue."""
        if task.state in (TaskState.EXECUTING, TaskState.DISPATCHING):
            return
        if task.task_id in self._running:
            self._running[task.task_id][1].cancel()
        self._recalling.pop(task.task_id, None)
        self._queue = deque(q for q in self._queue if q.task_id != task.task_id)

    def _retry_calls_lost_with_previous_incarnation(self) -> None:
        for task in self.directory.ask(STORE, ListTasks(state=TaskState.EXECUTING, executor=self.name,
                                                        limit=10_000, oldest_first=True)):
            self._retry_or_fail(task, f"{self.name} restarted while the call was running")

    def _route_changed(self, env: Mapping[str, str]) -> None:
        """The model route moved (proxy ↔ direct): respawn the server with it, between tasks."""
        if self._uses_route and dict(env) != self._route_env:
            self._route_env, self._respawn_for_route = dict(env), True
            self._respawn_if_route_changed()

    def _respawn_if_route_changed(self) -> None:
        if self._respawn_for_route and not self._running and not self._recalling:
            self._respawn_for_route = False
            old = self._links.link
            self._links.open(status="starting (route changed)")
            if old is not None:
                self.loop.submit(old.close())

    # --- the MCP link (supervised by self._links) -----------------------------------------------------------
    def _new_link(self) -> McpLink:
        spec = dataclasses.replace(self.spec, env={**self.spec.env,
                                                   **self._route_env}) if self._route_env else self.spec
        return McpLink(spec, errlog=self._home / "logs" / f"{self.name}.stderr")

    def _link_opened(self, tools: tuple[str, ...]) -> None:
        self._tell_health()
        self._links.watch()
        self._drain()

    def _link_down(self, error: str) -> None:
        self._journal.record("executor_down", executor=self.name, error=error)
        self._tell_health()

    def _tell_health(self) -> None:
        self.directory.tell(ActorName.ROUTER, ExecutorHealth(self.name, self._links.up, self._links.status,
                                                             self.spec.slots - len(self._running)))
