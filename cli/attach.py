"""`python supervisor.py repl`: attach this terminal to the running supervisor's REPL (surfaces.repl) over its
owner-only Unix socket, until Ctrl-D."""
from __future__ import annotations

import os
import select
import socket
import sys
from pathlib import Path
from typing import Any

from surfaces.repl import socket_path

QUEUED_NOTICE_S = 2.0


def attach(home: Path) -> int:
    """`python supervisor.py repl`: relay this terminal to the running supervisor's REPL until Ctrl-D."""
    path = socket_path(home)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as repl:
        try:
            repl.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError):
            print(f"no supervisor is running with data in {home} (no REPL listens at {path}); start one with "
                  "`python supervisor.py`, or name its data directory with --home", file=sys.stderr)
            return 1
        except OSError as error:
            print(f"cannot reach the REPL at {path}: {error.strerror or error}", file=sys.stderr)
            return 1
        try:
            _relay(repl)
        except KeyboardInterrupt:
            print("\ndetached", file=sys.stderr)
    return 0


def _relay(repl: socket.socket) -> None:
    """Copy lines typed (the terminal stays in its own line mode) to the socket and the socket's output to stdout.
    End of input (Ctrl-D) ends the session; the supervisor's closing of the socket ends the relay."""
    stdin, out = sys.stdin.fileno(), sys.stdout.buffer
    sources: list[Any] = [repl, stdin]
    greeted = False
    while True:
        ready, _, _ = select.select(sources, [], [], None if greeted else QUEUED_NOTICE_S)
        if not ready:
            print("another REPL session is attached; yours starts when it ends (Ctrl-C gives up)", file=sys.stderr)
            greeted = True
        if repl in ready:
            data = repl.recv(65536)
            if not data:
                if stdin in sources:                # not after our Ctrl-D: exit(), or the supervisor stopping
                    print("\nthe session ended", file=sys.stderr)
                return
            greeted = True
            out.write(data)
            out.flush()
        if stdin in ready:
            typed = os.read(stdin, 65536)
            if typed:
                repl.sendall(typed)
            else:
                repl.shutdown(socket.SHUT_WR)
                sources.remove(stdin)
