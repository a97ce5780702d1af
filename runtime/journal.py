"""The root-cause log: one JSON object per line, for every transition and every MCP call.

>>> journal = Journal(Path("/tmp/omni/logs"))
>>> journal.record("mcp_call", executor="coder", tool="claude_code", task_id=7, duration_s=0.004, outcome="completed")
"""
from __future__ import annotations

import json
import logging.handlers
import threading
import time
from pathlib import Path
from typing import Any


class Journal:
    FILE_NAME = "events.jsonl"

    def __init__(self, log_dir: Path, max_bytes: int = 20_000_000, backups: int = 5):
        log_dir.mkdir(parents=True, exist_ok=True)
        self.path = log_dir / self.FILE_NAME
        # The handler only opens the file and rotates it (`doRollover`): its own size check stats the path and
        # seeks on every line, and every transition writes one.
        self._handler = logging.handlers.RotatingFileHandler(self.path, maxBytes=max_bytes, backupCount=backups,
                                                             encoding="utf-8")
        self._max_bytes = max_bytes
        self._size = self.path.stat().st_size
        self._lock = threading.Lock()

    def record(self, event: str, **fields: Any) -> None:
        line = json.dumps({"ts": round(time.time(), 6), "event": event, **fields}, ensure_ascii=False,
                          default=str) + "\n"
        size = len(line.encode("utf-8"))
        with self._lock:
            if self._size and self._size + size > self._max_bytes:
                self._handler.doRollover()
                self._size = 0
            if self._handler.stream is None:   # recorded after close (a straggler on shutdown): reopen, as logging does
                self._handler.stream = self._handler._open()
            self._handler.stream.write(line)
            self._handler.stream.flush()   # a line is readable (tests, `tail -f`) the moment it is recorded
            self._size += size

    def close(self) -> None:
        with self._lock:
            self._handler.close()
