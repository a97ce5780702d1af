"""MCP servers of our own that executors run (stdio), where a component has no MCP endpoint that fits.

- `openclaw_agent`: one OpenClaw agent turn per call, over the OpenClaw gateway's WebSocket RPC
  (the local gateway for the `general` executor, a remote one such as Moltworker for `moltworker`).
- `moltworker_status`: a stand-in for Moltworker's public `GET /api/status`, for the sandbox and the tests.
"""
