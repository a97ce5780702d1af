"""Clients of the systems around the core: MCP servers (`McpLink`), model providers and the LiteLLM proxy
(`call_direct`, `call_via_proxy`), the proxy's process (`start_proxy` …), our own gateway (`GatewaySession`),
the local model (`LocalModel`), and the spend caps paid model calls reserve against (`Budget`).

None of them is an actor: actors run them as coroutines on the shared loop (or, for the proxy's process and
the local model, on threads of their own) and get the outcomes back as messages.
"""
