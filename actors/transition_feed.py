"""The console's event feed: task transitions, notices and mode changes, as they are announced.

It keeps the latest events in a bounded ring that its `Introspect` snapshot returns; the Rich live
console (`surfaces/live_console.py`) draws them. Without the live console (stdout is not a terminal)
it prints one structured, still human-readable line per event instead:

    ts=2026-05-01T20:41:07 event=transition task=7 from=executing to=completed executor=coder tier=P1 \
        reason="claude_code returned" text="Fix the parser"
"""
from __future__ import annotations

import re
import time
from collections import deque
from typing import Any

from rich.console import Console

from messages import ModeChanged, Notice, TaskChanged
from runtime import ChildContext, SupervisedActor

TEXT_CHARS = 80          # a task's description, as far as a log line shows it (the journal keeps it whole)
_BARE = re.compile(r"[^\s\"=\\]+")


def event_of(message: TaskChanged | Notice | ModeChanged, at: float | None = None) -> dict[str, Any]:
    """One event as plain data (what the ring keeps and the live console draws)."""
    at = time.time() if at is None else at
    match message:
        case TaskChanged(task=task, previous=previous, reason=reason):
            return {"at": at, "event": "transition", "task": task.task_id, "from": previous or "new",
                    "to": task.state, "executor": task.executor, "tier": task.tier, "reason": reason,
                    "text": task.description}
        case Notice(key=key, text=text, to=to, wording=wording):
            return {"at": at, "event": "notice", "key": key, "to": ",".join(to) or None, "text": text,
                    "wording": wording or None}
        case ModeChanged(mode=mode, previous=previous):
            return {"at": at, "event": "mode", "from": previous, "to": mode}
    raise TypeError(f"not an event: {type(message).__name__}")


def log_line(event: dict[str, Any]) -> str:
    """`key=value` pairs (logfmt), local time first; values with spaces or quotes are quoted, empty ones
    left out: `ts=2026-05-01T20:41:07 event=mode from=normal to=brainstem`."""
    pairs = [f"ts={time.strftime('%Y-%m-%dT%H:%M:%S', time.localtime(event['at']))}"]
    for key, value in event.items():
        if key != "at" and value not in (None, ""):
            pairs.append(f"{key}={_logfmt_value(value, TEXT_CHARS if key == 'text' else None)}")
    return " ".join(pairs)


def _logfmt_value(value: Any, limit: int | None) -> str:
    text = str(value)
    text = text if limit is None or len(text) <= limit else text[:limit - 1] + "…"
    if _BARE.fullmatch(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


class TransitionFeed(SupervisedActor):
    """Keeps the latest `keep` events. `live`: the Rich live console draws them, so print nothing
    (default: when `console` is a terminal, as `supervisor.py` then runs the live console)."""

    def __init__(self, context: ChildContext, console: Console, live: bool | None = None, keep: int = 100):
        super().__init__(context)
        self._console = console
        self._live = console.is_terminal if live is None else live
        self._events: deque[dict[str, Any]] = deque(maxlen=keep)
        self._lines = 0

    def on_receive(self, message: Any) -> Any:
        match message:
            case TaskChanged() | Notice() | ModeChanged():
                self._record(event_of(message))
            case _:
                return self.unhandled(message)

    def snapshot(self) -> dict[str, Any]:
        return {"live": self._live, "lines_printed": self._lines, "events": list(self._events)}

    def _record(self, event: dict[str, Any]) -> None:
        self._events.append(event)
        if not self._live:
            self._lines += 1
            # The line as it is, straight to the console's file: Rich's rendering costs more than the event.
            self._console.file.write(log_line(event) + "\n")
            self._console.file.flush()
