"""Stable names for actors that come and go.

A restarted actor has a new ref; callers hold a name, never a ref, and the Supervisor keeps the
name pointing at the live incarnation. Each incarnation of a supervised actor sees the Directory through
its own `Caller`: its asks and tells are signed with its name (watchers see who asked whom), and once the
incarnation has stopped, whatever it left running (a coroutine on the loop, a thread) is refused.

>>> from messages import Reconcile
>>> directory = Directory()
>>> directory.tell("router", Reconcile())   # False: no router is registered (e.g. it is restarting)
False
"""
from __future__ import annotations

import asyncio
import sys
import threading
import time
from typing import Any, Callable

import pykka

# What ActorRef.ask puts in an inbox; ask_async puts one with a future of its own.
from pykka._envelope import Envelope


class ActorUnavailable(RuntimeError):
    """No live actor answered to this name within the deadline."""


class IncarnationStopped(RuntimeError):
    """An ask from an incarnation that has stopped (it crashed or was restarted): its leftovers act on nothing."""


Watcher = Callable[[str | None, str, Any], None]   # (asker's name, or None from outside the tree; asked; message)


class Directory:
    def __init__(self) -> None:
        self._refs: dict[str, pykka.ActorRef] = {}
        self._lock = threading.Lock()
        self._watchers: list[Watcher] = []

    def watch(self, watcher: Watcher) -> None:
        """Call `watcher` on every ask, before it is sent (tests and introspection see the traffic)."""
        self._watchers.append(watcher)

    def caller(self, name: str, stopped: threading.Event) -> Caller:
        """The Directory as the incarnation `name` sees it: refused once `stopped` is set."""
        return Caller(self, name, stopped)

    def register(self, name: str, ref: pykka.ActorRef) -> None:
        with self._lock:
            self._refs[name] = ref

    def unregister(self, name: str, ref: pykka.ActorRef | None = None) -> None:
        with self._lock:
            if ref is None or self._refs.get(name) is ref:
                self._refs.pop(name, None)

    def ref(self, name: str) -> pykka.ActorRef | None:
        return self._refs.get(name)

    def names(self) -> list[str]:
        return list(self._refs)

    def tell(self, name: str, message: Any) -> bool:
        ref = self._refs.get(name)
        if ref is None:
            return False
        try:
            ref.tell(message)
        except pykka.ActorDeadError:
            return False
        return True

    def ask(self, name: str, message: Any, timeout_s: float = 10.0, asker: str | None = None) -> Any:
        """Ask the live actor named `name`, waiting through a restart until `timeout_s` has passed.

        Safe to retry: an ask refused with ActorDeadError was never handled.
        """
        for watcher in self._watchers:
            watcher(asker, name, message)
        deadline = time.monotonic() + timeout_s
        while True:
            ref = self._refs.get(name)
            if ref is not None:
                try:
                    return ref.ask(message, timeout=max(0.001, deadline - time.monotonic()))
                except pykka.ActorDeadError:
                    pass
                except pykka.Timeout:
                    raise ActorUnavailable(f"{name} did not answer within {timeout_s:g}s") from None
            if time.monotonic() >= deadline:
                raise ActorUnavailable(f"no live actor named {name!r} within {timeout_s:g}s")
            time.sleep(0.002)

    async def ask_async(self, name: str, message: Any, timeout_s: float = 10.0, asker: str | None = None) -> Any:
        """`ask` for a coroutine on the running loop: the answer comes back on the loop, so no thread waits
        for it (the gateway's tools). Waits through a restart as `ask` does."""
        for watcher in self._watchers:
            watcher(asker, name, message)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            ref = self._refs.get(name)
            if ref is not None and ref.is_alive():
                answer = loop.create_future()
                ref.actor_inbox.put(Envelope(message, reply_to=_AnswerOnLoop(loop, answer)))
                try:
                    async with asyncio.timeout_at(max(deadline, loop.time() + 0.001)):
                        return await answer
                except pykka.ActorDeadError:
                    pass   # it stopped before handling the message: never handled, safe to send again
                except TimeoutError:
                    raise ActorUnavailable(f"{name} did not answer within {timeout_s:g}s") from None
            if loop.time() >= deadline:
                raise ActorUnavailable(f"no live actor named {name!r} within {timeout_s:g}s")
            await asyncio.sleep(0.002)


class _AnswerOnLoop(pykka.Future):
    """The reply slot of one `ask_async`: the actor's thread sets it, the asking coroutine's loop gets it."""

    def __init__(self, loop: asyncio.AbstractEventLoop, answer: asyncio.Future) -> None:
        super().__init__()
        self._loop, self._answer = loop, answer

    def set(self, value: Any = None) -> None:
        self._loop.call_soon_threadsafe(_settle, self._answer, value, None)

    def set_exception(self, exc_info: Any = None) -> None:
        error = (exc_info or sys.exc_info())[1]
        self._loop.call_soon_threadsafe(_settle, self._answer, None, error)

    def get(self, *, timeout: float | None = None) -> Any:
        raise NotImplementedError("an ask_async answer is awaited on its loop, never waited for")


def _settle(answer: asyncio.Future, value: Any, error: BaseException | None) -> None:
    if answer.done():   # the asker gave up (timeout, cancelled)
        return
    if error is not None:
        answer.set_exception(error)
    else:
        answer.set_result(value)

class Caller:
    """One incarnation's view of the Directory (`SupervisedActor.directory`): the same asks and tells,
    signed with its name, and refused once it has stopped."""

    def __init__(self, directory: Directory, name: str, stopped: threading.Event):
        self._directory, self.name, self._stopped = directory, name, stopped

    def ask(self, name: str, message: Any, timeout_s: float = 10.0) -> Any:
        if self._stopped.is_set():
            raise IncarnationStopped(f"a stopped incarnation of {self.name} asked {name} "
                                     f"{type(message).__name__}: refused")
        return self._directory.ask(name, message, timeout_s, asker=self.name)

    async def ask_async(self, name: str, message: Any, timeout_s: float = 10.0) -> Any:
        if self._stopped.is_set():
            raise IncarnationStopped(f"a stopped incarnation of {self.name} asked {name} "
                                     f"{type(message).__name__}: refused")
        return await self._directory.ask_async(name, message, timeout_s, asker=self.name)

    def tell(self, name: str, message: Any) -> bool:
        """False, as for an absent actor, when this incarnation has stopped."""
        return not self._stopped.is_set() and self._directory.tell(name, message)

    def ref(self, name: str) -> pykka.ActorRef | None:
        return self._directory.ref(name)

    def names(self) -> list[str]:
        return self._directory.names()
