"""A client of our own gateway: what `supervisor.py send`, the sandbox, the bench and the tests use.

    async with GatewaySession(url, token) as gateway:
        task = await gateway.call("submit_task", description="整理會議紀錄")
        done = await gateway.call("get_task", task_id=task["task_id"], wait_s=60)
"""
from __future__ import annotations

import json
from contextlib import AsyncExitStack
from typing import Any

import httpx2
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client


class GatewayError(RuntimeError):
    """The gateway answered a tool call with an error (the message says what was wrong)."""


class GatewaySession:
    def __init__(self, url: str, token: str, timeout_s: float = 30.0):
        self._url = url
        self._headers = {"Authorization": f"Bearer {token}"}
        self._timeout_s = timeout_s
        self._stack = AsyncExitStack()
        self.session: ClientSession | None = None

    async def __aenter__(self) -> GatewaySession:
        try:
            client = await self._stack.enter_async_context(
                httpx2.AsyncClient(headers=self._headers, timeout=httpx2.Timeout(self._timeout_s, read=None)))
            read, write = await self._stack.enter_async_context(streamable_http_client(self._url,
                                                                                       http_client=client))
            self.session = await self._stack.enter_async_context(ClientSession(read, write))
            await self.session.initialize()
        except BaseException:
            await self._stack.aclose()   # a refused token or a dead gateway must not leave the transport behind
            raise
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self._stack.aclose()

    async def call(self, tool: str, **arguments: Any) -> dict[str, Any]:
        result = await self.session.call_tool(tool, arguments, read_timeout_seconds=self._timeout_s + 300)
        text = "\n".join(block.text for block in result.content if getattr(block, "type", "") == "text")
        if result.is_error:
            raise GatewayError(text)
        return result.structured_content if result.structured_content is not None else json.loads(text)
