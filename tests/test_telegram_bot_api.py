"""The Bot API stand-in behaves as Telegram does where OpenClaw relies on it: long polls that wake on a
message, confirmation by offset, one poller at a time, per-chat message ids, and Telegram's error answers."""
from __future__ import annotations

import concurrent.futures
import json
import time
import urllib.error
import urllib.request

import pytest

from sandbox.telegram_bot_api import TelegramBotApi


@pytest.fixture
def api():
    server = TelegramBotApi().start()
    yield server
    server.stop()


def call(api, method: str, token: str | None = None, **params):
    request = urllib.request.Request(f"{api.api_root}/bot{token or api.token}/{method}",
                                     data=json.dumps(params).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return json.loads(exc.read())


def test_a_long_poll_wakes_on_a_message_and_an_offset_confirms_it(api):
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        poll = pool.submit(call, api, "getUpdates", timeout=20)
        deadline = time.monotonic() + 10
        while not api.admin().requests("getUpdates") and time.monotonic() < deadline:
            time.sleep(0.01)
        written = api.admin().inbound(4242, "/status", from_id=4242)
        updates = poll.result(timeout=10)["result"]
    assert [u["update_id"] for u in updates] == [written["update_id"]]
    message = updates[0]["message"]
    assert (message["text"], message["chat"]["id"], message["from"]["id"]) == ("/status", 4242, 4242)
    assert message["entities"] == [{"type": "bot_command", "offset": 0, "length": 7}]
    assert call(api, "getUpdates", offset=written["update_id"])["result"] == updates      # not yet confirmed
    assert call(api, "getUpdates", offset=written["update_id"] + 1)["result"] == []        # confirmed: gone
    assert call(api, "getUpdates")["result"] == []


def test_a_second_poller_ends_the_first_with_409(api):
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        first = pool.submit(call, api, "getUpdates", timeout=20)
        deadline = time.monotonic() + 10
        while not api.admin().requests("getUpdates") and time.monotonic() < deadline:
            time.sleep(0.01)
        assert call(api, "getUpdates", timeout=0) == {"ok": True, "result": []}
        assert first.result(timeout=10)["error_code"] == 409


def test_sent_messages_are_recorded_as_the_user_sees_them_with_per_chat_ids(api):
    admin = api.admin()
    assert admin.inbound(4242, "hello")["message_id"] == 1
    assert admin.inbound(5151, "hi")["message_id"] == 1
    sent = call(api, "sendMessage", chat_id=4242, text="<b>Task #1</b> created &amp; queued", parse_mode="HTML")
    assert sent["result"]["message_id"] == 2
    edited = call(api, "editMessageText", chat_id=4242, message_id=2, text="Task #1 completed")
    assert edited["result"]["text"] == "Task #1 completed"
    assert [(m["method"], m["shown"]) for m in admin.outbound(4242)] == [
        ("sendMessage", "Task #1 created & queued"), ("editMessageText", "Task #1 completed")]
    assert [m["shown"] for m in admin.sent(4242)] == ["Task #1 created & queued"]
    assert admin.sent(5151) == []


def test_telegram_error_answers(api):
    assert call(api, "getMe", token="1:WRONG") == {"ok": False, "error_code": 401, "description": "Unauthorized"}
    assert call(api, "sendMessage", chat_id=77, text="x")["description"] == "Bad Request: chat not found"
    assert call(api, "setWebhook", url="https://example.invalid")["error_code"] == 404
    api.admin().inbound(4242, "hello")
    assert call(api, "sendMessage", chat_id=4242, text=" ")["description"] == "Bad Request: message text is empty"
