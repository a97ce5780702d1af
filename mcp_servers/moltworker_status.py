"""A stand-in for Moltworker's public routes, for the sandbox and the tests (stdlib, loopback only).

    python -m mcp_servers.moltworker_status --port 0 --starting-s 3 --ready-file /tmp/molt.json

Moltworker runs OpenClaw's gateway in a Cloudflare container; its Worker answers `GET /api/status` with
`{"ok": false, "status": "starting"}` while the container starts cold (1–2 minutes), then
`{"ok": true, "status": "running"}`, and `GET /sandbox-health` likewise. This stand-in says "starting" for
`--starting-s` seconds after its first status request, then "running". With `--require-header NAME=ENV_VAR`
it answers 403 (as Cloudflare Access would) to requests without that header's value, so a test can see that
the executor sends its Access headers. `GET /admin/requests` lists the requests seen (path and whether the
required headers matched). The WebSocket itself goes to a real OpenClaw gateway elsewhere.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def build_handler(starting_s: float, required: dict[str, str]) -> type[BaseHTTPRequestHandler]:
    state = {"first": None, "requests": []}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):   # quiet: the tests read /admin/requests
            pass

        def _send(self, code: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path == "/admin/requests":
                with lock:
                    return self._send(200, {"requests": list(state["requests"])})
            allowed = all(self.headers.get(name) == value for name, value in required.items())
            with lock:
                state["requests"].append({"path": self.path, "access_headers_ok": allowed})
                if state["first"] is None and self.path in ("/api/status", "/sandbox-health"):
                    state["first"] = time.monotonic()
                started = state["first"]
            if not allowed:
                return self._send(403, {"error": "Forbidden: Cloudflare Access (stand-in)"})
            if self.path not in ("/api/status", "/sandbox-health"):
                return self._send(404, {"error": "not found"})
            if time.monotonic() - started < starting_s:
                return self._send(200, {"ok": False, "status": "starting"})
            return self._send(200, {"ok": True, "status": "running"})

    return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mcp_servers.moltworker_status",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--starting-s", type=float, default=3.0,
                        help="say 'starting' this long after the first request")
    parser.add_argument("--require-header", action="append", default=[], metavar="NAME=ENV_VAR")
    parser.add_argument("--ready-file", help="write {\"url\": …} here (atomically) once listening")
    args = parser.parse_args(argv)
    required = {}
    for item in args.require_header:
        match = re.match(r"^([A-Za-z0-9-]+)=([A-Za-z_][A-Za-z0-9_]*)$", item)
        if match is None or not os.environ.get(match.group(2)):
            parser.error(f"--require-header {item!r}: expected NAME=ENV_VAR with ENV_VAR set")
        required[match.group(1)] = os.environ[match.group(2)]
    server = ThreadingHTTPServer(("127.0.0.1", args.port), build_handler(args.starting_s, required))
    url = f"http://127.0.0.1:{server.server_address[1]}"
    if args.ready_file:
        staging = Path(args.ready_file + ".tmp")
        staging.write_text(json.dumps({"url": url}))
        staging.replace(args.ready_file)
    print(json.dumps({"url": url}), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
