"""The managed LiteLLM proxy's process control, against a REAL proxy (.venv-litellm) in front of the
simulated providers (sandbox.providers): start, calls through both tiers, SIGKILL and restart, stop,
status, redacted log tail. Timings are printed (run with -s to see them), never asserted.
"""
from __future__ import annotations

import os
import signal
import socket
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import httpx2
import pytest

from cli.proxy import main
from clients.litellm_proxy import (ProxyStartFailed, adopt_or_start_proxy, log_tail, proxy_paths, proxy_status,
                                   restart_proxy, start_proxy, stop_proxy)
from config import PROJECT_ROOT, LiteLLMConfig
from sandbox.providers import ProvidersAdmin, start_providers

LITELLM = PROJECT_ROOT / ".venv-litellm" / "bin" / "litellm"
SANDBOX_CONFIG = PROJECT_ROOT / "config" / "litellm.sandbox.yaml"
KEYS = {"OMNI_SANDBOX_FREE_KEY": "sandbox-key-free", "OMNI_SANDBOX_PAID_KEY": "sandbox-key-paid"}

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not LITELLM.exists(),
                                reason=f"{LITELLM} is missing: `make setup` builds the proxy's own venv")]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def chat(client: httpx2.Client, url: str, model: str, text: str = "hello proxy") -> httpx2.Response:
    return client.post(f"{url}/v1/chat/completions", timeout=30,
                       json={"model": model, "messages": [{"role": "user", "content": text}]})


def pid_exists(pid: int) -> bool:
    """A live, non-zombie process."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return not status.exists() or "State:\tZ" not in status.read_text()


@pytest.fixture(scope="module")
def providers(tmp_path_factory):
    """The simulated free and paid upstreams (each demanding its key), and their admin client."""
    ready = tmp_path_factory.mktemp("providers") / "ready.json"
    expect = {"free": "OMNI_SANDBOX_FREE_KEY", "paid": "OMNI_SANDBOX_PAID_KEY"}
    process, urls = start_providers({"free": 0, "paid": 0}, 0, ready, expect_keys=expect, env=KEYS)
    try:
        yield urls, ProvidersAdmin(urls["admin"])
    finally:
        process.terminate()
        try:
            process.wait(10)
        except Exception:
            process.kill()
            process.wait(10)


@pytest.fixture(scope="module")
def make_cfg(providers):
    """LiteLLMConfig of a managed sandbox proxy on a free port; keyword arguments override fields."""
    urls, _admin = providers

    def make(**overrides) -> LiteLLMConfig:
        cfg = LiteLLMConfig(mode="managed", url=f"http://127.0.0.1:{free_port()}", tiers={},
                            config_path=str(SANDBOX_CONFIG), executable=str(LITELLM), start_deadline_s=60,
                            env={"OMNI_SANDBOX_FREE_URL": urls["upstreams"]["free"],
                                 "OMNI_SANDBOX_PAID_URL": urls["upstreams"]["paid"], **KEYS})
        return replace(cfg, **overrides)
    return make


@pytest.fixture
def managed(tmp_path):
    """Records (cfg, home) pairs whose proxies are stopped at teardown, whatever happened."""
    started: list[tuple[LiteLLMConfig, Path]] = []
    yield started.append
    for cfg, home in started:
        stop_proxy(cfg, home, timeout_s=5)


@pytest.fixture(scope="module")
def proxy(make_cfg, tmp_path_factory):
    """One real proxy shared by the read-only tests: (cfg, home, pid, seconds from spawn to liveliness)."""
    cfg, home = make_cfg(), tmp_path_factory.mktemp("omni-home")
    try:
        began = time.perf_counter()
        pid = start_proxy(cfg, home)
        startup_s = time.perf_counter() - began
        yield cfg, home, pid, startup_s
    finally:
        stop_proxy(cfg, home, timeout_s=5)


def test_start_answers_and_routes_both_tiers(proxy, providers):
    cfg, home, pid, startup_s = proxy
    _urls, admin = providers
    admin.reset()
    assert proxy_paths(home).pid.read_text().strip() == str(pid)
    with httpx2.Client() as client:
        assert client.get(f"{cfg.url}/health/liveliness").status_code == 200
        free = chat(client, cfg.url, "free-tier")
        assert free.status_code == 200, free.text
        assert free.json()["choices"][0]["message"]["content"] == "[free] hello proxy"
        assert free.headers["x-litellm-model-group"] == "free-tier"
        # a zero cost leaves the header out (only x-litellm-response-cost-original: 0.0 is sent)
        assert float(free.headers.get("x-litellm-response-cost", 0)) == 0
        paid = chat(client, cfg.url, "paid-tier", "one two three")
        assert paid.status_code == 200, paid.text
        usage = paid.json()["usage"]
        expected = usage["prompt_tokens"] * 3e-6 + usage["completion_tokens"] * 15e-6
        assert float(paid.headers["x-litellm-response-cost"]) == pytest.approx(expected)
    assert admin.calls("free") == 1 and admin.calls("paid") == 1
    print(f"\n[measure] proxy start-up (spawn -> liveliness 200): {startup_s:.2f} s")


def test_status_reports_a_live_proxy(proxy):
    cfg, home, pid, _ = proxy
    status = proxy_status(cfg, home)
    assert status["pid"] == pid and status["alive"] and status["answers"]
    assert status["rss_mb"] > 0
    print(f"\n[measure] proxy RSS after start and a few calls: {status['rss_mb']:.0f} MB")


def test_a_running_proxy_of_ours_is_adopted_only_with_the_same_configuration(proxy):
    """What the keeper does at start-up: the proxy a SIGKILLed supervisor left running (detached) is taken over
    as it is; one started with another configuration is not ours to use, and stays a failed start."""
    cfg, home, pid, _ = proxy
    assert adopt_or_start_proxy(cfg, home) == (pid, True)
    other = replace(cfg, env={**cfg.env, "OMNI_SANDBOX_FREE_URL": "http://127.0.0.1:9/v1"})
    with pytest.raises(ProxyStartFailed, match=rf"already running \(pid {pid}, started with another configuration"):
        adopt_or_start_proxy(other, home)
    assert proxy_status(cfg, home)["pid"] == pid, "the running proxy is left alone"


def test_refuses_a_taken_port(proxy, make_cfg, tmp_path):
    cfg, _home, _pid, _ = proxy
    other_home = tmp_path / "other"   # no pid file there: whatever listens is not ours
    with pytest.raises(ProxyStartFailed, match="already listens"):
        start_proxy(cfg, other_home)
    with pytest.raises(ProxyStartFailed, match="already listens"):   # not ours: never adopted
        adopt_or_start_proxy(cfg, other_home)
    with pytest.raises(ProxyStartFailed, match="already running"):
        start_proxy(cfg, proxy[1])


def test_log_tail_redacts_keys(proxy):
    _cfg, home, _pid, _ = proxy
    with open(proxy_paths(home).log, "a") as log:
        log.write("upstream said: invalid key sk-test-123456789 (Authorization: Bearer abc.def.ghi)\n")
    tail = log_tail(home, lines=5)
    assert "invalid key" in tail
    assert "sk-test-123456789" not in tail and "abc.def.ghi" not in tail
    assert "\x1b[" not in log_tail(home, lines=200)   # colour codes stripped


def test_single_deployment_429_is_passed_through_without_cooldown(proxy, providers):
    """litellm 1.103.7: a group with one deployment is never cooled down; the upstream's 429 comes back
    as is, with its Retry-After only as `llm_provider-retry-after` (no `retry-after` header)."""
    cfg, _home, _pid, _ = proxy
    _urls, admin = providers
    admin.reset()
    admin.set("free", "429", retry_after_s=7)
    try:
        with httpx2.Client() as client:
            answers = [chat(client, cfg.url, "free-tier") for _ in range(3)]
        calls = admin.calls("free")
    finally:
        admin.reset()
    for answer in answers:
        assert answer.status_code == 429
        assert answer.json()["error"]["type"] == "throttling_error"
        assert answer.headers.get("llm_provider-retry-after") == "7"
        assert "retry-after" not in answer.headers
    assert calls == 3   # every call reached the upstream: no cooldown


def test_overhead_per_call(proxy, providers):
    cfg, _home, _pid, _ = proxy
    urls, admin = providers
    admin.reset()
    direct_url = urls["upstreams"]["free"]
    body = {"model": "sandbox-free", "messages": [{"role": "user", "content": "hi"}]}
    with httpx2.Client() as client:
        def timed(url: str, model: str, headers: dict, calls: int = 200) -> list[float]:
            samples = []
            for _ in range(calls):
                began = time.perf_counter()
                response = client.post(url, json={**body, "model": model}, headers=headers, timeout=30)
                samples.append(time.perf_counter() - began)
                assert response.status_code == 200, response.text
            return samples
        timed(f"{cfg.url}/v1/chat/completions", "free-tier", {}, calls=20)   # warm-up
        direct = timed(f"{direct_url}/chat/completions", "sandbox-free",
                       {"Authorization": f"Bearer {KEYS['OMNI_SANDBOX_FREE_KEY']}"})
        through = timed(f"{cfg.url}/v1/chat/completions", "free-tier", {})
    p50_direct, p50_proxy = statistics.median(direct) * 1000, statistics.median(through) * 1000
    print(f"\n[measure] 200 calls p50: direct {p50_direct:.2f} ms, through the proxy {p50_proxy:.2f} ms "
          f"(overhead {p50_proxy - p50_direct:.2f} ms)")


def test_sigkill_then_restart(make_cfg, managed, tmp_path):
    cfg = make_cfg()
    managed((cfg, tmp_path))
    first = start_proxy(cfg, tmp_path)
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + 30   # gone: no answer, and the process reaped (it dies after its socket)
    while any(proxy_status(cfg, tmp_path)[field] for field in ("answers", "alive")) and time.monotonic() < deadline:
        time.sleep(0.05)
    status = proxy_status(cfg, tmp_path)
    assert status == {"pid": None, "alive": False, "rss_mb": None, "answers": False}
    assert proxy_paths(tmp_path).pid.exists()   # stale: it names a dead process
    began = time.perf_counter()
    second = restart_proxy(cfg, tmp_path)
    print(f"\n[measure] restart after SIGKILL: {time.perf_counter() - began:.2f} s")
    assert second != first and not pid_exists(first)
    assert proxy_status(cfg, tmp_path)["answers"]
    with httpx2.Client() as client:
        assert chat(client, cfg.url, "free-tier").status_code == 200


def test_stop_leaves_no_process(make_cfg, managed, tmp_path):
    cfg = make_cfg()
    managed((cfg, tmp_path))
    pid = start_proxy(cfg, tmp_path)
    began = time.perf_counter()
    assert stop_proxy(cfg, tmp_path) is True
    print(f"\n[measure] stop (SIGTERM until gone): {time.perf_counter() - began:.2f} s")
    assert not pid_exists(pid)
    assert not proxy_paths(tmp_path).pid.exists()
    assert not proxy_status(cfg, tmp_path)["answers"]
    assert stop_proxy(cfg, tmp_path) is False   # nothing left to stop


def test_broken_config_fails_naming_the_log(make_cfg, managed, tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("model_list: [this is: not, a: {valid config\n")
    # The proxy reads its config only after importing litellm: ~4 s idle, past 30 s on a starved machine. The deadline
    # is far above that: only a start that does not notice the exit waits for it.
    cfg = make_cfg(config_path=str(broken), start_deadline_s=90)
    managed((cfg, tmp_path))
    began = time.perf_counter()
    with pytest.raises(ProxyStartFailed) as failure:
        start_proxy(cfg, tmp_path)
    elapsed = time.perf_counter() - began
    assert "exited with code" in str(failure.value), "reported when the proxy exits, not at the deadline"
    assert str(proxy_paths(tmp_path).log) in str(failure.value)
    assert not proxy_paths(tmp_path).pid.exists()
    assert proxy_status(cfg, tmp_path)["pid"] is None
    print(f"\n[measure] broken config reported after {elapsed:.2f} s:\n{failure.value}")


def test_deadline_kills_a_proxy_that_never_answers(make_cfg, managed, tmp_path):
    """A start-up that hangs is killed at the deadline (a stand-in program that never listens)."""
    never = tmp_path / "litellm-hangs"
    never.write_text(f"#!{sys.executable}\nimport time\n"
                     "print('starting forever', flush=True)\ntime.sleep(600)\n")
    never.chmod(0o755)
    cfg = make_cfg(executable=str(never), start_deadline_s=1.5)
    managed((cfg, tmp_path))
    began = time.perf_counter()
    with pytest.raises(ProxyStartFailed, match=r"within 1.5 s[\s\S]*starting forever"):
        start_proxy(cfg, tmp_path)
    elapsed = time.perf_counter() - began
    assert elapsed < 30, "the kill at the deadline hangs"
    assert not proxy_paths(tmp_path).pid.exists()
    print(f"\n[measure] a start-up that never answers, deadline 1.5 s: reported after {elapsed:.2f} s")


def test_cli_status_without_a_proxy(tmp_path, monkeypatch, capsys):
    """`python supervisor.py proxy status` on a sandbox config: one line, exit 1 when nothing answers."""
    monkeypatch.setenv("OMNI_HOME", str(tmp_path))
    config = tmp_path / "config.yaml"
    text = (PROJECT_ROOT / "config" / "sandbox.yaml").read_text()
    config.write_text(text.replace("http://127.0.0.1:14000", f"http://127.0.0.1:{free_port()}"))
    config.chmod(0o600)
    assert main(["status", "--config", str(config)]) == 1
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "does NOT answer" in out[0]
