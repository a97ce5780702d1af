"""The Gateway: our MCP server (Streamable HTTP on loopback, bearer token) through which OpenClaw,
other MCP clients and `supervisor.py send` reach the orchestrator.

The HTTP server runs on the shared loop; each tool is a coroutine whose asks are answered on the loop
(`Directory.ask_async`), so no tool call ever blocks the loop or a thread. The actor itself owns the server's
lifetime and hands the StateStore's announcements to `get_task(wait_s=…)` / `submit_task(wait_s=…)` callers.

From any MCP client, with `Authorization: Bearer $OMNI_GATEWAY_TOKEN`:

    await session.call_tool("submit_task", {"description": "重構登入模組", "sender": "telegram:42"})
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import os
import socket
from pathlib import Path
from typing import Any

import uvicorn

from config import GatewayConfig
from dashboard import DashboardApp, DashboardSource, dashboard_url
from config.schema import ImConfig
from gateway import BearerAuth, GatewayTools, URL_FILE
from messages import ModeChanged, TaskChanged
from runtime import ChildContext, SupervisedActor

class Gateway(SupervisedActor):
    def __init__(self, context: ChildContext, gateway: GatewayConfig, token: str, kinds: tuple[str, ...],
                 executors: tuple[str, ...], home: Path, models: bool = False, im: ImConfig | None = None,
                 dashboard: DashboardSource | None = None):
        super().__init__(context)
        self._dashboard = dashboard
        self._config = gateway
        self._token = token
        self._home = home
        self._tools = GatewayTools(self.directory, kinds, executors, models, im)
        self._server: uvicorn.Server | None = None
        self._serving: concurrent.futures.Future[None] | None = None
        self.url = ""
        self.dashboard_url = ""

    def started(self) -> None:
        listener = socket.create_server((self._config.host, self._config.port), reuse_port=False)
        # Accepted connections inherit it: an answer's head and body leave at once, not 40 ms apart (Nagle
        # waiting on the client's delayed ACK), which a JSON answer, written in two parts, would otherwise pay.
        listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        host, port = listener.getsockname()[:2]
        self.url = f"http://{host}:{port}{self._config.path}"
        # Plain JSON answers, not an SSE stream per call: no tool of ours sends anything before its result, and
        # the stream's machinery cost more CPU than the task it carried.
        app = BearerAuth(self._tools.server.streamable_http_app(streamable_http_path=self._config.path,
                                                                 host=self._config.host, json_response=True),
                         self._token)
        if self._dashboard is not None:   # the cost page: same loopback port, same token
            app = DashboardApp(app, self._token, self._dashboard)
            self.dashboard_url = self._tools.dashboard_url = dashboard_url(self.url)
        self._server = _Server(uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False))
        self._serving = self.loop.submit(self._server.serve(sockets=[listener]))
        written = self._home / f"{URL_FILE}.{os.getpid()}"   # then renamed: a reader never sees it half-written
        written.write_text(self.url + "\n")
        written.replace(self._home / URL_FILE)

    def release(self) -> None:
        if self._server is not None:
            self.loop.loop.call_soon_threadsafe(self._server.stop)
            try:
                self._serving.result(timeout=5)
            except Exception:
                pass

    def on_receive(self, message: Any) -> Any:
        match message:
            case TaskChanged(task=task) if task.is_terminal or task.task_id in self._tools.waiting:
                self.loop.loop.call_soon_threadsafe(self._tools.wake, task)
            case TaskChanged():
                pass
            case ModeChanged(mode=mode):
                self._tools.mode = mode
            case _:
                return self.unhandled(message)

    def snapshot(self) -> dict[str, Any]:
        return {"url": self.url, "dashboard_url": self.dashboard_url, "waiting_callers": len(self._tools.waiting)}


class _Server(uvicorn.Server):
    """uvicorn's server, minus its wake-up ten times a second to see whether it should exit: `stop()` wakes
    it, and it ticks once a second only to refresh its Date header (most of an idle gateway's CPU)."""

    def __init__(self, config: uvicorn.Config):
        super().__init__(config)
        self._stopping: asyncio.Event | None = None

    async def main_loop(self) -> None:
        self._stopping = asyncio.Event()
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 10) % 864000   # on_tick refreshes the Date header when counter % 10 == 0
            try:
                await asyncio.wait_for(self._stopping.wait(), 1.0)
            except TimeoutError:
                pass

    def stop(self) -> None:
        """On the loop: exit now."""
        self.should_exit = True
        if self._stopping is not None:
            self._stopping.set()

