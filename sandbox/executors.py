"""Stub executor MCP servers for the sandbox and the tests.

    python -m sandbox.executors coder            # tool claude_code(prompt, workFolder), over stdio
    python -m sandbox.executors general          # tool run_task(prompt), over stdio
    python -m sandbox.executors moltworker       # tool run_agent_turn(prompt, task_id): 24/7 and GPU work
    python -m sandbox.executors general --http 8123   # Streamable HTTP on http://127.0.0.1:8123/mcp

`coder` has the shape of `@steipete/claude-code-mcp`; `moltworker` that of our OpenClaw-agent executor
(`mcp_servers.openclaw_agent`) pointed at Moltworker, without its remote gateway, cold start or pairing. Markers in
the prompt choose the behaviour:
`[sleep=SECONDS]` works that long and reports progress (about ten times, at least once a second),
`[fail]` returns a tool error, `[touch NAME]` (coder) writes the file NAME in workFolder,
`[crash]` kills the server process mid-call, `[route]` answers with the
model route this server was given (OPENAI_BASE_URL). Without markers it answers at once. Given a LiteLLM repair
prompt (`[repair]` with a line `Restart command: …`), the coder
runs that command, as Claude Code would after reading the log, so the repair flow closes for real.
"""
import argparse
import math
import os
import re
import shlex
import sys
from typing import NamedTuple

import anyio
from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError

ROLES = ("coder", "general", "moltworker")
CRASH_DELAY_S = 0.1
REPAIR_TIMEOUT_S = 180.0
_RESTART_COMMAND = re.compile(r"^Restart command: (.+)$", re.MULTILINE)
_MARKER = re.compile(r"\[(sleep)=([0-9]*\.?[0-9]+)\]|\[(fail|crash)\]")


class Markers(NamedTuple):
    sleep_s: float = 0.0
    fail: bool = False
    crash: bool = False


def parse_markers(prompt: str) -> Markers:
    """The behaviour markers found in `prompt`.

    >>> parse_markers("修復 LiteLLM [sleep=1.5] [fail]")
    Markers(sleep_s=1.5, fail=True, crash=False)
    """
    sleep_s, flags = 0.0, set()
    for match in _MARKER.finditer(prompt):
        if match.group(1):
            sleep_s = float(match.group(2))
        else:
            flags.add(match.group(3))
    return Markers(sleep_s, "fail" in flags, "crash" in flags)


async def work(prompt: str, ctx: Context) -> None:
    """Do what the prompt's markers ask: work with progress, then crash or fail if told to."""
    markers = parse_markers(prompt)
    if markers.sleep_s > 0:
        steps = max(10, math.ceil(markers.sleep_s))  # at least one report a second
        for step in range(1, steps + 1):
            await anyio.sleep(markers.sleep_s / steps)
            done_s = step * markers.sleep_s / steps
            await ctx.report_progress(done_s, markers.sleep_s, f"step {step}/{steps}")
    if markers.crash:
        await anyio.sleep(CRASH_DELAY_S)  # the request is in flight: the client sees the transport die
        os._exit(3)
    if markers.fail:
        raise ToolError(f"task failed on purpose ([fail] marker): {prompt[:80]}")


async def repair(prompt: str) -> str:
    """Run the restart command named in a repair prompt; a failing command is a failed repair."""
    found = _RESTART_COMMAND.search(prompt)
    if found is None:
        raise ToolError("a repair prompt without a 'Restart command:' line: nothing to run")
    command = shlex.split(found.group(1))
    try:
        with anyio.fail_after(REPAIR_TIMEOUT_S):
            finished = await anyio.run_process(command, check=False, stderr=-2)   # stderr into stdout
    except (OSError, TimeoutError) as error:
        raise ToolError(f"restart command could not run: {error}") from None
    output = finished.stdout.decode(errors="replace").strip().splitlines()[-5:]
    if finished.returncode != 0:
        raise ToolError(f"restart command exited {finished.returncode}: {' | '.join(output)}")
    return f"repaired: ran {found.group(1)!r}: {' | '.join(output)}"


def build_server(role: str) -> MCPServer:
    """The stub server for `role` (one of ROLES), with its one tool."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
    server = MCPServer(f"omni-sandbox-{role}", log_level="WARNING")

    if role == "coder":
        @server.tool(description="Run a coding task in workFolder (stub of claude-code-mcp).")
        async def claude_code(prompt: str, workFolder: str, ctx: Context) -> str:  # noqa: N803 (public name)
            if prompt.startswith("[repair]"):
                return await repair(prompt)
            await work(prompt, ctx)
            for name in re.findall(r"\[touch ([\w.-]+)\]", prompt):   # a file written in workFolder, as a coder would
                with open(os.path.join(workFolder, name), "a", encoding="utf-8") as file:
                    file.write(prompt)
            return f"coder done: {prompt[:80]}"
    elif role == "moltworker":
        @server.tool(description="Run one agent turn on the remote OpenClaw (stub of Moltworker, 24/7 and GPU).")
        async def run_agent_turn(prompt: str, ctx: Context, task_id: str = "", session_key: str = "",
                                 timeout_s: float = 0) -> str:
            await work(prompt, ctx)
            return f"moltworker done: {prompt[:80]}"
    else:
        @server.tool(description="Run a general task (stub executor).")
        async def run_task(prompt: str, ctx: Context) -> str:
            await work(prompt, ctx)
            if "[route]" in prompt:
                return f"general route: {os.environ.get('OPENAI_BASE_URL', '(none)')}"
            return f"general done: {prompt[:80]}"

    return server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sandbox.executors", description=__doc__.splitlines()[0])
    parser.add_argument("role", choices=ROLES)
    parser.add_argument("--http", type=int, metavar="PORT",
                        help="serve Streamable HTTP on 127.0.0.1:PORT/mcp instead of stdio")
    args = parser.parse_args(argv)
    server = build_server(args.role)
    if args.http is None:
        server.run()
    else:
        server.run("streamable-http", host="127.0.0.1", port=args.http, streamable_http_path="/mcp")


if __name__ == "__main__":
    main(sys.argv[1:])
