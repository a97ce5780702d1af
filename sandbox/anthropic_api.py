"""A loopback stand-in of the Anthropic Messages API, so the real Claude CLI runs offline in tests.

    python -m sandbox.anthropic_api --port 0        # prints {"base_url": "http://127.0.0.1:PORT"}; Ctrl-C stops

Point the Claude CLI (or claude-agent-sdk) at it with `ANTHROPIC_BASE_URL=<base_url>` and any
`ANTHROPIC_API_KEY` (the key is recorded as present or not, never checked or stored). In a test,
`AnthropicStandIn()` runs it in a thread (`start()` / `stop()`, or `with`).

`POST /v1/messages` answers as the real API does, streamed (SSE `message_start`, `content_block_start`,
`content_block_delta` with `text_delta` / `input_json_delta`, `content_block_stop`, `message_delta`,
`message_stop`) or as one JSON message when `stream` is false. What it answers is steered by markers in the
conversation's first user text:

- `[hang]`: sends `message_start` and then nothing, holding the connection open until the client goes away
  or the stand-in stops (a model that never answers);
- `[write PATH TEXT]`: the first turn is a `Write` tool use (`file_path` PATH, `content` TEXT); once the
  conversation carries that tool's result, the answer is "wrote PATH" or, when the tool was refused,
  "could not write PATH: <the tool result>";
- `remember WORD`: answers "I will remember WORD.";
- `what word`: answers "The word was WORD." with the WORD of an earlier `remember WORD` in the messages it was
  sent (so a resumed session shows that its history came along), else "I know no word.";
- anything else: "Done: <the first 60 characters of the text>".

Requests without tools (the CLI's side calls: titles, summaries) get a short text answer and never hang.
`POST /v1/messages/count_tokens` answers a rough count. Every request is recorded (`requests`).

Left out compared with the real API: authentication (any key is accepted), models (every model name is
accepted and echoed), thinking blocks, images, documents, citations, server tools (web search), prompt
caching (usage reports no cache tokens), stop sequences, token limits (`max_tokens` is ignored), rate limits
(429), overload (529) and error events mid-stream, the Batches, Files and Models endpoints, and real token
counting.
"""
from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import re
import socket
import threading
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

HOST = "127.0.0.1"
_WRITE = re.compile(r"\[write (\S+) ([^\]]*)\]")
_REMEMBER = re.compile(r"remember (\w+)", re.IGNORECASE)


@dataclass
class Recorded:
    path: str
    model: str
    stream: bool
    has_key: bool
    tools: list[str]
    messages: list[dict[str, Any]] = field(repr=False)


# --- what to answer -------------------------------------------------------------------------------------------
def _texts(message: dict[str, Any], results: bool = True) -> list[str]:
    """The text parts of one message (a string content, text blocks, and tool results' text if `results`)."""
    content = message.get("content")
    if isinstance(content, str):
        return [content]
    texts = []
    for block in content or []:
        if block.get("type") == "text":
            texts.append(block.get("text", ""))
        elif block.get("type") == "tool_result" and results:
            inner = block.get("content")
            texts.extend([inner] if isinstance(inner, str) else [part.get("text", "") for part in inner or []])
    return texts


def _user_text(messages: list[dict[str, Any]]) -> tuple[str, int]:
    """The latest task text a user gave, and its message's index. The CLI puts its own reminders in
    <system-reminder> blocks, and a tool's result comes back as a user message: neither is the task."""
    for index in range(len(messages) - 1, -1, -1):
        if messages[index].get("role") == "user":
            for text in _texts(messages[index], results=False):
                if not text.lstrip().startswith("<"):
                    return text, index
    return "", len(messages)


def _tool_result(messages: list[dict[str, Any]]) -> dict[str, Any] | None:
    last = messages[-1] if messages else {}
    if last.get("role") == "user" and isinstance(last.get("content"), list):
        for block in last["content"]:
            if block.get("type") == "tool_result":
                return block
    return None


def plan_reply(body: dict[str, Any]) -> tuple[str, Any]:
    """("hang", None), ("tool", (name, input)) or ("text", answer) for one Messages request."""
    messages = body.get("messages") or []
    task, at = _user_text(messages)
    if not body.get("tools"):
        return "text", "Omni stand-in"
    if "[hang]" in task:
        return "hang", None
    if write := _WRITE.search(task):
        result = _tool_result(messages)
        if result is None:
            return "tool", ("Write", {"file_path": write.group(1), "content": write.group(2)})
        if result.get("is_error"):
            return "text", f"could not write {write.group(1)}: {' '.join(_texts({'content': [result]}))[:200]}"
        return "text", f"wrote {write.group(1)}"
    if "what word" in task.lower():
        earlier = [m for message in messages[:at] for text in _texts(message) if (m := _REMEMBER.search(text))]
        return "text", f"The word was {earlier[-1].group(1)}." if earlier else "I know no word."
    if remember := _REMEMBER.search(task):
        return "text", f"I will remember {remember.group(1)}."
    return "text", f"Done: {task[:60]}"


# --- the wire format ------------------------------------------------------------------------------------------
def _event(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()


def _usage(output_tokens: int) -> dict[str, Any]:
    return {"input_tokens": 10, "output_tokens": output_tokens, "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0}


def _message_json(message_id: str, model: str, kind: str, payload: Any) -> dict[str, Any]:
    if kind == "tool":
        content = [{"type": "tool_use", "id": f"toolu_{message_id}", "name": payload[0], "input": payload[1]}]
    else:
        content = [{"type": "text", "text": payload}]
    return {"id": message_id, "type": "message", "role": "assistant", "model": model, "content": content,
            "stop_reason": "tool_use" if kind == "tool" else "end_turn", "stop_sequence": None, "usage": _usage(5)}


class AnthropicStandIn:
    """The stand-in's app and, for tests, a uvicorn server in a thread of this process."""

    def __init__(self, port: int = 0):
        self._port = port
        self._ids = itertools.count(1)
        self._stopping: asyncio.Event | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.requests: list[Recorded] = []
        self.app = Starlette(routes=[
            Route("/v1/messages", self._messages, methods=["POST"]),
            Route("/v1/messages/count_tokens", self._count_tokens, methods=["POST"]),
        ])

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self._port}"

    # -- handlers
    async def _messages(self, request: Request) -> Response:
        body = await request.json()
        keyed = bool(request.headers.get("x-api-key") or request.headers.get("authorization"))
        self.requests.append(Recorded(path=request.url.path, model=str(body.get("model")),
                                      stream=bool(body.get("stream")), has_key=keyed,
                                      tools=[tool.get("name", "") for tool in body.get("tools") or []],
                                      messages=body.get("messages") or []))
        kind, payload = plan_reply(body)
        message_id = f"msg_omni_{next(self._ids)}"
        model = str(body.get("model") or "claude-stand-in")
        if not body.get("stream"):
            if kind == "hang":
                await self._wait_stop(request)
                return Response(status_code=503)
            return JSONResponse(_message_json(message_id, model, kind, payload))
        return StreamingResponse(self._stream(request, message_id, model, kind, payload),
                                 media_type="text/event-stream")

    async def _count_tokens(self, request: Request) -> Response:
        return JSONResponse({"input_tokens": max(1, len(await request.body()) // 4)})

    async def _stream(self, request: Request, message_id: str, model: str, kind: str,
                      payload: Any) -> AsyncIterator[bytes]:
        start = _message_json(message_id, model, kind, payload) | {"content": [], "stop_reason": None,
                                                                   "usage": _usage(1)}
        yield _event("message_start", {"type": "message_start", "message": start})
        if kind == "hang":
            await self._wait_stop(request)
            return
        if kind == "tool":
            name, arguments = payload
            block = {"type": "tool_use", "id": f"toolu_{message_id}", "name": name, "input": {}}
            delta = {"type": "input_json_delta", "partial_json": json.dumps(arguments)}
        else:
            block, delta = {"type": "text", "text": ""}, {"type": "text_delta", "text": payload}
        yield _event("content_block_start", {"type": "content_block_start", "index": 0, "content_block": block})
        yield _event("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta})
        yield _event("content_block_stop", {"type": "content_block_stop", "index": 0})
        yield _event("message_delta", {"type": "message_delta", "usage": {"output_tokens": 5},
                                       "delta": {"stop_reason": "tool_use" if kind == "tool" else "end_turn",
                                                 "stop_sequence": None}})
        yield _event("message_stop", {"type": "message_stop"})

    async def _wait_stop(self, request: Request) -> None:
        """Hold a hanging answer until the client disconnects or the stand-in stops."""
        assert self._stopping is not None
        while not self._stopping.is_set() and not await request.is_disconnected():
            try:
                await asyncio.wait_for(self._stopping.wait(), 0.2)
            except TimeoutError:
                pass

    # -- running it
    def _bind(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, self._port))
        self._port = sock.getsockname()[1]
        return sock

    async def serve(self, sock: socket.socket | None = None) -> None:
        self._stopping = asyncio.Event()
        sock = sock or self._bind()
        self._server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning", lifespan="off",
                                                     timeout_graceful_shutdown=2))
        watcher = asyncio.ensure_future(self._watch_exit())
        try:
            await self._server.serve(sockets=[sock])
        finally:
            watcher.cancel()

    async def _watch_exit(self) -> None:
        while self._server is not None and not self._server.should_exit:
            await asyncio.sleep(0.05)
        if self._stopping is not None:
            self._stopping.set()        # hanging answers end, so the graceful shutdown does not wait for them

    def start(self) -> "AnthropicStandIn":
        sock = self._bind()
        self._thread = threading.Thread(target=asyncio.run, args=(self.serve(sock),), name="anthropic-stand-in",
                                        daemon=True)
        self._thread.start()
        while self._server is None or not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the Anthropic API stand-in did not start")
            threading.Event().wait(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> "AnthropicStandIn":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m sandbox.anthropic_api", description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=0, help="the loopback port (0: any free one)")
    args = parser.parse_args()
    stand_in = AnthropicStandIn(args.port)
    sock = stand_in._bind()
    print(json.dumps({"base_url": stand_in.base_url}), flush=True)
    try:
        asyncio.run(stand_in.serve(sock))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
