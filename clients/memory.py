"""The client side of memory through a MemOS MCP server: the tools' arguments from config templates, the texts
in a search's answer, the context block a task gets, and the outbox where adds and forgets wait (SQLite) until
the server takes them.

>>> user_id("telegram:4242") == user_id("telegram:4242") != user_id("telegram:4243")
True
>>> render_memory_arguments({"query": "{query}", "user_id": "{user_id}", "messages": "{messages}"},
...                         {"query": "plants", "user_id": "omni-1", "messages": [{"role": "user", "content": "x"}]})
{'query': 'plants', 'user_id': 'omni-1', 'messages': [{'role': 'user', 'content': 'x'}]}
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from config import fill_template
from messages import TaskView

# What a MemOS server answers when a call failed without saying so as an MCP error: its self-hosted server's
# tools return "Error adding memory: …" (a str) or {"error": …} (a dict), never is_error.
_ERROR_PREFIX = "Error"
REQUEST_LIMIT = RESULT_LIMIT = 4000     # characters of a task's text and of its result kept in an exchange


def user_id(sender: str) -> str:
    """The memory's user for an IM sender: stable, one per sender, and not the sender's own id (MemOS asks for a
    deterministic, non-identifying user_id)."""
    return "omni-" + hashlib.sha256(sender.encode()).hexdigest()[:32]


def fields_for(task: TaskView, query: str | None = None) -> dict[str, Any]:
    """The template fields for a call about `task` (by its sender): a search's query, an add's exchange."""
    sender = task.sender or ""
    request, result = task.description[:REQUEST_LIMIT], (task.result or "")[:RESULT_LIMIT]
    return {"query": query if query is not None else task.description, "user_id": user_id(sender),
            "sender": sender, "task_id": task.task_id, "request": request, "result": result,
            "exchange": f"user: {request}\nassistant: {result}",
            "messages": [{"role": "user", "content": request}, {"role": "assistant", "content": result}]}


def render_memory_arguments(template: Mapping[str, Any], fields: Mapping[str, Any]) -> dict[str, Any]:
    """Fill a memory tool's template; a value that is exactly `{messages}` becomes the list of messages."""
    return fill_template(template, {**fields, "messages": json.dumps(fields["messages"], ensure_ascii=False)},
                         whole={"{messages}": fields["messages"]})


def answer_error(text: str) -> str | None:
    """The error a tool's answer reports in its own words, or None.

    >>> answer_error("Error adding memory: no cube"), answer_error('{"error": "boom"}'), answer_error("ok")
    ('Error adding memory: no cube', 'boom', None)
    """
    if text.startswith(_ERROR_PREFIX):
        return text
    answer = _json(text)
    if isinstance(answer, dict) and answer.get("error"):
        return str(answer["error"])
    return None


def recalled_texts(text: str, keys: Iterable[str]) -> tuple[str, ...]:
    """The memories' texts in a search's answer: every string under one of `keys`, in order, however nested
    (MemOS: text_mem[].memories[].memory); an answer that is not JSON is one memory.

    >>> recalled_texts('{"text_mem": [{"cube_id": "c", "memories": [{"memory": "likes tea"}]}]}', ["memory"])
    ('likes tea',)
    """
    answer = _json(text)
    if answer is None:
        return (text.strip(),) if text.strip() else ()
    wanted, found = set(keys), []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if key in wanted and isinstance(item, str) and item.strip():
                    found.append(item.strip())
                else:
                    walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)
    walk(answer)
    return tuple(dict.fromkeys(found))


def context_block(texts: Iterable[str], max_items: int, max_chars: int) -> str:
    """The memories a task gets, most relevant first, within `max_items` and `max_chars` (the last one cut).

    >>> context_block(["likes tea", "lives in Taipei"], 5, 55)
    'Relevant memories of this user:\\n- likes tea\\n- lives in…'
    """
    lines, used = [], 0
    header = "Relevant memories of this user:"
    budget = max_chars - len(header)
    for text in list(texts)[:max_items]:
        line = "- " + " ".join(text.split())
        room = budget - used - 1
        if room <= 3:
            break
        if len(line) > room:
            lines.append(line[:room - 1] + "…")
            break
        lines.append(line)
        used += len(line) + 1
    return "\n".join([header, *lines]) if lines else ""


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    entry_id: int
    kind: str              # add | forget
    sender: str
    arguments: dict[str, Any]
    task_id: int | None


class MemoryOutbox:
    """Adds and forgets not yet taken by the memory server, in order, in one SQLite file: none is lost while the
    server is down or the orchestrator restarts. A task's add is queued once (its task_id is kept after delivery,
    so it is never added twice)."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("pragma journal_mode=wal")
        self._db.execute("create table if not exists outbox (id integer primary key autoincrement, kind text not null,"
                         " sender text not null, arguments text not null, task_id integer unique, state text not null"
                         " default 'queued', queued_at real not null, tries integer not null default 0,"
                         " last_error text)")

    def queue(self, kind: str, sender: str, arguments: Mapping[str, Any], task_id: int | None = None) -> int | None:
        """The new entry's id, or None when that task's add was queued already."""
        cursor = self._db.execute("insert or ignore into outbox (kind, sender, arguments, task_id, queued_at) "
                                  "values (?, ?, ?, ?, ?)", (kind, sender, json.dumps(arguments, ensure_ascii=False),
                                                             task_id, time.time()))
        return cursor.lastrowid if cursor.rowcount else None

    def next(self) -> OutboxEntry | None:
        row = self._db.execute("select id, kind, sender, arguments, task_id from outbox where state = 'queued' "
                               "order by id limit 1").fetchone()
        return None if row is None else OutboxEntry(row[0], row[1], row[2], json.loads(row[3]), row[4])

    def delivered(self, entry_id: int) -> None:
        """Done: its text is dropped; a task's row stays (without it) so that the task is never added again."""
        self._db.execute("update outbox set state = 'delivered', arguments = '{}' where id = ?", (entry_id,))
        self._db.execute("delete from outbox where id = ? and task_id is null", (entry_id,))

    def failed(self, entry_id: int, error: str, max_tries: int) -> bool:
        """One more failed try; True when that was the last (the entry is set aside, state 'failed', kept with its
        error for the operator, so that one entry the server always refuses does not hold up the ones after)."""
        self._db.execute("update outbox set tries = tries + 1, last_error = ?, state = case when tries + 1 >= ? "
                         "then 'failed' else state end where id = ?", (error[:500], max_tries, entry_id))
        return self._db.execute("select state = 'failed' from outbox where id = ?", (entry_id,)).fetchone()[0] == 1

    def drop_adds(self, sender: str) -> int:
        """A sender's adds still waiting, dropped (their /forget): the number dropped."""
        return self._db.execute("update outbox set state = 'forgotten', arguments = '{}' where sender = ? and "
                                "kind = 'add' and state = 'queued'", (sender,)).rowcount

    def newest(self) -> float:
        """When the newest entry was queued (0 for none): a restarted actor catches up on tasks completed since."""
        return self._db.execute("select coalesce(max(queued_at), 0) from outbox").fetchone()[0]

    def waiting(self) -> int:
        return self._db.execute("select count(*) from outbox where state = 'queued'").fetchone()[0]

    def close(self) -> None:
        self._db.close()
