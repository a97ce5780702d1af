"""`python supervisor.py validate`: check a config and every MCP server and service in it.

Schema errors come from the loader (file, key path, what was expected). Then each executor's MCP
server is started (stdio) or connected (HTTP), its tools listed and the configured tool looked for;
the LiteLLM proxy of an external install is probed. Exit 0 when sound, 1 with the report otherwise.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from rich.console import Console
from rich.markup import escape

from actors.mcp_link import LinkFailed, McpLink
from config import Config, ExecutorConfig


@dataclass(frozen=True, slots=True)
class Check:
    subject: str
    ok: bool
    detail: str


async def check_executor(spec: ExecutorConfig) -> Check:
    where = spec.url if spec.transport == "http" else " ".join([spec.command or "", *spec.args])
    link = McpLink(spec)
    started = time.monotonic()
    try:
        tools = await link.open()
    except LinkFailed as failed:
        return Check(f"executor {spec.name}", False, str(failed))
    finally:
        await link.close()
    took = f"{time.monotonic() - started:.2f}s"
    if spec.tool not in tools:
        return Check(f"executor {spec.name}", False, f"{where}: no tool {spec.tool!r} (it offers: "
                                                      f"{', '.join(tools) or 'none'})")
    return Check(f"executor {spec.name}", True, f"{where}: {len(tools)} tools, {spec.tool!r} present ({took})")


async def check_proxy(cfg: Config) -> Check:
    from actors.litellm_proxy import proxy_status
    if cfg.litellm.mode == "managed":
        return Check("LiteLLM proxy", True, f"managed: started from {cfg.litellm.executable} with "
                                            f"{cfg.litellm.config_path} at {cfg.litellm.url}")
    answers = (await asyncio.to_thread(proxy_status, cfg.litellm, cfg.home))["answers"]
    return Check("LiteLLM proxy", answers, f"external at {cfg.litellm.url}: "
                                           f"{'answers' if answers else 'does not answer'} /health/liveliness")


async def check_all(cfg: Config) -> list[Check]:
    checks = [check_executor(spec) for spec in cfg.executors.values()]
    if cfg.litellm is not None:
        checks.append(check_proxy(cfg))
    return list(await asyncio.gather(*checks))


def report(cfg: Config, console: Console) -> int:
    console.print(f"{escape(str(cfg.source))}: the schema is sound", highlight=False)
    checks = asyncio.run(check_all(cfg))
    for check in checks:
        mark = "[green]ok[/]  " if check.ok else "[red]FAIL[/]"
        console.print(f"  {mark} {escape(check.subject)}: {escape(check.detail)}", highlight=False, soft_wrap=True)
    failed = sum(not check.ok for check in checks)
    console.print("sound" if not failed else f"[red]{failed} problem(s)[/]", highlight=False)
    return 0 if not failed else 1
