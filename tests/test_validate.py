"""`python supervisor.py validate`: the schema, then every MCP server, with a readable report."""
from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from config import PROJECT_ROOT

pytestmark = pytest.mark.slow   # validation starts every MCP server in the config


def validate(config) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "supervisor.py", "validate", "--config", str(config)], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=120)


def test_a_sound_config_and_its_servers_pass(write_config):
    finished = validate(write_config())
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert "the schema is sound" in finished.stdout
    assert "ok   executor coder:" in finished.stdout and "'claude_code' present" in finished.stdout
    assert finished.stdout.strip().endswith("sound")


def test_an_unstartable_server_and_a_missing_tool_are_reported(write_config):
    finished = validate(write_config(executors={"coder": {"command": "/nonexistent/mcp-server"},
                                                "general": {"tool": "do_everything"}}))
    assert finished.returncode == 1
    assert "FAIL executor coder:" in finished.stdout and "/nonexistent/mcp-server" in finished.stdout
    assert "FAIL executor general:" in finished.stdout
    assert "no tool 'do_everything' (it offers: run_task)" in finished.stdout
    assert "2 problem(s)" in finished.stdout


def test_schema_errors_and_missing_environment_references_name_file_and_key(write_config, tmp_path):
    bad = tmp_path / "bad.yaml"
    raw = yaml.safe_load(write_config().read_text())
    raw["executors"]["coder"]["env"] = {"ANTHROPIC_API_KEY": "${OMNI_TEST_UNSET_KEY}"}
    bad.write_text(yaml.safe_dump(raw))
    finished = validate(bad)
    assert finished.returncode == 1
    assert (f"{bad}: executors.coder.env.ANTHROPIC_API_KEY: expected environment variable OMNI_TEST_UNSET_KEY "
            "to be set") in finished.stderr
    raw["executors"]["coder"]["env"] = {}
    raw["executors"]["coder"]["slots"] = "four"
    bad.write_text(yaml.safe_dump(raw))
    finished = validate(bad)
    assert finished.returncode == 1 and f"{bad}: executors.coder.slots: expected a whole number >= 1" in finished.stderr
