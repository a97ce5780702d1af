"""The Memory actor owns the link to the MemOS MCP server and the outbox of what it has yet to take.

- An executor about to run a task tells it `RecallMemories`; it searches (the task's text, the sender's user) and
  answers `RecallEnded` with the context block, or, memory being down or slow, with none and why: a task never
  waits on memory longer than `memory.search_timeout_s`.
- A task completing (`TaskChanged`, it subscribes) queues the exchange in the outbox (SQLite), which is delivered
  in order whenever the server is up: adds made while it is down wait, across restarts, and are never lost.
- `/forget` (`ForgetSender`) drops the sender's adds still waiting and queues the server's delete for them.

The link is supervised as an executor's is (`runtime.LinkSupervisor`): a server that dies or never starts is
opened afresh after a backoff, and meanwhile tasks run without memory.
"""
from __future__ import annotations

import concurrent.futures
from pathlib import Path
from typing import Any

from clients import (LinkLost, McpLink, MemoryOutbox, answer_error, context_block, fields_for, recalled_texts,
                     render_memory_arguments, user_id)
from config.schema import MemoryConfig
from messages import (DeliverQueued, DeliveryEnded, ForgetSender, LinkDown, LinkOpened, ListTasks, RecallEnded,
                      RecallMemories, Respawn, SearchEnded, TaskChanged, TaskView)
from runtime import ChildContext, Journal, LinkSupervisor, SupervisedActor, describe
from vocabulary import ActorName, TaskState

OUTBOX_FILE = "memory-outbox.db"
CATCH_UP_LIMIT = 200     # completed tasks looked at after a restart of this actor
STORE = ActorName.STATE_STORE


class Memory(SupervisedActor):
    def __init__(self, context: ChildContext, spec: MemoryConfig, home: Path, journal: Journal):
        super().__init__(context)
        self.spec = spec
        self._home, self._journal = home, journal
        tools = [spec.search.tool, spec.add.tool] + ([spec.forget.tool] if spec.forget else [])
        self._links = LinkSupervisor(self, self._new_link, tools, spec.server.respawn_initial_s,
                                     spec.server.respawn_max_s, on_up=self._link_opened, on_down=self._link_down)
        self._outbox: MemoryOutbox | None = None
        self._delivering: int | None = None            # the outbox entry whose call is running
        self._forgets: dict[int, concurrent.futures.Future[str]] = {}   # forget entries someone awaits
        self._recalled = self._unavailable = self._delivered = 0

    # --- lifecycle ---------------------------------------------------------------------------------------
    def started(self) -> None:
        self._outbox = MemoryOutbox(self._home / OUTBOX_FILE)
        self._catch_up()
        self._links.open()

    def _catch_up(self) -> None:
        """Tasks that completed since the newest entry queued, while this actor restarted or the process was down
        (their TaskChanged found no one): queued too. A first start (an empty outbox) adds no older history."""
        since = self._outbox.newest()
        if not since:
            return
        for task in self.directory.ask(STORE, ListTasks(state=TaskState.COMPLETED, limit=CATCH_UP_LIMIT)):
            if task.updated_at >= since:
                self._remember(task, None)

    def release(self) -> None:
        for future in self._forgets.values():
            if not future.done():
                future.set_result("queued")      # it waits in the outbox for the next incarnation
        if self._links.link is not None:
            try:
                self.loop.submit(self._links.link.close()).result(timeout=10)
            except Exception:   # the loop may be stopping; the child then dies with its pipes
                pass
        if self._outbox is not None:
            self._outbox.close()

    def on_receive(self, message: Any) -> Any:
        match message:
            case RecallMemories(task=task, reply_to=reply_to):   self._recall(task, reply_to)
            case SearchEnded() as ended:                          self._searched(ended)
            case TaskChanged(task=task, previous=previous):       self._remember(task, previous)
            case ForgetSender(sender=sender):                     return self._forget(sender)
            case DeliveryEnded() as ended:                        self._delivery_ended(ended)
            case DeliverQueued():                                 self._deliver()
            case LinkOpened() | LinkDown() | Respawn():           self._links.handle(message)
            case _:                                               return self.unhandled(message)

    def snapshot(self) -> dict[str, Any]:
        return {"link": self._links.status, "transport": self.spec.server.transport,
                "tools": {"search": self.spec.search.tool, "add": self.spec.add.tool,
                          "forget": self.spec.forget.tool if self.spec.forget else None},
                "outbox_waiting": self._outbox.waiting() if self._outbox else 0, "recalled": self._recalled,
                "unavailable": self._unavailable, "delivered": self._delivered}

    # --- recall, before a task runs ------------------------------------------------------------------------
    def _recall(self, task: TaskView, reply_to: str) -> None:
        if not self._links.up:
            self._answer(reply_to, task.task_id, (), f"{self._links.status}")
            return
        self.loop.submit(self._search(task, reply_to, self._links.link, self._links.generation))

    async def _search(self, task: TaskView, reply_to: str, link: McpLink, generation: int) -> None:
        arguments = render_memory_arguments(self.spec.search.arguments, fields_for(task))
        texts: tuple[str, ...] = ()
        error, lost = None, False
        try:
            outcome = await link.call(self.spec.search.tool, arguments, self.spec.search_timeout_s)
            if outcome.timed_out:
                error = f"no answer within {self.spec.search_timeout_s:g}s (memory.search_timeout_s)"
            elif not outcome.ok or answer_error(outcome.text):
                error = f"{self.spec.search.tool} failed: {answer_error(outcome.text) or outcome.text}"[:300]
            else:
                texts = recalled_texts(outcome.text, self.spec.result_keys)
        except LinkLost as gone:
            error, lost = str(gone), True
        except Exception as fault:   # an unexpected client fault: this task runs without memory
            error = describe(fault)
        self.tell_self(SearchEnded(task.task_id, reply_to, texts, error, generation, lost))

    def _searched(self, ended: SearchEnded) -> None:
        if ended.link_lost:
            self._links.down(ended.link_generation, ended.error or "link lost")
        self._answer(ended.reply_to, ended.task_id, ended.texts, ended.error)

    def _answer(self, reply_to: str, task_id: int, texts: tuple[str, ...], error: str | None) -> None:
        if error is not None:
            self._unavailable += 1
            note = f"memory unavailable ({error.removeprefix('down: ')}): running without it"
            self.directory.tell(reply_to, RecallEnded(task_id, "", note, available=False))
            return
        self._recalled += 1
        context = context_block(texts, self.spec.recall_items, self.spec.recall_chars)
        given = context.count("\n- ")     # the memories that fit in recall_items and recall_chars
        note = (f"memory: {given} recalled ({len(context)} characters added to the task's context)" if context
                else "memory: nothing relevant recalled")
        self.directory.tell(reply_to, RecallEnded(task_id, context, note, available=True))

    # --- remember, after a task completes; forget ------------------------------------------------------------
    def _remember(self, task: TaskView, previous: str | None) -> None:
        if task.state != TaskState.COMPLETED or previous == TaskState.COMPLETED or not task.sender:
            return
        arguments = render_memory_arguments(self.spec.add.arguments, fields_for(task))
        if self._outbox.queue("add", task.sender, arguments, task.task_id) is not None:
            self._deliver()

    def _forget(self, sender: str) -> concurrent.futures.Future[str]:
        answer: concurrent.futures.Future[str] = concurrent.futures.Future()
        dropped = self._outbox.drop_adds(sender)
        self._journal.record("memory_forget", user_id=user_id(sender), dropped_from_outbox=dropped)
        if self.spec.forget is None:
            answer.set_result("unsupported")
            return answer
        fields = {"query": "", "user_id": user_id(sender), "sender": sender, "task_id": "", "request": "",
                  "result": "", "exchange": "", "messages": []}
        entry = self._outbox.queue("forget", sender, render_memory_arguments(self.spec.forget.arguments, fields))
        if self._links.up:
            self._forgets[entry] = answer
            self._deliver()
        else:
            answer.set_result("queued")
        return answer

    # --- the outbox --------------------------------------------------------------------------------------------
    def _deliver(self) -> None:
        """The oldest waiting entry to the server, one at a time (a forget must follow the adds before it)."""
        if self._delivering is not None or not self._links.up:
            return
        entry = self._outbox.next()
        if entry is None:
            return
        self._delivering = entry.entry_id
        tool = self.spec.add.tool if entry.kind == "add" else self.spec.forget.tool if self.spec.forget else ""
        self.loop.submit(self._call(entry.entry_id, tool, entry.arguments, self._links.link, self._links.generation))

    async def _call(self, entry_id: int, tool: str, arguments: dict[str, Any], link: McpLink, generation: int) -> None:
        error, lost = None, False
        try:
            if not tool:
                raise RuntimeError("no forget tool is configured (memory.forget)")
            outcome = await link.call(tool, arguments, self.spec.add_timeout_s)
            if not outcome.ok or answer_error(outcome.text):
                error = f"{tool}: {answer_error(outcome.text) or outcome.text}"[:300]
        except LinkLost as gone:
            error, lost = str(gone), True
        except Exception as fault:
            error = describe(fault)
        self.tell_self(DeliveryEnded(entry_id, error, generation, lost))

    def _delivery_ended(self, ended: DeliveryEnded) -> None:
        if ended.link_generation != self._links.generation:   # a call on a link since replaced: its entry was
            if ended.error is None:                             # queued again when the link went down
                self._outbox.delivered(ended.entry_id)
            return
        self._delivering = None
        waiting = self._forgets.pop(ended.entry_id, None)
        if ended.error is None:
            self._delivered += 1
            self._outbox.delivered(ended.entry_id)
            if waiting is not None:
                waiting.set_result("forgotten")
            self._deliver()
            return
        if waiting is not None:
            waiting.set_result("queued")
        if ended.link_lost:                                     # not the entry's fault: delivered again once the
            self._links.down(ended.link_generation, ended.error)   # link is back up, however often it drops
            return
        set_aside = self._outbox.failed(ended.entry_id, ended.error, self.spec.max_tries)
        self._journal.record("memory_delivery_failed", entry=ended.entry_id, error=ended.error, set_aside=set_aside)
        if set_aside:
            self._deliver()
        else:
            self.loop.tell_later(self.spec.retry_s, self.actor_ref, DeliverQueued())

    # --- the MCP link (supervised by self._links) ----------------------------------------------------------
    def _new_link(self) -> McpLink:
        return McpLink(self.spec.server, errlog=self._home / "logs" / "memory.stderr")

    def _link_opened(self, tools: tuple[str, ...]) -> None:
        self._links.healthy()
        self._journal.record("memory_up", waiting=self._outbox.waiting())
        self._links.watch()
        self._deliver()

    def _link_down(self, error: str) -> None:
        self._delivering = None    # a call in flight on the dead link reports link_lost; its entry stays queued
        self._journal.record("memory_down", error=error)

