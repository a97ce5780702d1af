"""One MCP link an actor keeps open, supervised: the Executor's server and the OpenClaw bridge share it.

The link opens on the shared loop and its outcome comes back to the actor as a message (`LinkOpened` or
`LinkDown`); a link that fails or dies is closed and opened afresh after an exponential backoff (a
`Respawn` told later). Every link has a generation, so news of a replaced link is told apart and dropped.
The actor routes those three messages to `handle` and hears back through `on_up(tools)` and `on_down(error)`.

    links = LinkSupervisor(actor, lambda: McpLink(spec), {"claude_code"}, 0.5, 30.0,
                           on_up=actor.drain, on_down=actor.journal_down)
    links.open()
"""
from __future__ import annotations

import concurrent.futures
import time
from typing import Any, Callable, Iterable

from messages import LinkDown, LinkOpened, Respawn

from .supervised import SupervisedActor, describe


class LinkSupervisor:
    def __init__(self, actor: SupervisedActor, make_link: Callable[[], Any], needed_tools: Iterable[str],
                 respawn_initial_s: float, respawn_max_s: float,
                 on_up: Callable[[tuple[str, ...]], None] = lambda tools: None,
                 on_down: Callable[[str], None] = lambda error: None):
        self._actor = actor
        self._make_link = make_link
        self._needed = frozenset(needed_tools)
        self._initial_s, self._max_s = respawn_initial_s, respawn_max_s
        self._on_up, self._on_down = on_up, on_down
        self.link: Any = None
        self.generation = 0
        self.status = "starting"          # up | starting… | down: <why>
        self.failures = 0                 # consecutive: the respawn backoff
        self._opened_at = 0.0

    @property
    def up(self) -> bool:
        return self.status == "up"

    def open(self, status: str = "starting") -> None:
        """A new link (the old one, if any, is the caller's to close), opened on the loop."""
        self.generation += 1
        generation, link = self.generation, self._make_link()
        self.link, self.status = link, status

        def opened(future: concurrent.futures.Future[list[str]]) -> None:
            error = _error_of(future)
            self._actor.tell_self(LinkDown(generation, error) if error else LinkOpened(generation,
                                                                                      tuple(future.result())))
        self._actor.loop.submit(link.open()).add_done_callback(opened)

    def adopt(self, link: Any) -> None:
        """A link already open (kept by a previous incarnation of the actor): up at once."""
        self.generation += 1
        self.link, self.status, self._opened_at = link, "up", time.monotonic()

    def handle(self, message: Any) -> bool:
        """Act on link news (True), or leave the message to the actor (False)."""
        match message:
            case LinkOpened(generation=generation, tools=tools):
                self._opened(generation, tools)
            case LinkDown(generation=generation, error=error):
                self.down(generation, error)
            case Respawn(generation=generation):
                if generation == self.generation:
                    self.open()
            case _:
                return False
        return True

    def down(self, generation: int, error: str) -> None:
        """The link of `generation` failed or died: close it, tell the actor, and open another after a backoff."""
        if generation != self.generation or self.status.startswith("down"):
            return   # news of a link already replaced, or already being replaced
        if self.up and time.monotonic() - self._opened_at > self._max_s:
            self.failures = 0   # it had been healthy for a while: not a crash loop
        self.status = f"down: {error}"
        self._actor.loop.submit(self.link.close())
        self._actor.loop.tell_later(self.backoff(), self._actor.actor_ref, Respawn(generation))
        self._on_down(error)

    def replace(self, why: str) -> None:
        """The link is open but of no use (its server lost what stands behind it): a fresh one, after the
        shortest pause."""
        self.failures = 0
        self.down(self.generation, why)

    def watch(self) -> None:
        """Notice the link dying while no call runs on it (its server exits), instead of at the next call:
        `LinkDown` is told then. For links that can say so (`wait_lost()`, as McpLink can)."""
        generation = self.generation

        def lost(future: concurrent.futures.Future[str]) -> None:
            if not future.cancelled():
                self._actor.tell_self(LinkDown(generation, _error_of(future) or future.result()))
        self._actor.loop.submit(self.link.wait_lost()).add_done_callback(lost)

    def healthy(self) -> None:
        """The link did its work: the next failure starts the backoff afresh."""
        self.failures = 0

    def backoff(self) -> float:
        delay = min(self._initial_s * 2 ** self.failures, self._max_s)
        self.failures += 1
        return delay

    def _opened(self, generation: int, tools: tuple[str, ...]) -> None:
        if generation != self.generation:
            return
        if missing := self._needed - set(tools):
            named = ", ".join(repr(tool) for tool in sorted(missing))
            self.down(generation, f"the server offers no tool{'s' if len(missing) > 1 else ''} {named} "
                                  f"(it has: {', '.join(tools)})")
            return
        self.status, self._opened_at = "up", time.monotonic()
        self._on_up(tools)


def _error_of(future: concurrent.futures.Future[Any]) -> str | None:
    if future.cancelled():
        return "cancelled"
    return None if future.exception() is None else describe(future.exception())
