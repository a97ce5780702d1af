"""Where the running supervisor's gateway listens: the Gateway writes its URL at start (the port may be 0),
and local clients (`supervisor.py send`, drills, tests) read it."""
from __future__ import annotations

from pathlib import Path

URL_FILE = "gateway.url"


def read_gateway_url(home: Path) -> str:
    """Where the running supervisor's gateway listens (written at start, since the port may be 0)."""
    return (home / URL_FILE).read_text().strip()
