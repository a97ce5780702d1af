"""The IM command interpreter: one for every route in (the OpenClaw bridge, our gateway's `command` tool,
and so `python supervisor.py send`).

    interpreter = CommandInterpreter(ask, tell, cfg.im, executors=("coder", "general"), models=True)
    await interpreter.handle("/task 12", sender="telegram:4242")
    # 'Task #12: completed\\nsummarise my inbox\\nkind general · executor general · tier P1 · attempts 1\\nResult: …'

The rules:
- The sender must match `im.allow` (`telegram:4242`, `cli:*`). Anyone else is refused for *everything*
  (`/help` and `/status` too: they tell a stranger what runs here), the refusal is logged (a system_event
  `im_refused`, which the StateStore also journals), and nothing is created: no executor is ever reached.
- A message starting with `/` is a command. Command names are ASCII and case-insensitive; full-width
  input from a Chinese keyboard (`／ｔａｓｋ　１２`) and Telegram's `/status@my_bot` work too. Any other text
  is a new task (source `im`, the sender recorded), answered with its number, or with the brainstem's
  reply while the cloud is down.
- `/retry` moves a failed or cancelled task back to `idle` and keeps its attempt count: attempts count
  every run (so `/task` and `/why` stay honest), a retry always gets one more run, and the automatic
  retries after an interruption are not replenished.
- Every reply comes from `texts/`, in `im.locale`.
"""
from __future__ import annotations

import contextvars
import fnmatch
import logging
import re
import time
import unicodedata
import uuid
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from clients import PERIOD_STARTS as PERIODS
from store import IllegalTransition
from vocabulary import ActorName, Mode, TaskState
from config.schema import ImConfig
from messages import (DESCRIPTION_LIMIT, MAX_TASK_ID, CreateTask, GetMode, GetTask, GetTaskHistory,
                      Introspect, ListTasks,
                      RecordSystemEvent, ReplyWhileDown, SumCosts, TaskView, Transition)
from routing.explain import latest_evidence, why_lines
from texts import say
import notifications
from messages.notify import GetNotifySetting

from .forget import forget
from .continue_task import USAGE as CONTINUE_USAGE, continue_task
from .notify import notify
from .status import system_status

log = logging.getLogger(__name__)

Ask = Callable[..., Awaitable[Any]]          # ask(actor_name, message, timeout_s=…) → the answer
Tell = Callable[[str, Any], Any]             # tell(actor_name, message)

STORE = ActorName.STATE_STORE
PERIOD_ALIASES = {"今天": "today", "今日": "today", "本週": "week", "本周": "week", "這週": "week", "这周": "week",
                  "本月": "month", "這個月": "month", "这个月": "month"}
LIST_LIMIT = 10
WHY_LIMIT = 15
ID_DIGITS = len(str(MAX_TASK_ID))             # checked before int(): Python refuses 4,300 digits and more
SHORT, LONG = 60, 300                        # characters of a description in a list / of a result or reason
_COMMAND = re.compile(r"/([A-Za-z]+)(?:@\S+)?(?:\s+(.*))?", re.DOTALL)
# The sender's notification setting while their message is handled (each handle() has its own context).
_SETTING: contextvars.ContextVar[notifications.NotifySetting | None] = contextvars.ContextVar("setting", default=None)


class BadArgument(Exception):
    """A command's argument is missing or wrong; `expected` is already in the reply's language."""

    def __init__(self, argument: str, expected: str):
        super().__init__(argument)
        self.argument, self.expected = argument, expected


@dataclass(frozen=True, slots=True)
class Command:
    usage: str                                # as /help shows it
    help_key: str                             # its one-line description in texts/
    run: Callable[[CommandInterpreter, str, str], Awaitable[str]]   # (interpreter, argument, sender) → reply


def parse(text: str) -> tuple[str | None, str]:
    """(command name, argument) for a command, (None, "") for plain text.

    >>> parse("／ＴＡＳＫ　１２"), parse("/status@omni_bot"), parse("整理會議紀錄")
    (('task', '12'), ('status', ''), (None, ''))
    """
    folded = unicodedata.normalize("NFKC", text).strip()
    if not folded.startswith("/"):
        return None, ""
    found = _COMMAND.fullmatch(folded)
    if found is None:
        return folded.split()[0], ""          # "/任務 3": an unknown command, named as written
    return found.group(1).lower(), (found.group(2) or "").strip()


def allowed(sender: str, allow: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(sender, pattern) for pattern in allow)


class CommandInterpreter:
    def __init__(self, ask: Ask, tell: Tell, im: ImConfig, executors: tuple[str, ...], models: bool,
                 dashboard_url: Callable[[], str] | None = None):
        self._ask = ask
        # The gateway's own interpreter knows the cost page's URL; others (the OpenClaw bridge) ask the gateway.
        self._dashboard_url = dashboard_url
        self._tell = tell
        self._im = im
        self._executors = executors
        self._models = models                 # is there a LiteLLMGuard (route, budget) to ask?

    async def handle(self, text: str, sender: str, idempotency_key: str | None = None) -> str:
        """The reply to one message from `sender`. `idempotency_key` names the message (its IM id): handled
        again, it makes no second task."""
        if not allowed(sender, self._im.allow):
            return self._refuse(text, sender)
        name, argument = parse(text) if text.strip() else ("help", "")
        command = COMMANDS.get(name or "")
        try:
            token = _SETTING.set(await self.notify_setting(sender))   # their language, what reaches them
        except Exception:                     # the store restarting: the configured setting stands
            log.exception("IM: no notification setting for %s", sender)
            token = _SETTING.set(notifications.resolve(self._im.notify, self._im.notify_senders, sender))
        try:
            return await self._handle(text, name, argument, command, sender, idempotency_key)
        finally:
            _SETTING.reset(token)

    async def notify_setting(self, sender: str) -> notifications.NotifySetting:
        """What reaches `sender`: what they set by /notify over config (notifications.resolve)."""
        stored = await self._ask(STORE, GetNotifySetting(sender))
        return notifications.resolve(self._im.notify, self._im.notify_senders, sender, stored)

    @staticmethod
    def bad_argument(argument: str, expected: str) -> BadArgument:
        """For commands in modules of their own, which the interpreter imports (so they cannot import it)."""
        return BadArgument(argument, expected)

    async def _handle(self, text: str, name: str | None, argument: str, command: Command | None, sender: str,
                      idempotency_key: str | None) -> str:
        if name is not None and command is None:
            return self._say("im_unknown_command", command=shorten(f"/{name.lstrip('/')}", SHORT))
        try:
            if command is None:
                return await self._new_task(text.strip(), sender, idempotency_key)
            return await command.run(self, argument, sender)
        except BadArgument as bad:
            key = "im_bad_argument" if bad.argument else "im_missing_argument"
            return self._say(key, command=f"/{name}", argument=shorten(bad.argument, SHORT), expected=bad.expected,
                             usage=command.usage)
        except Exception:                     # an actor restarting, a timeout: say so, never go silent,
            error_id = uuid.uuid4().hex[:8]   # but the exception's text is for the log, not for a user
            log.exception("IM message %r from %s failed (error %s)", shorten(text, SHORT), sender, error_id)
            return self._say("im_unavailable", error_id=error_id)

    # --- the commands ------------------------------------------------------------------------------------------
    async def _help(self, argument: str, sender: str) -> str:
        states = ", ".join(TaskState)
        lines = [self._say("im_help_header")]
        lines += [f"{command.usage} — {self._say(command.help_key, states=states)}" for command in COMMANDS.values()]
        return "\n".join(lines + [self._say("im_help_footer")])

    async def _status(self, argument: str, sender: str) -> str:
        status = await system_status(self._ask, self._executors)
        tasks = " · ".join(f"{count} {self._state(state)}" for state, count in status["tasks"].items() if count)
        return self._say("im_status", mode=status["mode"], route=status["route"] or self._say("im_none"),
                         tasks=tasks or self._say("im_none"),
                         executors=" · ".join(self._executor_line(name, snapshot["link"])
                                              for name, snapshot in status["executors"].items()),
                         actors=self._actors_line(status["actors"]))

    async def _tasks(self, argument: str, sender: str) -> str:
        state = argument.lower() or None
        if state is not None and state not in set(TaskState):
            raise BadArgument(argument, self._say("im_expect_one_of", options=", ".join(TaskState)))
        tasks = await self._ask(STORE, ListTasks(state=state, limit=LIST_LIMIT))
        suffix = "_state" if state else ""
        if not tasks:
            return self._say(f"im_tasks_none{suffix}", state=self._state(state))
        return "\n".join([self._say(f"im_tasks_header{suffix}", state=self._state(state))] + [
            self._say("im_task_line", task_id=t.task_id, state=self._state(t.state),
                      description=shorten(t.description, SHORT)) for t in tasks])

    async def _task(self, argument: str, sender: str) -> str:
        task = await self._known_task(argument)
        if isinstance(task, str):
            return task
        lines = [self._say("im_task_detail", task_id=task.task_id, state=self._state(task.state),
                           description=shorten(task.description, LONG), kind=task.kind or "-",
                           executor=task.executor or "-", tier=task.tier or "-", attempts=task.attempts)]
        if task.result:
            lines.append(self._say("im_task_result", result=shorten(task.result, LONG)))
        if task.error:
            lines.append(self._say("im_task_error", error=shorten(task.error, LONG)))
        if task.workspace:
            lines.append(self._say("im_task_workspace", path=task.workspace, branch=task.branch or "-"))
        if task.progress:
            lines.append(self._say("im_task_progress_line", progress=shorten(task.progress, LONG)))
        return "\n".join(lines)

    async def _why(self, argument: str, sender: str) -> str:
        task = await self._known_task(argument)
        if isinstance(task, str):
            return task
        history = await self._ask(STORE, GetTaskHistory(task.task_id))
        entries = [event for event in history if event["kind"] not in ("progress", "evidence")]
        lines = [self._say("im_why_header", task_id=task.task_id, state=self._state(task.state))]
        if evidence := latest_evidence(history):
            lines += why_lines(evidence, self._say)
        if len(entries) > WHY_LIMIT:
            lines.append(self._say("im_why_earlier", count=len(entries) - WHY_LIMIT))
        lines += [self._history_line(event) for event in entries[-WHY_LIMIT:]]
        if progress := sum(event["kind"] == "progress" for event in history):
            lines.append(self._say("im_why_progress", count=progress))
        return "\n".join(lines)

    async def _cancel(self, argument: str, sender: str) -> str:
        return await self._move(argument, TaskState.CANCELLED, f"cancelled through IM by {sender}",
                                "im_cancelled", "im_cannot_cancel")

    async def _retry(self, argument: str, sender: str) -> str:
        return await self._move(argument, TaskState.IDLE, f"retried through IM by {sender}", "im_retried",
                                "im_cannot_retry", expect=frozenset({TaskState.FAILED, TaskState.CANCELLED}))

    async def _cost(self, argument: str, sender: str) -> str:
        period = PERIOD_ALIASES.get(argument, argument.lower() or "today")
        if period not in PERIODS:
            raise BadArgument(argument, self._say("im_expect_one_of", options=", ".join(PERIODS)))
        tiers = await self._ask(STORE, SumCosts(PERIODS[period](time.time())))
        lines = [self._say("im_cost_header", period=self._say(f"period_{period}"))]
        lines += [self._say("im_cost_tier", tier=tier, usd=spent["usd"], calls=spent["calls"])
                  for tier, spent in sorted(tiers.items())] or [self._say("im_cost_none")]
        lines.append(self._say("im_cost_total", usd=sum(spent["usd"] for spent in tiers.values())))
        budget = (await self._ask(ActorName.LITELLM_GUARD, Introspect()))["budget"] if self._models else {}
        if budget:
            lines.append(self._say("im_cost_budget", today=budget["spent_today_usd"], daily=budget["daily_cap_usd"],
                                   month=budget["spent_month_usd"], monthly=budget["monthly_cap_usd"]))
        if url := await self._dashboard():   # never the token itself
            lines.append(self._say("im_cost_dashboard", url=url))
        return "\n".join(lines)

    async def _dashboard(self) -> str:
        if self._dashboard_url is not None:
            return self._dashboard_url()
        return (await self._ask(ActorName.GATEWAY, Introspect())).get("dashboard_url") or ""

    async def _mode(self, argument: str, sender: str) -> str:
        mode = (await self._ask(ActorName.SYSTEM_MODE, GetMode()))["mode"]
        return self._say("im_mode", mode=mode, meaning=self._say("im_sentence_gap").join(await self._mode_facts(mode)))

    async def _mode_facts(self, mode: str) -> list[str]:
        """What the mode means right now, each sentence read from the part it speaks of."""
        facts = [self._say(f"mode_route_{(await self._ask(ActorName.LITELLM_GUARD, Introspect()))['route']}")
                 if self._models else self._say("mode_no_models")]
        if mode == Mode.BRAINSTEM:
            model = (await self._ask(ActorName.BRAINSTEM, Introspect()))["model"]
            facts.append(self._say("mode_brainstem_model" if model == "loaded" else "mode_brainstem_fixed"))
        elif not self._models:
            facts.append(self._say("mode_cloud_unwatched"))
        else:
            health = await self._ask(ActorName.HEALTH_MONITOR, Introspect())
            facts.append(self._say("mode_cloud_unchecked") if health["pings"] == 0 else
                         self._say("mode_cloud_missing", count=health["consecutive_timeouts"])
                         if health["consecutive_timeouts"] else self._say("mode_cloud_up"))
        return facts

    async def _new_task(self, text: str, sender: str, idempotency_key: str | None) -> str:
        if len(text) > DESCRIPTION_LIMIT:
            return self._say("im_task_too_long", limit=DESCRIPTION_LIMIT, length=len(text))
        task = await self._ask(STORE, CreateTask(text, sender=sender, source="im", idempotency_key=idempotency_key))
        setting = _SETTING.get()
        if setting is not None and not setting.wants("created"):
            return ""                         # they chose not to hear of it (/notify off created)
        if (await self._ask(ActorName.SYSTEM_MODE, GetMode()))["mode"] == Mode.BRAINSTEM:   # as submit_task does
            note = await self._ask(ActorName.BRAINSTEM, ReplyWhileDown(text), timeout_s=30)
            return self._say("im_task_created_down", task_id=task.task_id, note=note)
        return self._say("im_task_created", task_id=task.task_id)

    # --- helpers -------------------------------------------------------------------------------------------------
    def _refuse(self, text: str, sender: str) -> str:
        log.warning("IM: refused %s", sender)
        self._tell(STORE, RecordSystemEvent("im_refused", f"refused {sender}: {shorten(text, SHORT)}",
                                            {"sender": sender, "text": shorten(text, LONG)}))
        return self._say("im_refused", sender=sender)

    async def _known_task(self, argument: str) -> TaskView | str:
        """The task numbered by `argument`, or the reply saying there is none. Raises BadArgument."""
        digits = argument.removeprefix("#")
        if not (digits.isascii() and digits.isdigit()):
            raise BadArgument(argument, self._say("im_expect_task_id"))
        if len(digits) > ID_DIGITS or not 0 < int(digits) <= MAX_TASK_ID:
            raise BadArgument(argument, self._say("im_expect_task_id_in_range", largest=MAX_TASK_ID))
        task = await self._ask(STORE, GetTask(int(digits)))
        return task if task is not None else self._say("im_no_task", task_id=int(digits))

    async def _move(self, argument: str, to: str, reason: str, done_key: str, refused_key: str,
                    expect: frozenset[str] | None = None) -> str:
        task = await self._known_task(argument)
        if isinstance(task, str):
            return task
        try:
            moved = await self._ask(STORE, Transition(task.task_id, to, reason, expect=expect))
        except IllegalTransition:
            return self._say(refused_key, task_id=task.task_id, state=self._state(task.state))
        return self._say(done_key, task_id=moved.task_id)

    def _executor_line(self, name: str, link: str) -> str:
        if link == "up":
            return self._say("im_executor_up", name=name)
        return self._say("im_executor_down", name=name, why=shorten(link.removeprefix("down: "), SHORT))

    def _actors_line(self, actors: list[dict[str, Any]]) -> str:
        down = [actor["name"] for actor in actors if not actor["alive"]]
        if not down:
            return self._say("im_actors_ok", count=len(actors))
        return self._say("im_actors_trouble", running=len(actors) - len(down), count=len(actors), names=", ".join(down))

    def _history_line(self, event: dict[str, Any]) -> str:
        clock, reason = _clock(event["at"]), shorten(event["reason"], LONG)
        if event["kind"] == "decision":
            return self._say("im_why_decision", clock=clock, reason=reason)
        if event["from"] is None:
            return self._say("im_why_created", clock=clock, reason=reason)
        return self._say("im_why_move", clock=clock, from_state=self._state(event["from"]),
                         to_state=self._state(event["to"]), reason=reason)

    def _state(self, state: str | None) -> str:
        return self._say(f"state_{state}") if state else ""

    def _say(self, key: str, locale: str | None = None, **params: Any) -> str:
        """In `locale`, else the sender's language (their notification setting), else `im.locale`."""
        setting = _SETTING.get()
        return say(locale or (setting.locale if setting else None) or self._im.locale, key, **params)


COMMANDS: dict[str, Command] = {
    "help": Command("/help", "im_help_help", CommandInterpreter._help),
    "status": Command("/status", "im_help_status", CommandInterpreter._status),
    "tasks": Command("/tasks [state]", "im_help_tasks", CommandInterpreter._tasks),
    "task": Command("/task ID", "im_help_task", CommandInterpreter._task),
    "why": Command("/why ID", "im_help_why", CommandInterpreter._why),
    "cancel": Command("/cancel ID", "im_help_cancel", CommandInterpreter._cancel),
    "retry": Command("/retry ID", "im_help_retry", CommandInterpreter._retry),
    "cost": Command("/cost [today|week|month]", "im_help_cost", CommandInterpreter._cost),
    "mode": Command("/mode", "im_help_mode", CommandInterpreter._mode),
    "forget": Command("/forget", "im_help_forget", forget),
    "continue": Command(CONTINUE_USAGE, "im_help_continue", continue_task),
    "notify": Command("/notify [on|off EVENTS · quiet HH:MM-HH:MM|off · failures on|off · language L · timezone TZ · "
                      "reset]", "im_help_notify", notify),
}


def task_news(task: TaskView, locale: str) -> str | None:
    """What the sender of an IM task hears when it ends (completed or failed; a cancel was answered already)."""
    where = "\n" + say(locale, "im_task_workspace", path=task.workspace, branch=task.branch or "-") \
        if task.workspace else ""
    if task.state == TaskState.COMPLETED:
        return say(locale, "im_task_completed", task_id=task.task_id, result=shorten(task.result or "", LONG)) + where
    if task.state == TaskState.FAILED:
        return say(locale, "im_task_failed", task_id=task.task_id, error=shorten(task.error or "", LONG))
    return None


def shorten(text: str, limit: int) -> str:
    """At most `limit` characters, cut with "…"; a short one (a list's line) on one line."""
    text = " ".join(text.split()) if limit <= SHORT else text.strip()
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _clock(at: float) -> str:
    same_day = time.localtime(at)[:3] == time.localtime()[:3]
    return time.strftime("%H:%M:%S" if same_day else "%m-%d %H:%M", time.localtime(at))
