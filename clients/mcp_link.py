"""The client end of one MCP server: the session an Executor actor calls tools through.

An `McpLink` starts (stdio) or connects to (Streamable HTTP) one server, initialises the session
and keeps it open until `close()` or until the transport dies. All its coroutines run on the one
shared asyncio loop. The session's `async with` blocks live in one long-lived *owner task*, because
anyio cancel scopes must be exited by the task that entered them; any other task on the loop may
`call()` concurrently. A lost link is never revived: the caller opens a new `McpLink`.
"""
import asyncio
import json
import subprocess
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx2
import mcp_types
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from config.schema import ExecutorConfig

ProgressCallback = Callable[[float, float | None, str | None], None]

# A graceful stdio shutdown is bounded by the SDK (stdin close, 2 s grace, SIGTERM, 2 s, SIGKILL);
# past this we cancel the owner's scope (the SDK's process shutdown is shielded, so it still reaps).
CLOSE_GRACE_S = 8.0


class LinkLost(Exception):
    """The server's transport died (process exited, connection closed, HTTP session gone)."""


class LinkFailed(Exception):
    """The server could not be started/connected/initialised within connect_timeout_s; message says why."""


@dataclass(frozen=True, slots=True)
class CallOutcome:
    ok: bool            # False when the tool returned is_error (or the call failed short of transport death)
    text: str           # concatenated text content (or JSON of structured_content when there is no text)
    timed_out: bool = False
    # The tool's structured content (claude_code's session_id); not part of what an outcome *is* (its equality).
    structured: dict[str, Any] | None = field(default=None, compare=False)


class McpLink:
    """One MCP client session to one server (stdio child process or Streamable HTTP), kept open by one
    long-lived owner task on the running asyncio loop. All methods are coroutines run on that same loop.

    `errlog`: a file that receives the stdio child's stderr (appended); without it, stderr is discarded.
    """

    def __init__(self, spec: ExecutorConfig, *, errlog: str | Path | None = None) -> None:
        self.spec = spec
        self._errlog = errlog
        self._session: ClientSession | None = None
        self._owner: asyncio.Task[None] | None = None
        # Made in open(), on the loop: anyio objects cannot be created from an actor's thread.
        self._owner_scope: anyio.CancelScope | None = None
        self._wake_owner: anyio.Event | None = None   # set by close() and by transport death: the owner tears down
        self._lost_reason: str | None = None
        self._closing = False
        self.tool_schemas: dict[str, dict[str, Any]] = {}   # tool name → input schema: which arguments it takes

    def takes(self, tool: str, argument: str) -> bool:
        """Whether the server's `tool` has the input property `argument` (e.g. workFolder, session_id)."""
        return argument in self.tool_schemas.get(tool, {}).get("properties", {})

    @property
    def is_open(self) -> bool:
        return self._session is not None and self._lost_reason is None and not self._closing

    async def open(self) -> list[str]:
        """Start/connect and initialise; return the server's tool names. Raises LinkFailed."""
        if self._owner is not None:
            raise RuntimeError("an McpLink is opened once; open a new one to reconnect")
        self._owner_scope, self._wake_owner = anyio.CancelScope(), anyio.Event()
        ready: asyncio.Future[list[str]] = asyncio.get_running_loop().create_future()
        self._owner = asyncio.create_task(self._own(ready), name=f"mcp-link:{self.spec.name}")
        try:
            return await asyncio.wait_for(asyncio.shield(ready), self.spec.connect_timeout_s)
        except TimeoutError:
            ready.cancel()  # the owner must not set an outcome nobody will read
            await self.close()
            raise LinkFailed(f"{self._where()}: not initialised within {self.spec.connect_timeout_s:g}s"
                             f"{self._errlog_hint()}") from None
        except BaseException:
            ready.cancel()
            await self.close()
            raise

    async def call(self, tool: str, arguments: dict[str, Any], timeout_s: float,
                   on_progress: ProgressCallback | None = None) -> CallOutcome:
        """Call `tool`; a timeout or an error answer is an outcome, a dead transport raises LinkLost.

        Cancelling the calling task propagates CancelledError (the SDK tells the server
        notifications/cancelled); the session stays usable for other calls.
        """
        session = self._session
        if not self.is_open or session is None:
            raise LinkLost(f"{self._where()}: {self._lost_reason or 'link is not open'}")
        try:
            progress = _awaitable(on_progress) if on_progress else None
            result = await session.call_tool(tool, arguments, read_timeout_seconds=timeout_s,
                                             progress_callback=progress)
        except MCPError as exc:
            if exc.error.code == mcp_types.REQUEST_TIMEOUT:
                return CallOutcome(ok=False, text=f"timed out after {timeout_s:g}s", timed_out=True)
            if session_lost(exc):
                self._lose(exc.error.message)
                reason = "link closed" if self._closing else exc.error.message
                raise LinkLost(f"{self._where()}: {reason}") from exc
            return CallOutcome(ok=False, text=exc.error.message)
        return CallOutcome(ok=not result.is_error, text=_text_of(result),
                           structured=result.structured_content if isinstance(result.structured_content, dict)
                           else None)

    async def close(self) -> None:
        """Terminate the child process / HTTP session. Idempotent; never raises."""
        self._closing = True
        owner = self._owner
        if owner is None or owner.done():
            return
        self._wake_owner.set()
        if self._session is None:
            self._owner_scope.cancel()  # still starting: nothing to shut down gracefully
        done, _ = await asyncio.wait({owner}, timeout=CLOSE_GRACE_S)
        if not done:
            self._owner_scope.cancel()
            await asyncio.wait({owner}, timeout=CLOSE_GRACE_S)

    async def wait_lost(self) -> str:
        """Return, with the reason, once the link is closed or its transport has died."""
        if self._owner is not None:
            await asyncio.shield(self._owner)
        return self._lost_reason or "closed"

    # -- the owner task -------------------------------------------------------------------------

    async def _own(self, ready: asyncio.Future[list[str]]) -> None:
        """Hold the transport and session open until close() or transport death, then tear down."""
        try:
            with self._owner_scope:
                async with AsyncExitStack() as stack:
                    read, write = await stack.enter_async_context(self._transport())
                    # The session reads through a relay so that we learn when the transport ends,
                    # even with no call in flight.
                    relay_send, relay_receive = anyio.create_memory_object_stream(0)
                    relays = await stack.enter_async_context(anyio.create_task_group())
                    relays.start_soon(self._relay, read, relay_send)
                    stack.callback(relays.cancel_scope.cancel)
                    session = await stack.enter_async_context(ClientSession(relay_receive, write))
                    await session.initialize()
                    self.tool_schemas = await _list_tools(session)
                    tools = list(self.tool_schemas)
                    self._session = session
                    if not ready.done():  # open() may have given up already
                        ready.set_result(tools)
                    await self._wake_owner.wait()
        except Exception as exc:  # noqa: BLE001 (the owner must end quietly; the reason is kept)
            self._lose(_describe(exc))
        finally:
            self._session = None
            if not ready.done():
                ready.set_exception(LinkFailed(
                    f"{self._where()}: {self._lost_reason or 'closed while starting'}{self._errlog_hint()}"))

    @asynccontextmanager
    async def _transport(self) -> AsyncIterator[tuple[Any, Any]]:
        spec = self.spec
        if spec.transport == "stdio":
            if not spec.command:
                raise ValueError("stdio executor has no command")
            # stdio_client merges env over the few variables it passes on (HOME, PATH, SHELL, TERM,
            # USER, LOGNAME): spec.env holds only the extras.
            params = StdioServerParameters(command=spec.command, args=list(spec.args),
                                           env=dict(spec.env), cwd=spec.cwd)
            with self._errlog_file() as errlog:
                async with stdio_client(params, errlog=errlog) as streams:
                    yield streams
        else:
            if not spec.url:
                raise ValueError("http executor has no url")
            # No read timeout: a tool call may stream nothing for its whole duration; call() bounds it.
            timeout = httpx2.Timeout(spec.connect_timeout_s, read=None)
            async with httpx2.AsyncClient(headers=dict(spec.headers), timeout=timeout) as client:
                async with streamable_http_client(spec.url, http_client=client) as streams:
                    yield streams

    async def _relay(self, source: Any, sink: Any) -> None:
        """Pass the transport's messages to the session; when the transport ends, the link is lost."""
        try:
            async with sink:
                async for item in source:
                    await sink.send(item)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.EndOfStream):
            pass
        self._lose("the server closed the connection")

    # -- helpers --------------------------------------------------------------------------------

    def _lose(self, reason: str) -> None:
        if self._lost_reason is None and not self._closing:
            self._lost_reason = reason
        if self._wake_owner is not None:
            self._wake_owner.set()

    def _errlog_file(self) -> Any:
        if self._errlog is None:
            return nullcontext(subprocess.DEVNULL)
        path = Path(self._errlog)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path.open("a", encoding="utf-8")  # closed by the `with` in _transport

    def _errlog_hint(self) -> str:
        return f" (server stderr: {self._errlog})" if self._errlog is not None else ""

    def _where(self) -> str:
        spec = self.spec
        target = spec.url if spec.transport == "http" else " ".join([spec.command or "?", *spec.args])
        return f"executor {spec.name!r} ({target})"


async def _list_tools(session: ClientSession) -> dict[str, dict[str, Any]]:
    """Every tool's input schema, by name (in the server's order)."""
    schemas: dict[str, dict[str, Any]] = {}
    cursor = None
    while True:
        page = mcp_types.PaginatedRequestParams(cursor=cursor) if cursor else None
        listing = await session.list_tools(params=page)
        schemas |= {tool.name: dict(tool.input_schema or {}) for tool in listing.tools}
        cursor = listing.next_cursor
        if not cursor:
            return schemas


def _awaitable(on_progress: ProgressCallback) -> Any:
    async def progress(done: float, total: float | None, message: str | None) -> None:
        on_progress(done, total, message)
    return progress


# How a session the server no longer knows (HTTP 404 on a session id) reaches us: the SDK's client says
# "Session terminated" when the 404 has no JSON-RPC body; servers say so themselves, under codes of their own
# choosing (the Python SDK "Session not found", INVALID_REQUEST; the TypeScript SDK the same words, -32001).
SESSION_GONE = ("Session terminated", "Session not found")


def session_lost(exc: MCPError) -> bool:
    """The transport or the session is dead (a closed pipe, a session the server forgot), whatever the error's
    code: only a new session helps. An error *answer* to a call (a tool's failure) is never one of these."""
    return exc.error.code == mcp_types.CONNECTION_CLOSED or exc.error.message.startswith(SESSION_GONE)


def _text_of(result: Any) -> str:
    texts = [block.text for block in result.content if getattr(block, "type", None) == "text"]
    if texts:
        return "\n".join(texts)
    if result.structured_content is not None:
        return json.dumps(result.structured_content, ensure_ascii=False)
    return ""


def _describe(exc: BaseException) -> str:
    """A readable one-line reason, from the first leaf of (nested) exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, MCPError):
        return exc.error.message
    if isinstance(exc, FileNotFoundError):
        return f"cannot start server: {exc.strerror}: {exc.filename!r}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
