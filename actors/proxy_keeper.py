"""The ProxyKeeper owns a *managed* LiteLLM proxy process: it starts it (with a deadline) when none
answers, and restarts it when its memory passes the ceiling (users report slow leaks).

It does not restart a proxy that died: noticing that is the LiteLLMGuard's job, and bringing it back
is the repair flow's (Claude Code runs the restart command), so that a broken proxy gets diagnosed
rather than restarted blindly in a loop.
"""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from config import LiteLLMConfig
from messages import CheckProxyMemory, ProxyActionDone, ProxyRestarting, RecordSystemEvent

from .journal import Journal
from .litellm_proxy import proxy_status, restart_proxy, start_proxy, stop_proxy
from .supervised import ChildContext, SupervisedActor, describe

CHECK_EVERY_PROBES = 5


class ProxyKeeper(SupervisedActor):
    def __init__(self, context: ChildContext, litellm: LiteLLMConfig, home: Path, journal: Journal):
        super().__init__(context)
        self._config = litellm
        self._home = home
        self._journal = journal
        self._busy = False
        self._restarts_for_memory = 0
        self._last: str = ""

    def started(self) -> None:
        if not proxy_status(self._config, self._home)["answers"]:
            self._in_background("start", start_proxy)
        self.loop.tell_every(self._config.probe_interval_s * CHECK_EVERY_PROBES, self.actor_ref, CheckProxyMemory())

    def on_stop(self) -> None:
        # We started it: a clean shutdown takes it along — quickly (SIGKILL after 2 s), since calls it still
        # holds open to a hanging upstream would keep its graceful exit past the tree's shutdown timeout.
        stop_proxy(self._config, self._home, timeout_s=2)
        super().on_stop()

    def on_receive(self, message: Any) -> Any:
        match message:
            case CheckProxyMemory():  self._check_memory()
            case ProxyActionDone() as done: self._finished(done)
            case _:               return self.unhandled(message)

    def snapshot(self) -> dict[str, Any]:
        return {**proxy_status(self._config, self._home), "restarts_for_memory": self._restarts_for_memory,
                "last": self._last}

    def _check_memory(self) -> None:
        status = proxy_status(self._config, self._home)
        if not self._busy and status["alive"] and (status["rss_mb"] or 0) > self._config.rss_ceiling_mb:
            self._restarts_for_memory += 1
            self._event(f"proxy RSS {status['rss_mb']:.0f} MB > ceiling {self._config.rss_ceiling_mb:.0f} MB: "
                        "restarting it")
            self.directory.tell("litellm_guard", ProxyRestarting())   # planned: no outage, no repair task
            self._in_background("restart", restart_proxy)

    def _in_background(self, what: str, action: Any) -> None:
        """Start/restart take seconds: run them off the actor thread, hear back as a message."""
        self._busy = True
        future = self.loop.submit(asyncio.to_thread(action, self._config, self._home))

        def done(f: Any) -> None:
            if f.cancelled():
                return
            error = None if f.exception() is None else describe(f.exception())
            if self.actor_ref.is_alive():
                self.actor_ref.tell(ProxyActionDone(what, error))
        future.add_done_callback(done)

    def _finished(self, done: ProxyActionDone) -> None:
        self._busy = False
        self._last = f"{done.action}: {'ok' if done.error is None else done.error}"
        self._event(f"proxy {self._last}")

    def _event(self, detail: str) -> None:
        self._journal.record("proxy", detail=detail)
        self.directory.tell("state_store", RecordSystemEvent("proxy", detail))
