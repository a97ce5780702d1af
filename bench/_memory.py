"""`python -m bench memory`: how long a task waits for its memories. The sandbox's MemOS stand-in (a real MCP server
over stdio, SQLite) holding 100 and then 1000 memories of one sender (and as many of another, never searched):
p50/p99 of a `search_memories` call through our McpLink, as the Memory actor makes it, and of an `add_memory`.
Prints; asserts nothing."""
from __future__ import annotations

import asyncio
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

from clients import McpLink, fields_for, recalled_texts, render_memory_arguments
from config import EMBEDDED_DEFAULT, load_config
from messages import TaskView

from ._stats import percentile

SIZES = (100, 1000)
TOPICS = ("plants", "tea", "the parser", "Friday's meeting", "the locker", "Taipei", "tabs", "the cat")


async def measure(home: Path, searches: int) -> list[str]:
    memory = load_config(EMBEDDED_DEFAULT).memory
    server = dataclasses.replace(memory.server, args=("-m", "sandbox.memos", "--db", str(home / "memos.db")))
    link = McpLink(server)
    await link.open()
    lines, held = [], 0
    try:
        for size in SIZES:
            adds = []
            for n in range(held, size):
                for sender in ("telegram:4242", "telegram:777"):
                    task = TaskView(n, f"note {n} about {TOPICS[n % len(TOPICS)]}", "completed", sender=sender,
                                    result=f"noted: {TOPICS[n % len(TOPICS)]} #{n}")
                    started = time.perf_counter()
                    await link.call(memory.add.tool, render_memory_arguments(memory.add.arguments, fields_for(task)),
                                    30)
                    adds.append(time.perf_counter() - started)
            held = size
            timings, found = [], 0
            for n in range(searches):
                task = TaskView(n, f"what about {TOPICS[n % len(TOPICS)]}?", "executing", sender="telegram:4242")
                arguments = render_memory_arguments(memory.search.arguments, fields_for(task))
                started = time.perf_counter()
                outcome = await link.call(memory.search.tool, arguments, 30)
                timings.append(time.perf_counter() - started)
                found += len(recalled_texts(outcome.text, memory.result_keys))
            lines.append(f"{size:>5} memories per sender ({2 * size} held): search p50 "
                         f"{percentile(timings, 50) * 1000:6.1f} ms, p99 {percentile(timings, 99) * 1000:6.1f} ms "
                         f"({searches} searches, {found / searches:.1f} memories each); add p50 "
                         f"{percentile(adds, 50) * 1000:.1f} ms ({len(adds)} adds)")
    finally:
        await link.close()
    return lines


def run(quick: bool = False) -> int:
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        lines = asyncio.run(measure(Path(folder), 20 if quick else 200))
    print("memory (sandbox/memos.py over stdio, SQLite; the Memory actor's calls):")
    print("\n".join("  " + line for line in lines))
    print(f"({'quick' if quick else 'full'} run, {time.perf_counter() - started:.1f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(run("--quick" in sys.argv))
