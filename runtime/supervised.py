"""The base of every supervised actor: its failures and exits reach its Supervisor.

pykka has no supervision (pykka issue #42): an actor that raises in a tell handler just stops,
and one that raises in `on_start` does not even call `on_failure`. This base reports all three
ways of ending (failure in a tell, failure in `on_start`, a normal stop) as `ChildExited`, and
frees the actor's resources in every case. An exception in an *ask* handler is the caller's
error (bad input must not kill the actor); it is returned to the caller and the actor lives on.

>>> class Echo(SupervisedActor):
...     def on_receive(self, message):
...         match message:
...             case str(): return message
...             case _: return self.unhandled(message)
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

import pykka

from messages import ChildExited, CrashNow, Introspect

from .directory import Directory
from .event_loop import EventLoopThread

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ChildContext:
    """What the Supervisor hands each incarnation of a child."""

    name: str
    incarnation: int          # 0 for the first start in this process, then 1, 2, … for restarts
    supervisor: pykka.ActorRef
    directory: Directory
    loop: EventLoopThread


class DrillCrash(RuntimeError):
    """Raised on `CrashNow`, as a real fault would be."""


def describe(error: BaseException | None) -> str:
    text = f"{type(error).__name__}: {error}" if error is not None else "unknown error"
    return text if len(text) <= 300 else text[:297] + "..."


class SupervisedActor(pykka.ThreadingActor):
    def __init__(self, context: ChildContext):
        super().__init__()
        self.context = context
        self.loop = context.loop
        self._stopped = threading.Event()   # set once released: what this incarnation left running is refused
        self.directory = context.directory.caller(context.name, self._stopped)

    @property
    def name(self) -> str:
        return self.context.name

    # --- hooks for subclasses ----------------------------------------------------------------------------------
    def started(self) -> None:
        """Set up; rebuild in-memory state from the durable store. Raising here is a crash like any other."""

    def release(self) -> None:
        """Free what this incarnation holds (sessions, connections). Runs after a stop and after a crash."""

    def snapshot(self) -> dict[str, Any]:
        """Plain data describing this actor's state, for `Introspect` (console, REPL). No secrets."""
        return {}

    def tell_self(self, message: Any) -> None:
        """Tell this actor `message` from work that ran elsewhere (a callback on the loop, a thread): the outcome
        of work a crashed or stopped incarnation left running reports to nobody."""
        if self.actor_ref.is_alive():
            self.actor_ref.tell(message)

    def unhandled(self, message: Any) -> Any:
        """The default arm of a subclass's `match`: the control messages every actor understands."""
        match message:
            case CrashNow(reason=reason):
                raise DrillCrash(reason)
            case Introspect():
                return {"name": self.name, "incarnation": self.context.incarnation,
                        "mailbox": self.actor_inbox.qsize(), **self.snapshot()}
            case _:
                raise TypeError(f"{self.name} does not understand {type(message).__name__}")

    # --- pykka's lifecycle, reported to the Supervisor ---------------------------------------------------------
    def on_start(self) -> None:
        try:
            self.started()
        except Exception as error:
            self._release_quietly()
            self._report(describe(error))
            raise

    def on_failure(self, exception_type: Any, exception_value: BaseException | None, traceback: Any) -> None:
        self._release_quietly()
        self._report(describe(exception_value))

    def on_stop(self) -> None:
        self._release_quietly()
        self._report(None)

    def _release_quietly(self) -> None:
        try:
            self.release()
        except Exception:  # a failing cleanup must not hide the exit from the Supervisor
            log.exception("%s: release failed", self.name)
        finally:
            self._stopped.set()

    def _report(self, error: str | None) -> None:
        try:
            self.context.supervisor.tell(ChildExited(self.name, self.actor_urn, error))
        except pykka.ActorDeadError:
            pass  # the Supervisor itself is gone: the tree is shutting down
