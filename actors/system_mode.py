"""SystemMode owns the system's mode and the LiteLLM repair flow.

The mode follows from two facts: the cloud is down (`CloudDown`, from the HealthMonitor) → `brainstem`;
else LiteLLM is down (`LiteLLMDown`, from the guard) → `degraded`; else `normal`. Every change is
persisted (a `system_event` row, so a restart after a SIGKILL comes back in brainstem mode) and told
to the actors that act on it (`ModeChanged`).

On `LiteLLMDown` (the guard has already switched to direct calls): mode `degraded`, the user is told
once, and a task of kind `repair` goes to the coding executor with a prompt that carries the proxy's
last log lines, its health URL and its restart command. The guard's good probes decide when the proxy
is back (`LiteLLMUp` → mode `normal`, user told), whether or not the repair task has ended yet: the
restart command brings the proxy up before the task reports, and a proxy brought back by anyone else
counts as well. When the task ends with the proxy still down, the guard's probes have `verify_s` to see
it back; if they do not, the user is told, the system stays on direct calls, and another repair follows
with backoff — never two at once, at most `max_per_hour`.

(The Erlang-style Supervisor stays generic; the mode and its flows live in this actor of their own.)
"""
from __future__ import annotations

import time
from collections import deque
from pathlib import Path
from typing import Any

from clients import log_tail
from config import LiteLLMConfig, RepairConfig
from messages import (CloudDown, CloudUp, CreateTask, GetMode, Introspect, LastSystemEvent, LiteLLMDown, LiteLLMUp,
                      ModeChanged, Notice, RecordSystemEvent, RepairDue, TaskChanged, VerifyRepair)
from runtime import ChildContext, Journal, SupervisedActor
from texts import say
from vocabulary import ActorName, MODE_LISTENERS, Mode, NOTICE_LISTENERS

STORE = ActorName.STATE_STORE
HOUR_S = 3600.0


class SystemMode(SupervisedActor):
    def __init__(self, context: ChildContext, repair: RepairConfig, litellm: LiteLLMConfig | None, locale: str,
                 journal: Journal, home: Path):
        super().__init__(context)
        self._repair = repair
        self._litellm = litellm
        self._locale = locale
        self._journal = journal
        self._home = home
        self.mode = Mode.NORMAL
        self._proxy_down = self._cloud_down = False
        self._down_reason = ""
        self._repair_task: int | None = None
        self._repairs: deque[float] = deque()
        self._repair_due = False
        self._notices: deque[dict[str, Any]] = deque(maxlen=50)

    def started(self) -> None:
        last = self.directory.ask(STORE, LastSystemEvent("mode"))
        if last and last["data"].get("mode") == Mode.BRAINSTEM:   # the process died in brainstem mode
            self._cloud_down = True
            self._update_mode("still offline after a restart: staying in brainstem mode")
        if self.context.incarnation > 0 and self._litellm is not None:   # a restart: the guard knows the route
            if self.directory.ask(ActorName.LITELLM_GUARD, Introspect())["route"] == "direct":
                self._proxy_down, self._down_reason = True, "found on direct calls after a restart"
                self._update_mode(self._down_reason)
                self._schedule_repair(0)

    def on_receive(self, message: Any) -> Any:
        match message:
            case LiteLLMDown(reason=reason):                       self._litellm_down(reason)
            case LiteLLMUp():                                      self._litellm_up()
            case CloudDown(reason=reason):                         self._cloud(False, reason)
            case CloudUp(reason=reason):                           self._cloud(True, reason)
            case TaskChanged(task=task) if task.task_id == self._repair_task and task.is_terminal:
                self._repair_ended(task.task_id, task.state)
            case TaskChanged():                                    pass
            case VerifyRepair(task_id=task_id):                    self._verify(task_id)
            case RepairDue():                                      self._retry_repair()
            case Notice() as notice:                               self._notify(notice)
            case GetMode():                                        return {"mode": self.mode}
            case _:                                                return self.unhandled(message)

    def snapshot(self) -> dict[str, Any]:
        return {"mode": self.mode, "repair_task": self._repair_task, "repairs_last_hour": len(self._recent_repairs()),
                "notices": list(self._notices)[-5:]}

    # --- LiteLLM -------------------------------------------------------------------------------------------
    def _litellm_down(self, reason: str) -> None:
        if self._proxy_down:
            return
        self._proxy_down, self._down_reason = True, reason
        self._update_mode(f"LiteLLM is down: {reason}")
        self._say("litellm_down", error=reason)
        self._start_repair()

    def _litellm_up(self) -> None:
        if not self._proxy_down:
            return
        self._proxy_down, self._repair_due = False, False
        self._repair_task = None   # it worked: a later outage gets a repair of its own, and no stale verdict
        self._update_mode("LiteLLM is back")
        self._say("litellm_recovered")

    def _cloud(self, up: bool, reason: str) -> None:
        """The brainstem does the suspending, resuming and telling; here only the mode moves."""
        if self._cloud_down == (not up):
            return
        self._cloud_down = not up
        self._update_mode(f"cloud {'back' if up else 'offline'}: {reason}")

    def _start_repair(self) -> None:
        if self._repair_task is not None or self._litellm is None:
            return   # never two repairs at once
        if len(self._recent_repairs()) >= self._repair.max_per_hour:
            self._say("litellm_repair_exhausted", count=len(self._repairs))
            self._schedule_repair(HOUR_S - (time.time() - self._repairs[0]))
            return
        prompt = self._repair.prompt.format(
            error=self._down_reason, health_url=f"{self._litellm.url}/health/liveliness",
            restart_command=self._litellm.restart_command or "(restart it the way it is run on this machine)",
            log_tail=log_tail(self._home, self._repair.log_lines) or "(no log lines)")
        task = self.directory.ask(STORE, CreateTask(prompt, kind=self._repair.executor_kind, sender="system",
                                                    source="system"))
        self._repair_task = task.task_id
        self._repairs.append(time.time())
        self._journal.record("repair_started", task_id=task.task_id, reason=self._down_reason)

    def _repair_ended(self, task_id: int, state: str) -> None:
        self._journal.record("repair_ended", task_id=task_id, state=state)
        self.loop.tell_later(self._repair.verify_s, self.actor_ref, VerifyRepair(task_id))

    def _verify(self, task_id: int) -> None:
        if task_id != self._repair_task:
            return
        self._repair_task = None
        if not self._proxy_down:
            return
        delay = self._repair.backoff_initial_s * 2 ** max(0, len(self._recent_repairs()) - 1)
        self._say("litellm_repair_failed", detail=f"repair task #{task_id} ended, the proxy is still down",
                  retry_in=_duration(delay))
        self._schedule_repair(delay)

    def _schedule_repair(self, delay_s: float) -> None:
        if not self._repair_due:
            self._repair_due = True
            self.loop.tell_later(delay_s, self.actor_ref, RepairDue())

    def _retry_repair(self) -> None:
        if self._repair_due and self._proxy_down:
            self._repair_due = False
            self._start_repair()

    def _recent_repairs(self) -> deque[float]:
        while self._repairs and time.time() - self._repairs[0] > HOUR_S:
            self._repairs.popleft()
        return self._repairs

    # --- mode and notices ----------------------------------------------------------------------------------
    def _update_mode(self, why: str) -> None:
        mode = Mode.BRAINSTEM if self._cloud_down else Mode.DEGRADED if self._proxy_down else Mode.NORMAL
        if mode == self.mode:
            return
        previous, self.mode = self.mode, mode
        self._journal.record("mode", mode=mode, previous=previous, reason=why)
        self.directory.tell(STORE, RecordSystemEvent("mode", f"mode → {mode}: {why}", {"mode": mode}))
        for name in MODE_LISTENERS:
            self.directory.tell(name, ModeChanged(mode, previous))

    def _say(self, key: str, **params: Any) -> None:
        self._notify(Notice(key, say(self._locale, key, **params),
                            params=tuple((name, str(value)) for name, value in params.items())))

    def _notify(self, notice: Notice) -> None:
        """Users hear of it: a notice row, the console, the journal, and the IM bridge (if one runs), which
        delivers it to the senders in `to` (naming nobody: to everyone who wrote recently)."""
        self._notices.append({"at": time.time(), "key": notice.key, "text": notice.text, "to": notice.to})
        self.directory.tell(STORE, RecordSystemEvent("notice", notice.text, {"key": notice.key, "to": list(notice.to),
                                                                             "wording": notice.wording}))
        for name in NOTICE_LISTENERS:
            self.directory.tell(name, notice)


def _duration(seconds: float) -> str:
    return f"{seconds:.0f}s" if seconds < 120 else f"{seconds / 60:.0f} min"
