"""Simulated OpenAI-compatible model providers on loopback, for the sandbox and the tests.

One process serves several named upstreams, each on its own port (so that one of them can refuse
connections while the others answer), plus an admin port that switches their behaviour at run time:

    python -m sandbox.providers --admin-port 0 --upstream free=0 --upstream paid=0 --upstream direct=0 \\
        --expect-key direct=DIRECT_KEY --ready-file /tmp/providers.json
    # stdout and /tmp/providers.json (written atomically once every listener accepts):
    # {"admin": "http://127.0.0.1:A", "upstreams": {"free": "http://127.0.0.1:P/v1", ...}}

    curl -X POST http://127.0.0.1:A/upstreams/free -d '{"mode": "429", "retry_after_s": 2}'

Each upstream serves `POST /v1/chat/completions` (JSON, or Server-Sent Events with `"stream": true`)
and `GET /v1/models`. Modes: `ok`, `latency` (waits `latency_s` first), `429` (with `Retry-After`),
`500`, `hang` (never answers; returns when the client goes away) and `refuse` (the listening socket is
closed and open connections are reset; any other mode re-opens it on the same port).

Admin API (JSON): `GET /upstreams`, `POST /upstreams/{name}` with any of `mode`, `latency_s`,
`retry_after_s`, `reply` (null clears it), `POST /reset`. `ProvidersAdmin` wraps it for Python callers
and `start_providers` runs the whole thing as a child process. Keys are compared, never logged or echoed.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import json
import logging
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

HOST = "127.0.0.1"
MODES = ("ok", "latency", "429", "500", "hang", "refuse")
DEFAULTS: dict[str, Any] = {"mode": "ok", "latency_s": 0.5, "retry_after_s": 1.0, "reply": None}
REPLY_ECHO_CHARS = 60
HANG_POLL_S = 0.05
READY_DEADLINE_S = 20.0
PROJECT_ROOT = Path(__file__).resolve().parent.parent
_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
# OpenClaw's agent sends its runtime context as a user message after the user's own: echo the user's.
OPENCLAW_CONTEXT = "<<<BEGIN_OPENCLAW_INTERNAL_CONTEXT>>>"
log = logging.getLogger("sandbox.providers")


# ---------------------------------------------------------------- listeners

class _Server(uvicorn.Server):
    """A uvicorn server that leaves signal handling to us (several run in one loop)."""

    @contextlib.contextmanager
    def capture_signals(self):
        yield


def listen_socket(port: int) -> socket.socket:
    """A listening loopback socket on `port` (0: a free one), reusable right after it is closed."""
    # IPPROTO_TCP (not 0): asyncio then sets TCP_NODELAY on accepted connections; without it every
    # keep-alive answer waits ~40 ms for the client's delayed ACK (Nagle).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((HOST, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


class Listener:
    """One uvicorn server for `app` on a loopback port that can be closed and re-opened on that port."""

    def __init__(self, app: Starlette, port: int):
        self.app, self.port = app, port
        self.server: _Server | None = None
        self.task: asyncio.Task | None = None

    @property
    def is_open(self) -> bool:
        return self.server is not None

    async def open(self) -> None:
        """Listen (port 0 becomes a fixed free port) and return once the server accepts."""
        sock = listen_socket(self.port)
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.app, log_config=None, log_level="warning", access_log=False,
                                lifespan="off", ws="none", http="h11")
        self.server = _Server(config)
        self.task = asyncio.create_task(self.server.serve(sockets=[sock]))
        while not self.server.started:
            if self.task.done():
                self.server = None
                sock.close()
                self.task.result()  # raises what killed it
                raise RuntimeError(f"server on port {self.port} stopped during start-up")
            await asyncio.sleep(0.005)

    async def close(self) -> None:
        """Close the listening socket at once, reset open connections, and wait for the server to end."""
        server, task = self.server, self.task
        if server is None:
            return
        self.server = self.task = None
        server.should_exit = server.force_exit = True
        for asyncio_server in server.servers:
            asyncio_server.close()  # from here on connections are refused
        for connection in list(server.server_state.connections):
            transport = getattr(connection, "transport", None)
            if transport is not None:
                transport.abort()
        await asyncio.sleep(0)  # let the aborted connections report connection_lost
        try:
            await asyncio.wait_for(task, timeout=5)
        except Exception:  # pylint: disable=broad-except
            log.warning("server on port %s did not stop cleanly", self.port, exc_info=True)


# ---------------------------------------------------------------- upstreams

@dataclass
class Upstream:
    """A named upstream: its behaviour, its counters and its listener."""
    name: str
    expected_key: str | None = field(default=None, repr=False)
    mode: str = DEFAULTS["mode"]
    latency_s: float = DEFAULTS["latency_s"]
    retry_after_s: float = DEFAULTS["retry_after_s"]
    reply: str | None = DEFAULTS["reply"]
    calls: int = 0
    last_model: str | None = None
    last_key_sent: bool | None = None
    listener: Listener | None = field(default=None, repr=False)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.listener.port}/v1"

    def state(self) -> dict[str, Any]:
        return {"mode": self.mode, "latency_s": self.latency_s, "retry_after_s": self.retry_after_s,
                "reply": self.reply, "calls": self.calls, "last_model": self.last_model,
                "last_key_sent": self.last_key_sent, "url": self.url}


def openai_error(status: int, message: str, type_: str, code: str | None,
                 headers: dict[str, str] | None = None) -> JSONResponse:
    """An error response with OpenAI's body shape."""
    body = {"error": {"message": message, "type": type_, "param": None, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


def bearer(request: Request) -> str:
    """The bearer token of the request, or ''."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def check_key(up: Upstream, request: Request) -> Response | None:
    """A 401 when `up` demands a key and the request lacks the right one, else None."""
    if up.expected_key is None or hmac.compare_digest(bearer(request).encode(), up.expected_key.encode()):
        return None
    return openai_error(401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key")


async def misbehave(up: Upstream, mode: str, request: Request) -> Response | None:
    """The failure that `mode` calls for (after any latency), or None to answer normally."""
    if mode == "latency":
        await asyncio.sleep(up.latency_s)
    elif mode == "429":
        headers = {"Retry-After": f"{up.retry_after_s:g}",
                   "retry-after-ms": str(int(up.retry_after_s * 1000))}
        return openai_error(429, "Rate limit reached for requests", "rate_limit_error",
                            "rate_limit_exceeded", headers)
    elif mode == "500":
        return openai_error(500, "The server had an error while processing your request.",
                            "server_error", None)
    elif mode == "hang":
        while not await request.is_disconnected():
            await asyncio.sleep(HANG_POLL_S)
        return Response(status_code=499)  # nobody is listening any more
    return None


def text_of(content: Any) -> str:
    """The text of a message's content: a string or a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


def words(text: str) -> int:
    return len(text.split())


_CHOICES = re.compile(r"exactly one of: ([\w, -]+)\.")
_HINTS = {"research": ("research", "analysis", "研究", "分析"), "heavy": ("overnight", "batch", "每天", "批量")}


def make_reply(up: Upstream, messages: list[dict[str, Any]]) -> str:
    """The configured reply; a classification when asked for "exactly one of: …" (a keyword guess, so
    the sandbox's model classification does something); else "[NAME] " and the start of the last user message."""
    if up.reply is not None:
        return up.reply
    users = [text for m in messages if m.get("role") == "user"
             and not (text := text_of(m.get("content"))).startswith(OPENCLAW_CONTEXT)]
    systems = " ".join(text_of(m.get("content")) for m in messages if m.get("role") == "system")
    if (asked := _CHOICES.search(systems)) and users:
        options = [option.strip() for option in asked.group(1).split(",")]
        text = users[-1].lower()
        return next((o for o in options if any(h in text for h in _HINTS.get(o, (o,)))), options[-1])
    return f"[{up.name}] " + (users[-1][:REPLY_ECHO_CHARS] if users else "")


def usage(messages: list[dict[str, Any]], reply: str) -> dict[str, int]:
    """Token counts, as whitespace-separated words (at least 1 each)."""
    prompt = max(1, sum(words(text_of(m.get("content"))) for m in messages))
    completion = max(1, words(reply))
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def completion(model: str, reply: str, counts: dict[str, int]) -> dict[str, Any]:
    return {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion",
            "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": reply},
                         "logprobs": None, "finish_reason": "stop"}],
            "usage": counts}


async def stream_chunks(model: str, reply: str, counts: dict[str, int] | None) -> AsyncIterator[str]:
    """SSE lines: a role chunk, a few content chunks, the finish chunk, [usage chunk], [DONE]."""
    base = {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion.chunk",
            "created": int(time.time()), "model": model}

    def event(choices: list[dict[str, Any]], **extra: Any) -> str:
        payload = json.dumps({**base, "choices": choices, **extra}, ensure_ascii=False, separators=(",", ":"))
        return f"data: {payload}\n\n"

    def choice(delta: dict[str, Any], finish: str | None = None) -> list[dict[str, Any]]:
        return [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]

    yield event(choice({"role": "assistant", "content": ""}))
    step = max(1, math.ceil(len(reply) / 3))
    for start in range(0, len(reply), step):
        await asyncio.sleep(0)
        yield event(choice({"content": reply[start:start + step]}))
    yield event(choice({}, "stop"))
    if counts is not None:
        yield event([], usage=counts)
    yield "data: [DONE]\n\n"


def upstream_app(up: Upstream) -> Starlette:
    """The OpenAI-compatible app of one upstream."""

    async def chat_completions(request: Request) -> Response:
        up.calls += 1
        mode = up.mode
        up.last_key_sent = bool(bearer(request))
        try:
            body = json.loads(await request.body())
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return openai_error(400, "The body must be a JSON object with a 'messages' list.",
                                "invalid_request_error", None)
        up.last_model = body.get("model")
        failure = check_key(up, request) or await misbehave(up, mode, request)
        if failure is not None:
            return failure
        messages = [m for m in body["messages"] if isinstance(m, dict)]
        reply, model = make_reply(up, messages), str(body.get("model"))
        counts = usage(messages, reply)
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return StreamingResponse(stream_chunks(model, reply, counts if include_usage else None),
                                     media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        return JSONResponse(completion(model, reply, counts))

    async def models(request: Request) -> Response:
        failure = check_key(up, request) or await misbehave(up, up.mode, request)
        if failure is not None:
            return failure
        ids = [f"sandbox-{up.name}", "sandbox-model"]
        return JSONResponse({"object": "list", "data": [
            {"id": model_id, "object": "model", "created": 0, "owned_by": "sandbox"} for model_id in ids]})

    return Starlette(routes=[Route("/v1/chat/completions", chat_completions, methods=["POST"]),
                             Route("/v1/models", models, methods=["GET"])])


# ---------------------------------------------------------------- admin

class AdminError(ValueError):
    """A bad admin request; the message is shown to the caller."""


def validate(changes: Any) -> dict[str, Any]:
    """The checked changes of an admin POST, or AdminError saying what is wrong."""
    if not isinstance(changes, dict):
        raise AdminError("the body must be a JSON object")
    unknown = sorted(set(changes) - set(DEFAULTS))
    if unknown:
        raise AdminError(f"unknown field(s) {unknown}; allowed: {sorted(DEFAULTS)}")
    if "mode" in changes and changes["mode"] not in MODES:
        raise AdminError(f"unknown mode {changes['mode']!r}; modes: {list(MODES)}")
    for key in ("latency_s", "retry_after_s"):
        value = changes.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise AdminError(f"{key} must be a number >= 0")
    if not isinstance(changes.get("reply", ""), (str, type(None))):
        raise AdminError("reply must be a string or null")
    return changes


async def configure(up: Upstream, changes: dict[str, Any]) -> None:
    """Apply checked changes to `up`, closing or re-opening its listener as the mode requires."""
    async with up.lock:
        mode = changes.get("mode", up.mode)
        if mode == "refuse" and up.listener.is_open:
            await up.listener.close()
        elif mode != "refuse" and not up.listener.is_open:
            await up.listener.open()  # OSError if someone took the port meanwhile
        for key, value in changes.items():
            setattr(up, key, float(value) if key.endswith("_s") else value)


def admin_app(upstreams: dict[str, Upstream]) -> Starlette:
    """The admin app: read and switch the upstreams' behaviour, reset everything."""

    def snapshot() -> dict[str, Any]:
        return {name: up.state() for name, up in upstreams.items()}

    async def get_upstreams(_request: Request) -> Response:
        return JSONResponse(snapshot())

    async def post_upstream(request: Request) -> Response:
        name = request.path_params["name"]
        try:
            if name not in upstreams:
                raise AdminError(f"unknown upstream {name!r}; upstreams: {sorted(upstreams)}")
            try:
                changes = validate(json.loads(await request.body() or b"{}"))
            except json.JSONDecodeError as exc:
                raise AdminError(f"the body is not JSON: {exc}") from exc
            await configure(upstreams[name], changes)
        except AdminError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        except OSError as exc:
            return JSONResponse({"error": f"could not re-open {name!r}: {exc}"}, status_code=500)
        return JSONResponse(upstreams[name].state())

    async def reset(_request: Request) -> Response:
        for up in upstreams.values():
            await configure(up, dict(DEFAULTS))
            up.calls, up.last_model, up.last_key_sent = 0, None, None
        return JSONResponse(snapshot())

    return Starlette(routes=[Route("/upstreams", get_upstreams, methods=["GET"]),
                             Route("/upstreams/{name}", post_upstream, methods=["POST"]),
                             Route("/reset", reset, methods=["POST"])])


# ---------------------------------------------------------------- process

def write_ready(path: Path, ready: dict[str, Any]) -> None:
    """Write `ready` as JSON to `path` atomically (temp file, then rename)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(ready, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)


async def serve(ports: dict[str, int], admin_port: int, keys: dict[str, str],
                ready_file: Path | None) -> int:
    """Run every listener until SIGTERM or SIGINT; announce the URLs once all accept."""
    upstreams = {name: Upstream(name, keys.get(name)) for name in ports}
    for name, up in upstreams.items():
        up.listener = Listener(upstream_app(up), ports[name])
    admin = Listener(admin_app(upstreams), admin_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    listeners = [up.listener for up in upstreams.values()] + [admin]
    try:
        for listener in listeners:
            await listener.open()
        ready = {"admin": f"http://{HOST}:{admin.port}",
                 "upstreams": {name: up.url for name, up in upstreams.items()}}
        if ready_file is not None:
            write_ready(ready_file, ready)
        print(json.dumps(ready, ensure_ascii=False), flush=True)
        orphan_watch = asyncio.create_task(exit_when_orphaned(stop))
        await stop.wait()
        orphan_watch.cancel()
    finally:
        await asyncio.gather(*(listener.close() for listener in listeners))
    return 0


async def exit_when_orphaned(stop: asyncio.Event, every_s: float = 0.5) -> None:
    """A SIGKILLed supervisor cannot stop us: leave with it, so that its successor gets the ports."""
    parent = os.getppid()
    while os.getppid() == parent:
        await asyncio.sleep(every_s)
    stop.set()


def parse_pairs(parser: argparse.ArgumentParser, pairs: list[str], what: str) -> dict[str, str]:
    """NAME=VALUE strings as a dict; argparse errors for malformed or repeated names."""
    result: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not _NAME.match(name) or not value or name in result:
            parser.error(f"{what}: expected distinct NAME=VALUE pairs, got {pair!r}")
        result[name] = value
    return result


def parse_args(argv: list[str] | None = None) -> tuple[dict[str, int], int, dict[str, str], Path | None]:
    """(upstream ports, admin port, expected keys by upstream, ready file) from the command line."""
    parser = argparse.ArgumentParser(prog="python -m sandbox.providers", description=__doc__.split("\n")[0])
    parser.add_argument("--admin-port", type=int, required=True, help="0 picks a free port")
    parser.add_argument("--upstream", action="append", required=True, metavar="NAME=PORT",
                        help="a named upstream on its own port (0 picks a free one); repeat")
    parser.add_argument("--expect-key", action="append", default=[], metavar="NAME=ENVVAR",
                        help="upstream NAME demands 'Authorization: Bearer $ENVVAR'")
    parser.add_argument("--ready-file", type=Path, help="where to write the URLs once listening")
    args = parser.parse_args(argv)
    ports: dict[str, int] = {}
    for name, port in parse_pairs(parser, args.upstream, "--upstream").items():
        if not port.isdigit() or int(port) > 65535:
            parser.error(f"--upstream {name}: bad port {port!r}")
        ports[name] = int(port)
    keys: dict[str, str] = {}
    for name, env_var in parse_pairs(parser, args.expect_key, "--expect-key").items():
        if name not in ports:
            parser.error(f"--expect-key {name}: no such upstream")
        if not os.environ.get(env_var):
            parser.error(f"--expect-key {name}: environment variable {env_var} is not set or empty")
        keys[name] = os.environ[env_var]
    return ports, args.admin_port, keys, args.ready_file


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="providers: %(levelname)s %(name)s: %(message)s")
    ports, admin_port, keys, ready_file = parse_args(argv)
    try:
        return asyncio.run(serve(ports, admin_port, keys, ready_file))
    except OSError as exc:  # a port is taken
        print(f"providers: cannot listen: {exc}", file=sys.stderr)
        return 1


# ---------------------------------------------------------------- for tests, drills and the supervisor

class ProvidersAdmin:
    """Synchronous client of the admin API.

    admin = ProvidersAdmin("http://127.0.0.1:8400")
    admin.set("free", "429", retry_after_s=2)["mode"]
    # → '429'
    """

    def __init__(self, admin_url: str, timeout_s: float = 10.0):
        self.admin_url, self.timeout_s = admin_url.rstrip("/"), timeout_s

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.admin_url + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")
            raise ValueError(f"{method} {path}: HTTP {exc.code}: {detail}") from None

    def set(self, name: str, mode: str | None = None, **fields: Any) -> dict[str, Any]:
        """Change upstream `name` (mode and/or latency_s, retry_after_s, reply); its new state."""
        changes = dict(fields, **({"mode": mode} if mode is not None else {}))
        return self._call("POST", f"/upstreams/{name}", changes)

    def state(self) -> dict[str, dict[str, Any]]:
        return self._call("GET", "/upstreams")

    def calls(self, name: str) -> int:
        return self.state()[name]["calls"]

    def reset(self) -> dict[str, dict[str, Any]]:
        return self._call("POST", "/reset")


def start_providers(upstreams: dict[str, int], admin_port: int, ready_file: Path,
                    expect_keys: dict[str, str] | None = None,
                    env: dict[str, str] | None = None) -> tuple[subprocess.Popen, dict[str, Any]]:
    """Spawn `python -m sandbox.providers` and wait until it listens; (process, ready JSON).

    `expect_keys` maps upstream names to environment variable names; `env` is merged over this
    process's environment (put the keys' values there). The child's output goes to
    `<ready_file>.log`. The caller stops the process with `stop_providers`.
    """
    process = spawn_providers(upstreams, admin_port, ready_file, expect_keys, env)
    ready_file, log_path = Path(ready_file), Path(ready_file).with_name(Path(ready_file).name + ".log")
    deadline = time.monotonic() + READY_DEADLINE_S
    while not ready_file.exists():
        if process.poll() is not None:
            raise RuntimeError(f"sandbox.providers exited with {process.returncode}:\n"
                               f"{log_path.read_text(errors='replace')}")
        if time.monotonic() > deadline:
            process.kill()
            process.wait(5)
            raise TimeoutError(f"sandbox.providers not ready after {READY_DEADLINE_S:g}s:\n"
                               f"{log_path.read_text(errors='replace')}")
        time.sleep(0.02)
    return process, json.loads(ready_file.read_text(encoding="utf-8"))


def spawn_providers(upstreams: dict[str, int], admin_port: int, ready_file: Path,
                    expect_keys: dict[str, str] | None = None,
                    env: dict[str, str] | None = None) -> subprocess.Popen:
    """Spawn `python -m sandbox.providers` and return at once; `ready_file` appears once it listens."""
    ready_file = Path(ready_file)
    ready_file.unlink(missing_ok=True)
    command = [sys.executable, "-m", "sandbox.providers", "--admin-port", str(admin_port),
               "--ready-file", str(ready_file)]
    for name, port in upstreams.items():
        command += ["--upstream", f"{name}={port}"]
    for name, env_var in (expect_keys or {}).items():
        command += ["--expect-key", f"{name}={env_var}"]
    log_path = ready_file.with_name(ready_file.name + ".log")
    with open(log_path, "wb") as log_file:
        return subprocess.Popen(command, cwd=PROJECT_ROOT, env={**os.environ, **(env or {})},
                                stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT)



def stop_providers(process: subprocess.Popen | None) -> None:
    """Terminate what `start_providers` started; kill it if it does not go within 5 s."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)

if __name__ == "__main__":
    sys.exit(main())
