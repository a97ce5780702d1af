"""The OpenClaw bridge: IM messages in, replies and news out, through `openclaw mcp serve`.

The orchestrator is an MCP client of OpenClaw's channel bridge (config `im.openclaw`). This actor
long-polls `events_wait(after_cursor, timeout_ms)` on the shared loop (each outcome comes back as an
`EventWaited`), gives every user message to the command interpreter (`surfaces/commands.py`) as from
the sender OpenClaw names (`telegram:4242`), and answers with `messages_send(session_key, text)`. Our
own replies echo back as `assistant` events: they are skipped, or the bridge would talk to itself.

News goes back to the conversation a task came from: the StateStore tells us every `TaskChanged`, and a
task from IM that completed or failed is reported to its sender's conversation (the sender → session key
map is kept in the store). Notices from SystemMode go to the senders they name, or, naming nobody, to
every sender seen within `im.recent_s`.

Exactly once, and durable:
- The bridge's event queue and cursors live in its process: a new process starts again at cursor 1 and
  queues only what happens while it runs. So the bridge process outlives a crash of this actor: the next
  incarnation adopts the open link and resumes after the cursor saved in the store.
- Each message is handled whole in one mailbox turn: interpreted (plain actor asks, as every actor
  makes), the cursor saved with the sender's conversation, the reply started on the loop (it completes
  even if this actor then crashes). A crash falls between two messages, never inside one.
- A new bridge process (the first start, or the old one died and is respawned with backoff) starts at
  cursor 0. What users wrote while no bridge process ran is in no queue (OpenClaw keeps it in the
  transcript, `messages_read`); this actor does not replay transcripts.
- News announced while this actor was restarting is made good in `started()`: IM tasks that ended after
  the last one reported are reported then.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import time
import uuid
from pathlib import Path
from typing import Any, Mapping

import mcp_types
from mcp.shared.exceptions import MCPError

from config.schema import ImConfig
from messages import (EventWaited, LinkDown, LinkOpened, ListTasks, LoadState, MessageSent, Notice, Respawn,
                      SaveState, TaskChanged, TaskView, WaitAgain)
from surfaces.commands import CommandInterpreter, allowed, task_news

from .journal import Journal
from .mcp_link import LinkLost, McpLink
from .supervised import ChildContext, SupervisedActor, describe
from .task_lifecycle import TaskState

STORE = "state_store"
NEEDED_TOOLS = frozenset({"events_wait", "messages_send"})
CATCH_UP_LIMIT = 200
# Bridge processes kept open across a crash of their actor, for its next incarnation:
# (the loop's id, the actor's name) → (link id, link).
KEPT_LINKS: dict[tuple[int, str], tuple[str, BridgeLink]] = {}


class BridgeCallFailed(Exception):
    """The bridge answered a call with an error, or not in time (the link itself is still open)."""


class BridgeLink(McpLink):
    """An McpLink whose calls answer the tool's structured content: the bridge puts its data there (and
    only a summary such as `event 3` in the text, which is all `McpLink.call` returns)."""

    async def call_json(self, tool: str, arguments: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        session = self._session
        if not self.is_open or session is None:
            raise LinkLost(f"{self._where()}: {self._lost_reason or 'link is not open'}")
        try:
            result = await session.call_tool(tool, arguments, read_timeout_seconds=timeout_s)
        except MCPError as error:
            closed = error.error.code == mcp_types.CONNECTION_CLOSED or error.error.message == "Session terminated"
            if closed:
                self._lose(error.error.message)
                raise LinkLost(f"{self._where()}: {error.error.message}") from error
            raise BridgeCallFailed(f"{tool}: {error.error.message}") from None
        if result.is_error:
            texts = [block.text for block in result.content if getattr(block, "type", "") == "text"]
            raise BridgeCallFailed(f"{tool}: {' '.join(texts) or 'error'}")
        return dict(result.structured_content or {})


def inbound_message(event: Mapping[str, Any]) -> tuple[str, str, str] | None:
    """(sender, session key, text) of a user's text message that has a delivery route; None for anything
    else (our own replies echoing back as `assistant`, approvals, messages without text or route).

    >>> inbound_message({"type": "message", "role": "user", "sessionKey": "agent:main:main", "text": "/status",
    ...                  "conversation": {"channel": "telegram", "to": "telegram:4242"}})
    ('telegram:4242', 'agent:main:main', '/status')
    """
    conversation = event.get("conversation") or {}
    channel, to, text, session_key = (conversation.get("channel"), conversation.get("to"), event.get("text"),
                                      event.get("sessionKey"))
    if event.get("type") != "message" or event.get("role") != "user" or not (channel and to and text and session_key):
        return None
    return (to if to.startswith(f"{channel}:") else f"{channel}:{to}"), session_key, text


def _message_key(event: Mapping[str, Any]) -> str | None:
    """The IM message's own identity: a message handled twice (a lost cursor save) makes one task."""
    message_id = event.get("messageId")
    return f"im:{event['sessionKey']}:{message_id}" if message_id else None


class OpenClawBridge(SupervisedActor):
    def __init__(self, context: ChildContext, im: ImConfig, executors: tuple[str, ...], models: bool,
                 journal: Journal, home: Path):
        super().__init__(context)
        self._im = im
        self._spec = im.openclaw
        self._journal = journal
        self._home = home
        self._interpreter = CommandInterpreter(self._ask, self.directory.tell, im, executors, models)
        self._state: dict[str, Any] = {"link": "", "cursor": 0, "senders": {}, "reported_until": 0.0}
        self._link: BridgeLink | None = None
        self._link_id = ""
        self._link_status = "starting"
        self._generation = 0
        self._failures = 0                    # consecutive: the respawn / re-poll backoff
        self._keep_link = False               # set by a crash: the next incarnation adopts the bridge process
        self._counts = {"handled": 0, "ignored": 0, "sent": 0, "send_failures": 0}

    # --- lifecycle ---------------------------------------------------------------------------------------------
    def started(self) -> None:
        self._state.update(self.directory.ask(STORE, LoadState(self.name)) or {})
        if not self._state["reported_until"]:       # the first start ever: no news of older tasks
            self._state["reported_until"] = time.time()
            self._save()
        kept = KEPT_LINKS.pop(self._kept_key, None)
        if kept is not None and kept[1].is_open and kept[0] == self._state["link"]:
            self._adopt(*kept)
        else:
            if kept is not None:
                self.loop.submit(kept[1].close())
            self._open_link()
        self._report_missed_news()

    def on_failure(self, exception_type: Any, exception_value: BaseException | None, traceback: Any) -> None:
        self._keep_link = True
        super().on_failure(exception_type, exception_value, traceback)

    def release(self) -> None:
        link = self._link
        if link is None:
            return
        if self._keep_link and link.is_open:
            KEPT_LINKS[self._kept_key] = (self._link_id, link)
            return
        try:
            self.loop.submit(link.close()).result(timeout=10)
        except Exception:                     # the loop may be stopping; the child then dies with its pipes
            pass

    def on_receive(self, message: Any) -> Any:
        match message:
            case EventWaited(generation=g) as waited if g == self._generation: self._event_waited(waited)
            case WaitAgain(generation=g) if g == self._generation:       self._wait_for_event()
            case LinkOpened(generation=g, tools=tools):                  self._link_opened(g, tools)
            case LinkDown(generation=g, error=error):                    self._link_down(g, error)
            case Respawn(generation=g) if g == self._generation:         self._open_link()
            case EventWaited() | WaitAgain() | Respawn():                pass   # news of a replaced link
            case TaskChanged(task=task):                                 self._task_changed(task)
            case Notice() as notice:                                     self._notice(notice)
            case MessageSent() as sent:                                  self._message_sent(sent)
            case _:                                                      return self.unhandled(message)

    def snapshot(self) -> dict[str, Any]:
        return {"link": self._link_status, "cursor": self._state["cursor"],
                "senders": sorted(self._state["senders"]), **self._counts}

    # --- inbound ---------------------------------------------------------------------------------------------
    def _wait_for_event(self) -> None:
        generation, link = self._generation, self._link
        arguments = {"after_cursor": self._state["cursor"], "timeout_ms": self._im.wait_ms}
        if self._im.session_key:
            arguments["session_key"] = self._im.session_key
        future = self.loop.submit(link.call_json("events_wait", arguments, self._im.wait_ms / 1000 + 10))
        future.add_done_callback(lambda f: self._tell_self(_outcome_of_wait(generation, f)))

    def _event_waited(self, waited: EventWaited) -> None:
        if waited.error is not None:          # the bridge answered with an error: poll again after a pause
            self._journal.record("openclaw_bridge", problem="events_wait failed", error=waited.error)
            self.loop.tell_later(self._backoff(), self.actor_ref, WaitAgain(self._generation))
            return
        self._failures = 0
        if waited.event is not None:
            self._handle(waited.event)
        self._wait_for_event()

    def _handle(self, event: Mapping[str, Any]) -> None:
        """One event, whole: interpret, save the cursor (and the sender's conversation), start the reply."""
        message = inbound_message(event)
        if message is not None:
            sender, session_key, text = message
            self._journal.record("im_message", route="openclaw", sender=sender, cursor=event["cursor"],
                                 text=text[:80])
            reply = asyncio.run(self._interpreter.handle(text, sender, idempotency_key=_message_key(event)))
            if allowed(sender, self._im.allow):
                self._state["senders"][sender] = {"session_key": session_key, "seen_at": time.time()}
            self._counts["handled"] += 1
        else:
            self._counts["ignored"] += 1
        self._state["cursor"] = event["cursor"]
        self._save()
        if message is not None:
            self._send(session_key, reply, "reply")

    async def _ask(self, name: str, message: Any, timeout_s: float = 10.0) -> Any:
        """The interpreter's asks: plain actor asks, run to completion in this actor's own thread."""
        return self.directory.ask(name, message, timeout_s)

    # --- outbound ---------------------------------------------------------------------------------------------
    def _task_changed(self, task: TaskView) -> None:
        if task.source == "im" and task.is_terminal and task.updated_at > self._state["reported_until"]:
            self._tell_news(task)

    def _tell_news(self, task: TaskView) -> None:
        news = task_news(task, self._im.locale)
        conversation = self._state["senders"].get(task.sender or "")
        if news is not None and conversation is not None:
            self._send(conversation["session_key"], news, "task")
        self._state["reported_until"] = max(self._state["reported_until"], task.updated_at)
        self._save()

    def _report_missed_news(self) -> None:
        """Tasks from IM that ended while this actor was not listening (a restart), oldest first."""
        ended = [task for state in (TaskState.COMPLETED, TaskState.FAILED)
                 for task in self.directory.ask(STORE, ListTasks(state=state, limit=CATCH_UP_LIMIT))
                 if task.source == "im" and task.updated_at > self._state["reported_until"]]
        for task in sorted(ended, key=lambda t: t.updated_at):
            self._tell_news(task)

    def _notice(self, notice: Notice) -> None:
        now = time.time()
        senders = notice.to or tuple(sender for sender, seen in self._state["senders"].items()
                                     if now - seen["seen_at"] <= self._im.recent_s)
        sessions = {self._state["senders"][s]["session_key"] for s in senders if s in self._state["senders"]}
        for session_key in sorted(sessions):   # one message per conversation, however many senders share it
            self._send(session_key, notice.text, "notice")

    def _send(self, session_key: str, text: str, what: str) -> None:
        """Start `messages_send` on the loop; its outcome comes back as `MessageSent`."""
        link = self._link
        if link is None or not link.is_open:
            self._message_sent(MessageSent(session_key, what, f"the bridge is {self._link_status}"))
            return
        future = self.loop.submit(link.call_json("messages_send", {"session_key": session_key, "text": text},
                                                 self._spec.call_timeout_s))
        future.add_done_callback(lambda f: self._tell_self(MessageSent(session_key, what, _error_of(f))))

    def _message_sent(self, sent: MessageSent) -> None:
        if sent.error is None:
            self._counts["sent"] += 1
            return
        self._counts["send_failures"] += 1
        self._journal.record("openclaw_bridge", problem=f"{sent.what} not delivered", session_key=sent.session_key,
                             error=sent.error)

    # --- the MCP link ------------------------------------------------------------------------------------------
    def _open_link(self) -> None:
        self._generation += 1
        generation = self._generation
        link = BridgeLink(self._spec, errlog=self._home / "logs" / f"{self.name}.stderr")
        self._link, self._link_id, self._link_status = link, uuid.uuid4().hex, "starting"

        def opened(future: concurrent.futures.Future[list[str]]) -> None:
            error = _error_of(future)
            self._tell_self(LinkDown(generation, error) if error else LinkOpened(generation, tuple(future.result())))
        self.loop.submit(link.open()).add_done_callback(opened)

    def _adopt(self, link_id: str, link: BridgeLink) -> None:
        """The bridge process the previous incarnation listened to: resume after the saved cursor."""
        self._generation += 1
        self._link, self._link_id, self._link_status = link, link_id, "up"
        self._journal.record("openclaw_bridge", action="resumed", cursor=self._state["cursor"])
        self._wait_for_event()

    def _link_opened(self, generation: int, tools: tuple[str, ...]) -> None:
        if generation != self._generation:
            return
        if missing := NEEDED_TOOLS - set(tools):
            self._link_down(generation, f"the server offers no {', '.join(sorted(missing))} "
                                        f"(it has: {', '.join(tools)})")
            return
        self._link_status = "up"
        self._state.update(link=self._link_id, cursor=0)   # a new bridge process: a new queue, from its start
        self._save()
        self._journal.record("openclaw_bridge", action="connected", tools=len(tools))
        self._wait_for_event()

    def _link_down(self, generation: int, error: str) -> None:
        if generation != self._generation or self._link_status.startswith("down"):
            return   # news of a link already replaced, or already being replaced
        self._link_status = f"down: {error}"
        self._journal.record("openclaw_bridge", action="down", error=error)
        self.loop.submit(self._link.close())
        self.loop.tell_later(self._backoff(), self.actor_ref, Respawn(generation))

    def _backoff(self) -> float:
        delay = min(self._spec.respawn_initial_s * 2 ** self._failures, self._spec.respawn_max_s)
        self._failures += 1
        return delay

    # --- plumbing ----------------------------------------------------------------------------------------------
    @property
    def _kept_key(self) -> tuple[int, str]:
        return id(self.loop), self.name

    def _save(self) -> None:
        self.directory.ask(STORE, SaveState(self.name, self._state))

    def _tell_self(self, message: Any) -> None:
        if self.actor_ref.is_alive():         # a crashed incarnation's calls report to nobody
            self.actor_ref.tell(message)


def _outcome_of_wait(generation: int, future: concurrent.futures.Future[dict[str, Any]]) -> Any:
    if future.cancelled():
        return LinkDown(generation, "the wait was cancelled")
    error = future.exception()
    if isinstance(error, LinkLost):
        return LinkDown(generation, str(error))
    if error is not None:
        return EventWaited(generation, error=describe(error))
    return EventWaited(generation, event=future.result().get("event"))


def _error_of(future: concurrent.futures.Future[Any]) -> str | None:
    if future.cancelled():
        return "cancelled"
    return None if future.exception() is None else describe(future.exception())
