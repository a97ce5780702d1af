"""The coder executor's MCP server (mcp_servers/claude_code.py) against the REAL claude-agent-sdk and its bundled
Claude CLI (installed by `make claude`), offline.

The CLI's model is sandbox/anthropic_api.py, a loopback stand-in of the Anthropic Messages API
(ANTHROPIC_BASE_URL, a fake ANTHROPIC_API_KEY): real tasks complete, write files, are refused tools, continue
their session, or hang (for the timeout and cancel). The login test points HOME at an empty folder with no key.
Each test starts the server as a real stdio process; a CLI process is found by its working directory (the
test's own workFolder), so "nothing left running" is checked on the real process table.
"""
from __future__ import annotations

import asyncio
import os
import re
import sys
import time
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, AsyncIterator

import pytest
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.shared.exceptions import MCPError

from config import PROJECT_ROOT
from mcp_servers import claude_sdk
from sandbox.anthropic_api import AnthropicStandIn

from .conftest import wait_until

pytestmark = pytest.mark.slow   # every test spawns our MCP server and the real Claude CLI

CALL_S = 120.0
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@pytest.fixture(scope="module", autouse=True)
def sdk_installed() -> None:
    if not claude_sdk.installed():
        pytest.fail(f"claude-agent-sdk {claude_sdk.sdk_version()} is not installed in {claude_sdk.sdk_dir()}: "
                    f"{claude_sdk.INSTALL_HINT} (`make test` does)")


@pytest.fixture(scope="module")
def model() -> AsyncIterator[AnthropicStandIn]:
    stand_in = AnthropicStandIn().start()
    try:
        yield stand_in
    finally:
        stand_in.stop()


@pytest.fixture
def work(tmp_path: Path) -> Path:
    (tmp_path / "home").mkdir()
    (tmp_path / "repo").mkdir()
    return tmp_path


def cli_processes_in(folder: Path) -> list[int]:
    """Pids of live processes whose working directory is `folder` (the Claude CLI runs in the workFolder)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.readlink(entry / "cwd") == str(folder) and "Z" not in (entry / "stat").read_text().split()[2]:
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


@asynccontextmanager
async def server(work: Path, model: AnthropicStandIn | None, *flags: str) -> AsyncIterator[ClientSession]:
    env = {"HOME": str(work / "home"), "PATH": os.environ.get("PATH", ""), "OMNI_CACHE": str(claude_sdk.cache_dir())}
    if model is not None:
        env |= {"ANTHROPIC_BASE_URL": model.base_url, "ANTHROPIC_API_KEY": "sk-ant-omni-test-not-a-key"}
    params = StdioServerParameters(command=sys.executable, args=["-m", "mcp_servers.claude_code", *flags],
                                   cwd=str(PROJECT_ROOT), env=env)
    try:
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            yield session
    finally:
        assert not cli_processes_in(work / "repo"), "a Claude CLI process outlived its server"


async def call(session: ClientSession, progress: list[str] | None = None, **arguments: Any) -> Any:
    async def record(done: float, total: float | None, message: str | None) -> None:
        if progress is not None:
            progress.append(message or "")
    return await session.call_tool("claude_code", arguments, read_timeout_seconds=CALL_S, progress_callback=record)


def text_of(result: Any) -> str:
    return " ".join(block.text for block in result.content if block.type == "text")


def test_tool_list_and_argument_shapes(work):
    async def scenario():
        async with server(work, None) as session:
            tools = (await session.list_tools()).tools
            assert [tool.name for tool in tools] == ["claude_code"]
            schema = tools[0].input_schema
            assert set(schema["properties"]) == {"prompt", "workFolder", "session_id", "timeout_s"}
            assert set(schema["required"]) == {"prompt", "workFolder"}
            assert schema["properties"]["timeout_s"]["type"] == "number"
            relative = await call(session, prompt="fix it", workFolder="repo")
            assert relative.is_error and "workFolder 'repo': expected an absolute path" in text_of(relative)
            missing = await call(session, prompt="fix it", workFolder=str(work / "nowhere"))
            assert missing.is_error and "no such folder" in text_of(missing)
            session_id = await call(session, prompt="go on", workFolder=str(work / "repo"), session_id="last")
            assert session_id.is_error and "session_id 'last': expected a Claude Code session id" in text_of(session_id)
    asyncio.run(scenario())


def test_without_a_login_a_task_fails_fast_and_says_how_to_log_in(work):
    async def scenario():
        async with server(work, None) as session:
            started = time.monotonic()
            result = await call(session, prompt="Fix the failing test", workFolder=str(work / "repo"))
            took = time.monotonic() - started
        print(f"\nno login → tool error in {took:.2f}s")
        assert result.is_error
        assert "Claude Code is not logged in" in text_of(result)
        assert "claude /login" in text_of(result) and "ANTHROPIC_API_KEY" in text_of(result)
        assert "\n" not in text_of(result)
    asyncio.run(scenario())


def test_a_task_completes_writes_in_its_folder_reports_progress_and_its_session_continues(work, model):
    repo = work / "repo"

    async def scenario():
        async with server(work, model) as session:
            progress: list[str] = []
            wrote = await call(session, progress, prompt=f"[write {repo}/hello.py print('hi')]", workFolder=str(repo))
            assert not wrote.is_error, text_of(wrote)
            assert text_of(wrote) == f"wrote {repo}/hello.py"
            assert (repo / "hello.py").read_text() == "print('hi')"
            assert f"Write: {repo}/hello.py" in progress

            first = await call(session, prompt="Please remember PINEAPPLE", workFolder=str(repo))
            assert text_of(first) == "I will remember PINEAPPLE."
            session_id = first.structured_content["session_id"]
            assert UUID.match(session_id) and first.structured_content["workFolder"] == str(repo)
            again = await call(session, prompt="what word was it?", workFolder=str(repo), session_id=session_id)
            assert text_of(again) == "The word was PINEAPPLE."
            assert again.structured_content["session_id"] == session_id
            fresh = await call(session, prompt="what word was it?", workFolder=str(repo))
            assert text_of(fresh) == "I know no word."
            unknown = await call(session, prompt="go on", workFolder=str(repo),
                                 session_id="11111111-2222-3333-4444-555555555555")
            assert unknown.is_error and "no such Claude Code session" in text_of(unknown)
    asyncio.run(scenario())


def test_edits_outside_the_work_folder_are_refused_by_default(work, model):
    outside = work / "outside.txt"

    async def scenario():
        async with server(work, model) as session:
            progress: list[str] = []
            result = await call(session, progress, prompt=f"[write {outside} x]", workFolder=str(work / "repo"))
        assert not result.is_error
        assert text_of(result).startswith(f"could not write {outside}")
        assert result.structured_content["denied"] and any(line.startswith("refused:") for line in progress)
        assert not outside.exists()
    asyncio.run(scenario())


def test_a_task_past_its_timeout_is_interrupted_and_leaves_no_process(work, model):
    async def scenario():
        async with server(work, model) as session:
            started = time.monotonic()
            result = await call(session, prompt="[hang] refactor", workFolder=str(work / "repo"), timeout_s=4)
            took = time.monotonic() - started
            assert not cli_processes_in(work / "repo")
            assert (await session.list_tools()).tools
        print(f"\ntimeout_s=4 → tool error after {took:.2f}s, CLI gone")
        assert result.is_error and "did not finish within 4s: interrupted" in text_of(result)
    asyncio.run(scenario())


def test_cancel_interrupts_the_cli_and_leaves_no_process(work, model):
    repo = work / "repo"

    def hanging() -> bool:
        return any("[hang] cancel me" in str(request.messages) for request in model.requests if request.tools)

    async def scenario():
        async with server(work, model) as session:
            call_task = asyncio.ensure_future(call(session, prompt="[hang] cancel me", workFolder=str(repo)))
            await asyncio.to_thread(wait_until, hanging, CALL_S, "the CLI's hanging model request")
            assert cli_processes_in(repo)
            cancelled = time.monotonic()
            call_task.cancel()
            with pytest.raises((asyncio.CancelledError, MCPError)):
                await call_task
            await asyncio.to_thread(wait_until, lambda: not cli_processes_in(repo), 30, "the CLI process to end")
            gone = time.monotonic() - cancelled
            assert (await session.list_tools()).tools     # the server lives on
        print(f"\ncancel → Claude CLI process gone in {gone:.2f}s")
    asyncio.run(scenario())


def test_validate_checks_the_claude_cli_of_the_default_config(work, monkeypatch):
    from config import EMBEDDED_DEFAULT, load_config
    from cli.validate import check_claude_cli
    for name in ("OPENCLAW_GATEWAY_TOKEN", "MOLTWORKER_GATEWAY_TOKEN", "CF_ACCESS_CLIENT_ID", "CF_ACCESS_CLIENT_SECRET",
                 "CLIPROXY_API_KEY", "OPENROUTER_API_KEY", "CLIPROXY_BACKUP_KEY", "OPENROUTER_BACKUP_KEY"):
        monkeypatch.setenv(name, "from-the-environment")
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(work / "home"))              # no login there
    coder = load_config(EMBEDDED_DEFAULT.with_name("default.yaml")).executors["claude_code"]
    assert coder.args[:2] == ("-m", "mcp_servers.claude_code") and "@" not in " ".join(coder.args)
    checks = {check.subject.split(": ")[1]: check for check in asyncio.run(check_claude_cli(coder))}
    assert checks["Claude CLI"].ok and "(Claude Code)" in checks["Claude CLI"].detail
    assert not checks["Claude login"].ok and "/login" in checks["Claude login"].detail
    if os.geteuid() == 0:
        assert checks["Claude as root"].ok and "warning: running as root" in checks["Claude as root"].detail

    keyed = replace(coder, env={**coder.env, "ANTHROPIC_API_KEY": "sk-ant-omni-test-not-a-key"},
                    args=(*coder.args, "--permission-mode", "bypassPermissions"))
    checks = {check.subject.split(": ")[1]: check for check in asyncio.run(check_claude_cli(keyed))}
    assert checks["Claude login"].ok and "api_key" in checks["Claude login"].detail
    if os.geteuid() == 0:
        assert not checks["Claude as root"].ok and "IS_SANDBOX=1" in checks["Claude as root"].detail

    gone = replace(coder, args=(*coder.args, "--sdk-dir", str(work / "no-sdk")))
    [missing] = asyncio.run(check_claude_cli(gone))
    assert not missing.ok and "make claude" in missing.detail
