"""The Brainstem: what the system does while the cloud is down, and how it comes back.

Entering brainstem mode (a `ModeChanged` from SystemMode): every `executing` task → `waiting` (its
executor cancels the MCP call), and so do the tasks not yet running; a snapshot row is written; the
users with open tasks are told 「雲端離線，任務已掛起」 (in the configured locale); the local model is
loaded from cold, in a worker thread. Leaving it: `waiting` → `idle` (the Router dispatches them
again), users told 「雲端已恢復，任務恢復中」, the model unloaded and its memory released.

The local model does only the brainstem's own small jobs — its wording of the notices, and a short
reply to users who write while the cloud is down — never a user's task. Without a model (none
configured, or it fails to load) brainstem mode works the same with the fixed texts, and says so.
"""
from __future__ import annotations

import asyncio
import time
from typing import Any

from clients import LocalModel, LocalModelUnavailable
from config import BrainstemConfig
from messages import (GetMode, ListTasks, LocalModelSettled, ModeChanged, Notice, RecordSystemEvent, ReplyWhileDown,
                      Transition)
from runtime import ChildContext, Journal, SupervisedActor, describe
from store import IllegalTransition
from texts import say
from vocabulary import ActorName, Mode, TaskState

STORE = ActorName.STATE_STORE
SUSPENDED = (TaskState.EXECUTING, TaskState.DISPATCHING, TaskState.IDLE)


class Brainstem(SupervisedActor):
    def __init__(self, context: ChildContext, brainstem: BrainstemConfig, locale: str, journal: Journal):
        super().__init__(context)
        self._config = brainstem
        self._locale = locale
        self._journal = journal
        self._model = LocalModel(brainstem.model_path, brainstem.max_tokens)
        self.active = False
        self._model_state = "unloaded"
        self._entered_at = 0.0

    def started(self) -> None:
        if self.directory.ask(ActorName.SYSTEM_MODE, GetMode())["mode"] == Mode.BRAINSTEM:   # restarted while down
            self.active, self._entered_at = True, time.time()
            self._park_new_tasks()
            self._load_model()

    def release(self) -> None:
        self._model.unload()

    def on_receive(self, message: Any) -> Any:
        match message:
            case ModeChanged(mode=Mode.BRAINSTEM) if not self.active: self._enter()
            case ModeChanged(mode=mode) if mode != Mode.BRAINSTEM and self.active: self._leave()
            case ModeChanged():                                 pass
            case LocalModelSettled() as settled:                self._model_settled(settled)
            case ReplyWhileDown(text=text):                     return self._reply(text)
            case _:                                             return self.unhandled(message)

    def snapshot(self) -> dict[str, Any]:
        return {"active": self.active, "model": self._model_state, **self._model.status()}

    # --- entering and leaving ------------------------------------------------------------------------------
    def _enter(self) -> None:
        self.active, self._entered_at = True, time.time()
        suspended = self._move_all(SUSPENDED, TaskState.WAITING, "cloud offline: suspended until it is back")
        ids = [task.task_id for task in suspended]
        self.directory.tell(STORE, RecordSystemEvent("snapshot", f"brainstem: {len(ids)} tasks suspended",
                                                     {"waiting": ids, "at": self._entered_at}))
        self._journal.record("brainstem", action="enter", suspended=ids)
        self._tell_users("cloud_down", suspended)
        self._load_model()

    def _leave(self) -> None:
        self.active = False
        resumed = self._move_all((TaskState.WAITING,), TaskState.IDLE, "cloud back: resuming")
        self._journal.record("brainstem", action="leave", resumed=[t.task_id for t in resumed],
                             seconds=round(time.time() - self._entered_at, 3))
        self._tell_users("cloud_up", resumed)
        self._in_worker("unload", self._model.unload)

    def _park_new_tasks(self) -> None:
        self._move_all((TaskState.IDLE, TaskState.DISPATCHING), TaskState.WAITING, "cloud offline: waiting for it")

    def _move_all(self, states: tuple[str, ...], to: str, reason: str) -> list[Any]:
        moved = []
        for state in states:
            for task in self.directory.ask(STORE, ListTasks(state=state, limit=100_000, oldest_first=True)):
                try:
                    moved.append(self.directory.ask(STORE, Transition(task.task_id, to, reason,
                                                                      expect=frozenset({state}))))
                except IllegalTransition:
                    pass   # it moved meanwhile (finished, cancelled)
        return moved

    def _tell_users(self, key: str, tasks: list[Any]) -> None:
        text = say(self._locale, key)
        senders = tuple(sorted({task.sender for task in tasks if task.sender and task.source != "system"}))
        self.directory.tell(ActorName.SYSTEM_MODE, Notice(key, text, senders, self._word(text)))

    # --- the local model -----------------------------------------------------------------------------------
    def _load_model(self) -> None:
        if self._model.loaded or self._model_state == "loading":
            return
        self._model_state = "loading"
        self._in_worker("load", self._model.load)

    def _in_worker(self, action: str, work: Any) -> None:
        """Loading a 7B model takes seconds: off the actor thread, the outcome comes back as a message."""
        started = time.monotonic()
        future = self.loop.submit(asyncio.to_thread(work))

        def settled(f: Any) -> None:
            if f.cancelled():
                return
            error = f.exception()
            self.tell_self(LocalModelSettled(action, time.monotonic() - started,
                                             None if error is None else describe(error)))
        future.add_done_callback(settled)

    def _model_settled(self, settled: LocalModelSettled) -> None:
        self._journal.record("local_model", action=settled.action, seconds=round(settled.seconds, 3),
                             error=settled.error)
        if settled.action == "load":
            self._model_state = "loaded" if settled.error is None else f"unavailable: {settled.error}"
            if settled.error is not None:
                why = settled.error.split(": ", 1)[-1]
                self.directory.tell(ActorName.SYSTEM_MODE, Notice("brainstem_without_model",
                                                          say(self._locale, "brainstem_without_model", why=why),
                                                          params=(("why", why),)))
            if not self.active:   # the cloud came back while it loaded
                self._in_worker("unload", self._model.unload)
        else:
            self._model_state = "unloaded"
            self.directory.tell(STORE, RecordSystemEvent("local_model", f"unloaded; {self._model.status()}"))

    def _word(self, text: str) -> str:
        """The local model's own wording of a notice, when it is loaded (the fixed text always goes out)."""
        if not self._model.loaded:
            return ""
        try:
            return self._model.generate(f"Rephrase this notice for the user in one short sentence: {text}")
        except (LocalModelUnavailable, RuntimeError) as error:
            return f"({describe(error)})"

    def _reply(self, text: str) -> str:
        fixed = say(self._locale, "queued_while_down")
        wording = self._word(f"{fixed} (The user wrote: {text[:200]})")
        return f"{fixed}\n{wording}" if wording else fixed
