"""Stable names for actors that come and go.

A restarted actor has a new ref; callers hold a name, never a ref, and the Supervisor keeps the
name pointing at the live incarnation.

>>> from messages import Reconcile
>>> directory = Directory()
>>> directory.tell("router", Reconcile())   # False: no router is registered (e.g. it is restarting)
False
"""
from __future__ import annotations

import threading
import time
from typing import Any

import pykka


class ActorUnavailable(RuntimeError):
    """No live actor answered to this name within the deadline."""


class Directory:
    def __init__(self) -> None:
        self._refs: dict[str, pykka.ActorRef] = {}
        self._lock = threading.Lock()

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

    def ask(self, name: str, message: Any, timeout_s: float = 10.0) -> Any:
        """Ask the live actor named `name`, waiting through a restart until `timeout_s` has passed.

        Safe to retry: an ask refused with ActorDeadError was never handled.
        """
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
