"""The Supervisor's OTP semantics, with real pykka actors (no stand-ins for the Supervisor itself)."""
from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from typing import Any

import pykka
from pykka._envelope import Envelope
import pytest

from runtime.supervisor import ChildSpec, Supervisor
from runtime.directory import Directory, IncarnationStopped
from runtime.event_loop import EventLoopThread
from runtime.supervised import SupervisedActor
from config import SupervisionConfig
from messages import CrashNow, Introspect

from .conftest import wait_until

EVENTS: list[str] = []
LOCK = threading.Lock()


def note(event: str) -> None:
    with LOCK:
        EVENTS.append(event)


class Worker(SupervisedActor):
    """A child that notes its starts and stops, and can be told to fail in `on_start`."""
    fail_starts: dict[str, int] = {}

    def started(self) -> None:
        note(f"start {self.name}")
        if Worker.fail_starts.get(self.name, 0) > 0:
            Worker.fail_starts[self.name] -= 1
            raise RuntimeError(f"{self.name} cannot start")

    def release(self) -> None:
        note(f"stop {self.name}")

    def on_receive(self, message: Any) -> Any:
        match message:
            case "ping":
                return "pong"
            case "bad-ask":
                raise ValueError("bad input")
            case _:
                return self.unhandled(message)


@pytest.fixture
def tree():
    EVENTS.clear()
    Worker.fail_starts = {}
    loop = EventLoopThread().start()
    refs: list[pykka.ActorRef] = []

    def start(names=("a", "b", "c"), restart="permanent", escalations=None, factories=None, config=None,
              wait=True, **policy) -> tuple[pykka.ActorRef, Directory]:
        """`factories`: a child's own start function instead of Worker's; `config`: the policy as given."""
        directory = Directory()
        factories = factories or {}
        specs = [ChildSpec(name, factories.get(name, lambda ctx: Worker.start(ctx)), restart=restart)
                 for name in names]
        config = config or SupervisionConfig(**{"backoff_initial_s": 0.01, "sweep_interval_s": 0.05, **policy})
        ref = Supervisor.start(specs, config, loop, directory,
                               on_escalation=(escalations.append if escalations is not None else lambda r: None))
        refs.append(ref)
        for name in names if wait else ():
            wait_until(lambda n=name: directory.ref(n) and directory.ask(n, "ping") == "pong", 5, f"{name} up")
        return ref, directory

    yield start
    for ref in refs:
        if ref.is_alive():
            ref.stop(timeout=10)
    loop.stop()


def children(supervisor: pykka.ActorRef) -> dict[str, dict[str, Any]]:
    return {child["name"]: child for child in supervisor.ask(Introspect())}


def crash_and_wait(supervisor, directory, name, expected_restarts=1):
    old = directory.ref(name)
    directory.tell(name, CrashNow("test crash"))
    wait_until(lambda: children(supervisor)[name]["restarts"] == expected_restarts
               and directory.ref(name) is not None and directory.ref(name) is not old
               and directory.ask(name, "ping") == "pong", 5, f"{name} restarted")


def test_children_start_in_order_and_stop_in_reverse_order(tree):
    supervisor, _ = tree()
    assert EVENTS == ["start a", "start b", "start c"]
    supervisor.stop(timeout=10)
    assert EVENTS[3:] == ["stop c", "stop b", "stop a"]


def test_one_for_one_restarts_only_the_crashed_child(tree):
    supervisor, directory = tree(strategy="one_for_one")
    refs = {name: directory.ref(name) for name in "ac"}
    crash_and_wait(supervisor, directory, "b")
    assert {name: directory.ref(name) for name in "ac"} == refs
    state = children(supervisor)["b"]
    assert state["last_error"] == "DrillCrash: test crash" and state["incarnation"] == 1


def test_one_for_all_restarts_every_child(tree):
    supervisor, directory = tree(strategy="one_for_all")
    before = {name: directory.ref(name) for name in "abc"}
    crash_and_wait(supervisor, directory, "b")
    wait_until(lambda: all(directory.ref(n) not in (None, before[n]) for n in "abc"), 5, "all restarted")
    assert EVENTS[3:5] == ["stop b", "stop c"] or EVENTS[3:6] == ["stop b", "stop c", "stop a"]
    assert [e for e in EVENTS[3:] if e.startswith("start")] == ["start a", "start b", "start c"]


def test_rest_for_one_restarts_the_child_and_those_started_after_it(tree):
    supervisor, directory = tree(strategy="rest_for_one")
    before = {name: directory.ref(name) for name in "abc"}
    crash_and_wait(supervisor, directory, "b")
    wait_until(lambda: directory.ref("c") not in (None, before["c"]), 5, "c restarted")
    assert directory.ref("a") is before["a"]
    assert [e for e in EVENTS[3:] if e.startswith("start")] == ["start b", "start c"]


def test_a_temporary_child_is_never_restarted(tree):
    supervisor, directory = tree(names=("a",), restart="temporary")
    directory.tell("a", CrashNow())
    wait_until(lambda: children(supervisor)["a"]["status"] == "stopped", 5, "a stopped")
    assert directory.ref("a") is None and children(supervisor)["a"]["restarts"] == 0


def test_a_transient_child_is_restarted_after_a_crash_but_not_after_a_normal_stop(tree):
    supervisor, directory = tree(names=("a",), restart="transient")
    crash_and_wait(supervisor, directory, "a")
    directory.ref("a").stop()
    wait_until(lambda: children(supervisor)["a"]["status"] == "stopped", 5, "a stopped for good")
    assert children(supervisor)["a"]["restarts"] == 1


def test_a_permanent_child_is_restarted_even_after_a_normal_stop(tree):
    supervisor, directory = tree(names=("a",))
    old = directory.ref("a")
    old.stop()
    wait_until(lambda: directory.ref("a") not in (None, old) and directory.ask("a", "ping") == "pong", 5, "restart")


def test_a_failing_ask_is_the_callers_error_and_the_child_lives_on(tree):
    supervisor, directory = tree(names=("a",))
    with pytest.raises(ValueError, match="bad input"):
        directory.ask("a", "bad-ask")
    assert directory.ask("a", "ping") == "pong" and children(supervisor)["a"]["restarts"] == 0


def test_a_crash_in_on_start_is_reported_and_restarted(tree):
    Worker.fail_starts = {"b": 2}
    supervisor, directory = tree()
    state = children(supervisor)["b"]
    assert state["restarts"] == 2 and state["last_error"] == "RuntimeError: b cannot start"


def test_too_many_restarts_escalate_and_stop_the_tree_in_reverse_order(tree):
    escalations: list[str] = []
    supervisor, directory = tree(escalations=escalations, max_restarts=2, within_s=5)
    for expected in (1, 2):
        crash_and_wait(supervisor, directory, "b", expected)
    EVENTS.clear()
    directory.tell("b", CrashNow("third strike"))
    wait_until(lambda: escalations, 5, "escalation")
    assert "b needed more than 2 restarts in 5s" in escalations[0] and "third strike" in escalations[0]
    assert EVENTS == ["stop b", "stop c", "stop a"]
    assert all(not child["alive"] for child in children(supervisor).values())


def test_backoff_grows_between_restarts_of_the_same_child(tree):
    import time
    supervisor, directory = tree(names=("a",), backoff_initial_s=0.1, backoff_max_s=1.0)
    gaps = []
    for expected in (1, 2, 3):
        began = time.monotonic()
        crash_and_wait(supervisor, directory, "a", expected)
        gaps.append(time.monotonic() - began)
    assert gaps[0] >= 0.1 and gaps[1] >= 0.2 and gaps[2] >= 0.4


def test_the_liveness_sweep_finds_a_child_that_died_silently(tree):
    supervisor, directory = tree(names=("a",))
    old = directory.ref("a")
    # End the actor's thread without any exit report, as a thread killed from outside would:
    # mark it stopped, then wake its loop with one harmless message so that the thread returns.
    old.actor_stopped.set()
    old.actor_inbox.put(Envelope("ping"))
    wait_until(lambda: children(supervisor)["a"]["restarts"] == 1, 5, "the sweep to restart a")
    assert children(supervisor)["a"]["last_error"] == "found dead by the liveness sweep"


# --- the root dies loudly ------------------------------------------------------------------------------------

def all_stopped(supervisor, directory, names="abc") -> bool:
    return not supervisor.is_alive() and not any(directory.ref(name) for name in names)


def test_a_message_the_root_does_not_understand_escalates_and_stops_the_tree_in_reverse_order(tree):
    escalations: list[str] = []
    supervisor, directory = tree(escalations=escalations)
    children_refs = [directory.ref(name) for name in "abc"]
    EVENTS.clear()
    supervisor.tell("not a message")
    wait_until(lambda: escalations, 5, "escalation")
    assert escalations == ["the supervisor itself failed: TypeError: supervisor does not understand str"]
    assert EVENTS == ["stop c", "stop b", "stop a"]
    wait_until(lambda: all_stopped(supervisor, directory), 5, "the whole tree stopped")
    assert not any(ref.is_alive() for ref in children_refs)


def test_a_child_factory_that_raises_at_start_escalates_and_stops_the_children_started_before_it(tree):
    escalations: list[str] = []

    def broken(ctx):
        raise RuntimeError("no b today")

    supervisor, directory = tree(escalations=escalations, factories={"b": broken}, wait=False)
    wait_until(lambda: escalations, 5, "escalation")
    assert escalations == ["could not start b: RuntimeError: no b today"]
    wait_until(lambda: all_stopped(supervisor, directory), 5, "the whole tree stopped")
    assert EVENTS == ["start a", "stop a"], "c never started; a stopped"


def test_a_child_factory_that_raises_at_a_restart_escalates(tree):
    escalations: list[str] = []
    starts = []

    def second_start_fails(ctx):
        starts.append(ctx.incarnation)
        if ctx.incarnation > 0:
            raise OSError("the disk went away")
        return Worker.start(ctx)

    supervisor, directory = tree(escalations=escalations, factories={"b": second_start_fails})
    EVENTS.clear()
    directory.tell("b", CrashNow("first crash"))
    wait_until(lambda: escalations, 5, "escalation")
    assert escalations == ["could not start b: OSError: the disk went away"]
    wait_until(lambda: all_stopped(supervisor, directory), 5, "the whole tree stopped")
    assert EVENTS == ["stop b", "stop c", "stop a"]


@pytest.mark.slow   # real backoff: the shipped settings take seconds to escalate
@pytest.mark.parametrize("policy_from", ["schema", "sandbox"])
def test_a_child_crashing_at_every_start_escalates_with_the_shipped_settings(tree, policy_from):
    from config import EMBEDDED_DEFAULT, load_config
    policy = SupervisionConfig() if policy_from == "schema" else load_config(EMBEDDED_DEFAULT).supervision
    escalations: list[str] = []
    Worker.fail_starts = {"b": 10**6}
    supervisor, directory = tree(escalations=escalations, config=policy, wait=False)
    wait_until(lambda: escalations, 40, "a crash loop to escalate")
    assert f"b needed more than {policy.max_restarts} restarts in {policy.within_s:g}s" in escalations[0]
    assert "RuntimeError: b cannot start" in escalations[0]
    wait_until(lambda: all(not child["alive"] for child in children(supervisor).values()), 5, "the tree stopped")


class Lingerer(SupervisedActor):
    """Leaves a coroutine running on the shared loop that asks and tells only once `go` is set: after this
    incarnation has crashed and been replaced, as an I/O coroutine outliving its actor would."""

    def on_receive(self, message: Any) -> Any:
        match message:
            case ("leave-behind", go):
                return self.loop.submit(self._linger(go))
            case "ping":
                return "pong"
            case "ask-a":
                return self.directory.ask("a", "ping")
            case _:
                return self.unhandled(message)

    async def _linger(self, go) -> tuple[str, bool]:
        await asyncio.wrap_future(go)
        try:
            asked = self.directory.ask("a", "ping", timeout_s=1)
        except IncarnationStopped as refused:
            asked = f"refused: {refused}"
        return asked, self.directory.tell("a", "ping")


def test_an_ask_or_tell_from_a_stopped_incarnation_is_refused(tree):
    _, directory = tree(names=("a", "lingerer"), factories={"lingerer": lambda ctx: Lingerer.start(ctx)})
    go: concurrent.futures.Future[None] = concurrent.futures.Future()
    leftover = directory.ask("lingerer", ("leave-behind", go))
    directory.tell("lingerer", CrashNow("drill"))
    wait_until(lambda: directory.ask("lingerer", Introspect())["incarnation"] == 1, 5, "lingerer restarted")
    go.set_result(None)
    asked, told = leftover.result(timeout=5)
    assert asked == "refused: a stopped incarnation of lingerer asked a str: refused" and told is False
    assert directory.ask("lingerer", "ask-a") == "pong"      # the live incarnation asks as before
