"""The HealthMonitor decides whether the cloud is reachable, from evidence: its own pings (the smallest
real P1 call, through whatever route the LiteLLMGuard is using) and timeouts of live calls.

"LiteLLM is down" is not "the cloud is down": a dead proxy is the guard's business (it retries the
call directly, and that call answers). Only a route that answers nothing upstream — calls timing out
— counts here. `timeouts_to_down` consecutive timeouts → `CloudDown`; then a ping every
`brainstem_interval_s`, and `successes_to_up` consecutive answers → `CloudUp`.
"""
from __future__ import annotations

import concurrent.futures
from typing import Any

from config import HealthConfig
from messages import CloudAnswered, CloudDown, CloudUp, Complete, GetMode, ModeChanged, PingCloud
from runtime import ChildContext, Journal, SupervisedActor, describe
from vocabulary import ActorName, Mode, Tier

PING = ({"role": "user", "content": "ping"},)


class HealthMonitor(SupervisedActor):
    def __init__(self, context: ChildContext, health: HealthConfig, journal: Journal):
        super().__init__(context)
        self._config = health
        self._journal = journal
        self.cloud_up = True
        self._timeouts = self._answers = 0
        self._pinging = False
        self._pings = 0

    def started(self) -> None:
        mode = self.directory.ask(ActorName.SYSTEM_MODE, GetMode())["mode"]
        self.cloud_up = mode != Mode.BRAINSTEM   # after a restart in brainstem mode, recovery needs fresh answers
        self._schedule_ping()

    def on_receive(self, message: Any) -> Any:
        match message:
            case PingCloud():                  self._ping()
            case CloudAnswered() as answer:    self._weigh(answer)
            case ModeChanged():                pass
            case _:                            return self.unhandled(message)

    def snapshot(self) -> dict[str, Any]:
        return {"cloud": "up" if self.cloud_up else "down", "consecutive_timeouts": self._timeouts,
                "consecutive_answers": self._answers, "pings": self._pings}

    def _schedule_ping(self) -> None:
        interval = self._config.interval_s if self.cloud_up else self._config.brainstem_interval_s
        self.loop.tell_later(interval, self.actor_ref, PingCloud())

    def _ping(self) -> None:
        """One ping at a time; the next is scheduled when this one is weighed."""
        if self._pinging:
            return
        self._pinging, self._pings = True, self._pings + 1
        ask = Complete(PING, tier=Tier.P1, purpose="health", max_tokens=1, allow_fallback=False,
                       timeout_s=self._config.timeout_s, probe=True)
        try:
            future = self.directory.ask(ActorName.LITELLM_GUARD, ask, timeout_s=5)
        except Exception as error:   # no guard answering: not evidence about the cloud
            self._weigh(CloudAnswered(False, False, describe(error)))
            return
        future.add_done_callback(self._pinged)

    def _pinged(self, future: concurrent.futures.Future) -> None:
        if future.cancelled():   # the loop is shutting down
            return
        error = future.exception()
        answer = CloudAnswered(True, False, "answered") if error is None else \
            CloudAnswered(False, getattr(error, "timed_out", False), str(error))
        self.tell_self(answer)

    def _weigh(self, answer: CloudAnswered) -> None:
        if not answer.real_call:
            self._pinging = False
            self._schedule_ping()
        if answer.ok:
            self._timeouts, self._answers = 0, self._answers + 1
        elif answer.timed_out:
            self._timeouts, self._answers = self._timeouts + 1, 0
        else:
            return   # a 429, a 500, no guard: the cloud answered, or we learned nothing about it
        self._journal.record("cloud_evidence", ok=answer.ok, timed_out=answer.timed_out, real_call=answer.real_call,
                             consecutive_timeouts=self._timeouts, consecutive_answers=self._answers,
                             detail=answer.detail[:200])
        if self.cloud_up and self._timeouts >= self._config.timeouts_to_down:
            self.cloud_up = False
            self.directory.tell(ActorName.SYSTEM_MODE, CloudDown(f"{self._timeouts} consecutive calls timed out "
                                                         f"({answer.detail})"))
        elif not self.cloud_up and self._answers >= self._config.successes_to_up:
            self.cloud_up = True
            self.directory.tell(ActorName.SYSTEM_MODE, CloudUp(f"{self._answers} consecutive pings answered"))
