"""The OpenClaw bridge: IM messages in, replies and news out, through `openclaw mcp serve`.

The orchestrator is an MCP client of OpenClaw's channel bridge (config `im.openclaw`). This actor
long-polls `events_wait(after_cursor, timeout_ms)` on the shared loop (each outcome comes back as an
`EventWaited`), gives every user message to the command interpreter (`commands/interpreter.py`) as from
the sender OpenClaw names (`telegram:4242`), and answers with `messages_send(session_key, text)`. Our
own replies echo back as `assistant` events: they are skipped, or the bridge would talk to itself.

Every message exactly once, none lost:
- A message's identity is OpenClaw's own (`<session key>:<message id>`, the same in a live event and in the
  transcript). The StateStore remembers every message handled (`im_inbound`), in the same transaction as
  the reply it queued, so a message seen again (a replayed queue, a transcript read twice) is passed over.
- The live queue lives in the bridge process and misses what happened while no bridge ran, or while it
  reconnected to a restarted OpenClaw gateway. So the transcripts are read too (`conversations_list`,
  `messages_read`): whenever a link opens, and every `im.catch_up_s`. A message found there that was not
  handled is handled then. On the very first start, older history is left alone.
- Tasks created from IM carry the message's identity as their idempotency key: a crash between creating
  the task and recording the message makes no second task.

Replies in order, to their own sender only:
- Everything sent (a reply, a task's news, a notice) is first queued in the store (`im_outbound`) and
  leaves one at a time per conversation, in the order queued: a task's receipt before its completion, and
  nothing queued is lost to a crash (it is sent when the actor or the link comes back).
- News goes to the conversation of the sender who created the task, and only if OpenClaw keeps that
  conversation for that sender alone: a session key shared by senders (OpenClaw's `session.dmScope: main`)
  would deliver to whoever wrote last, so messages arriving in one are refused (logged, not answered).
- News announced while this actor was restarting is made good in `started()`: IM tasks that ended after
  the last one reported are reported then.

What reaches whom (notifications.py, the one policy): every task's news, progress and notice goes through the
recipient's notification setting (`/notify`, config `im.notify`): events they switched off are dropped, news in
their quiet hours is held in the store (`im_held`) and released every `im.held_check_s` once they are over, and
each is said in their language. Progress reports (`TaskProgressed`, the executors' MCP progress) go to the task's
conversation at most once per `im.progress_interval_s`: one arriving sooner waits, replaced by any later one.
"""
from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from clients import BridgeLink, LinkLost
from commands import CommandInterpreter, allowed, shorten, task_news
import notifications as policy
from config.schema import ImConfig
from messages import (EventWaited, LinkDown, LinkOpened, ListTasks, LoadState, MessageSent, Notice, RecordSystemEvent,
                      Respawn, SaveState, TaskChanged, TaskView, WaitAgain)
from messages.im import (CatchUp, InboundMessage, MarkSent, PendingOutbound, QueueOutbound, RecordInbound, SeenInbound,
                         SendAgain, TranscriptsRead)
from messages.notify import CheckHeld, GetNotifySetting, HoldNotification, PendingHeld, ReleaseHeld, SendProgress
from messages.tasks import TaskProgressed
from texts import say
from runtime import ChildContext, Journal, LinkSupervisor, SupervisedActor, describe
from vocabulary import ActorName, TaskState

STORE = ActorName.STATE_STORE
NEEDED_TOOLS = frozenset({"events_wait", "messages_send", "conversations_list", "messages_read"})
CATCH_UP_LIMIT = 200                     # tasks' news made good after a restart; also messages_read's maximum
CONVERSATIONS_LIMIT = 500                # conversations_list's maximum
SEND_RETRY_S = 1.0
GATEWAY_LOST = "gateway not connected"   # what `openclaw mcp serve` answers while it has no gateway
CHANGE_SLACK_S = 10.0                    # a conversation changed this long before the last read is read again
RECHECK_LIMIT = 50                       # of a conversation's latest messages, read before sending one again
ENDED_KEPT = 1000                        # tasks remembered as ended: a late progress report of one is not sent
PROGRESS_LIMIT = 300                     # characters of a progress report in the chat
# Bridge processes kept open across a crash of their actor, for its next incarnation:
# (the loop's id, the actor's name) → (link id, link).
KEPT_LINKS: dict[tuple[int, str], tuple[str, BridgeLink]] = {}
# Sends on their way, which a crash of their actor does not stop: its next incarnation waits for them rather
# than sending them again. (the loop's id, the actor's name, outbound id) → the call.
IN_FLIGHT: dict[tuple[int, str, int], concurrent.futures.Future[Any]] = {}


def inbound_message(event: Mapping[str, Any]) -> InboundMessage | None:
    """A user's text message with a delivery route, from a live event; None for anything else (our own replies
    echoing back as `assistant`, approvals, messages without text or route).

    >>> inbound_message({"type": "message", "role": "user", "sessionKey": "agent:inbox:telegram:direct:4242",
    ...                  "messageId": "m1", "text": "/status", "raw": {"message": {"timestamp": 1796163941000}},
    ...                  "conversation": {"channel": "telegram", "to": "telegram:4242"}}).sender
    'telegram:4242'
    """
    conversation = event.get("conversation") or {}
    if event.get("type") != "message":
        return None
    raw = (event.get("raw") or {}).get("message") or {}
    return _user_message(event.get("sessionKey"), conversation, event.get("messageId"), event.get("role"),
                         event.get("text"), raw)


def transcript_messages(conversation: Mapping[str, Any], messages: list[Mapping[str, Any]]) -> list[InboundMessage]:
    """The user messages of one conversation's transcript (`messages_read`), as the live events name them."""
    found = []
    for message in messages:
        meta = message.get("__openclaw") or {}
        inbound = _user_message(conversation.get("sessionKey"), conversation, meta.get("id") or message.get("id"),
                                message.get("role"), _text_of(message.get("content")), message)
        if inbound is not None:
            found.append(inbound)
    return found


def _user_message(session_key: Any, conversation: Mapping[str, Any], message_id: Any, role: Any, text: Any,
                  raw: Mapping[str, Any]) -> InboundMessage | None:
    channel, to = conversation.get("channel"), conversation.get("to")
    if role != "user" or not (channel and to and text and session_key and message_id):
        return None
    sender = to if to.startswith(f"{channel}:") else f"{channel}:{to}"
    return InboundMessage(f"{session_key}:{message_id}", session_key, sender, text, _written_at(raw) or time.time())


def _text_of(content: Any) -> str | None:
    if isinstance(content, str):
        return content
    if isinstance(content, list):   # content blocks
        return "".join(block.get("text", "") for block in content if isinstance(block, Mapping)) or None
    return None


@dataclass(slots=True)
class Outgoing:
    """One queued message to a conversation; `uncertain`: it may have been delivered already (a failed call, or a
    crash before its delivery was recorded), so the transcript is read before it is sent again."""

    outbound_id: int
    text: str
    created_at: float
    uncertain: bool = False


async def _deliver(link: BridgeLink, session_key: str, outgoing: Outgoing, timeout_s: float) -> None:
    async def deliver() -> None:
        if outgoing.uncertain and await _in_transcript(link, session_key, outgoing, timeout_s):
            return
        await link.call_json("messages_send", {"session_key": session_key, "text": outgoing.text}, timeout_s)
    # a hard end of its own: a call on a link torn down under it must not hold the conversation's queue forever
    await asyncio.wait_for(deliver(), 2 * timeout_s + 5)


async def _in_transcript(link: BridgeLink, session_key: str, outgoing: Outgoing, timeout_s: float) -> bool:
    """Did OpenClaw deliver it? Our sends are mirrored into the conversation's transcript as `assistant`."""
    transcript = await link.call_json("messages_read", {"session_key": session_key, "limit": RECHECK_LIMIT},
                                      timeout_s)
    return any(message.get("role") == "assistant" and _text_of(message.get("content")) == outgoing.text
               and _written_at(message) >= outgoing.created_at - 1 for message in transcript.get("messages", []))


def _written_at(message: Mapping[str, Any]) -> float:
    meta = message.get("__openclaw") or {}
    return (meta.get("recordTimestampMs") or message.get("timestamp") or 0) / 1000


def own_session(sender: str, session_key: str) -> bool:
    """Does OpenClaw keep `session_key` for this sender's conversation alone? With `session.dmScope: main`
    every direct message shares `agent:<agent>:main`, and a reply there reaches whoever wrote last.

    >>> (own_session("telegram:4242", "agent:inbox:telegram:direct:4242"),
    ...  own_session("telegram:4242", "agent:main:main"))
    (True, False)
    """
    peer = sender.split(":", 1)[-1]
    return re.search(rf":(?:direct|group|channel):{re.escape(peer)}(?::|$)", session_key) is not None


class OpenClawBridge(SupervisedActor):
    def __init__(self, context: ChildContext, im: ImConfig, executors: tuple[str, ...], models: bool,
                 journal: Journal, home: Path):
        super().__init__(context)
        self._im = im
        self._spec = im.openclaw
        self._journal = journal
        self._home = home
        self._interpreter = CommandInterpreter(self._ask, self.directory.tell, im, executors, models)
        self._state: dict[str, Any] = {"link": "", "cursor": 0, "senders": {}, "reported_until": 0.0,
                                       "inbox_since": 0.0, "caught_up_to": 0.0}
        self._links = LinkSupervisor(self, self._new_link, NEEDED_TOOLS, self._spec.respawn_initial_s,
                                     self._spec.respawn_max_s, on_up=self._link_opened, on_down=self._link_down)
        self._link_id = ""                    # names the bridge process, across this actor's restarts
        self._gateway_lost_at: float | None = None
        self._keep_link = False               # set by a crash: the next incarnation adopts the bridge process
        self._counts = {"handled": 0, "caught_up": 0, "refused_shared": 0, "ignored": 0, "sent": 0,
                        "send_failures": 0}
        self._outbox: dict[str, collections.deque[Outgoing]] = {}   # session key → what waits to go there
        self._sending: set[str] = set()       # conversations with a message on its way: one at a time each
        self._problem: str | None = None      # what an operator must fix in OpenClaw's config
        self._held_check_due = False          # a CheckHeld is on its way (only while news is held)
        self._progress: dict[int, dict[str, Any]] = {}   # task → {"sent_at", "latest" (waiting), "due" (timer set)}
        self._ended: collections.OrderedDict[int, None] = collections.OrderedDict()
        self._counts.update(held=0, released=0, dropped=0, progress_sent=0)

    # --- lifecycle ---------------------------------------------------------------------------------------------
    def started(self) -> None:
        self._state.update(self.directory.ask(STORE, LoadState(self.name)) or {})
        now = time.time()
        if not self._state["reported_until"]:       # the first start ever: no news of older tasks
            self._state["reported_until"] = now
        if not self._state["inbox_since"]:          # nor answers to older messages
            self._state["inbox_since"] = self._state["caught_up_to"] = now
        self._save()
        for outbound_id, session_key, text, created_at in self.directory.ask(STORE, PendingOutbound()):
            # sent or not? A crash may have come between the delivery and its record: OpenClaw's transcript says
            self._outbox.setdefault(session_key, collections.deque()).append(
                Outgoing(outbound_id, text, created_at, uncertain=True))
            if (sending := IN_FLIGHT.get((*self._kept_key, outbound_id))) is not None:   # the last incarnation's
                self._sending.add(session_key)
                self._await_sent(outbound_id, session_key, sending)
        kept = KEPT_LINKS.pop(self._kept_key, None)
        if kept is not None and kept[1].is_open and kept[0] == self._state["link"]:
            self._adopt(*kept)
        else:
            if kept is not None:
                self.loop.submit(kept[1].close())
            self._links.open()
        self._report_missed_news()
        self._check_held()

    def on_failure(self, exception_type: Any, exception_value: BaseException | None, traceback: Any) -> None:
        self._keep_link = True
        super().on_failure(exception_type, exception_value, traceback)

    def release(self) -> None:
        link = self._links.link
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
            case LinkOpened() | LinkDown() | Respawn():                  self._links.handle(message)
            case EventWaited(generation=g) as waited if g == self._links.generation: self._event_waited(waited)
            case WaitAgain(generation=g) if g == self._links.generation: self._wait_for_event()
            case EventWaited() | WaitAgain():                            pass   # news of a replaced link
            case CatchUp(generation=g) if g == self._links.generation:   self._catch_up()
            case TranscriptsRead(generation=g) as read if g == self._links.generation: self._transcripts_read(read)
            case CatchUp() | TranscriptsRead():                          pass
            case TaskChanged(task=task):                                 self._task_changed(task)
            case Notice() as notice:                                     self._notice(notice)
            case MessageSent() as sent:                                  self._message_sent(sent)
            case SendAgain(session_key=session_key):                     self._pump(session_key)
            case TaskProgressed(task=task):                              self._progressed(task)
            case SendProgress(task_id=task_id):                          self._send_progress(task_id)
            case CheckHeld():                                            self._held_check_ended()
            case _:                                                      return self.unhandled(message)

    def snapshot(self) -> dict[str, Any]:
        return {"link": self._links.status, "cursor": self._state["cursor"],
                "senders": sorted(self._state["senders"]), "unsent": sum(map(len, self._outbox.values())),
                "problem": self._problem,
                **self._counts}

    # --- inbound ---------------------------------------------------------------------------------------------
    def _wait_for_event(self) -> None:
        generation, link = self._links.generation, self._links.link
        arguments = {"after_cursor": self._state["cursor"], "timeout_ms": self._im.wait_ms}
        if self._im.session_key:
            arguments["session_key"] = self._im.session_key
        future = self.loop.submit(link.call_json("events_wait", arguments, self._im.wait_ms / 1000 + 10))
        future.add_done_callback(lambda f: self.tell_self(_outcome_of_wait(generation, f)))

    def _event_waited(self, waited: EventWaited) -> None:
        if waited.error is not None:          # the bridge answered with an error: poll again after a pause
            self._journal.record("openclaw_bridge", problem="events_wait failed", error=waited.error)
            if self._replace_if_gateway_lost(waited.error):
                return
            self.loop.tell_later(self._links.backoff(), self.actor_ref, WaitAgain(self._links.generation))
            return
        self._links.healthy()
        if waited.event is not None:
            self._handle(waited.event)
        self._wait_for_event()

    def _replace_if_gateway_lost(self, error: str | None) -> bool:
        """Note how a bridge call went (`error` None: it worked); True when the link is being replaced.

        A bridge process that has lost OpenClaw's gateway (restarted, say) reconnects on its own, but backs off to
        30 s between tries: after `im.gateway_lost_s` of calls failing so, a fresh process, which connects at
        once, is quicker."""
        if error is None or GATEWAY_LOST not in error:
            self._gateway_lost_at = None
            return False
        now = time.monotonic()
        self._gateway_lost_at = self._gateway_lost_at or now
        if now - self._gateway_lost_at < self._im.gateway_lost_s:
            return False
        self._gateway_lost_at = None
        self._links.replace(f"the bridge lost OpenClaw's gateway for {self._im.gateway_lost_s:g} s: "
                            "a fresh bridge process")
        return True

    def _handle(self, event: Mapping[str, Any]) -> None:
        message = inbound_message(event)
        if message is None:
            self._counts["ignored"] += 1
        elif not self.directory.ask(STORE, SeenInbound((message.key,))):
            self._handle_message(message)
        self._state["cursor"] = event["cursor"]
        self._save()

    def _handle_message(self, message: InboundMessage) -> None:
        """One message, whole: interpret it, then in one transaction remember it and queue the reply."""
        self._journal.record("im_message", route="openclaw", sender=message.sender, key=message.key,
                             text=message.text[:80])
        if not own_session(message.sender, message.session_key):
            self._refuse_shared(message)
            return
        reply = asyncio.run(self._interpreter.handle(message.text, message.sender,
                                                     idempotency_key=f"im:{message.key}"))
        if allowed(message.sender, self._im.allow):
            self._state["senders"][message.sender] = {"session_key": message.session_key, "seen_at": time.time()}
        try:
            outbound_id = self.directory.ask(STORE, RecordInbound(message, reply))
        except KeyError:                      # handled meanwhile (a live event and the transcript at once)
            return
        self._counts["handled"] += 1
        self._enqueue(message.session_key, outbound_id, reply)

    def _refuse_shared(self, message: InboundMessage) -> None:
        """A conversation OpenClaw shares between senders: an answer there could reach someone else."""
        self._counts["refused_shared"] += 1
        self._problem = (f"refusing conversation {message.session_key}: OpenClaw shares it between senders (set "
                         "session.dmScope to per-channel-peer in OpenClaw's config)")
        self.directory.tell(STORE, RecordSystemEvent("im_shared_session", f"not answered: {message.sender} wrote in "
                                                     f"{message.session_key}, a conversation OpenClaw shares",
                                                     {"sender": message.sender, "session_key": message.session_key}))
        self.directory.ask(STORE, RecordInbound(message, None))

    # --- catching up from the transcripts ------------------------------------------------------------------------
    def _catch_up(self) -> None:
        """Read every conversation's recent transcript on the loop; the user messages come back as TranscriptsRead."""
        generation, link = self._links.generation, self._links.link
        since = self._state["caught_up_to"] - CHANGE_SLACK_S

        async def read() -> TranscriptsRead:
            listed = await link.call_json("conversations_list", {"limit": CONVERSATIONS_LIMIT},
                                          self._spec.call_timeout_s)
            found: list[InboundMessage] = []
            newest = 0.0
            for conversation in listed.get("conversations", []):
                changed = (conversation.get("updatedAt") or 0) / 1000 or time.time()   # unknown: read it
                if changed < since or (self._im.session_key and conversation.get("sessionKey") != self._im.session_key):
                    continue                  # nothing new there since the last read
                transcript = await link.call_json("messages_read", {"session_key": conversation["sessionKey"],
                                                                    "limit": CATCH_UP_LIMIT}, self._spec.call_timeout_s)
                found += transcript_messages(conversation, transcript.get("messages", []))
                newest = max(newest, changed)
            return TranscriptsRead(generation, tuple(found), newest_change=newest)

        def done(future: concurrent.futures.Future[TranscriptsRead]) -> None:
            error = _error_of(future)
            self.tell_self(TranscriptsRead(generation, error=error) if error else future.result())
        self.loop.submit(read()).add_done_callback(done)

    def _transcripts_read(self, read: TranscriptsRead) -> None:
        self.loop.tell_later(self._im.catch_up_s, self.actor_ref, CatchUp(self._links.generation))
        if read.error is not None:
            self._journal.record("openclaw_bridge", problem="catch-up failed", error=read.error)
            self._replace_if_gateway_lost(read.error)
            return
        self._replace_if_gateway_lost(None)
        self._state["caught_up_to"] = max(self._state["caught_up_to"], read.newest_change)
        fresh = [message for message in read.messages if message.written_at >= self._state["inbox_since"]]
        seen = self.directory.ask(STORE, SeenInbound(tuple(message.key for message in fresh))) if fresh else set()
        for message in sorted(fresh, key=lambda m: m.written_at):
            if message.key not in seen:
                self._counts["caught_up"] += 1
                self._handle_message(message)
        self._save()

    async def _ask(self, name: str, message: Any, timeout_s: float = 10.0) -> Any:
        """The interpreter's asks: plain actor asks, run to completion in this actor's own thread."""
        return self.directory.ask(name, message, timeout_s)

    # --- outbound ---------------------------------------------------------------------------------------------
    def _task_changed(self, task: TaskView) -> None:
        if task.is_terminal:
            self._progress.pop(task.task_id, None)   # its outcome is the news now: a waiting report is stale
            self._ended[task.task_id] = None
            while len(self._ended) > ENDED_KEPT:
                self._ended.popitem(last=False)
        if task.source == "im" and task.is_terminal and task.updated_at > self._state["reported_until"]:
            self._tell_news(task)

    def _tell_news(self, task: TaskView) -> None:
        if task.state in (TaskState.COMPLETED, TaskState.FAILED) and task.sender:
            self._notify(task.sender, str(task.state), lambda locale: task_news(task, locale), "task")
        self._state["reported_until"] = max(self._state["reported_until"], task.updated_at)
        self._save()

    # --- the policy: what reaches a sender, when, in which language ------------------------------------------
    def _setting(self, sender: str) -> policy.NotifySetting:
        stored = self.directory.ask(STORE, GetNotifySetting(sender))
        return policy.resolve(self._im.notify, self._im.notify_senders, sender, stored)

    def _conversation(self, sender: str) -> str | None:
        conversation = self._state["senders"].get(sender)
        if conversation is None or not own_session(sender, conversation["session_key"]):
            return None
        return conversation["session_key"]

    def _notify(self, sender: str, event: str, render: Any, what: str, share: float | None = None) -> None:
        """`render(locale)` → the text. Sent, held for the end of the sender's quiet hours, or dropped."""
        session_key = self._conversation(sender)
        if session_key is None:
            return
        setting = self._setting(sender)
        verdict = policy.decide(setting, event, time.time(), share)
        if verdict == "drop":
            self._counts["dropped"] += 1
            return
        text = render(setting.locale or self._im.locale)
        if verdict == "hold":
            self.directory.ask(STORE, HoldNotification(sender, event, text))
            self._counts["held"] += 1
            self._check_held_later()
            return
        self._queue(session_key, text, what)

    def _check_held(self) -> None:
        """Release held news of senders whose quiet hours are over (or who changed them), oldest first; while
        some stays held, look again every `im.held_check_s` (and not at all while none is: no idle work)."""
        settings: dict[str, policy.NotifySetting] = {}
        now = time.time()
        still_held = False
        for held_id, sender, _event, text, _held_at in self.directory.ask(STORE, PendingHeld()):
            setting = settings.get(sender) or settings.setdefault(sender, self._setting(sender))
            session_key = self._conversation(sender)
            if session_key is None or policy.in_quiet_hours(setting, now):
                still_held = True
                continue
            outbound_id = self.directory.ask(STORE, ReleaseHeld(held_id, session_key))
            if outbound_id is not None:
                self._counts["released"] += 1
                self._enqueue(session_key, outbound_id, text)
        if still_held:
            self._check_held_later()

    def _check_held_later(self) -> None:
        if not self._held_check_due:
            self._held_check_due = True
            self.loop.tell_later(self._im.held_check_s, self.actor_ref, CheckHeld())

    def _held_check_ended(self) -> None:
        self._held_check_due = False
        self._check_held()

    def _progressed(self, task: TaskView) -> None:
        """A progress report: sent now, or, within `im.progress_interval_s` of the last, when that has passed
        (the latest report then)."""
        if task.source != "im" or not task.sender or task.task_id in self._ended:
            return
        pace = self._progress.setdefault(task.task_id, {"sent_at": None, "latest": None, "due": False})
        pace["latest"] = task
        delay = policy.progress_delay(pace["sent_at"], time.monotonic(), self._im.progress_interval_s)
        if delay == 0:
            self._send_progress(task.task_id)
        elif not pace["due"]:
            pace["due"] = True
            self.loop.tell_later(delay, self.actor_ref, SendProgress(task.task_id))

    def _send_progress(self, task_id: int) -> None:
        pace = self._progress.get(task_id)
        if pace is None or pace["latest"] is None:
            return                            # ended meanwhile, or nothing new since the last
        task, pace["latest"], pace["due"], pace["sent_at"] = pace["latest"], None, False, time.monotonic()
        self._counts["progress_sent"] += 1
        self._notify(task.sender, "progress", lambda locale: say(
            locale, "im_task_progress", task_id=task.task_id, progress=shorten(task.progress or "", PROGRESS_LIMIT)),
            "progress")

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
        share = dict(notice.params).get("share")       # a budget warning's, in percent
        for sender in sorted(set(senders)):
            self._notify(sender, policy.event_of_notice(notice.key), lambda locale: self._notice_text(notice, locale),
                         "notice", float(share) / 100 if share is not None else None)

    def _notice_text(self, notice: Notice, locale: str) -> str:
        """The notice in `locale`: as it came when that is the configured language (the local model's wording
        too), else said again from its key and parameters."""
        if locale == self._im.locale:
            return notice.text
        try:
            return say(locale, notice.key, **dict(notice.params))
        except (KeyError, IndexError):        # a notice whose parameters did not come with it
            return notice.text

    # --- the outbox: durable, one message at a time per conversation, in order -----------------------------------
    def _queue(self, session_key: str, text: str, what: str) -> None:
        self._enqueue(session_key, self.directory.ask(STORE, QueueOutbound(session_key, text, what)), text)

    def _enqueue(self, session_key: str, outbound_id: int | None, text: str | None) -> None:
        if outbound_id is not None and text is not None:
            self._outbox.setdefault(session_key, collections.deque()).append(Outgoing(outbound_id, text, time.time()))
            self._pump(session_key)

    def _pump(self, session_key: str) -> None:
        """Send the conversation's oldest queued message, unless one is already on its way or the link is down."""
        queued, link = self._outbox.get(session_key), self._links.link
        if not queued or session_key in self._sending or link is None or not self._links.up:
            return
        outgoing, outbound_id = queued[0], queued[0].outbound_id
        self._sending.add(session_key)
        future = self.loop.submit(_deliver(link, session_key, outgoing, self._spec.call_timeout_s))
        key, directory = (*self._kept_key, outbound_id), self.directory
        IN_FLIGHT[key] = future

        def sent(done: concurrent.futures.Future[Any]) -> None:   # on the loop, whether this incarnation lives or not
            IN_FLIGHT.pop(key, None)
            if _error_of(done) is None:
                directory.tell(STORE, MarkSent(outbound_id))
        future.add_done_callback(sent)
        self._await_sent(outbound_id, session_key, future)

    def _await_sent(self, outbound_id: int, session_key: str, future: concurrent.futures.Future[Any]) -> None:
        future.add_done_callback(lambda f: self.tell_self(MessageSent(outbound_id, session_key, _error_of(f))))

    def _pump_all(self) -> None:
        for session_key in list(self._outbox):
            self._pump(session_key)

    def _forget_sends_in_flight(self) -> None:
        """A new link: what was on its way over the old one may or may not have arrived; send it again, checked."""
        for session_key in self._sending:
            self._outbox[session_key][0].uncertain = True
        self._sending.clear()

    def _message_sent(self, sent: MessageSent) -> None:
        queued = self._outbox.get(sent.session_key)
        if not queued or queued[0].outbound_id != sent.outbound_id:
            return                            # the outcome of a send that a new link has replaced
        self._sending.discard(sent.session_key)
        if sent.error is not None:            # stays first in line: sent again after a pause, or when the link is back
            if queued and queued[0].outbound_id == sent.outbound_id:
                queued[0].uncertain = True    # it may have reached OpenClaw before the call failed
            self._counts["send_failures"] += 1
            self._journal.record("openclaw_bridge", problem="not delivered", session_key=sent.session_key,
                                 error=sent.error)
            if self._replace_if_gateway_lost(sent.error):
                return                        # the new link sends it again
            self.loop.tell_later(SEND_RETRY_S, self.actor_ref, SendAgain(sent.session_key))
            return
        self._counts["sent"] += 1
        self._replace_if_gateway_lost(None)
        if queued and queued[0].outbound_id == sent.outbound_id:
            queued.popleft()
        if not queued:
            self._outbox.pop(sent.session_key, None)
        self._pump(sent.session_key)

    # --- the MCP link ------------------------------------------------------------------------------------------
    def _new_link(self) -> BridgeLink:
        self._link_id = uuid.uuid4().hex
        return BridgeLink(self._spec, errlog=self._home / "logs" / f"{self.name}.stderr")

    def _adopt(self, link_id: str, link: BridgeLink) -> None:
        """The bridge process the previous incarnation listened to: resume after the saved cursor."""
        self._link_id = link_id
        self._links.adopt(link)
        self._journal.record("openclaw_bridge", action="resumed", cursor=self._state["cursor"])
        self._wait_for_event()
        self._catch_up()
        self._pump_all()

    def _link_opened(self, tools: tuple[str, ...]) -> None:
        self._state.update(link=self._link_id, cursor=0)   # a new bridge process: a new queue, from its start
        self._save()
        self._journal.record("openclaw_bridge", action="connected", tools=len(tools))
        self._wait_for_event()
        self._catch_up()                      # what was written while no bridge process ran
        self._forget_sends_in_flight()
        self._pump_all()

    def _link_down(self, error: str) -> None:
        self._journal.record("openclaw_bridge", action="down", error=error)

    # --- plumbing ----------------------------------------------------------------------------------------------
    @property
    def _kept_key(self) -> tuple[int, str]:
        return id(self.loop), self.name

    def _save(self) -> None:
        self.directory.ask(STORE, SaveState(self.name, self._state))



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

