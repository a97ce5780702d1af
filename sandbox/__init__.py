"""A simulated world on loopback: stub MCP executors, fake providers and a stub OpenClaw bridge."""
