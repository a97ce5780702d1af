"""A stand-in of the Telegram Bot API on loopback, for running OpenClaw's real Telegram channel offline.

    python -m sandbox.telegram_bot_api --port 0 --token 123456:TEST   # prints {"api_root": …, "admin": …}

Point OpenClaw at it with `channels.telegram.apiRoot: "http://127.0.0.1:PORT"` and the same bot token.

Bot API (`POST` or `GET /bot<TOKEN>/<method>`; JSON, form or query parameters; answers
`{"ok": true, "result": …}` or `{"ok": false, "error_code", "description"}` as Telegram does):
`getMe`, `deleteWebhook`, `getWebhookInfo`, `deleteMyCommands`, `setMyCommands`, `getMyCommands`,
`getUpdates` (long poll: waits up to `timeout` s for an update with `update_id >= offset`; calling it with an
offset confirms every update below it, which is never returned again; a second concurrent call ends the
first with 409 Conflict, as Telegram does), `sendChatAction`, `sendMessage`, `editMessageText`.
A wrong token gets 401, an unknown method 404, `sendMessage` to a chat that never wrote 400 "chat not found".
Message ids count per chat, shared by both directions, as in a private chat.

Admin (JSON): `POST /admin/inbound {chat_id, from_id?, text, first_name?, username?}` → `{update_id,
message_id}` (a private-chat text message from that user); `GET /admin/outbound[?chat_id=&after=]` → every
`sendMessage` and `editMessageText` with `seq`, `method`, `chat_id`, `message_id`, `text` (as sent),
`shown` (what the user sees: HTML tags stripped and entities decoded when `parse_mode` is HTML), `time`;
`GET /admin/requests[?method=]` → every Bot API call with its parameters; `POST /admin/reset` forgets the
recorded outbound messages and requests (update and message ids keep counting, as Telegram's do).
`BotApiAdmin` is the client of that for tests.

Left out compared with the real Bot API: webhooks (`setWebhook` is refused), groups, channels, topics and
business chats (every chat is private and every inbound message is plain text; callback queries,
reactions, edits by the user, media and files do not exist here: OpenClaw called none of them in our
runs), entity parsing (`parse_mode` is not validated: malformed HTML is accepted where Telegram answers
400 "can't parse entities"), message length limits (4096), rate limits (429 with `retry_after`), and the
24-hour expiry of unconfirmed updates. `allowed_updates` is accepted and ignored (every update is a message).
"""
from __future__ import annotations

import argparse
import html
import itertools
import json
import re
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

HOST = "127.0.0.1"
DEFAULT_TOKEN = "123456:OMNI-TEST-TOKEN"
MAX_POLL_S = 50.0            # Telegram's own cap on getUpdates' timeout
BOT = {"id": 999000111, "is_bot": True, "first_name": "OmniTestBot", "username": "omni_test_bot",
       "can_join_groups": False, "can_read_all_group_messages": False, "supports_inline_queries": False}
_TAG = re.compile(r"<[^>]*>")


class BotApiError(Exception):
    """A Bot API error answer: `{"ok": false, "error_code": code, "description": description}`."""

    def __init__(self, code: int, description: str):
        super().__init__(description)
        self.code, self.description = code, description


def shown_text(text: str, parse_mode: str | None) -> str:
    """What a Telegram user sees of `text` (formatting removed)."""
    if (parse_mode or "").upper() == "HTML":
        return html.unescape(_TAG.sub("", text))
    return text


class BotState:
    """Everything the stand-in knows, behind one condition variable."""

    def __init__(self, token: str):
        self.token = token
        self.cond = threading.Condition()
        self.updates: list[dict[str, Any]] = []     # unconfirmed updates, oldest first
        self.update_ids = itertools.count(100001)
        self.message_ids: dict[int, itertools.count] = {}
        self.chats: dict[int, dict[str, Any]] = {}
        self.messages: dict[tuple[int, int], dict[str, Any]] = {}   # (chat, message_id) → message
        self.outbound: list[dict[str, Any]] = []
        self.requests: list[dict[str, Any]] = []
        self.seq = itertools.count(1)
        self.poll_generation = 0
        self.closing = False

    def next_message_id(self, chat_id: int) -> int:
        return next(self.message_ids.setdefault(chat_id, itertools.count(1)))

    # ---------------------------------------------------------------- admin side

    def inbound(self, chat_id: int, text: str, from_id: int | None = None,
                first_name: str | None = None, username: str | None = None) -> dict[str, Any]:
        from_id = chat_id if from_id is None else from_id
        user = {"id": from_id, "is_bot": False, "first_name": first_name or f"User{from_id}",
                "username": username or f"user{from_id}", "language_code": "en"}
        with self.cond:
            chat = self.chats.setdefault(chat_id, {"id": chat_id, "type": "private",
                                                   "first_name": user["first_name"], "username": user["username"]})
            message = {"message_id": self.next_message_id(chat_id), "from": user, "chat": chat,
                       "date": int(time.time()), "text": text}
            if text.startswith("/"):
                command = text.split()[0]
                message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(command)}]
            update = {"update_id": next(self.update_ids), "message": message}
            self.updates.append(update)
            self.cond.notify_all()
        return {"update_id": update["update_id"], "message_id": message["message_id"]}

    def reset(self) -> None:
        with self.cond:
            self.outbound.clear()
            self.requests.clear()

    # ---------------------------------------------------------------- Bot API side

    def call(self, method: str, params: dict[str, Any]) -> Any:
        with self.cond:
            self.requests.append({"time": time.time(), "method": method, "params": params})
        handler = self.METHODS.get(method)
        if handler is None:
            raise BotApiError(404, "Not Found")
        return handler(self, params)

    def get_updates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        offset = _int(params, "offset", 0)
        limit = min(max(_int(params, "limit", 100), 1), 100)
        timeout = min(max(float(params.get("timeout") or 0), 0.0), MAX_POLL_S)
        deadline = time.monotonic() + timeout
        with self.cond:
            self.poll_generation += 1
            generation = self.poll_generation
            self.cond.notify_all()              # an older poll still waiting ends with 409
            if offset > 0:
                self.updates = [u for u in self.updates if u["update_id"] >= offset]
            while True:
                ready = self.updates[offset:] if offset < 0 else self.updates
                if ready or self.closing:
                    return ready[:limit]
                if generation != self.poll_generation:
                    raise BotApiError(409, "Conflict: terminated by other getUpdates request; make sure "
                                           "that only one bot instance is running")
                left = deadline - time.monotonic()
                if left <= 0:
                    return []
                self.cond.wait(left)

    def send_message(self, params: dict[str, Any]) -> dict[str, Any]:
        chat_id, text = self.known_chat(params), str(params.get("text") or "")
        if not text.strip():
            raise BotApiError(400, "Bad Request: message text is empty")
        with self.cond:
            message = {"message_id": self.next_message_id(chat_id), "from": BOT, "chat": self.chats[chat_id],
                       "date": int(time.time()), "text": shown_text(text, params.get("parse_mode"))}
            self.messages[(chat_id, message["message_id"])] = message
            self.record("sendMessage", chat_id, message["message_id"], text, params)
        return message

    def edit_message_text(self, params: dict[str, Any]) -> dict[str, Any]:
        chat_id, message_id = self.known_chat(params), _int(params, "message_id", 0)
        text = str(params.get("text") or "")
        with self.cond:
            message = self.messages.get((chat_id, message_id))
            if message is None:
                raise BotApiError(400, "Bad Request: message to edit not found")
            shown = shown_text(text, params.get("parse_mode"))
            if shown == message["text"]:
                raise BotApiError(400, "Bad Request: message is not modified")
            message.update(text=shown, edit_date=int(time.time()))
            self.record("editMessageText", chat_id, message_id, text, params)
        return message

    def known_chat(self, params: dict[str, Any]) -> int:
        try:
            chat_id = int(params.get("chat_id"))
        except (TypeError, ValueError):
            raise BotApiError(400, "Bad Request: chat_id is empty") from None
        if chat_id not in self.chats:
            raise BotApiError(400, "Bad Request: chat not found")
        return chat_id

    def record(self, method: str, chat_id: int, message_id: int, text: str, params: dict[str, Any]) -> None:
        self.outbound.append({"seq": next(self.seq), "method": method, "chat_id": chat_id,
                              "message_id": message_id, "text": text,
                              "shown": shown_text(text, params.get("parse_mode")),
                              "parse_mode": params.get("parse_mode"), "time": time.time()})

    def close(self) -> None:
        with self.cond:
            self.closing = True
            self.cond.notify_all()

    METHODS: dict[str, Callable[["BotState", dict[str, Any]], Any]] = {
        "getMe": lambda self, p: BOT,
        "deleteWebhook": lambda self, p: True,
        "getWebhookInfo": lambda self, p: {"url": "", "has_custom_certificate": False, "pending_update_count":
                                           len(self.updates)},
        "deleteMyCommands": lambda self, p: True,
        "setMyCommands": lambda self, p: True,
        "getMyCommands": lambda self, p: [],
        "getUpdates": get_updates,
        "sendChatAction": lambda self, p: self.known_chat(p) is not None,
        "sendMessage": send_message,
        "editMessageText": edit_message_text,
    }


def _int(params: dict[str, Any], key: str, default: int) -> int:
    try:
        return int(params.get(key, default) or default)
    except (TypeError, ValueError):
        raise BotApiError(400, f"Bad Request: {key} must be an integer") from None


# ---------------------------------------------------------------- HTTP

class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state: BotState                     # set on the subclass made per server

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.handle_request()

    def do_POST(self) -> None:
        self.handle_request()

    def reply(self, status: int, body: Any) -> None:
        data = json.dumps(body, ensure_ascii=False).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            pass                        # the client went away (a killed gateway's long poll)

    def params(self) -> tuple[str, dict[str, Any]]:
        url = urllib.parse.urlsplit(self.path)
        params: dict[str, Any] = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query).items()}
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        kind = self.headers.get("Content-Type", "")
        if raw and "json" in kind:
            body = json.loads(raw)
            if not isinstance(body, dict):
                raise BotApiError(400, "Bad Request: the body must be a JSON object")
            params.update(body)
        elif raw and "x-www-form-urlencoded" in kind:
            params.update({k: v[-1] for k, v in urllib.parse.parse_qs(raw.decode()).items()})
        elif raw:
            raise BotApiError(400, f"Bad Request: unsupported Content-Type {kind!r} in this stand-in")
        return url.path, params

    def handle_request(self) -> None:
        try:
            path, params = self.params()
            if path.startswith("/admin/"):
                return self.reply(200, self.admin(path, params))
            match = re.fullmatch(r"/bot([^/]+)/([A-Za-z]+)", path)
            if match is None:
                raise BotApiError(404, "Not Found")
            if match.group(1) != self.state.token:
                raise BotApiError(401, "Unauthorized")
            self.reply(200, {"ok": True, "result": self.state.call(match.group(2), params)})
        except BotApiError as exc:
            self.reply(exc.code, {"ok": False, "error_code": exc.code, "description": exc.description})
        except (ValueError, KeyError) as exc:
            self.reply(400, {"ok": False, "error_code": 400, "description": f"Bad Request: {exc}"})

    def admin(self, path: str, params: dict[str, Any]) -> Any:
        state = self.state
        if path == "/admin/inbound":
            return state.inbound(int(params["chat_id"]), str(params["text"]),
                                 None if params.get("from_id") is None else int(params["from_id"]),
                                 params.get("first_name"), params.get("username"))
        if path == "/admin/outbound":
            after, chat = int(params.get("after") or 0), params.get("chat_id")
            with state.cond:
                return {"messages": [m for m in state.outbound if m["seq"] > after
                                     and (chat is None or str(m["chat_id"]) == str(chat))]}
        if path == "/admin/requests":
            method = params.get("method")
            with state.cond:
                return {"requests": [r for r in state.requests if method is None or r["method"] == method]}
        if path == "/admin/reset":
            state.reset()
            return {"ok": True}
        raise BotApiError(404, f"Not Found: no admin path {path}")


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away (a SIGKILLed gateway) is normal here, not worth a traceback."""
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class TelegramBotApi:
    """The stand-in as a server in this process (threads), on a loopback port (0: a free one).

    api = TelegramBotApi().start()
    api.api_root, api.token
    # → ('http://127.0.0.1:40123', '123456:OMNI-TEST-TOKEN')
    api.stop()
    """

    def __init__(self, port: int = 0, token: str = DEFAULT_TOKEN):
        self.state = BotState(token)
        handler = type("Handler", (_Handler,), {"state": self.state})
        self.server = _Server((HOST, port), handler)
        self.thread: threading.Thread | None = None

    @property
    def token(self) -> str:
        return self.state.token

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    @property
    def api_root(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> "TelegramBotApi":
        self.thread = threading.Thread(target=self.server.serve_forever, name="telegram-bot-api", daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.state.close()              # wakes long polls so that their threads end
        self.server.shutdown()
        self.server.server_close()
        if self.thread is not None:
            self.thread.join(5)

    def admin(self) -> "BotApiAdmin":
        return BotApiAdmin(self.api_root)


class BotApiAdmin:
    """Client of the stand-in's admin endpoints, for tests (works against a stand-in in another process)."""

    def __init__(self, api_root: str, timeout_s: float = 10.0):
        self.api_root, self.timeout_s = api_root.rstrip("/"), timeout_s

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.api_root + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise ValueError(f"{method} {path}: HTTP {exc.code}: {exc.read().decode('utf-8', 'replace')}") from None

    def inbound(self, chat_id: int, text: str, from_id: int | None = None) -> dict[str, Any]:
        """A user writes `text` in their private chat `chat_id`; `{update_id, message_id}`."""
        body: dict[str, Any] = {"chat_id": chat_id, "text": text}
        if from_id is not None:
            body["from_id"] = from_id
        return self._call("POST", "/admin/inbound", body)

    def outbound(self, chat_id: int | None = None, after: int = 0) -> list[dict[str, Any]]:
        """Every sendMessage and editMessageText (to `chat_id`, after sequence number `after`), oldest first."""
        query = urllib.parse.urlencode({k: v for k, v in {"chat_id": chat_id, "after": after}.items() if v})
        return self._call("GET", "/admin/outbound" + (f"?{query}" if query else ""))["messages"]

    def sent(self, chat_id: int | None = None) -> list[dict[str, Any]]:
        """Only the sendMessage records: the messages a user received."""
        return [m for m in self.outbound(chat_id) if m["method"] == "sendMessage"]

    def requests(self, method: str | None = None) -> list[dict[str, Any]]:
        return self._call("GET", "/admin/requests" + (f"?method={method}" if method else ""))["requests"]

    def reset(self) -> None:
        self._call("POST", "/admin/reset", {})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.telegram_bot_api", description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--token", default=DEFAULT_TOKEN, help="the bot token OpenClaw must use")
    args = parser.parse_args(argv)
    api = TelegramBotApi(args.port, args.token)
    print(json.dumps({"api_root": api.api_root, "admin": f"{api.api_root}/admin/"}), flush=True)
    try:
        api.server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        api.state.close()
        api.server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
