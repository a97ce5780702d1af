"""A stand-in for MemOS's self-hosted MCP server (`memos.api.mcp_serve`), keeping memories in SQLite.

    python -m sandbox.memos --db $OMNI_HOME/memos.db            # over stdio
    python -m sandbox.memos --db memos.db --down-while FILE     # exits at start while FILE exists (memory down)
    python -m sandbox.memos --db memos.db --search-delay 10     # every search answers 10 s late (memory slow)

It has the real server's tool shapes (MemOS v2.0.31, src/memos/api/mcp_serve.py):
- `search_memories(query, user_id?, cube_ids?, filter?)` → `{"text_mem": [{"cube_id", "memories": [{"id",
  "memory", "metadata"}]}], "act_mem": [], "para_mem": []}`, as MOS.search answers;
- `add_memory(memory_content? | doc_path? | messages?, cube_id?, user_id?)` → "Memory added successfully";
- `delete_all_memories(cube_id, user_id?)` → "All memories deleted successfully from cube: …";
- failures answered as the real one does: a text starting "Error …" (add, delete) or `{"error": …}` (search).

What it leaves out, versus real MemOS: no LLM or embedder (search ranks by shared words, not meaning; a
message list is stored as its text, not distilled into memories by a model); no tree/graph memory, no
activation or parametric memory, no scheduler; no users or cubes to create or register (any user_id and
cube_id is accepted, and a user without one is "default_user", cube "default_cube"); no doc_path parsing
(refused); and only the tools the orchestrator uses (no chat, get/update/delete_memory, dump or share).
"""
from __future__ import annotations

import argparse
import re
import sqlite3
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import anyio
from mcp.server import MCPServer

DEFAULT_USER, DEFAULT_CUBE = "default_user", "default_cube"
TOP_K = 5                                     # MemOS's default top_k for a search
_WORD = re.compile(r"[0-9a-z]+|[\u3400-\u9fff]", re.IGNORECASE)   # words, and each CJK character


def words(text: str) -> set[str]:
    """What a search matches on: lower-cased words and single CJK characters.

    >>> sorted(words("Water the plants 澆花"))
    ['plants', 'the', 'water', '澆', '花']
    """
    return {word.lower() for word in _WORD.findall(text)}


class Memories:
    """The memories, one SQLite file: (user, cube, text)."""

    def __init__(self, path: Path):
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("pragma journal_mode=wal")
        self._db.execute("create table if not exists memory (id text primary key, user_id text not null, "
                         "cube_id text not null, memory text not null, created_at real not null)")
        self._db.execute("create index if not exists memory_user on memory (user_id, cube_id)")

    def add(self, user_id: str, cube_id: str, text: str) -> str:
        memory_id = str(uuid.uuid4())
        self._db.execute("insert into memory values (?, ?, ?, ?, ?)", (memory_id, user_id, cube_id, text, time.time()))
        return memory_id

    def search(self, query: str, user_id: str, cube_ids: list[str] | None) -> dict[str, list[dict[str, Any]]]:
        wanted = words(query)
        rows = self._db.execute("select id, cube_id, memory, created_at from memory where user_id = ?", (user_id,))
        scored = [(len(wanted & words(text)), at, memory_id, cube, text) for memory_id, cube, text, at in rows
                  if cube_ids is None or cube in cube_ids]
        best = sorted((row for row in scored if row[0] > 0), reverse=True)[:TOP_K]
        cubes: dict[str, list[dict[str, Any]]] = {}
        for score, at, memory_id, cube, text in best:
            cubes.setdefault(cube, []).append({"id": memory_id, "memory": text, "metadata": {
                "user_id": user_id, "created_at": at, "relativity": score / max(1, len(wanted))}})
        return {"text_mem": [{"cube_id": cube, "memories": found} for cube, found in cubes.items()],
                "act_mem": [], "para_mem": []}

    def delete_all(self, user_id: str, cube_id: str) -> int:
        return self._db.execute("delete from memory where user_id = ? and cube_id = ?", (user_id, cube_id)).rowcount


def build_server(db_path: Path, search_delay_s: float = 0.0) -> MCPServer:
    memories = Memories(db_path)
    server = MCPServer("MOS Memory System", log_level="WARNING")

    @server.tool(description="Search for memories across user's accessible memory cubes.")
    async def search_memories(query: str, user_id: str | None = None, cube_ids: list[str] | None = None,
                              filter: dict[str, Any] | None = None) -> dict[str, Any]:   # noqa: A002 (its name)
        if search_delay_s:
            await anyio.sleep(search_delay_s)
        try:
            return memories.search(query, user_id or DEFAULT_USER, cube_ids)
        except Exception as e:   # as the real server: the error in the answer
            return {"error": str(e)}

    @server.tool(description="Add memories to a memory cube.")
    async def add_memory(memory_content: str | None = None, doc_path: str | None = None,
                         messages: list[dict[str, str]] | None = None, cube_id: str | None = None,
                         user_id: str | None = None) -> str:
        if doc_path is not None:
            return "Error adding memory: doc_path is not supported by the sandbox's stand-in"
        texts = [memory_content] if memory_content else []
        texts += [f"{m.get('role', 'user')}: {m.get('content', '')}" for m in messages or ()]
        if not texts:
            return "Error adding memory: nothing to add (memory_content or messages)"
        try:
            memories.add(user_id or DEFAULT_USER, cube_id or DEFAULT_CUBE, "\n".join(texts))
        except Exception as e:
            return f"Error adding memory: {e!s}"
        return "Memory added successfully"

    @server.tool(description="Delete all memories from a memory cube.")
    async def delete_all_memories(cube_id: str, user_id: str | None = None) -> str:
        try:
            memories.delete_all(user_id or DEFAULT_USER, cube_id)
        except Exception as e:
            return f"Error deleting all memories: {e!s}"
        return f"All memories deleted successfully from cube: {cube_id}"

    return server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sandbox.memos", description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, required=True, help="the SQLite file of the memories")
    parser.add_argument("--down-while", type=Path, metavar="FILE",
                        help="exit at once, before initialising, while FILE exists (a memory server that is down)")
    parser.add_argument("--search-delay", type=float, default=0.0, metavar="SECONDS",
                        help="answer every search this late (a memory server too slow for the task's wait)")
    args = parser.parse_args(argv)
    if args.down_while is not None and args.down_while.exists():
        print(f"memos stand-in: down while {args.down_while} exists", file=sys.stderr)
        sys.exit(2)
    args.db.expanduser().parent.mkdir(parents=True, exist_ok=True)
    build_server(args.db.expanduser(), args.search_delay).run()


if __name__ == "__main__":
    main(sys.argv[1:])
