"""Claude Code as an executor: an MCP server (stdio) whose one tool runs one Claude Code task through claude-agent-sdk.

    python -m mcp_servers.claude_code [--permission-mode acceptEdits] [--allowed-tool 'Bash(git diff:*)' …]

`claude_code(prompt, workFolder, session_id?, timeout_s?)` runs the task with the Claude CLI in `workFolder` and
returns its final answer as text, with `{answer, session_id, workFolder, turns, cost_usd, denied}` as structured
content. Giving a finished task's `session_id` (and the same `workFolder`: the CLI keeps sessions per folder)
continues that Claude Code session: the model sees the earlier conversation. While it works it reports MCP
progress (seconds elapsed of the timeout, and what happens: "Write /src/app.py", "Bash: pytest -q", the
model's text, a refused tool). MCP cancel and `timeout_s` (else `--timeout`) interrupt the CLI, close it and
make sure its process is gone before the call ends.

Why our own server over the SDK, not an npm claude-code-mcp: `@steipete/claude-code-mcp` is archived (no
progress, no cancel, no session continuation, and it runs the CLI with --dangerously-skip-permissions, which
the CLI refuses as root); the maintained forks named in issue 11 are not in the npm registry, so they can be
neither installed nor pinned; Anthropic's `claude-agent-sdk` (PyPI) is maintained, pinned with hashes
(requirements-claude.lock) and bundles the CLI it was tested with, and gives every piece a task needs:
streamed messages (progress), `interrupt()` (cancel), `resume` (continuation), permission modes and tool
rules, and the CLI's own error kinds (`authentication_failed`).

Permissions (server flags, never the caller's): `--permission-mode` (default `acceptEdits`: file edits inside
`workFolder` are accepted, anything else that would ask — Bash, edits outside it, web fetches — is refused and
the refusal reported, so an unattended task cannot run arbitrary commands); `--allowed-tool RULE` (repeatable,
CLI rule syntax: `Bash(npm test:*)`, `Bash(git diff:*)`, `WebFetch(domain:docs.python.org)`) pre-approves more;
`--disallowed-tool RULE` removes tools; `--add-dir DIR` gives access beyond workFolder. `bypassPermissions`
skips every check (the CLI refuses it as root unless IS_SANDBOX=1): only in a throwaway container.

Login: the CLI uses the machine's Claude login (`claude /login` once, with the bundled CLI `python -m
mcp_servers.claude_sdk where` names, or any Claude Code of the same account) or `ANTHROPIC_API_KEY` in the
executor's env. Without either a task fails in about 2–3 s with "Claude Code is not logged in …" saying so.

The SDK is not in .venv: `make claude` installs it into `$OMNI_CACHE/claude-agent-sdk-<version>/`
(mcp_servers/claude_sdk.py), which this server puts on `sys.path` (`--sdk-dir` overrides; `--cli` runs another
Claude CLI than the bundled one). Every failure is a one-line MCP tool error.

Example executor (config/default.yaml):

    executors:
      claude_code:
        transport: stdio
        command: python
        args: ["-m", "mcp_servers.claude_code", "--permission-mode", "acceptEdits",
               "--allowed-tool", "Bash(git status:*)", "--allowed-tool", "Bash(git diff:*)"]
        env: {ANTHROPIC_API_KEY: "${ANTHROPIC_API_KEY}", OMNI_CACHE: "${OMNI_CACHE:-}"}
        tool: claude_code
        arguments: {prompt: "{description}", workFolder: "/Users/me/src", timeout_s: 1740}
        call_timeout_s: 1800         # above timeout_s: the CLI is interrupted and the error reported first
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

import anyio
from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, TextContent

try:
    from mcp_servers import claude_sdk
except ImportError:                # run as a file, not as a module of the project
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from mcp_servers import claude_sdk

TOOL = "claude_code"
PERMISSION_MODES = ("default", "acceptEdits", "plan", "dontAsk", "auto", "bypassPermissions")
CONNECT_TIMEOUT_S = 60.0           # the CLI's start-up (~1.5 s here) plus its first handshake
STOP_TIMEOUT_S = 10.0              # interrupt + close, before the process is killed
MAX_TIMEOUT_S = 7 * 24 * 3600.0
LOGIN_HINT = ("log in once with `claude /login` as the user the orchestrator runs as (the bundled CLI: "
              "`python -m mcp_servers.claude_sdk where`), or give ANTHROPIC_API_KEY in the executor's env")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")

Progress = Callable[[float, float, str], Awaitable[None]]


class TaskFailed(Exception):
    """A task that could not run or did not succeed; its message is the one line the caller sees."""


def _one_line(text: Any, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


# --- settings ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Settings:
    permission_mode: str = "acceptEdits"
    allowed_tools: tuple[str, ...] = ()
    disallowed_tools: tuple[str, ...] = ()
    add_dirs: tuple[str, ...] = ()
    timeout_s: float = 1800.0
    max_turns: int | None = None
    model: str | None = None
    cli: str | None = None
    sdk_dir: Path | None = None


def parse_settings(argv: list[str]) -> Settings:
    parser = argparse.ArgumentParser(prog="python -m mcp_servers.claude_code",
                                     description="MCP server (stdio): one Claude Code task per tool call.")
    parser.add_argument("--permission-mode", choices=PERMISSION_MODES, default="acceptEdits",
                        help="what the CLI may do unasked (default acceptEdits: edits inside workFolder only)")
    parser.add_argument("--allowed-tool", action="append", default=[], metavar="RULE",
                        help="pre-approve a tool rule, e.g. 'Bash(npm test:*)' (repeatable)")
    parser.add_argument("--disallowed-tool", action="append", default=[], metavar="RULE",
                        help="remove a tool or rule, e.g. WebFetch (repeatable)")
    parser.add_argument("--add-dir", action="append", default=[], metavar="DIR",
                        help="a folder the CLI may use besides workFolder (repeatable)")
    parser.add_argument("--timeout", type=float, default=1800.0, metavar="SECONDS",
                        help="a task's limit when the call gives no timeout_s; the CLI is interrupted after it")
    parser.add_argument("--max-turns", type=int, metavar="N", help="stop a task after N model turns")
    parser.add_argument("--model", help="the Claude model (default: the CLI's)")
    parser.add_argument("--cli", help="a Claude CLI to run instead of the one bundled with the SDK")
    parser.add_argument("--sdk-dir", help="where claude-agent-sdk is installed (default: what `make claude` made)")
    args = parser.parse_args(argv)
    if not 0 < args.timeout <= MAX_TIMEOUT_S:
        parser.error(f"--timeout {args.timeout}: expected seconds from 0 to {MAX_TIMEOUT_S:.0f}")
    if args.max_turns is not None and args.max_turns < 1:
        parser.error(f"--max-turns {args.max_turns}: expected a whole number ≥ 1")
    for folder in args.add_dir:
        if not Path(folder).is_absolute():
            parser.error(f"--add-dir {folder!r}: expected an absolute path")
    return Settings(permission_mode=args.permission_mode, allowed_tools=tuple(args.allowed_tool),
                    disallowed_tools=tuple(args.disallowed_tool), add_dirs=tuple(args.add_dir),
                    timeout_s=args.timeout, max_turns=args.max_turns, model=args.model, cli=args.cli,
                    sdk_dir=Path(args.sdk_dir).expanduser() if args.sdk_dir else None)


def load_sdk(settings: Settings) -> Any:
    """Import claude_agent_sdk from its own folder (not .venv); a clear error when it is not installed."""
    folder = settings.sdk_dir or claude_sdk.sdk_dir()
    if (folder / "claude_agent_sdk").is_dir() and str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    try:
        import claude_agent_sdk
    except ImportError:
        raise TaskFailed(f"claude-agent-sdk is not installed in {folder}: {claude_sdk.INSTALL_HINT}") from None
    return claude_agent_sdk


# --- one task ------------------------------------------------------------------------------------------------
@dataclass
class Run:
    """What a task's stream said: the final answer, its session, and what progress to show."""
    session_id: str = ""
    texts: list[str] = field(default_factory=list)
    denied: list[str] = field(default_factory=list)
    result: Any = None
    auth_failed: str = ""
    api_error: str = ""


def _check_arguments(prompt: str, work_folder: str, session_id: str, timeout_s: float,
                     settings: Settings) -> tuple[Path, float]:
    if not prompt.strip():
        raise TaskFailed("prompt: expected the task's text, got an empty string")
    folder = Path(work_folder).expanduser()
    if not folder.is_absolute():
        raise TaskFailed(f"workFolder {work_folder!r}: expected an absolute path")
    if not folder.is_dir():
        raise TaskFailed(f"workFolder {work_folder!r}: no such folder")
    if session_id and not _UUID.match(session_id):
        raise TaskFailed(f"session_id {session_id!r}: expected a Claude Code session id (a UUID, from an earlier "
                         "result's session_id)")
    if not 0 <= timeout_s <= MAX_TIMEOUT_S:
        raise TaskFailed(f"timeout_s {timeout_s}: expected seconds from 0 to {MAX_TIMEOUT_S:.0f} (0: the server's "
                         f"default, {settings.timeout_s:.0f})")
    if settings.permission_mode == "bypassPermissions" and os.geteuid() == 0 and os.environ.get("IS_SANDBOX") != "1":
        raise TaskFailed(claude_sdk.ROOT_HINT)
    return folder.resolve(), timeout_s or settings.timeout_s


def _options(sdk: Any, settings: Settings, folder: Path, session_id: str, stderr: deque[str]) -> Any:
    return sdk.ClaudeAgentOptions(
        cwd=str(folder), resume=session_id or None, permission_mode=settings.permission_mode,
        allowed_tools=list(settings.allowed_tools), disallowed_tools=list(settings.disallowed_tools),
        add_dirs=list(settings.add_dirs), max_turns=settings.max_turns, model=settings.model,
        cli_path=settings.cli, stderr=stderr.append,
        # The CLI's telemetry, update checks and surveys: nothing a task needs, and off the network.
        env={"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_AUTOUPDATER": "1"})


def _describe_tool(block: Any) -> str:
    arguments = block.input if isinstance(block.input, dict) else {}
    detail = (arguments.get("file_path") or arguments.get("command") or arguments.get("pattern")
              or arguments.get("url") or arguments.get("description") or "")
    return _one_line(f"{block.name}: {detail}" if detail else block.name, 200)


def _note(sdk: Any, message: Any, run: Run) -> list[str]:
    """Take in one streamed message; returns the progress lines it makes."""
    lines: list[str] = []
    run.session_id = getattr(message, "session_id", None) or run.session_id
    if isinstance(message, sdk.SystemMessage):
        data = message.data or {}
        run.session_id = data.get("session_id") or run.session_id
        if message.subtype == "permission_denied":
            run.denied.append(_one_line(data.get("message") or data.get("tool_name"), 200))
            lines.append(f"refused: {run.denied[-1]}")
    elif isinstance(message, sdk.AssistantMessage):
        text = " ".join(block.text for block in message.content if isinstance(block, sdk.TextBlock)).strip()
        if message.error == "authentication_failed":
            run.auth_failed = text or message.error
        elif message.error:
            run.api_error = f"{message.error}: {text}" if text else message.error
        elif text:
            run.texts.append(text)
            lines.append(_one_line(text, 200))
        lines += [_describe_tool(block) for block in message.content if isinstance(block, sdk.ToolUseBlock)]
    elif isinstance(message, sdk.ResultMessage):
        run.result = message
    return lines


async def _stop(client: Any, process: Any, interrupt: bool) -> None:
    """Interrupt the CLI's turn (its session stays resumable), close it, and kill the process if it lingers."""
    with anyio.CancelScope(shield=True):
        if interrupt:
            with anyio.move_on_after(3):
                try:
                    await client.interrupt()
                except Exception:   # noqa: BLE001 (a CLI that already exited cannot be interrupted)
                    pass
        with anyio.move_on_after(STOP_TIMEOUT_S):
            try:
                await client.disconnect()
            except Exception:   # noqa: BLE001 (closing a failed CLI: its error was reported already)
                pass
        if process is not None and process.returncode is None:
            process.kill()
            with anyio.move_on_after(5):
                await process.wait()


def _outcome(run: Run, folder: Path, stderr: deque[str], elapsed: float) -> CallToolResult:
    if run.auth_failed:
        raise TaskFailed(f"Claude Code is not logged in ({_one_line(run.auth_failed, 100)}): {LOGIN_HINT}")
    result = run.result
    if result is None:
        raise TaskFailed(f"the Claude CLI ended without a result after {elapsed:.1f}s{_tail(stderr)}")
    answer = (result.result or (run.texts[-1] if run.texts else "")).strip()
    if result.is_error or result.subtype != "success":
        why = run.api_error or answer or result.subtype
        raise TaskFailed(f"Claude Code failed ({result.subtype}, session {result.session_id}): {_one_line(why)}")
    structured = {"answer": answer, "session_id": result.session_id, "workFolder": str(folder),
                  "turns": result.num_turns, "cost_usd": result.total_cost_usd, "denied": run.denied}
    return CallToolResult(content=[TextContent(type="text", text=answer or "(no answer text)")],
                          structured_content=structured)


def _tail(stderr: deque[str]) -> str:
    lines = [line for line in stderr if line.strip()]
    return f" ({_one_line(lines[-1], 200)})" if lines else ""


async def run_task(settings: Settings, prompt: str, work_folder: str, session_id: str, timeout_s: float,
                   progress: Progress) -> CallToolResult:
    folder, limit = _check_arguments(prompt, work_folder, session_id, timeout_s, settings)
    sdk = load_sdk(settings)
    stderr: deque[str] = deque(maxlen=20)
    client = sdk.ClaudeSDKClient(_options(sdk, settings, folder, session_id, stderr))
    started, run, process, finished = time.monotonic(), Run(session_id=session_id), None, False
    try:
        with anyio.move_on_after(limit) as deadline:
            try:
                with anyio.fail_after(min(CONNECT_TIMEOUT_S, limit)):
                    await client.connect()
                process = getattr(getattr(client, "_transport", None), "_process", None)
                await client.query(prompt)
                async for message in client.receive_response():
                    for line in _note(sdk, message, run):
                        await progress(time.monotonic() - started, limit, line)
            except sdk.CLINotFoundError:
                raise TaskFailed(f"no Claude CLI at {settings.cli or claude_sdk.bundled_cli()}: "
                                 f"{claude_sdk.INSTALL_HINT}") from None
            except sdk.ClaudeSDKError as error:
                if session_id and "No conversation found" in str(error):
                    raise TaskFailed(f"session_id {session_id}: no such Claude Code session in {folder} (a session "
                                     "continues only in the workFolder it ran in)") from None
                raise TaskFailed(f"the Claude CLI failed: {_one_line(error, 200)}{_tail(stderr)}") from None
            except TimeoutError:
                raise TaskFailed(f"the Claude CLI did not start within {CONNECT_TIMEOUT_S:.0f}s"
                                 f"{_tail(stderr)}") from None
        finished = run.result is not None
        if deadline.cancelled_caught:
            raise TaskFailed(f"Claude Code did not finish within {limit:.0f}s: interrupted"
                             + (f" (session {run.session_id}, resumable)" if run.session_id else ""))
        return _outcome(run, folder, stderr, time.monotonic() - started)
    finally:
        await _stop(client, process, interrupt=not finished)


# --- the MCP server ------------------------------------------------------------------------------------------
def build_server(settings: Settings) -> MCPServer:
    server = MCPServer("omni-claude-code", log_level="WARNING")

    @server.tool(name=TOOL, description=(
        "Run one Claude Code task: `prompt` in `workFolder` (an absolute path of an existing folder). Returns the "
        "final answer; its structured content has the `session_id`. Give that `session_id` (and the same "
        "workFolder) to continue the session. `timeout_s` interrupts the task after that many seconds (0: the "
        "server's default). Progress is reported while it works; cancel interrupts it."))
    async def claude_code(prompt: str, workFolder: str, ctx: Context, session_id: str = "",  # noqa: N803
                          timeout_s: float = 0) -> CallToolResult:
        async def progress(done: float, total: float, message: str) -> None:
            await ctx.report_progress(round(done, 1), total, message)
        try:
            return await run_task(settings, prompt, workFolder, str(session_id), float(timeout_s), progress)
        except TaskFailed as failure:
            raise ToolError(str(failure)) from None

    return server


def main(argv: list[str] | None = None) -> None:
    # An executor's env gives `${ANTHROPIC_API_KEY:-}` when the machine's login is meant: an empty key is no key.
    for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "OMNI_CACHE"):
        if os.environ.get(name) == "":
            del os.environ[name]
    build_server(parse_settings(sys.argv[1:] if argv is None else argv)).run()


if __name__ == "__main__":
    main()
