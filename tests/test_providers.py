"""The simulated OpenAI-compatible providers (`sandbox.providers`), run as a real child process."""
import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # before anything imports litellm

import json
import signal
import socket
import subprocess
import sys
import threading
import time
from urllib.parse import urlsplit

import httpx2
import pytest

from sandbox.providers import PROJECT_ROOT, ProvidersAdmin, start_providers

from .conftest import wait_until

pytestmark = pytest.mark.slow   # every test runs the providers as a process

DIRECT_KEY = "sk-direct-test-" + "z" * 16
CHAT = "/chat/completions"


@pytest.fixture(scope="module")
def providers(tmp_path_factory):
    """The providers process (every port 0; `direct` demands DIRECT_KEY), killed at the end."""
    ready_file = tmp_path_factory.mktemp("providers") / "ready.json"
    process, ready = start_providers({"free": 0, "paid": 0, "direct": 0}, 0, ready_file,
                                     expect_keys={"direct": "TEST_DIRECT_KEY"},
                                     env={"TEST_DIRECT_KEY": DIRECT_KEY})
    try:
        yield process, ready
    finally:
        process.kill()
        process.wait(10)


@pytest.fixture
def ready(providers):
    return providers[1]


@pytest.fixture
def admin(ready):
    admin = ProvidersAdmin(ready["admin"])
    admin.reset()
    yield admin
    admin.reset()


@pytest.fixture
def client():
    with httpx2.Client(timeout=5, trust_env=False) as client:
        yield client


def chat(client, url, text="hello", key="k", **extra):
    body = {"model": "sandbox-test", "messages": [{"role": "system", "content": "be brief"},
                                                 {"role": "user", "content": text}], **extra}
    return client.post(url + CHAT, json=body, headers={"Authorization": f"Bearer {key}"})


def test_ok_answer_with_usage_and_chinese_intact(ready, admin, client):
    text = "請幫我 摘要 這份 文件 and 简体 也行"
    response = chat(client, ready["upstreams"]["free"], text)
    assert response.status_code == 200
    answer = response.json()
    assert answer["object"] == "chat.completion" and answer["model"] == "sandbox-test"
    assert answer["id"] and isinstance(answer["created"], int)
    assert answer["choices"][0]["message"] == {"role": "assistant", "content": f"[free] {text}"}
    assert answer["choices"][0]["finish_reason"] == "stop"
    assert answer["usage"] == {"prompt_tokens": 2 + 7, "completion_tokens": 8, "total_tokens": 17}
    assert "\\u" not in response.text and text in response.text  # raw UTF-8 on the wire, no escapes


def test_reply_is_truncated_or_configured(ready, admin, client):
    url = ready["upstreams"]["paid"]
    assert chat(client, url, "x" * 100).json()["choices"][0]["message"]["content"] == "[paid] " + "x" * 60
    assert admin.set("paid", reply="雲端已恢復")["reply"] == "雲端已恢復"
    answer = chat(client, url).json()
    assert answer["choices"][0]["message"]["content"] == "雲端已恢復"
    assert answer["usage"]["completion_tokens"] == 1


def test_models_list(ready, admin, client):
    listing = client.get(ready["upstreams"]["free"] + "/models").json()
    assert listing["object"] == "list" and len(listing["data"]) >= 2
    assert all(model["object"] == "model" and model["id"] for model in listing["data"])
    assert admin.calls("free") == 0  # only chat completions count


def test_streaming_with_usage(ready, admin, client):
    text = "任務 已掛起"
    response = chat(client, ready["upstreams"]["free"], text, stream=True,
                    stream_options={"include_usage": True})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [line[len("data: "):] for line in response.text.split("\n\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    assert all(chunk["object"] == "chat.completion.chunk" and chunk["model"] == "sandbox-test"
               for chunk in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"]) \
        == f"[free] {text}"
    assert len([c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")]) >= 2
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7}


def test_streaming_without_include_usage_has_no_usage_chunk(ready, admin, client):
    response = chat(client, ready["upstreams"]["free"], stream=True)
    chunks = [json.loads(line[6:]) for line in response.text.split("\n\n")
              if line.startswith("data: {")]
    assert all(chunk["choices"] and "usage" not in chunk for chunk in chunks)
    assert response.text.rstrip().endswith("data: [DONE]")


def test_429_with_retry_after(ready, admin, client):
    admin.set("free", "429", retry_after_s=7)
    response = chat(client, ready["upstreams"]["free"])
    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"
    assert response.json() == {"error": {"message": "Rate limit reached for requests",
                                         "type": "rate_limit_error", "param": None,
                                         "code": "rate_limit_exceeded"}}
    assert chat(client, ready["upstreams"]["paid"]).status_code == 200  # the others are unaffected


def test_500(ready, admin, client):
    admin.set("paid", "500")
    response = chat(client, ready["upstreams"]["paid"])
    assert response.status_code == 500
    assert response.json()["error"]["type"] == "server_error"
    assert admin.calls("paid") == 1


def test_latency_adds_time(ready, admin, client):
    admin.set("free", "latency", latency_s=0.4)
    started = time.monotonic()
    response = chat(client, ready["upstreams"]["free"])
    assert response.status_code == 200
    assert time.monotonic() - started >= 0.4


def test_hang_never_answers_so_the_client_times_out(ready, admin):
    admin.set("free", "hang")
    started = time.monotonic()
    with pytest.raises(httpx2.ReadTimeout), httpx2.Client(timeout=0.5, trust_env=False) as hung:
        chat(hung, ready["upstreams"]["free"])
    assert time.monotonic() - started >= 0.5
    assert admin.calls("free") == 1


def test_a_hung_call_does_not_block_the_others(ready, admin, client):
    admin.set("free", "hang")
    outcome = {}

    def hung_call():
        try:
            with httpx2.Client(timeout=60, trust_env=False) as hung:
                outcome["status"] = chat(hung, ready["upstreams"]["free"]).status_code
        except httpx2.TransportError as error:
            outcome["error"] = error

    thread = threading.Thread(target=hung_call)
    thread.start()
    try:
        wait_until(lambda: admin.calls("free") == 1, 10, "the hung call at the server")
        assert chat(client, ready["upstreams"]["paid"]).status_code == 200
        assert chat(client, ready["upstreams"]["direct"], key=DIRECT_KEY).status_code == 200
        assert admin.state()["free"]["mode"] == "hang"
        assert thread.is_alive() and not outcome, "the others answered while the hung call was still waiting"
    finally:
        admin.set("free", "refuse")                      # ends the hung call (see the test below)
        thread.join(10)
    assert "status" not in outcome


def test_refuse_then_back_on_the_same_port(ready, admin, client):
    url = ready["upstreams"]["free"]
    port = urlsplit(url).port
    assert chat(client, url).status_code == 200  # leaves a keep-alive connection in the pool
    assert admin.set("free", "refuse")["mode"] == "refuse"
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    with pytest.raises(httpx2.TransportError):  # the pooled connection is gone too
        chat(client, url)
    assert chat(client, ready["upstreams"]["paid"]).status_code == 200
    state = admin.set("free", "ok")
    assert state["mode"] == "ok" and urlsplit(state["url"]).port == port
    assert chat(client, url).status_code == 200


def test_refuse_resets_a_hung_call(ready, admin):
    admin.set("free", "hang")
    outcome = {}

    def hung_call():
        try:
            with httpx2.Client(timeout=5, trust_env=False) as hung:
                chat(hung, ready["upstreams"]["free"])
        except httpx2.TransportError as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=hung_call)
    thread.start()
    wait_until(lambda: admin.calls("free") == 1, 10, "the hung call at the server")
    admin.set("free", "refuse")
    thread.join(10)
    assert "error" in outcome and not isinstance(outcome["error"], httpx2.TimeoutException), "reset, not timed out"


def test_expected_key(ready, admin, client):
    url = ready["upstreams"]["direct"]
    denied = chat(client, url, key="wrong")
    assert denied.status_code == 401
    assert denied.json()["error"]["code"] == "invalid_api_key"
    assert DIRECT_KEY not in denied.text and "wrong" not in denied.text
    assert client.post(url + CHAT, json={"model": "m", "messages": []}).status_code == 401
    assert admin.state()["direct"]["last_key_sent"] is False
    assert chat(client, url, key=DIRECT_KEY).status_code == 200
    assert admin.state()["direct"]["last_key_sent"] is True
    assert chat(client, ready["upstreams"]["free"], key="anything").status_code == 200


def test_call_counters_and_last_model(ready, admin, client):
    for _ in range(3):
        chat(client, ready["upstreams"]["paid"])
    admin.set("paid", "500")
    client.post(ready["upstreams"]["paid"] + CHAT, json={"model": "other", "messages": []})
    state = admin.state()
    assert state["paid"]["calls"] == 4 and state["paid"]["last_model"] == "other"
    assert state["free"]["calls"] == 0 and state["free"]["last_model"] is None
    assert DIRECT_KEY not in json.dumps(state)


def test_reset(ready, admin, client):
    admin.set("free", "refuse")
    admin.set("paid", "429", retry_after_s=30, reply="x")
    chat(client, ready["upstreams"]["direct"], key=DIRECT_KEY)
    state = admin.reset()
    assert {s["mode"] for s in state.values()} == {"ok"}
    assert {s["calls"] for s in state.values()} == {0}
    assert state["paid"]["reply"] is None
    assert chat(client, ready["upstreams"]["free"]).status_code == 200


def test_bad_admin_requests_get_400(ready, admin):
    with pytest.raises(ValueError, match="HTTP 400.*unknown mode"):
        admin.set("free", "flaky")
    with pytest.raises(ValueError, match="HTTP 400.*unknown upstream"):
        admin.set("nowhere", "ok")
    with pytest.raises(ValueError, match="HTTP 400.*latency_s"):
        admin.set("free", latency_s="slow")
    with pytest.raises(ValueError, match="HTTP 400.*unknown field"):
        admin.set("free", colour="red")
    assert admin.state()["free"]["mode"] == "ok"


def test_litellm_client_works_against_it(ready, admin):
    import litellm  # pylint: disable=import-outside-toplevel  (slow import: only here)
    response = litellm.completion(model="openai/sandbox-free", api_base=ready["upstreams"]["free"],
                                  api_key="k", messages=[{"role": "user", "content": "你好，世界"}])
    assert response.choices[0].message.content == "[free] 你好，世界"
    assert response.usage.prompt_tokens == 1 and response.usage.completion_tokens == 2
    assert response.usage.total_tokens == 3
    assert admin.state()["free"]["last_model"] == "sandbox-free"


def test_sigterm_exits_cleanly_and_start_errors_are_clear(tmp_path):
    process, ready = start_providers({"only": 0}, 0, tmp_path / "ready.json")
    try:
        assert json.loads((tmp_path / "ready.json").read_text()) == ready
        assert set(ready["upstreams"]) == {"only"}
        process.send_signal(signal.SIGTERM)
        assert process.wait(5) == 0
    finally:
        process.kill()
        process.wait(5)
    with pytest.raises(RuntimeError, match="MISSING_KEY_VAR is not set"):
        start_providers({"only": 0}, 0, tmp_path / "ready2.json", expect_keys={"only": "MISSING_KEY_VAR"},
                        env={"MISSING_KEY_VAR": ""})
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(RuntimeError, match="(?s)exited with 1.*cannot listen"):
            start_providers({"only": taken.getsockname()[1]}, 0, tmp_path / "ready3.json")


def test_cli_prints_the_ready_json():
    command = [sys.executable, "-m", "sandbox.providers", "--admin-port", "0", "--upstream", "a=0"]
    with subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True) as process:
        try:
            ready = json.loads(process.stdout.readline())
            assert ready["admin"].startswith("http://127.0.0.1:") and ready["upstreams"]["a"].endswith("/v1")
            process.send_signal(signal.SIGINT)
            assert process.wait(5) == 0
        finally:
            process.kill()
