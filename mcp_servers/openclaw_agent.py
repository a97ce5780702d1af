"""OpenClaw's agent as an executor: an MCP server (stdio) whose one tool runs one agent turn on an OpenClaw gateway.

    python -m mcp_servers.openclaw_agent --url ws://127.0.0.1:18789          # token in $OPENCLAW_GATEWAY_TOKEN

OpenClaw's own MCP bridge (`openclaw mcp serve`) has no tool that starts an agent turn, so this server speaks
the gateway's public WebSocket RPC (protocol 4) itself, with aiohttp. One call of `run_agent_turn`:

1. (remote gateways such as Moltworker, or a local one still starting) `GET --health-url` until it answers
   `{"ok": true, …}` (Moltworker's `/api/status`) or `{"ready": true}` (the gateway's own `/readyz`), within the
   connect timeout: a Moltworker container takes 1–2 minutes to start cold, and says `"status": "starting"`;
2. opens a WebSocket to `--url` (`ws://` or `wss://`, with `--header` values such as Cloudflare Access's
   `CF-Access-Client-Id` / `CF-Access-Client-Secret`), answers `connect.challenge` with `connect` (role
   operator, scopes operator.read + operator.write, the gateway token, and a signed device identity when
   `--device-key` is given);
3. `agent {message, sessionKey, idempotencyKey}` on the task's own session `agent:<agent>:omni-task-<scope>`,
   never an IM user's session (a `session_key` argument must be `agent:<agent>:omni-…` too);
4. `agent.wait` in short slices (`--wait-slice`), reporting MCP progress after each (elapsed seconds of the
   timeout, and what the run says: "Provider temporarily unavailable. Retrying in 3s (2/8)." …);
5. returns the run's final answer (`terminalReply.text`).

Cancel (MCP `notifications/cancelled`) and the timeout (`timeout_s`, else `--timeout`) abort the run on the
gateway (`chat.abort`, then `sessions.abort` if that fails) before the call ends. Every failure is an MCP tool
error of one line: the gateway unreachable ("… is not reachable at ws://127.0.0.1:18789: Connection refused"),
a wrong token ("OpenClaw gateway at ws://… refused the token (AUTH_TOKEN_MISMATCH)"), an unknown agent, no model
or a failing model (the run's own error, e.g. "Unknown model: ghost/none …"), a timeout (with the model's last
error while OpenClaw was retrying). The token is read from the environment variable named by `--token-env`
and never logged or echoed.

Idempotency: a task's scope is `<task_id>-<first 8 hex of the prompt's SHA-256>` (task ids alone repeat: a new
database starts again at 1, and OpenClaw keeps sessions for good), its session `agent:<agent>:omni-task-<scope>`,
and its run's `idempotencyKey` (which is also the run id) `omni-task-<scope>.<n>`. A repeated call
for the same task (our executor retries a task whose MCP server died mid-call) therefore re-attaches to the
run already going on the gateway, or gets its answer if it has finished, instead of starting a second run.
Only when that earlier run failed or was aborted (a `/retry` after a failure or a cancel) does the call move on
to `.<n+1>`, a fresh run. Without a `task_id` each call is a run of its own. The gateway keeps this memory
while it runs (a gateway restart forgets it: the next call starts a fresh run).

Device identity and pairing: the gateway accepts token-only operator clients on direct loopback. Remote
gateways want a device identity (an Ed25519 key; `--device-key PATH`, created mode 0600 on first use) and a
one-time pairing approval on the gateway's side. This server signs the `connect.challenge` with that key (v3
payload, as OpenClaw's own client does) and, while the device waits for approval, fails with the gateway's
PAIRING_REQUIRED and how to approve it (`openclaw devices list` / `openclaw devices approve <request>` on the
gateway host, or Moltworker's admin page). It does not store the device token the gateway issues after
approval: every connect presents the gateway token plus the signed identity.

Example executors (config/default.yaml):

    executors:
      general:                       # OpenClaw's agent on the local gateway
        transport: stdio
        command: python
        args: ["-m", "mcp_servers.openclaw_agent", "--url", "ws://127.0.0.1:18789", "--agent", "main"]
        env: {OPENCLAW_GATEWAY_TOKEN: "${OPENCLAW_GATEWAY_TOKEN}"}
        tool: run_agent_turn
        arguments: {prompt: "{description}", task_id: "{task_id}", timeout_s: 600}
        call_timeout_s: 660          # above timeout_s: the run is aborted and reported before the hard limit
      moltworker:                    # OpenClaw on Cloudflare (Moltworker), behind Cloudflare Access
        transport: stdio
        command: python
        args: ["-m", "mcp_servers.openclaw_agent", "--url", "wss://moltworker.example.workers.dev",
               "--token-env", "MOLTWORKER_GATEWAY_TOKEN", "--connect-timeout", "150",
               "--health-url", "https://moltworker.example.workers.dev/api/status",
               "--header", "CF-Access-Client-Id=CF_ACCESS_CLIENT_ID",
               "--header", "CF-Access-Client-Secret=CF_ACCESS_CLIENT_SECRET",
               "--device-key", "${OMNI_HOME:-~/.omni}/moltworker-device.pem"]
        env: {MOLTWORKER_GATEWAY_TOKEN: "${MOLTWORKER_GATEWAY_TOKEN}",
              CF_ACCESS_CLIENT_ID: "${CF_ACCESS_CLIENT_ID}", CF_ACCESS_CLIENT_SECRET: "${CF_ACCESS_CLIENT_SECRET}"}
        tool: run_agent_turn
        arguments: {prompt: "{description}", task_id: "{task_id}", timeout_s: 3400}
        call_timeout_s: 3600
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import itertools
import json
import os
import re
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, Mapping

import aiohttp
import anyio
from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError

PROTOCOL = 4
SCOPES = ("operator.read", "operator.write")
CLIENT = {"id": "cli", "version": "omni-orchestrator", "platform": sys.platform, "mode": "cli"}
TOOL = "run_agent_turn"
ABORT_TIMEOUT_S = 5.0
REQUEST_TIMEOUT_S = 30.0           # any RPC other than agent.wait: the gateway answers these at once
HEALTH_PROBE_TIMEOUT_S = 10.0
MAX_RUNS_PER_TASK = 100            # earlier failed runs of one task skipped before giving up
MAX_TIMEOUT_S = 7 * 24 * 3600.0
_SESSION_KEY = re.compile(r"^agent:[A-Za-z0-9_-]+:omni-[A-Za-z0-9._:-]+$")
_TASK_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_HEADER = re.compile(r"^([A-Za-z0-9-]+)=([A-Za-z_][A-Za-z0-9_]*)$")

Progress = Callable[[float, float, str], Awaitable[None]]


class TurnFailed(Exception):
    """A turn that could not run or did not succeed; its message is the one line the caller sees."""


class GatewayRefused(TurnFailed):
    """The gateway answered a request with an error frame."""


# --- settings ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Settings:
    url: str
    token_env: str = "OPENCLAW_GATEWAY_TOKEN"
    agent: str = "main"
    connect_timeout_s: float = 15.0
    timeout_s: float = 600.0
    wait_slice_s: float = 2.0
    health_url: str | None = None
    health_interval_s: float = 3.0
    header_envs: Mapping[str, str] = field(default_factory=dict)   # header name → environment variable
    device_key: Path | None = None

    def token(self) -> str:
        token = os.environ.get(self.token_env, "")
        if not token:
            raise TurnFailed(f"no OpenClaw gateway token: the environment variable {self.token_env} is unset or "
                             "empty (give it in the executor's env)")
        return token

    def headers(self) -> dict[str, str]:
        headers = {}
        for name, variable in self.header_envs.items():
            value = os.environ.get(variable, "")
            if not value:
                raise TurnFailed(f"header {name}: the environment variable {variable} is unset or empty")
            headers[name] = value
        return headers


def parse_settings(argv: list[str]) -> Settings:
    parser = argparse.ArgumentParser(prog="python -m mcp_servers.openclaw_agent",
                                     description="MCP server (stdio): one OpenClaw agent turn per tool call.")
    parser.add_argument("--url", default=os.environ.get("OPENCLAW_GATEWAY_URL", "ws://127.0.0.1:18789"),
                        help="the gateway's WebSocket URL, ws:// or wss:// (default $OPENCLAW_GATEWAY_URL)")
    parser.add_argument("--token-env", default="OPENCLAW_GATEWAY_TOKEN",
                        help="the environment variable holding the gateway token")
    parser.add_argument("--agent", default="main", help="the OpenClaw agent id that runs the turns")
    parser.add_argument("--connect-timeout", type=float, default=15.0, metavar="SECONDS",
                        help="budget for the health check plus the WebSocket handshake (Moltworker cold start: 150)")
    parser.add_argument("--timeout", type=float, default=600.0, metavar="SECONDS",
                        help="a turn's limit when the call gives no timeout_s; the run is aborted after it")
    parser.add_argument("--wait-slice", type=float, default=2.0, metavar="SECONDS",
                        help="agent.wait slice: progress is reported after each")
    parser.add_argument("--health-url",
                        help="GET this first until it answers {ok: true} (Moltworker /api/status) "
                             "or {ready: true} (/readyz)")
    parser.add_argument("--health-interval", type=float, default=3.0, metavar="SECONDS")
    parser.add_argument("--header", action="append", default=[], metavar="NAME=ENV_VAR",
                        help="an HTTP header for the health check and the WebSocket upgrade, its value from ENV_VAR")
    parser.add_argument("--device-key", help="Ed25519 device key (PEM), created if absent: device identity for "
                        "remote gateways")
    args = parser.parse_args(argv)
    if not re.match(r"^wss?://", args.url):
        parser.error(f"--url {args.url!r}: expected a ws:// or wss:// URL")
    headers = {}
    for item in args.header:
        match = _HEADER.match(item)
        if match is None:
            parser.error(f"--header {item!r}: expected NAME=ENV_VAR (the value is read from the environment)")
        headers[match.group(1)] = match.group(2)
    for name, value in (("--connect-timeout", args.connect_timeout), ("--timeout", args.timeout),
                        ("--wait-slice", args.wait_slice), ("--health-interval", args.health_interval)):
        if not value > 0:
            parser.error(f"{name} {value}: expected a number of seconds > 0")
    return Settings(url=args.url, token_env=args.token_env, agent=args.agent, connect_timeout_s=args.connect_timeout,
                    timeout_s=args.timeout, wait_slice_s=args.wait_slice, health_url=args.health_url,
                    health_interval_s=args.health_interval, header_envs=headers,
                    device_key=Path(args.device_key).expanduser() if args.device_key else None)


# --- device identity -----------------------------------------------------------------------------------------
def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class DeviceIdentity:
    """An Ed25519 key that signs the gateway's challenge the way OpenClaw's own client does (v3 payload)."""

    def __init__(self, path: Path):
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            pem = Ed25519PrivateKey.generate().private_bytes(serialization.Encoding.PEM,
                                                             serialization.PrivateFormat.PKCS8,
                                                             serialization.NoEncryption())
            with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as file:
                file.write(pem)
        try:
            self._key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (OSError, ValueError) as error:
            raise TurnFailed(f"--device-key {path}: not a readable PEM private key ({error})") from None
        if not isinstance(self._key, Ed25519PrivateKey):
            raise TurnFailed(f"--device-key {path}: expected an Ed25519 key")
        self.public_raw = self._key.public_key().public_bytes(serialization.Encoding.Raw,
                                                              serialization.PublicFormat.Raw)
        self.device_id = hashlib.sha256(self.public_raw).hexdigest()

    def connect_field(self, nonce: str, signed_at_ms: int, token: str) -> dict[str, Any]:
        payload = "|".join(["v3", self.device_id, CLIENT["id"], CLIENT["mode"], "operator", ",".join(SCOPES),
                            str(signed_at_ms), token, nonce, CLIENT["platform"].strip().lower(), ""])
        return {"id": self.device_id, "publicKey": _b64url(self.public_raw),
                "signature": _b64url(self._key.sign(payload.encode())), "signedAt": signed_at_ms, "nonce": nonce}


# --- the gateway connection ----------------------------------------------------------------------------------
def _one_line(text: Any, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


class Gateway:
    """One authenticated WebSocket to an OpenClaw gateway: requests by id, `agent` events to a listener."""

    def __init__(self, settings: Settings, http: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse,
                 token: str):
        self.settings, self._http, self._ws, self._token = settings, http, ws, token
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        self.on_agent_event: Callable[[dict[str, Any]], None] = lambda payload: None
        self._reader = asyncio.get_running_loop().create_task(self._read())

    @property
    def where(self) -> str:
        return f"OpenClaw gateway at {self.settings.url}"

    def scrub(self, text: Any) -> str:
        """A gateway message in one line, with the token (should it ever be echoed) left out."""
        return _one_line(str(text).replace(self._token, "(token)") if self._token else text)

    async def _read(self) -> None:
        reason = "closed the connection"
        try:
            async for message in self._ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    continue
                frame = json.loads(message.data)
                if frame.get("type") == "res" and frame.get("id") in self._pending:
                    future = self._pending.pop(frame["id"])
                    if not future.done():
                        future.set_result(frame)
                elif frame.get("type") == "event" and frame.get("event") == "agent":
                    self.on_agent_event(frame.get("payload") or {})
            if self._ws.close_code is not None:
                reason = f"closed the connection (WebSocket close code {self._ws.close_code})"
        except (aiohttp.ClientError, ValueError) as error:
            reason = f"broke the connection ({type(error).__name__}: {_one_line(error)})"
        finally:
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(TurnFailed(f"{self.where} {reason}"))
            self._pending.clear()

    async def request(self, method: str, params: dict[str, Any], timeout_s: float = REQUEST_TIMEOUT_S) -> dict[str,
                                                                                                               Any]:
        """The response payload of `method`; an error response raises TurnFailed naming the method."""
        request_id = f"omni-{next(self._ids)}"
        future = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        if self._reader.done():
            self._pending.pop(request_id, None)
            raise TurnFailed(f"{self.where} closed the connection")
        await self._ws.send_json({"type": "req", "id": request_id, "method": method, "params": params})
        try:
            with anyio.fail_after(timeout_s):
                frame = await future
        except TimeoutError:
            raise TurnFailed(f"{self.where} did not answer {method} within {timeout_s:g}s") from None
        finally:
            self._pending.pop(request_id, None)
        if not frame.get("ok"):
            error = frame.get("error") or {}
            raise GatewayRefused(f"{self.where} refused {method}: {self.scrub(error.get('message', error))}")
        return frame.get("payload") or {}

    async def close(self) -> None:
        self._reader.cancel()
        await self._ws.close()
        await self._http.close()


async def wait_until_healthy(settings: Settings, deadline: float, progress: Progress) -> None:
    """Poll the health URL until it says ok (Moltworker's public `/api/status`: `{"ok": true}`; a local gateway's
    `/readyz`: `{"ready": true}`), or fail at the deadline."""
    started, last = time.monotonic(), "no answer yet"
    async with aiohttp.ClientSession(headers=settings.headers()) as http:
        while True:
            try:
                async with http.get(settings.health_url,
                                    timeout=aiohttp.ClientTimeout(total=HEALTH_PROBE_TIMEOUT_S)) as response:
                    body = await response.text()
                    if response.status in (401, 403):
                        raise TurnFailed(f"{settings.health_url} refused us: HTTP {response.status} (Cloudflare "
                                         "Access: check the CF-Access-Client-Id/-Secret headers)")
                    answer = json.loads(body) if response.status == 200 else None
                    if isinstance(answer, dict) and (answer.get("ok") is True or answer.get("ready") is True):
                        return
                    last = _one_line(body,
                                     200) if answer is not None else f"HTTP {response.status}: {_one_line(body, 120)}"
            except (aiohttp.ClientError, TimeoutError, ValueError) as error:
                last = f"{type(error).__name__}: {_one_line(error, 160)}"
            waited = time.monotonic() - started
            if time.monotonic() + settings.health_interval_s > deadline:
                raise TurnFailed(f"{settings.health_url} did not report ready within {settings.connect_timeout_s:g}s "
                                 f"(the connect timeout): last answer {last}")
            await progress(waited, settings.connect_timeout_s, f"waiting for the gateway to start: {last}")
            await anyio.sleep(settings.health_interval_s)


def _handshake_error(settings: Settings, error: dict[str, Any], scrub: Callable[[Any], str]) -> TurnFailed:
    where = f"OpenClaw gateway at {settings.url}"
    details = error.get("details") or {}
    code = details.get("code") or error.get("code") or "error"
    if code in ("AUTH_TOKEN_MISMATCH", "AUTH_TOKEN_MISSING", "AUTH_PASSWORD_MISMATCH", "AUTH_UNAUTHORIZED"):
        return TurnFailed(f"{where} refused the token ({code}): check {settings.token_env}")
    if code == "PAIRING_REQUIRED" or "pairing" in str(error.get("message", "")).lower():
        request = details.get("requestId") or details.get("pairingRequestId")
        how = f"`openclaw devices approve {request}`" if request \
            else "`openclaw devices list`, then `openclaw devices approve <request>`"
        return TurnFailed(f"{where} requires pairing this device ({code}): approve it on the gateway host with {how}")
    return TurnFailed(f"{where} refused the connection: {scrub(error.get('message', error))} ({code})")


async def connect(settings: Settings, deadline: float) -> Gateway:
    """An authenticated connection, within the deadline; a retryable UNAVAILABLE (start-up) is retried."""
    token, headers = settings.token(), settings.headers()
    identity = DeviceIdentity(settings.device_key) if settings.device_key else None
    where = f"OpenClaw gateway at {settings.url}"

    def scrub(text: Any) -> str:
        return _one_line(str(text).replace(token, "(token)"))

    while True:
        http = aiohttp.ClientSession(headers=headers)
        try:
            with anyio.fail_after(max(0.1, deadline - time.monotonic())):
                ws = await http.ws_connect(settings.url, max_msg_size=0, autoping=True)
                challenge = await ws.receive_json()
                if challenge.get("event") != "connect.challenge":
                    raise TurnFailed(f"{where} did not open with connect.challenge: is this an OpenClaw gateway?")
                nonce, ts = challenge["payload"]["nonce"], int(challenge["payload"]["ts"])
                params: dict[str, Any] = {"minProtocol": PROTOCOL, "maxProtocol": PROTOCOL, "client": CLIENT,
                                          "role": "operator", "scopes": list(SCOPES), "caps": [],
                                          "auth": {"token": token}}
                if identity is not None:
                    params["device"] = identity.connect_field(nonce, ts, token)
                await ws.send_json({"type": "req", "id": "connect", "method": "connect", "params": params})
                while (frame := await ws.receive_json()).get("id") != "connect":
                    pass
        except TimeoutError:
            await http.close()
            raise TurnFailed(f"{where} did not complete the handshake within {settings.connect_timeout_s:g}s "
                             "(the connect timeout)") from None
        except aiohttp.WSServerHandshakeError as error:
            await http.close()
            access = error.status in (401, 403)
            hint = " (Cloudflare Access: check the CF-Access-Client-Id/-Secret headers)" if access else ""
            raise TurnFailed(f"{where} refused the WebSocket upgrade: HTTP {error.status} "
                             f"{scrub(error.message)}{hint}") from None
        except aiohttp.ClientConnectorError as error:
            await http.close()
            os_error = error.os_error
            reason = os.strerror(os_error.errno).lower() if os_error and os_error.errno else scrub(error)
            raise TurnFailed(f"{where} is not reachable: {reason}") from None
        except (aiohttp.ClientError, TypeError, ValueError, KeyError) as error:   # closed mid-handshake, not JSON …
            await http.close()
            raise TurnFailed(f"{where} broke off the handshake: {type(error).__name__} {scrub(error)}") from None
        except BaseException:
            await http.close()
            raise
        if frame.get("ok"):
            return Gateway(settings, http, ws, token)
        await ws.close()
        await http.close()
        error = frame.get("error") or {}
        retry_ms = (error.get("details") or {}).get("retryAfterMs") or error.get("retryAfterMs")
        if error.get("code") == "UNAVAILABLE" and retry_ms and time.monotonic() + retry_ms / 1000 < deadline:
            await anyio.sleep(retry_ms / 1000)
            continue
        raise _handshake_error(settings, error, scrub)


# --- one turn ------------------------------------------------------------------------------------------------
@dataclass
class RunWatch:
    """What the run's `agent` events said lately: for progress messages and a timeout's explanation."""
    run_id: str = ""
    note: str = ""
    last_error: str = ""

    def hear(self, payload: dict[str, Any]) -> None:
        if payload.get("runId") != self.run_id:
            return
        data = payload.get("data") or {}
        if payload.get("stream") == "lifecycle" and data.get("error"):
            # an abort (ours, or OpenClaw's of a hung model call) is what followed the error, not its cause; OpenClaw
            # marks it `aborted` where it knows, and its text says "aborted | …" where it does not
            aborted = data.get("aborted") is True or str(data["error"]).startswith("aborted")
            if not (self.last_error and aborted):
                self.last_error = _one_line(data["error"], 200)
        elif payload.get("stream") == "run_status" and data.get("message"):
            self.note = _one_line(data["message"], 120).rstrip(".")
        elif payload.get("stream") == "lifecycle" and data.get("phase"):
            self.note = f"phase {data['phase']}"


def task_scope(task_id: str, prompt: str) -> str:
    """What names a task's session and runs on the gateway: its id, and its text's digest.

    >>> task_scope("7", "hello")
    '7-2cf24dba'
    """
    return f"{task_id}-{hashlib.sha256(prompt.encode()).hexdigest()[:8]}"


def session_key_for(settings: Settings, scope: str, session_key: str) -> str:
    if session_key:
        if not _SESSION_KEY.match(session_key):
            raise TurnFailed(f"argument session_key {_one_line(session_key, 80)!r}: expected a session of this "
                             "executor's own, agent:<agent>:omni-…, never an IM user's session")
        return session_key
    return f"agent:{settings.agent}:omni-task-{scope}" if scope else f"agent:{settings.agent}:omni-call-{uuid.uuid4()}"


async def run_turn(settings: Settings, prompt: str, task_id: str, session_key: str, timeout_s: float,
                   progress: Progress) -> str:
    """Run one agent turn and return its answer; TurnFailed with the reason otherwise."""
    if not prompt.strip():
        raise TurnFailed("argument prompt: expected the task's text, got an empty string")
    if task_id and not _TASK_ID.match(task_id):
        raise TurnFailed(f"argument task_id {_one_line(task_id, 80)!r}: expected letters, digits, '.', '_' or '-' "
                         "(at most 64)")
    if timeout_s < 0 or timeout_s > MAX_TIMEOUT_S:
        raise TurnFailed(f"argument timeout_s {timeout_s:g}: expected 0 (the server's default) up to {MAX_TIMEOUT_S:g}")
    scope = task_scope(task_id, prompt) if task_id else ""
    key = session_key_for(settings, scope, session_key)
    limit_s = timeout_s or settings.timeout_s
    deadline = time.monotonic() + settings.connect_timeout_s
    if settings.health_url:
        await wait_until_healthy(settings, deadline, progress)
    gateway = await connect(settings, deadline)
    try:
        return await _turn_on(gateway, prompt, key, scope, limit_s, progress)
    finally:
        with anyio.CancelScope(shield=True):
            await gateway.close()


async def _turn_on(gateway: Gateway, prompt: str, session_key: str, scope: str, limit_s: float,
                   progress: Progress) -> str:
    watch = RunWatch()
    gateway.on_agent_event = watch.hear
    started = time.monotonic()
    refused = None
    for attempt in range(1, MAX_RUNS_PER_TASK + 1):
        idempotency_key = f"omni-task-{scope}.{attempt}" if scope else str(uuid.uuid4())
        try:
            accepted = await gateway.request("agent", {"message": prompt, "sessionKey": session_key,
                                                       "idempotencyKey": idempotency_key})
        except GatewayRefused as refusal:
            # a slow gateway may refuse an aborted run's key ("… without an active admitted run") rather than say
            # it was aborted: the next key starts afresh; a fresh key refused too means the request itself is wrong
            if refused is not None or not scope:
                raise
            refused = refusal
            continue
        refused = None
        watch.run_id = accepted.get("runId") or idempotency_key
        status = accepted.get("status")
        if status not in ("accepted", "in_flight", "ok"):
            continue   # the gateway remembers this key's run ended failed or aborted: a retry gets a fresh run
        earlier_run = status != "accepted"
        outcome = await _wait(gateway, watch, session_key, started, limit_s, progress)
        if outcome.get("status") == "ok":
            return _answer(gateway, outcome)
        if earlier_run:
            continue   # this task's earlier run failed or was aborted: a retry gets a fresh run
        raise TurnFailed(_run_error(gateway, watch, outcome))
    raise TurnFailed(f"task scope {scope} already had {MAX_RUNS_PER_TASK} failed runs on {gateway.where}")


async def _wait(gateway: Gateway, watch: RunWatch, session_key: str, started: float, limit_s: float,
                progress: Progress) -> dict[str, Any]:
    """agent.wait in slices until the run ends; abort it on timeout or cancellation."""
    try:
        while True:
            left_s = limit_s - (time.monotonic() - started)
            if left_s <= 0:
                why = f"; last model error: {watch.last_error}" if watch.last_error else ""
                aborted = await _abort(gateway, watch.run_id, session_key)
                raise TurnFailed(f"OpenClaw's agent did not finish within {limit_s:g}s: run {watch.run_id} "
                                 f"{aborted}{why}")
            slice_s = min(gateway.settings.wait_slice_s, left_s)
            outcome = await gateway.request("agent.wait", {"runId": watch.run_id, "timeoutMs": int(slice_s * 1000)},
                                            timeout_s=slice_s + REQUEST_TIMEOUT_S)
            if outcome.get("status") != "timeout":
                return outcome
            elapsed = time.monotonic() - started
            await progress(elapsed, limit_s, f"OpenClaw run {watch.run_id}: {watch.note or 'working'} ({elapsed:.0f}s)")
    except anyio.get_cancelled_exc_class():
        with anyio.CancelScope(shield=True):
            await _abort(gateway, watch.run_id, session_key)
        raise


async def _abort(gateway: Gateway, run_id: str, session_key: str) -> str:
    """Abort the run (chat.abort, else sessions.abort); says what happened, never raises."""
    failures = []
    with anyio.move_on_after(ABORT_TIMEOUT_S):
        for method, params in (("chat.abort", {"sessionKey": session_key, "runId": run_id}),
                               ("sessions.abort", {"key": session_key, "runId": run_id})):
            try:
                await gateway.request(method, params, timeout_s=ABORT_TIMEOUT_S)
                return "aborted"
            except TurnFailed as error:
                failures.append(str(error))
    return "could not be aborted: " + ("; ".join(failures) or f"no answer within {ABORT_TIMEOUT_S:g}s")


def _answer(gateway: Gateway, outcome: dict[str, Any]) -> str:
    reply = outcome.get("terminalReply") or {}
    text = reply.get("text") if isinstance(reply.get("text"), str) else ""
    if not text.strip():
        raise TurnFailed(f"OpenClaw's agent finished run {outcome.get('runId')} without a visible reply "
                         f"(stopReason {outcome.get('stopReason')}, disposition {reply.get('disposition')})")
    return text


def _run_error(gateway: Gateway, watch: RunWatch, outcome: dict[str, Any]) -> str:
    error = outcome.get("error") or watch.last_error
    if error:
        return f"OpenClaw's agent failed run {watch.run_id}: {gateway.scrub(error)}"
    if outcome.get("stopReason") == "rpc":
        return f"OpenClaw's run {watch.run_id} was aborted on the gateway"
    return f"OpenClaw's run {watch.run_id} ended {outcome.get('status')} (stopReason {outcome.get('stopReason')})"


# --- the MCP server ------------------------------------------------------------------------------------------
def build_server(settings: Settings) -> MCPServer:
    server = MCPServer("omni-openclaw-agent", log_level="WARNING")

    @server.tool(name=TOOL, description=(
        "Run one OpenClaw agent turn with `prompt` and return the agent's final answer. `task_id` gives the turn "
        "its own session (agent:<agent>:omni-task-<task_id>-<digest of prompt>) and makes a repeated call "
        "re-attach to the same run; "
        "`session_key` (agent:<agent>:omni-…) overrides the session; `timeout_s` aborts the run after that many "
        "seconds (0: the server's default). Progress is reported while the agent works; cancel aborts the run."))
    async def run_agent_turn(prompt: str, ctx: Context, task_id: str = "", session_key: str = "",
                             timeout_s: float = 0) -> str:
        async def progress(done: float, total: float, message: str) -> None:
            await ctx.report_progress(round(done, 1), total, message)
        try:
            return await run_turn(settings, prompt, str(task_id), session_key, float(timeout_s), progress)
        except TurnFailed as failure:
            raise ToolError(str(failure)) from None

    return server


def main(argv: list[str] | None = None) -> None:
    build_server(parse_settings(sys.argv[1:] if argv is None else argv)).run()


if __name__ == "__main__":
    main()
