"""Sample traffic for the sandbox: a real MCP client that submits tasks to our gateway every few
seconds, so that a newcomer running `make run` sees tasks flow through the whole system."""
from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import logging
from typing import Any

import httpx2
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from config import DemoConfig
from messages import Introspect
from runtime import ChildContext, SupervisedActor

log = logging.getLogger(__name__)


async def submit_forever(url: str, token: str, demo: DemoConfig) -> None:
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
        async with streamable_http_client(url, http_client=client) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                for description in itertools.cycle(demo.tasks):
                    await session.call_tool("submit_task", {"description": description, "sender": "sandbox:demo"})
                    await asyncio.sleep(demo.interval_s)


class DemoTraffic(SupervisedActor):
    def __init__(self, context: ChildContext, demo: DemoConfig, token: str):
        super().__init__(context)
        self._demo = demo
        self._token = token
        self._running: concurrent.futures.Future[None] | None = None

    def started(self) -> None:
        url = self.directory.ask("gateway", Introspect())["url"]   # answered once the gateway listens
        self._running = self.loop.submit(submit_forever(url, self._token, self._demo))
        self._running.add_done_callback(self._ended)

    def _ended(self, future: concurrent.futures.Future[None]) -> None:
        if not future.cancelled() and future.exception() is not None:
            log.warning("demo traffic stopped: %s", future.exception())

    def release(self) -> None:
        if self._running is not None:
            self._running.cancel()

    def on_receive(self, message: Any) -> Any:
        return self.unhandled(message)
