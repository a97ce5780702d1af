"""Config errors name the file, the key path and what was expected; secrets stay out of messages."""
from __future__ import annotations

import os

import pytest
import yaml

from config import EMBEDDED_DEFAULT, ConfigError, load_config

SANDBOX = yaml.safe_load(EMBEDDED_DEFAULT.read_text())


def write(tmp_path, raw, mode=0o644):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True))
    os.chmod(path, mode)
    return path


def with_change(change):
    raw = yaml.safe_load(EMBEDDED_DEFAULT.read_text())
    change(raw)
    return raw


def test_the_shipped_configs_load(monkeypatch):
    cfg = load_config(EMBEDDED_DEFAULT)
    assert set(cfg.executors) == {"coder", "general", "moltworker"} and cfg.gateway.port == 8765
    assert cfg.executors["coder"].tool == "claude_code"
    for name in ("ANTHROPIC_API_KEY", "OPENCLAW_GATEWAY_TOKEN", "MOLTWORKER_GATEWAY_TOKEN", "CF_ACCESS_CLIENT_ID",
                 "CF_ACCESS_CLIENT_SECRET", "CLIPROXY_API_KEY", "OPENROUTER_API_KEY", "CLIPROXY_BACKUP_KEY",
                 "OPENROUTER_BACKUP_KEY"):
        monkeypatch.setenv(name, "from-the-environment")
    real = load_config(EMBEDDED_DEFAULT.with_name("default.yaml"))
    assert real.executors["moltworker"].env["CF_ACCESS_CLIENT_SECRET"] == "from-the-environment"
    assert real.executors["general"].args[:2] == ("-m", "mcp_servers.openclaw_agent")
    assert [rule.kind for rule in real.routing.rules] == ["coding", "heavy", "gpu", "general"]
    assert real.routing.provides == {"moltworker": ("gpu", "always_on", "long_running")}
    assert real.litellm.tiers["P2"].backup_key == "from-the-environment" and real.litellm.tiers["P2"].paid
    assert "proxy restart" in real.litellm.restart_command and real.locale == "zh-Hant"


@pytest.mark.parametrize("change, key_path, expected", [
    (lambda raw: raw["executors"]["coder"].update(slots="many"), "executors.coder.slots", "a whole number >= 1"),
    (lambda raw: raw["executors"]["coder"].pop("tool"), "executors.coder.tool", "a non-empty name"),
    (lambda raw: raw["executors"]["coder"].update(transport="carrier-pigeon"), "executors.coder.transport",
     "one of stdio, http"),
    (lambda raw: raw["routing"]["rules"][0].update(executors=["nobody"]), "routing.rules[0].executors[0]",
     "one of the configured executors"),
    (lambda raw: raw["routing"]["rules"][0].update(match=["(unclosed"]), "routing.rules[0].match[0]",
     "a valid regular expression"),
    (lambda raw: raw["gateway"].update(host="0.0.0.0"), "gateway.host", "a loopback address"),
    (lambda raw: raw["supervision"].update(strategy="all_for_none"), "supervision.strategy", "one of one_for_one"),
    (lambda raw: raw["tasks"].update(max_attempts=0), "tasks.max_attempts", "a whole number >= 1"),
    (lambda raw: raw.update(executor={}), "executor", "one of the keys"),
    (lambda raw: raw["litellm"]["tiers"]["P2"].update(backup_key="nobody"), "api_keys.backup.nobody",
     "a backup key named 'nobody' (referred to by litellm.tiers.P2.backup_key)"),
    (lambda raw: raw["litellm"]["tiers"].pop("P1"), "litellm.tiers",
     "the tiers P1 (free) and P2 (paid), in that order"),
    (lambda raw: raw["budget"].update(daily_usd=-1), "budget.daily_usd", "a number >= 0"),
    (lambda raw: raw.update(locale="fr"), "locale", "one of en, zh-Hant, zh-Hans"),
    (lambda raw: raw["executors"]["coder"]["arguments"].update(prompt="{descripton}"),
     "executors.coder.arguments.prompt",
     "template fields among {description}"),
])
def test_a_mistake_names_file_key_path_and_expectation(tmp_path, change, key_path, expected):
    path = write(tmp_path, with_change(change))
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert str(error.value).startswith(f"{path}: {key_path}: expected {expected}")


def test_broken_yaml_names_the_file(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("executors: [unclosed\n")
    with pytest.raises(ConfigError, match=f"{path}: .*expected valid YAML"):
        load_config(path)


def test_environment_references_are_expanded_and_a_missing_one_is_named(tmp_path, monkeypatch):
    raw = with_change(lambda raw: raw["executors"]["coder"].update(env={"ANTHROPIC_API_KEY": "${OMNI_TEST_KEY}"}))
    path = write(tmp_path, raw)
    with pytest.raises(ConfigError, match=r"executors\.coder\.env\.ANTHROPIC_API_KEY: expected environment "
                                          r"variable OMNI_TEST_KEY to be set"):
        load_config(path)
    monkeypatch.setenv("OMNI_TEST_KEY", "sk-secret-value")
    assert load_config(path).executors["coder"].env["ANTHROPIC_API_KEY"] == "sk-secret-value"


def test_a_literal_secret_is_refused_unless_the_file_is_owner_only(tmp_path):
    raw = with_change(lambda raw: raw["executors"]["coder"].update(env={"ANTHROPIC_API_KEY": "sk-literal-123"}))
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, raw, mode=0o644))
    assert "executors.coder.env.ANTHROPIC_API_KEY" in str(error.value) and "chmod 600" in str(error.value)
    assert "sk-literal-123" not in str(error.value)
    assert load_config(write(tmp_path, raw, mode=0o600)).executors["coder"].env["ANTHROPIC_API_KEY"] == "sk-literal-123"


def test_a_wrongly_typed_secret_is_not_echoed(tmp_path):
    raw = with_change(lambda raw: raw["executors"]["coder"].update(env={"API_KEY": ["sk-in-a-list"]}))
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, raw))
    assert "sk-in-a-list" not in str(error.value)


def test_a_literal_backup_key_in_a_shared_file_is_refused_without_echoing_it(tmp_path):
    raw = with_change(lambda raw: raw["api_keys"]["backup"].update(openrouter="sk-or-literal-secret"))
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, raw))
    assert "api_keys.backup.openrouter" in str(error.value) and "sk-or-literal-secret" not in str(error.value)
