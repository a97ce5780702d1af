"""The one asyncio loop, on its own thread, where every actor's I/O runs as coroutines.

Actors never wait on I/O: they `submit` a coroutine and get its outcome back as a message.

>>> loop = EventLoopThread().start()
>>> loop.submit(asyncio.sleep(0, result=42)).result()
42
>>> loop.stop()
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from typing import Any, Awaitable, Callable, TypeVar

import pykka

T = TypeVar("T")


class EventLoopThread:
    def __init__(self, name: str = "omni-io"):
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> EventLoopThread:
        self._thread.start()
        return self

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def submit(self, coroutine: Awaitable[T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop)

    def call_later(self, delay_s: float, callback: Callable[..., Any], *args: Any) -> None:
        self._loop.call_soon_threadsafe(self._loop.call_later, delay_s, callback, *args)

    def tell_later(self, delay_s: float, ref: pykka.ActorRef, message: Any) -> None:
        self.call_later(delay_s, _tell_if_alive, ref, message)

    def tell_every(self, interval_s: float, ref: pykka.ActorRef, message: Any) -> None:
        """Tell `ref` `message` every `interval_s` for as long as that actor lives."""
        def tick() -> None:
            if ref.is_alive():
                ref.tell(message)
                self._loop.call_later(interval_s, tick)
        self.call_later(interval_s, tick)

    def stop(self, timeout_s: float = 5.0) -> None:
        if not self._thread.is_alive():
            return
        self.submit(self._cancel_everything()).result(timeout_s)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout_s)

    async def _cancel_everything(self) -> None:
        tasks = [t for t in asyncio.all_tasks(self._loop) if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks, timeout=3) if tasks else None


def _tell_if_alive(ref: pykka.ActorRef, message: Any) -> None:
    if ref.is_alive():
        ref.tell(message)
