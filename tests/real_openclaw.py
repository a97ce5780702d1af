"""Fixtures for tests against the real OpenClaw (installed by `make openclaw`), offline on loopback.

tests/conftest.py imports them, so every test module has them; one gateway serves the whole session.

- `telegram` (function scope): the Bot API stand-in's client (`sandbox.telegram_bot_api.BotApiAdmin`), its
  recorded messages and requests forgotten before each test; `.inbound(chat_id, text)` is a user writing,
  `.sent(chat_id)` what that user received. The server itself lives as long as the session.
- `openclaw_world` (one gateway for the whole session: a start costs 13–30 s): a running
  `sandbox.openclaw_world.OpenClawWorld` whose Telegram channel polls that stand-in and whose agents think with
  `sandbox.providers`: agent `main` with upstream `openclaw_model` (`world.models` is their `ProvidersAdmin`,
  reset before each test), and for the OpenClaw-agent executor's tests `slow` (upstream `slow`, answers after
  10 minutes), `broken` (upstream `broken`, HTTP 500) and `ghost` (a model no provider has). Conversations
  persist across tests: use the chats as a user would (the orchestrator leaves history older than its first
  start alone). A test that kills or restarts the gateway must leave it running (`world.start()`).
- `real_im_config(allow=USERS, **overrides)` (function scope): a config path (tests/conftest.py's
  `write_config`, overrides merged the same way, `im` too) whose `im.openclaw` is the real bridge,
  `openclaw mcp serve`, on that gateway, and whose `im.allow` is `allow`. Start it with `start_tree`, then
  `wait_bridge_up(tree)`.

Without the install these fixtures fail with "run `make openclaw`": CI must run them, never skip them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from config import overlay
from sandbox import openclaw_install
from sandbox.openclaw_world import OpenClawWorld
from sandbox.providers import ProvidersAdmin, start_providers, stop_providers
from sandbox.telegram_bot_api import BotApiAdmin, TelegramBotApi

USERS = ("telegram:4242", "telegram:5151")
MODEL_UPSTREAM = "openclaw_model"
AGENT_UPSTREAMS = ("slow", "broken")        # the executor tests' agents of the same names think with these


def _require_install() -> None:
    if not openclaw_install.installed():
        pytest.fail(f"OpenClaw {openclaw_install.openclaw_version()} is not installed in "
                    f"{openclaw_install.cache_dir()}: run `make openclaw`", pytrace=False)


@pytest.fixture(scope="session")
def telegram_api() -> Iterator[TelegramBotApi]:
    api = TelegramBotApi().start()
    yield api
    api.stop()


@pytest.fixture
def telegram(telegram_api) -> BotApiAdmin:
    admin = telegram_api.admin()
    admin.reset()
    admin.token = telegram_api.token
    return admin


@pytest.fixture(scope="session")
def openclaw_models(tmp_path_factory) -> Iterator[ProvidersAdmin]:
    folder = tmp_path_factory.mktemp("openclaw-models")
    process, ready = start_providers({name: 0 for name in (MODEL_UPSTREAM, *AGENT_UPSTREAMS)}, 0,
                                     folder / "providers.json")
    admin = ProvidersAdmin(ready["admin"])
    admin.base_url = ready["upstreams"][MODEL_UPSTREAM]
    admin.upstreams = ready["upstreams"]
    yield admin
    stop_providers(process)


def _agents_for_the_executor_tests(upstreams: dict[str, str]) -> dict[str, Any]:
    """openclaw.json overrides: a provider per agent upstream, and the agents `slow`, `broken` and `ghost`."""
    model = {"id": "sim", "name": "sim", "input": ["text"], "contextWindow": 128000, "maxTokens": 4096}
    providers = {name: {"baseUrl": upstreams[name], "apiKey": "k", "api": "openai-completions", "models": [model]}
                 for name in AGENT_UPSTREAMS}
    return {"models": {"providers": providers},
            "agents": {"entries": {"slow": {"model": "slow/sim"}, "broken": {"model": "broken/sim"},
                                   "ghost": {"model": "ghost/none"}}}}


def _set_agent_upstreams(models: ProvidersAdmin) -> None:
    models.set("slow", "latency", latency_s=600)
    models.set("broken", "500")


@pytest.fixture(scope="session")
def _openclaw_world_running(tmp_path_factory, telegram_api, openclaw_models) -> Iterator[OpenClawWorld]:
    _require_install()
    world = OpenClawWorld(tmp_path_factory.mktemp("openclaw-world"), telegram_api.api_root, telegram_api.token,
                          openclaw_models.base_url, overrides=_agents_for_the_executor_tests(openclaw_models.upstreams))
    world.models = openclaw_models
    try:
        world.start()
        yield world
    finally:
        world.stop()


@pytest.fixture
def openclaw_world(_openclaw_world_running, telegram) -> OpenClawWorld:
    world = _openclaw_world_running
    if not world.running:                  # a test before this one left it stopped
        world.start()
    world.models.reset()
    _set_agent_upstreams(world.models)
    return world


@pytest.fixture
def real_im_config(write_config, openclaw_world) -> Callable[..., Path]:
    def write(allow: tuple[str, ...] = USERS, **overrides: Any) -> Path:
        command = openclaw_world.bridge_command()
        bridge = {"command": command[0], "args": command[1:], "env": openclaw_world.bridge_env(),
                  # the bridge takes 4–10 s to start on a loaded machine
                  "connect_timeout_s": 60, "respawn_initial_s": 0.2, "respawn_max_s": 2, "call_timeout_s": 10}
        im = {"allow": list(allow), "locale": "en", "wait_ms": 5000, "openclaw": bridge}
        return write_config(im=overlay(im, overrides.pop("im", {})), brainstem={"model_path": None}, **overrides)
    return write


def wait_bridge_up(tree, timeout_s: float = 90) -> None:
    """Until the orchestrator's link to the real bridge is up (spawn + initialize: 4–10 s)."""
    from messages import Introspect
    from .conftest import wait_until
    wait_until(lambda: tree.ask("openclaw_bridge", Introspect())["link"] == "up", timeout_s,
               "the link to the real OpenClaw bridge up")
