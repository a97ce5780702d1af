"""The client end of the OpenClaw MCP bridge (`openclaw mcp serve`): an McpLink whose calls answer the
tool's structured content, where the bridge puts its data."""
from __future__ import annotations

from typing import Any

import mcp_types
from mcp.shared.exceptions import MCPError

from .mcp_link import LinkLost, McpLink, session_lost


class BridgeCallFailed(Exception):
    """The bridge answered a call with an error, or not in time (the link itself is still open)."""


class BridgeLink(McpLink):
    """An McpLink whose calls answer the tool's structured content: the bridge puts its data there (and
    only a summary such as `event 3` in the text, which is all `McpLink.call` returns)."""

    async def call_json(self, tool: str, arguments: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        session = self._session
        if not self.is_open or session is None:
            raise LinkLost(f"{self._where()}: {self._lost_reason or 'link is not open'}")
        try:
            result = await session.call_tool(tool, arguments, read_timeout_seconds=timeout_s)
        except MCPError as error:
            # A call that gets no answer in time: the real bridge wedges so after its gateway restarts (sends
            # hang for 30 s and more); a new bridge process connects afresh, and the transcripts make good the rest.
            closed = session_lost(error) or error.error.code == mcp_types.REQUEST_TIMEOUT
            if closed:
                self._lose(error.error.message)
                raise LinkLost(f"{self._where()}: {error.error.message}") from error
            raise BridgeCallFailed(f"{tool}: {error.error.message}") from None
        if result.is_error:
            texts = [block.text for block in result.content if getattr(block, "type", "") == "text"]
            raise BridgeCallFailed(f"{tool}: {' '.join(texts) or 'error'}")
        return dict(result.structured_content or {})
