"""Every malformed config gets one line naming the file and what was wrong, never a traceback; no error
shows a value that came from the environment, and no literal key is accepted in a world-readable file."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

from config import EMBEDDED_DEFAULT, PROJECT_ROOT, ConfigError, load_config

PAID_KEY = "fz-paid-0123456789abcdef"
LITERAL_KEY = "sk-or-v1-5f0c9a8e7d6b4c3a2f1e0d9c8b7a6f5e"


def sandbox():
    return yaml.safe_load(EMBEDDED_DEFAULT.read_text())


def write(tmp_path, raw, mode=0o644, name="config.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw, allow_unicode=True))
    os.chmod(path, mode)
    return path


def changed(change):
    raw = sandbox()
    change(raw)
    return raw


def refusal(path) -> str:
    with pytest.raises(ConfigError) as error:
        load_config(path)
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"{path}: "), message
    return message


def run_cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "supervisor.py", *args], cwd=PROJECT_ROOT, capture_output=True, text=True,
                          timeout=60)


# --- malformed files -----------------------------------------------------------------------------------------

def latin1_file(tmp_path):
    path = tmp_path / "latin1.yaml"
    text = EMBEDDED_DEFAULT.read_bytes()
    path.write_bytes(text + "# café\n".encode("latin-1"))
    return path, len(text) + len("# caf")


def test_a_file_that_is_not_utf8_is_named_with_the_byte(tmp_path):
    path, at = latin1_file(tmp_path)
    assert refusal(path) == f"{path}: not UTF-8 at byte {at}"


@pytest.mark.slow   # runs supervisor.py
@pytest.mark.parametrize("command, code", [(("validate",), 1), ((), 2)])
def test_validate_and_run_answer_a_non_utf8_file_with_one_line_and_no_traceback(tmp_path, omni_home, command, code):
    path, at = latin1_file(tmp_path)
    finished = run_cli(*command, "--config", str(path))
    assert finished.returncode == code
    assert finished.stderr == f"config error: {path}: not UTF-8 at byte {at}\n"
    assert "Traceback" not in finished.stdout + finished.stderr


@pytest.mark.parametrize("content, expected", [
    (b"- coder\n- general\n", "(top level): expected a mapping, got ['coder', 'general']"),
    (b"just words\n", "(top level): expected a mapping, got 'just words'"),
    (b"gateway:\n\tport: 1\n", "line 2, column 1: expected valid YAML, got found character '\\t' that cannot start"),
    (b"tasks:\n  max_attempts: 3\n  max_attempts: 4\n",
     "line 3, column 3: expected valid YAML, got the key 'max_attempts' a second time in one mapping"),
    (b"\x00\x01\x02\xff\xfe garbage", "not UTF-8 at byte 3"),
    (b"\x00\x01\x02 garbage", "(top level): expected valid YAML, got unacceptable character #x0000"),
    (b"", "executors: expected at least one executor"),
    (b"tasks: {when: 2001-13-45}\n", "(top level): expected valid YAML, got a value YAML cannot read (month must be"),
    (b"[[[[", "line 1, column 5: expected valid YAML, got expected the node content"),
])
def test_a_malformed_file_gets_one_line_naming_what_was_wrong(tmp_path, content, expected):
    path = tmp_path / "bad.yaml"
    path.write_bytes(content)
    assert refusal(path).startswith(f"{path}: {expected}")


def test_a_directory_or_a_missing_file_is_named(tmp_path):
    assert refusal(tmp_path) == f"{tmp_path}: (top level): expected a readable YAML file, got a directory"
    missing = tmp_path / "nowhere.yaml"
    assert refusal(missing) == f"{missing}: (top level): expected a readable YAML file, got No such file or directory"


@pytest.mark.slow   # runs supervisor.py
def test_validate_on_a_directory_exits_1_without_a_traceback(tmp_path, omni_home):
    finished = run_cli("validate", "--config", str(tmp_path))
    assert finished.returncode == 1 and "Traceback" not in finished.stderr
    assert finished.stderr == f"config error: {tmp_path}: (top level): expected a readable YAML file, got a directory\n"


# --- values from the environment are never shown -----------------------------------------------------------

REFERENCE = "${OMNI_SANDBOX_PAID_KEY}"


@pytest.mark.parametrize("change, key_path", [
    (lambda raw: raw["gateway"].update(host=REFERENCE), "gateway.host"),
    (lambda raw: raw["gateway"].update(path=REFERENCE), "gateway.path"),
    (lambda raw: raw["gateway"].update(port=REFERENCE), "gateway.port"),
    (lambda raw: raw["im"].update(allow=[REFERENCE]), "im.allow[0]"),
    (lambda raw: raw["im"].update(locale=REFERENCE), "im.locale"),
    (lambda raw: raw["routing"]["rules"][0].update(executors=[REFERENCE]), "routing.rules[0].executors[0]"),
    (lambda raw: raw["routing"]["rules"][0].update(match=["(" + REFERENCE]), "routing.rules[0].match[0]"),
    (lambda raw: raw["routing"]["rules"][0].update(kind=REFERENCE), "routing.rules[0].kind"),
    (lambda raw: raw["routing"].update(default_kind=REFERENCE), "routing.default_kind"),
    (lambda raw: raw["litellm"]["tiers"]["P1"].update(backup_key=REFERENCE), "litellm.tiers.P1.backup_key"),
    (lambda raw: raw["litellm"].update(restart_command="{" + REFERENCE + "}"), "litellm.restart_command"),
    (lambda raw: raw["litellm"].update(route_env={"api_key": REFERENCE}), "litellm.route_env.api_key"),
    (lambda raw: raw["supervision"].update(within_s=REFERENCE), "supervision.within_s"),
    (lambda raw: raw["executors"]["coder"].update(transport=REFERENCE), "executors.coder.transport"),
    (lambda raw: raw["executors"]["coder"].update(tool=REFERENCE), "executors.coder.tool"),
    (lambda raw: raw.update(gateway=REFERENCE), "gateway"),
    (lambda raw: raw["routing"].update(rules=REFERENCE), "routing.rules"),
])
def test_an_error_shows_an_environment_reference_as_written_never_its_value(tmp_path, monkeypatch, change, key_path):
    monkeypatch.setenv("OMNI_SANDBOX_PAID_KEY", PAID_KEY)
    message = refusal(write(tmp_path, changed(change)))
    assert f": {key_path}: expected " in message
    assert PAID_KEY not in message and "OMNI_SANDBOX_PAID_KEY}" in message
    assert "value not shown" in message


def test_the_issues_example_says_which_reference_it_was(tmp_path, monkeypatch):
    monkeypatch.setenv("OMNI_SANDBOX_PAID_KEY", PAID_KEY)
    path = write(tmp_path, changed(lambda raw: raw["gateway"].update(host=REFERENCE)))
    assert refusal(path) == (f"{path}: gateway.host: expected a loopback address (127.0.0.1, localhost, ::1), "
                             "got ${OMNI_SANDBOX_PAID_KEY} (from the environment, value not shown)")


def test_a_default_in_a_reference_is_not_shown_either(tmp_path):
    path = write(tmp_path, changed(lambda raw: raw["gateway"].update(host="${OMNI_FZ_UNSET:-secret-default}")))
    message = refusal(path)
    assert "secret-default" not in message and "got ${OMNI_FZ_UNSET} (from the environment" in message


# --- literal keys ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("change, key_path", [
    (lambda raw: raw["litellm"].update(proxy_key="omni-proxy-literal"), "litellm.proxy_key"),
    (lambda raw: raw["api_keys"]["backup"].update(cliproxy="plain-words"), "api_keys.backup.cliproxy"),
    (lambda raw: raw["litellm"]["env"].update(OMNI_SANDBOX_FREE_KEY="free-literal"),
     "litellm.env.OMNI_SANDBOX_FREE_KEY"),
    (lambda raw: raw["litellm"]["env"].update(UPSTREAM=LITERAL_KEY), "litellm.env.UPSTREAM"),
    (lambda raw: raw["executors"]["coder"].update(env={"ANTHROPIC_API_KEY": "sk-ant-short"}),
     "executors.coder.env.ANTHROPIC_API_KEY"),
    (lambda raw: raw["executors"]["coder"].update(env={"OPENAI": LITERAL_KEY}), "executors.coder.env.OPENAI"),
    (lambda raw: raw["executors"]["coder"].update(args=["--api-key", LITERAL_KEY]), "executors.coder.args[1]"),
    (lambda raw: raw["executors"]["coder"]["arguments"].update(key=LITERAL_KEY), "executors.coder.arguments.key"),
    (lambda raw: raw["executors"].update(remote={"transport": "http", "url": "http://127.0.0.1:9/mcp", "tool": "t",
                                                 "arguments": {"p": "{description}"},
                                                 "headers": {"Authorization": "Bearer literal-token"}}),
     "executors.remote.headers.Authorization"),
    (lambda raw: raw["executors"].update(remote={"transport": "http", "url": f"http://127.0.0.1:9/mcp?k={LITERAL_KEY}",
                                                 "tool": "t", "arguments": {"p": "{description}"}}),
     "executors.remote.url"),
    (lambda raw: raw["im"]["openclaw"].update(env={"OPENCLAW_GATEWAY_TOKEN": "literal-gateway-token"}),
     "im.openclaw.env.OPENCLAW_GATEWAY_TOKEN"),
    (lambda raw: raw["im"]["openclaw"].update(args=["mcp", "serve", "--token", LITERAL_KEY]), "im.openclaw.args[3]"),
    (lambda raw: raw["api_keys"]["backup"].update(cliproxy="${OMNI_FZ_UNSET:-" + LITERAL_KEY + "}"),
     "api_keys.backup.cliproxy"),
])
def test_a_literal_key_in_a_world_readable_file_is_refused_wherever_it_stands(tmp_path, change, key_path):
    raw = changed(change)
    message = refusal(write(tmp_path, raw))
    assert (f": {key_path}: expected a ${{ENV_NAME}} reference" in message
            or f": {key_path}: expected no literal key" in message)
    assert "chmod 600" in message and LITERAL_KEY not in message and "literal-" not in message
    load_config(write(tmp_path, raw, mode=0o600, name="private.yaml"))   # the owner's own file may hold one


def test_a_key_written_where_a_name_belongs_is_not_echoed(tmp_path):
    message = refusal(write(tmp_path, changed(lambda raw: raw["gateway"].update(host=LITERAL_KEY)), mode=0o600))
    assert LITERAL_KEY not in message and "gateway.host: expected a loopback address" in message
    message = refusal(write(tmp_path, changed(lambda raw: raw["tasks"].update({LITERAL_KEY: 1})), mode=0o600))
    assert LITERAL_KEY not in message and "one of the keys max_attempts" in message


# --- unknown keys and scalar sections ------------------------------------------------------------------------

@pytest.mark.parametrize("section, typo, suggestion", [
    ("tasks", "max_attempt", "max_attempts"), ("supervision", "max_restart", "max_restarts"),
    ("routing", "default_kinds", "default_kind"), ("gateway", "hots", "host"), ("demo", "interval", "interval_s"),
    ("api_keys", "backups", "backup"), ("budget", "daily", "daily_usd"), ("repair", "verify", "verify_s"),
    ("health", "interval", "interval_s"), ("brainstem", "model", "model_path"), ("im", "alow", "allow"),
    ("litellm", "proxy_keys", "proxy_key"),
])
def test_an_unknown_key_is_refused_in_every_section(tmp_path, section, typo, suggestion):
    raw = sandbox()
    raw[section][typo] = 1
    message = refusal(write(tmp_path, raw))
    assert f": {section}.{typo}: expected one of the keys " in message
    assert message.endswith(f"got an unknown key (did you mean {suggestion}?)")


def test_unknown_keys_deeper_down_are_refused_too(tmp_path):
    raw = changed(lambda raw: raw["litellm"]["route_env"].update(api_kye="X"))
    assert ": litellm.route_env.api_kye: expected one of the keys api_key, base_url" in refusal(write(tmp_path, raw))


@pytest.mark.parametrize("section", ["tasks", "supervision", "routing", "gateway", "demo", "api_keys", "budget",
                                     "repair",
                                     "health", "brainstem", "im", "litellm", "executors", "providers"])
def test_a_section_given_as_a_scalar_is_an_error_not_the_defaults(tmp_path, section):
    message = refusal(write(tmp_path, changed(lambda raw: raw.update({section: "x"}))))
    assert message.endswith(f": {section}: expected a mapping, got "
                            + ("a string (value not shown)" if section == "api_keys" else "'x'"))


def test_restart_command_fields_are_checked(tmp_path):
    raw = changed(lambda raw: raw["litellm"].update(restart_command="{python} {projct}/supervisor.py"))
    assert ": litellm.restart_command: expected a command whose fields are among {python}" in refusal(write(tmp_path,
                                                                                                            raw))


def test_an_unknown_home_directory_in_a_path_is_named(tmp_path):
    raw = changed(lambda raw: raw["brainstem"].update(model_path="~no-such-user-fz/models"))
    assert ": brainstem.model_path: expected a path (a ~user in it must exist" in refusal(write(tmp_path, raw))


# --- supervision that could never escalate -------------------------------------------------------------------

def test_a_backoff_that_outlasts_the_intensity_window_is_refused(tmp_path):
    raw = changed(lambda raw: raw["supervision"].update(max_restarts=10, within_s=10, backoff_initial_s=0.05,
                                                         backoff_max_s=5))
    message = refusal(write(tmp_path, raw))
    assert ": supervision: expected settings under which a child crashing at every start escalates" in message
    assert "supervision.backoff_max_s" in message and "supervision.within_s" in message
    assert message.endswith("got 21.35s of backoff against within_s 10s")


def test_the_shipped_supervision_settings_can_escalate(monkeypatch):
    for name in ("ANTHROPIC_API_KEY", "OPENCLAW_GATEWAY_TOKEN", "MOLTWORKER_GATEWAY_TOKEN", "CF_ACCESS_CLIENT_ID",
                 "CF_ACCESS_CLIENT_SECRET", "CLIPROXY_API_KEY", "OPENROUTER_API_KEY", "CLIPROXY_BACKUP_KEY",
                 "OPENROUTER_BACKUP_KEY"):
        monkeypatch.setenv(name, "from-the-environment")
    for path in (EMBEDDED_DEFAULT, EMBEDDED_DEFAULT.with_name("default.yaml")):
        policy = load_config(path).supervision
        assert policy.crash_loop_s < policy.within_s
