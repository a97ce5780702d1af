"""The Supervisor: starts the tree in order, restarts children as Erlang/OTP's supervisor does,
and stops the tree in reverse order.

- strategies: `one_for_one` (restart the child that died), `one_for_all` (stop and restart all),
  `rest_for_one` (stop and restart the child and every child started after it);
- restart types: `permanent` (always restarted), `transient` (only after an abnormal exit),
  `temporary` (never);
- intensity: more than `max_restarts` restarts within `within_s` seconds escalates: the tree is
  stopped in reverse order and `on_escalation(reason)` is called (the program exits non-zero);
- the root dies loudly: a failure of the Supervisor itself (a message it does not understand, a child
  factory that raises) escalates the same way, so no child ever runs on unsupervised;
- exponential backoff between restarts of the same child, reset once it has stayed up `within_s`;
- a liveness sweep catches children that died without a word.

Callers never keep a child's ref: they use its stable name through the `Directory`.

    specs = [ChildSpec("state_store", lambda ctx: StateStore.start(ctx, cfg)),
             ChildSpec("router", lambda ctx: Router.start(ctx, cfg))]
    tree = Supervisor.start(specs, cfg.supervision, loop, directory, on_escalation=print)
"""
from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

import pykka

from config import SupervisionConfig
from config.schema import RestartType
from messages import ChildExited, Introspect, RestartChild, SweepChildren

from .directory import Directory
from .event_loop import EventLoopThread
from .supervised import ChildContext, describe

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ChildSpec:
    name: str
    start: Callable[[ChildContext], pykka.ActorRef]
    restart: RestartType = "permanent"


@dataclass(slots=True)
class _Child:
    spec: ChildSpec
    ref: pykka.ActorRef | None = None
    status: str = "stopped"               # running | restarting | stopped
    incarnation: int = -1
    restarts: int = 0
    last_error: str | None = None
    started_at: float = 0.0
    backoff_level: int = 0
    seen_dead: bool = False
    waiting_group: tuple[str, ...] = field(default_factory=tuple)


class ChildWouldNotStart(RuntimeError):
    """A child's factory raised: the tree cannot be what its specs say."""


class Supervisor(pykka.ThreadingActor):
    def __init__(self, specs: list[ChildSpec], policy: SupervisionConfig, loop: EventLoopThread,
                 directory: Directory, on_escalation: Callable[[str], None] = lambda reason: None):
        super().__init__()
        self._children = {spec.name: _Child(spec) for spec in specs}
        self._order = [spec.name for spec in specs]
        self._policy = policy
        self._loop = loop
        self._directory = directory
        self._on_escalation = on_escalation
        self._restart_times: deque[float] = deque()
        self.escalated: str | None = None

    def on_start(self) -> None:
        try:
            for name in self._order:
                self._start_child(self._children[name])
        except Exception as error:   # pykka would stop us without on_failure, leaving the started ones running
            self._escalate(_reason(error))
            raise
        self._loop.tell_every(self._policy.sweep_interval_s, self.actor_ref, SweepChildren())

    def on_failure(self, exception_type: Any, exception_value: BaseException | None, traceback: Any) -> None:
        self._escalate(_reason(exception_value))

    def on_stop(self) -> None:
        self._stop_children(self._order)

    def on_receive(self, message: Any) -> Any:
        match message:
            case ChildExited(name=name, actor_urn=urn, error=error):
                self._child_exited(name, urn, error)
            case RestartChild(name=name, actor_urn=urn):
                self._restart_group(name, urn)
            case SweepChildren():
                self._sweep()
            case Introspect():
                return self._snapshot()
            case _:
                raise TypeError(f"supervisor does not understand {type(message).__name__}")

    # --- starting and stopping ---------------------------------------------------------------------------------
    def _start_child(self, child: _Child) -> None:
        child.incarnation += 1
        context = ChildContext(child.spec.name, child.incarnation, self.actor_ref, self._directory, self._loop)
        try:
            child.ref = child.spec.start(context)
        except Exception as error:
            raise ChildWouldNotStart(f"could not start {child.spec.name}: {describe(error)}") from error
        child.status, child.started_at, child.seen_dead = "running", time.monotonic(), False
        self._directory.register(child.spec.name, child.ref)

    def _stop_children(self, names: list[str]) -> None:
        for name in reversed(names):
            child = self._children[name]
            ref, child.ref = child.ref, None   # forget it first: its exit notice is then ignored as stale
            if ref is None:
                continue
            self._directory.unregister(name, ref)
            try:
                ref.stop(timeout=self._policy.shutdown_timeout_s)
            except pykka.Timeout:
                log.error("%s did not stop within %ss; abandoning it", name, self._policy.shutdown_timeout_s)
            except pykka.ActorDeadError:
                pass

    # --- restarts ------------------------------------------------------------------------------------------
    def _child_exited(self, name: str, urn: str, error: str | None) -> None:
        child = self._children.get(name)
        if child is None or child.ref is None or child.ref.actor_urn != urn:
            return  # an incarnation we already replaced or stopped on purpose
        dead_ref, child.ref = child.ref, None
        self._directory.unregister(name, dead_ref)
        child.status = "stopped"
        if error is not None:
            child.last_error = error
            log.warning("%s exited: %s", name, error)
        if child.spec.restart == "temporary" or (child.spec.restart == "transient" and error is None):
            return
        if self._intensity_exceeded():
            self._escalate(f"{name} needed more than {self._policy.max_restarts} restarts in "
                           f"{self._policy.within_s:g}s; last error: {error or 'normal exit'}")
            return
        group = self._restart_group_of(name)
        self._stop_children([n for n in group if n != name])
        for member in group:
            self._children[member].status = "restarting"
        child.waiting_group = tuple(group)
        self._loop.tell_later(self._backoff_delay(child), self.actor_ref, RestartChild(name, urn))

    def _restart_group_of(self, name: str) -> list[str]:
        match self._policy.strategy:
            case "one_for_all":
                return list(self._order)
            case "rest_for_one":
                return self._order[self._order.index(name):]
            case _:
                return [name]

    def _restart_group(self, name: str, urn: str) -> None:
        child = self._children[name]
        if self.escalated or child.status != "restarting":
            return
        for member_name in child.waiting_group:
            member = self._children[member_name]
            if member.status == "restarting" and member.ref is None:
                member.restarts += 1
                self._start_child(member)
        child.waiting_group = ()

    def _backoff_delay(self, child: _Child) -> float:
        if time.monotonic() - child.started_at > self._policy.within_s:
            child.backoff_level = 0   # it had been healthy for a while: start the backoff afresh
        delay = self._policy.backoff_s(child.backoff_level)
        child.backoff_level += 1
        return delay

    def _intensity_exceeded(self) -> bool:
        now = time.monotonic()
        self._restart_times.append(now)
        while self._restart_times and now - self._restart_times[0] > self._policy.within_s:
            self._restart_times.popleft()
        return len(self._restart_times) > self._policy.max_restarts

    def _escalate(self, reason: str) -> None:
        if self.escalated:
            return
        log.critical("escalating: %s", reason)
        self.escalated = reason
        self._stop_children(self._order)
        self._on_escalation(reason)

    def _sweep(self) -> None:
        for child in self._children.values():
            if child.status != "running" or child.ref is None or child.ref.is_alive():
                continue
            if child.seen_dead:   # dead for two sweeps and no exit notice arrived: it died silently
                self._child_exited(child.spec.name, child.ref.actor_urn, "found dead by the liveness sweep")
            child.seen_dead = True

    def _snapshot(self) -> list[dict[str, Any]]:
        return [{
            "name": name,
            "status": child.status,
            "alive": child.ref is not None and child.ref.is_alive(),
            "restart": child.spec.restart,
            "restarts": child.restarts,
            "last_error": child.last_error,
            "incarnation": child.incarnation,
        } for name, child in ((n, self._children[n]) for n in self._order)]


def _reason(error: BaseException | None) -> str:
    if isinstance(error, ChildWouldNotStart):
        return str(error)
    return f"the supervisor itself failed: {describe(error)}"
