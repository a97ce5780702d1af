"""A stand-in for `openclaw mcp serve`, OpenClaw's channel bridge, for the sandbox and the tests.

    python -m sandbox.openclaw_stub [--admin-port PORT] [--state FILE]

Over stdio it serves the real bridge's tools, with their argument shapes and answers (OpenClaw 2026.9):
`conversations_list`, `conversation_get`, `messages_read`, `events_poll`, `events_wait`, `messages_send`,
`permissions_list_open`, `permissions_respond`. As in the real bridge, the live event queue lives in this
process: cursors start at 1 in each new process, and only what happens while it runs is queued. What
OpenClaw's gateway keeps (the conversations, their transcripts and delivery routes) is kept in a JSON
file (`--state`, default `$OMNI_HOME/openclaw-stub-state.json`), so a restarted stub still delivers.

The "channels" are an admin HTTP endpoint on loopback, its URL written to `$OMNI_HOME/openclaw-stub.json`:

    POST /inbound {"channel": "telegram", "to": "telegram:4242", "text": "/status"}   a user writes
    GET  /outbound                     {"messages": [...]}: every messages_send, in order (what users received)
    GET  /health                       {"pid": ..., "cursor": ...}

Our own replies come back as events with role "assistant", as the real bridge's do. Message identities,
transcripts (`messages_read`: the last N, oldest first) and event shapes follow the real bridge's
(OpenClaw 2026.9.6, checked offline with its Telegram channel).

What it leaves out, which only the real OpenClaw (tests/test_real_openclaw_*.py) shows: OpenClaw's own
agent and slash commands (this stub never answers anything itself); `session.dmScope` (sessions are per
sender unless the admin call names a `session_key`); the gap after a gateway restart in which the real
bridge misses events; the inbound debounce that merges quick messages; pairing of unknown senders.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Annotated, Any

import anyio
from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, TextContent
from pydantic import Field

READY_FILE = "openclaw-stub.json"
STATE_FILE = "openclaw-stub-state.json"
QUEUE_LIMIT = 1_000


class ChannelGateway:
    """What OpenClaw's gateway keeps, durably: conversations (session → route), transcripts, deliveries;
    and, in memory, this bridge process's live event queue."""

    def __init__(self, path: Path):
        self._path = path
        saved = json.loads(path.read_text()) if path.exists() else {}
        self.sessions: dict[str, dict[str, Any]] = saved.get("sessions", {})
        self.outbound: list[dict[str, Any]] = saved.get("outbound", [])
        self._next_id: int = saved.get("next_message_id", 1)
        self.queue: list[dict[str, Any]] = []
        self.cursor = 0
        self._changed = anyio.Event()

    # --- what happens on the channels ---------------------------------------------------------------------------
    def inbound(self, channel: str, to: str, text: str, session_key: str | None = None,
                account_id: str = "default") -> dict[str, Any]:
        """A user's message arrives: the session gets (or keeps) its delivery route; a `user` event is queued."""
        peer = to.split(":", 1)[-1]
        key = session_key or f"agent:main:{channel}:direct:{peer}"
        self.sessions.setdefault(key, {"messages": []}).update(channel=channel, to=to, accountId=account_id)
        return self._message(key, "user", text)

    def send(self, session_key: str, text: str) -> dict[str, Any]:
        """`messages_send`: deliver through the session's route; the reply echoes back as an `assistant` event."""
        session = self.sessions.get(session_key)
        if session is None or not session.get("to"):
            raise ToolError(f"Conversation not found for session {session_key}")
        event = self._message(session_key, "assistant", text)
        self.outbound.append({"session_key": session_key, "channel": session["channel"], "to": session["to"],
                              "text": text, "message_id": event["messageId"], "at": time.time()})
        self._save()
        return {"runId": str(uuid.uuid4()), "messageId": event["messageId"], "channel": session["channel"]}

    def _message(self, key: str, role: str, text: str) -> dict[str, Any]:
        session = self.sessions[key]
        message_id, self._next_id = str(uuid.uuid4()), self._next_id + 1   # the real ids are uuids too
        seq = len(session["messages"]) + 1
        now_ms = int(time.time() * 1000)
        meta = {"id": message_id, "seq": seq, "recordTimestampMs": now_ms,
                "transport": {"channel": session["channel"], "messageId": str(self._next_id - 1)}}
        if role == "user":
            meta.update(senderId=session["to"].split(":", 1)[-1], senderIsOwner=False)
            message = {"role": role, "content": text, "timestamp": now_ms // 1000 * 1000, "__openclaw": meta}
        else:                              # our sends, mirrored into the transcript
            message = {"role": role, "content": [{"type": "text", "text": text}], "provider": "openclaw",
                       "model": "delivery-mirror", "timestamp": now_ms, "__openclaw": meta}
        session["messages"].append(message)
        session["updatedAt"] = message["timestamp"]
        self._save()
        route = {"lastChannel": session["channel"], "lastTo": session["to"], "lastAccountId": session["accountId"]}
        return self._enqueue({"type": "message", "sessionKey": key, "conversation": self.conversation(key),
                              "messageId": message_id, "messageSeq": seq, "role": role, "text": text,
                              "raw": {"sessionKey": key, "messageId": message_id, "messageSeq": seq,
                                      "message": message, **route}})

    # --- the live queue ------------------------------------------------------------------------------------------
    def _enqueue(self, event: dict[str, Any]) -> dict[str, Any]:
        self.cursor += 1
        event = {"cursor": self.cursor, **event}
        self.queue = (self.queue + [event])[-QUEUE_LIMIT:]
        self._changed.set()
        self._changed = anyio.Event()
        return event

    def matching(self, after_cursor: int, session_key: str | None) -> list[dict[str, Any]]:
        return [event for event in self.queue if event["cursor"] > after_cursor
                and (not session_key or event.get("sessionKey") == session_key)]

    async def wait(self, after_cursor: int, session_key: str | None, timeout_s: float) -> dict[str, Any] | None:
        with anyio.move_on_after(timeout_s):
            while True:
                found = self.matching(after_cursor, session_key)
                if found:
                    return found[0]
                await self._changed.wait()
        return None

    # --- what the tools read -------------------------------------------------------------------------------------
    def conversation(self, key: str) -> dict[str, Any] | None:
        session = self.sessions.get(key)
        if session is None or not session.get("to"):
            return None
        content = session["messages"][-1]["content"] if session["messages"] else None
        last = content if isinstance(content, str) or content is None else content[0]["text"]
        return {"sessionKey": key, "channel": session["channel"], "to": session["to"],
                "accountId": session["accountId"], "lastMessagePreview": last, "updatedAt": session.get("updatedAt")}

    def _save(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        scratch = self._path.with_suffix(".tmp")
        scratch.write_text(json.dumps({"sessions": self.sessions, "outbound": self.outbound,
                                       "next_message_id": self._next_id}, ensure_ascii=False))
        scratch.replace(self._path)


def _answer(text: str, structured: dict[str, Any]) -> CallToolResult:
    """The real bridge's answer shape: a short text, the data in structured content."""
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=structured)


def build_server(gateway: ChannelGateway) -> MCPServer:
    server = MCPServer("openclaw", log_level="WARNING")

    @server.tool(description="List OpenClaw channel-backed conversations available through session routes.")
    async def conversations_list(limit: Annotated[int, Field(ge=1, le=500)] = 50, search: str | None = None,
                                 channel: str | None = None, includeDerivedTitles: bool | None = None,  # noqa: N803
                                 includeLastMessage: bool | None = None) -> CallToolResult:  # noqa: N803
        found = [c for c in map(gateway.conversation, gateway.sessions) if c is not None
                 and (not channel or c["channel"] == channel.lower())
                 and (not search or search.lower() in json.dumps(c, ensure_ascii=False).lower())]
        found = sorted(found, key=lambda c: c["updatedAt"] or 0, reverse=True)[:limit]
        return _answer(f"conversations: {len(found)}", {"conversations": found})

    @server.tool(description="Get one OpenClaw conversation by session key.")
    async def conversation_get(session_key: Annotated[str, Field(min_length=1)]) -> CallToolResult:
        conversation = gateway.conversation(session_key)
        if conversation is None:
            return CallToolResult(content=[TextContent(type="text", text=f"conversation not found: {session_key}")],
                                  is_error=True)
        return _answer(f"conversation {session_key}", {"conversation": conversation})

    @server.tool(description="Read recent messages for one OpenClaw conversation.")
    async def messages_read(session_key: Annotated[str, Field(min_length=1)],
                            limit: Annotated[int, Field(ge=1, le=200)] = 20) -> CallToolResult:
        messages = gateway.sessions.get(session_key, {}).get("messages", [])[-limit:]
        return _answer(f"messages: {len(messages)}", {"messages": messages})

    @server.tool(description="Poll queued OpenClaw conversation events since a cursor.")
    async def events_poll(after_cursor: Annotated[int, Field(ge=0)] = 0, session_key: str | None = None,
                          limit: Annotated[int, Field(ge=1, le=200)] = 20) -> CallToolResult:
        events = gateway.matching(after_cursor, session_key)[:limit]
        return _answer(f"events: {len(events)}", {"events": events,
                                                  "next_cursor": events[-1]["cursor"] if events else after_cursor})

    @server.tool(description="Wait for the next queued OpenClaw conversation event.")
    async def events_wait(after_cursor: Annotated[int, Field(ge=0)] = 0, session_key: str | None = None,
                          timeout_ms: Annotated[int, Field(ge=1, le=300_000)] = 30_000) -> CallToolResult:
        event = await gateway.wait(after_cursor, session_key, timeout_ms / 1000)
        return _answer(f"event {event['cursor']}" if event else "timeout", {"event": event})

    @server.tool(description="Send a message back through the same OpenClaw conversation route.")
    async def messages_send(session_key: Annotated[str, Field(min_length=1)],
                            text: Annotated[str, Field(min_length=1)]) -> CallToolResult:
        return _answer("sent", {"result": gateway.send(session_key, text)})

    @server.tool(description="List open OpenClaw exec or plugin approval requests visible through the Gateway.")
    async def permissions_list_open() -> CallToolResult:
        return _answer("approvals: 0", {"approvals": []})

    @server.tool(description="Allow or deny one pending OpenClaw exec or plugin approval request.")
    async def permissions_respond(kind: str, id: str, decision: str) -> CallToolResult:  # noqa: A002 (public name)
        raise ToolError(f"unknown or expired approval id {id}")

    return server


# --- the admin endpoint: the channels' side -----------------------------------------------------------------------

async def serve_admin(gateway: ChannelGateway, port: int, ready_file: Path) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            method, path, _ = (await reader.readline()).decode().split(" ", 2)
            length = 0
            while (line := (await reader.readline()).decode().strip()):
                name, _, value = line.partition(":")
                length = int(value) if name.lower() == "content-length" else length
            body = json.loads(await reader.readexactly(length)) if length else {}
            status, answer = _route(gateway, method, path, body)
        except (ValueError, KeyError, TypeError, ToolError) as error:
            status, answer = 400, {"error": str(error)}
        payload = json.dumps(answer, ensure_ascii=False).encode()
        writer.write(f"HTTP/1.1 {status} OK\r\nContent-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
                     "Connection: close\r\n\r\n".encode() + payload)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    url = "http://127.0.0.1:%d" % server.sockets[0].getsockname()[1]
    ready_file.parent.mkdir(parents=True, exist_ok=True)
    ready_file.write_text(json.dumps({"admin": url, "pid": os.getpid()}))
    async with server:
        await server.serve_forever()


def _route(gateway: ChannelGateway, method: str, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    match method, path:
        case "POST", "/inbound":
            event = gateway.inbound(body["channel"], body["to"], body["text"], body.get("session_key"),
                                    body.get("account_id", "default"))
            return 200, {"cursor": event["cursor"], "message_id": event["messageId"],
                         "session_key": event["sessionKey"]}
        case "GET", "/outbound":
            return 200, {"messages": gateway.outbound}
        case "GET", "/health":
            return 200, {"pid": os.getpid(), "cursor": gateway.cursor}
    return 404, {"error": f"no route {method} {path}"}


class StubAdmin:
    """Synchronous client of the admin endpoint, for tests and people.

    admin = StubAdmin.of(home)
    admin.inbound("telegram", "telegram:4242", "/status")["cursor"]
    # → 1
    """

    def __init__(self, url: str, timeout_s: float = 10.0):
        self.url, self.timeout_s = url.rstrip("/"), timeout_s

    @classmethod
    def of(cls, home: Path) -> StubAdmin:
        """The admin of the stub running for `$OMNI_HOME` = `home`."""
        return cls(json.loads((home / READY_FILE).read_text())["admin"])

    def inbound(self, channel: str, to: str, text: str, **fields: Any) -> dict[str, Any]:
        return self._call("POST", "/inbound", {"channel": channel, "to": to, "text": text, **fields})

    def outbound(self) -> list[dict[str, Any]]:
        return self._call("GET", "/outbound")["messages"]

    def health(self) -> dict[str, Any]:
        return self._call("GET", "/health")

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            raise ValueError(f"{method} {path}: HTTP {error.code}: {error.read().decode('utf-8', 'replace')}") from None


async def serve(admin_port: int, state: Path, ready_file: Path) -> None:
    """Serve MCP on stdio until the client closes it, and the admin endpoint alongside."""
    gateway = ChannelGateway(state)
    async with anyio.create_task_group() as group:
        group.start_soon(serve_admin, gateway, admin_port, ready_file)
        await build_server(gateway).run_stdio_async()
        group.cancel_scope.cancel()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sandbox.openclaw_stub", description=__doc__.splitlines()[0])
    parser.add_argument("--admin-port", type=int, default=0, help="loopback port of the admin endpoint (0: any)")
    parser.add_argument("--state", type=Path, help=f"the gateway's durable state (default $OMNI_HOME/{STATE_FILE})")
    args = parser.parse_args(argv)
    home = Path(os.environ.get("OMNI_HOME") or "~/.omni").expanduser()
    anyio.run(serve, args.admin_port, (args.state or home / STATE_FILE).expanduser(), home / READY_FILE)


if __name__ == "__main__":
    main(sys.argv[1:])
