"""The ProxyKeeper owns a *managed* LiteLLM proxy process: it starts it (with a deadline) when none
answers, and restarts it when its memory passes the ceiling (users report slow leaks). A proxy of ours
found running at start-up (left behind by a supervisor that was SIGKILLed: the proxy is detached) is
adopted and waited for as a start would be, not reported as a failed start; a foreign process on the
port is a failed start.

It does not restart a proxy that died: noticing that is the LiteLLMGuard's job, and bringing it back
is the repair flow's (Claude Code runs the restart command), so that a broken proxy gets diagnosed
rather than restarted blindly in a loop. A start that fails is the one death it reports itself: it
tells the guard at once, which goes direct (and the repair flow begins) instead of waiting out the
start deadline.

Its readings of the proxy (pid, RSS, liveliness: file reads, `ps` on macOS, an HTTP request) are slow
and can hang with the proxy, so they run off the actor thread on its own timer and come back as
`ProxyRead`; `Introspect` answers from the last one and never waits.
"""
from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, Callable

from clients import adopt_or_start_proxy, proxy_status, restart_proxy, stop_proxy
from config import LiteLLMConfig
from messages import CheckProxyMemory, ProxyActionDone, ProxyRestarting, RecordSystemEvent
from messages.models import LastStartFailure, ProxyDidNotStart, ProxyRead, ReadProxy
from runtime import ChildContext, Journal, SupervisedActor, describe
from vocabulary import ActorName

CHECK_EVERY_PROBES = 5
NOT_READ = {"pid": None, "alive": None, "rss_mb": None, "answers": None}


class ProxyKeeper(SupervisedActor):
    def __init__(self, context: ChildContext, litellm: LiteLLMConfig, home: Path, journal: Journal):
        super().__init__(context)
        self._config = litellm
        self._home = home
        self._journal = journal
        self._action: str | None = None        # "start" / "restart" while one runs
        self._failure: str | None = None       # why the last start failed, until the proxy answers
        self._status: dict[str, Any] = dict(NOT_READ)
        self._read_at: float | None = None
        self._reading = False
        self._checked = False                  # the first reading decides whether to start one
        self._generation = 0                   # bumped by every start/restart: older readings are stale
        self._restarts_for_memory = 0
        self._last: str = ""

    def started(self) -> None:
        self._read()
        interval = self._config.probe_interval_s
        self.loop.tell_every(interval, self.actor_ref, ReadProxy())
        self.loop.tell_every(interval * CHECK_EVERY_PROBES, self.actor_ref, CheckProxyMemory())

    def on_stop(self) -> None:
        # We started it: a clean shutdown takes it along — quickly (SIGKILL after 2 s), since calls it still
        # holds open to a hanging upstream would keep its graceful exit past the tree's shutdown timeout.
        stop_proxy(self._config, self._home, timeout_s=2)
        super().on_stop()

    def on_receive(self, message: Any) -> Any:
        match message:
            case ReadProxy():                 self._read()
            case ProxyRead() as reading:      self._took(reading)
            case CheckProxyMemory():          self._check_memory()
            case ProxyActionDone() as done:   self._finished(done)
            case LastStartFailure():          return self._failure
            case _:                           return self.unhandled(message)

    def snapshot(self) -> dict[str, Any]:
        age = None if self._read_at is None else round(time.monotonic() - self._read_at, 1)
        return {**self._status, "read_age_s": age, "action": self._action, "start_failure": self._failure,
                "restarts_for_memory": self._restarts_for_memory, "last": self._last}

    # --- readings ----------------------------------------------------------------------------------------
    def _read(self) -> None:
        if self._reading:
            return   # one at a time: a hanging proxy must not pile readings up
        if self._steady():
            return   # the guard probes it every second anyway: a steady proxy is read at the memory checks' pace
        self._reading = True
        generation = self._generation
        self._off_thread(lambda: proxy_status(self._config, self._home),
                         lambda status, error: ProxyRead(status or dict(NOT_READ), generation))

    def _steady(self) -> bool:
        """Answering at the last reading, taken less than a memory check's interval ago, and nothing running."""
        return (self._action is None and self._status["answers"] is True and self._read_at is not None
                and time.monotonic() - self._read_at < self._config.probe_interval_s * (CHECK_EVERY_PROBES - 0.5))

    def _took(self, reading: ProxyRead) -> None:
        if reading.generation != self._generation:
            return   # taken across a start or restart: it describes a process that may be gone
        self._reading = False
        self._status, self._read_at = dict(reading.status), time.monotonic()
        if self._status["answers"]:
            self._failure = None   # whoever brought it back (the repair flow), it is up now
        if not self._checked:
            self._checked = True
            if not self._status["answers"]:
                self._act("start", adopt_or_start_proxy)

    def _check_memory(self) -> None:
        status = self._status
        if self._action is None and status["alive"] and (status["rss_mb"] or 0) > self._config.rss_ceiling_mb:
            self._restarts_for_memory += 1
            self._event(f"proxy RSS {status['rss_mb']:.0f} MB > ceiling {self._config.rss_ceiling_mb:.0f} MB: "
                        "restarting it")
            self.directory.tell(ActorName.LITELLM_GUARD, ProxyRestarting())   # planned: no outage, no repair task
            self._act("restart", restart_proxy)

    # --- start and restart -------------------------------------------------------------------------------
    def _act(self, what: str, action: Callable[[LiteLLMConfig, Path], Any]) -> None:
        """Start/restart take seconds: run them off the actor thread, hear back as a message. A start that
        found a proxy of ours running and waited for it comes back as the action "adopt"."""
        self._action = what
        self._forget_reading()
        self._off_thread(lambda: action(self._config, self._home),
                         lambda outcome, error: ProxyActionDone(_done_as(what, outcome), error))

    def _finished(self, done: ProxyActionDone) -> None:
        self._action = None
        self._forget_reading()
        self._last = f"{done.action}: {'ok' if done.error is None else done.error}"
        self._event(f"proxy {self._last}")
        if done.error is not None:
            self._failure = _headline(done.error)
            self.directory.tell(ActorName.LITELLM_GUARD, ProxyDidNotStart(self._failure))
        self._read()

    def _forget_reading(self) -> None:
        self._generation += 1
        self._status, self._read_at, self._reading = dict(NOT_READ), None, False

    # --- plumbing ----------------------------------------------------------------------------------------
    def _off_thread(self, work: Callable[[], Any], outcome: Callable[[Any, str | None], Any]) -> None:
        """Run blocking `work` in a worker thread of the shared loop; its outcome comes back as a message."""
        future = self.loop.submit(asyncio.to_thread(work))

        def done(f: Any) -> None:
            if f.cancelled():
                return
            error = f.exception()
            result = None if error else f.result()
            self.tell_self(outcome(result, None if error is None else describe(error)))
        future.add_done_callback(done)

    def _event(self, detail: str) -> None:
        self._journal.record("proxy", detail=detail)
        self.directory.tell(ActorName.STATE_STORE, RecordSystemEvent("proxy", detail))


def _done_as(what: str, outcome: Any) -> str:
    """ "adopt" for a start that adopted a running proxy (outcome `(pid, True)`), else `what`.

    >>> _done_as("start", (4242, True)), _done_as("start", (4242, False)), _done_as("restart", 4242)
    ('adopt', 'start', 'restart')
    """
    return "adopt" if isinstance(outcome, tuple) and outcome[1] else what


def _headline(error: str) -> str:
    """What went wrong, without the log lines that follow it (the repair prompt carries those).

    >>> _headline("ProxyStartFailed: LiteLLM proxy exited with code -9 during start-up; log /l.log, tail:\\nx")
    'LiteLLM proxy exited with code -9 during start-up'
    """
    first = error.split("\n", 1)[0].removeprefix("ProxyStartFailed: ")
    return first.split("; log ", 1)[0]
