"""The root-cause log: one JSON object per line, for every transition and every MCP call.

>>> journal = Journal(Path("/tmp/omni/logs"))
>>> journal.record("mcp_call", executor="coder", tool="claude_code", task_id=7, duration_s=0.004, outcome="completed")
"""
from __future__ import annotations

import json
import logging
import logging.handlers
import time
from pathlib import Path
from typing import Any


class Journal:
    FILE_NAME = "events.jsonl"

    def __init__(self, log_dir: Path, max_bytes: int = 20_000_000, backups: int = 5):
        log_dir.mkdir(parents=True, exist_ok=True)
        self.path = log_dir / self.FILE_NAME
        self._handler = logging.handlers.RotatingFileHandler(self.path, maxBytes=max_bytes, backupCount=backups,
                                                             encoding="utf-8")

    def record(self, event: str, **fields: Any) -> None:
        line = json.dumps({"ts": round(time.time(), 6), "event": event, **fields}, ensure_ascii=False, default=str)
        # The handler does the locking and the rotation; a LogRecord is only its envelope.
        self._handler.handle(logging.makeLogRecord({"msg": line, "levelno": logging.INFO, "levelname": "INFO"}))

    def close(self) -> None:
        self._handler.close()
