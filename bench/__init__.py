"""The throughput/latency bench: `python -m bench` (or `make bench`; `--quick` for a smoke check).

One run measures, against a real `supervisor.py` subprocess on loopback:

- the floor: a raw MCP `call_tool` to the sandbox `general` executor over stdio, and a raw
  `list_tasks(limit=1)` call to our gateway over Streamable HTTP (sequential p50/p99, calls/s
  with 8 concurrent callers);
- end to end: no-op tasks submitted through the gateway until `completed` (`submit_task` with `wait_s`:
  one call a task), one submitter and
  eight concurrent submitters.

It prints figures and the ratios the targets are about; it never asserts a target (exit 0).

`python -m bench litellm` (bench/_litellm.py) measures the model route instead: per-call overhead of the
LiteLLM proxy and of direct mode against the simulated upstream, and failover time after SIGKILL of the
proxy in an in-process tree under steady calls. `python -m bench brainstem` (bench/_brainstem.py) measures
cloud outages: the local model's cold load, memory before/loaded/after unload and generation, and the time
from an outage to brainstem mode and all tasks `waiting`, and from the cloud's return to tasks running
again. `python -m bench all` runs all three.
"""
