"""The routing evidence as `/why` and `get_task` show it: read back from a task's history, rendered in the
IM locale's words (texts/*.py, keys im_why_routing_*).

>>> lines = why_lines({"by": "rule", "kind": "coding", "matched": "#code", "model_asked": False},
...                   lambda key, **p: key + repr(sorted(p.items())))
>>> lines[0]
"im_why_routing_rule[('kind', 'coding'), ('matched', '#code')]"
"""
from __future__ import annotations

import json
from typing import Any, Callable

NEIGHBOUR_CHARS = 40


def latest_evidence(history: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The newest `evidence` entry of a task's history (a retried task is routed again), or None."""
    for event in reversed(history):
        if event["kind"] == "evidence":
            try:
                return json.loads(event["reason"])
            except (TypeError, ValueError):
                return None
    return None


def why_lines(evidence: dict[str, Any], say: Callable[..., str]) -> list[str]:
    by, kind = evidence.get("by", "default"), evidence.get("kind", "-")
    if by == "classifier":
        lines = [say("im_why_routing_classifier", kind=kind, confidence=_percent(evidence.get("confidence")),
                     threshold=_percent(evidence.get("threshold")))]
        if evidence.get("features"):
            lines.append(say("im_why_routing_features", features=", ".join(f"“{f}”" for f in evidence["features"])))
        if evidence.get("neighbours"):
            lines.append(say("im_why_routing_neighbours", neighbours="; ".join(
                f"{n['kind']} “{_cut(n['text'])}”" for n in evidence["neighbours"])))
    elif by == "rule":
        lines = [say("im_why_routing_rule", kind=kind, matched=evidence.get("matched", ""))]
    else:
        lines = [say(f"im_why_routing_{'submitter' if by == 'submitter' else 'default'}", kind=kind)]
    lines.append(say("im_why_routing_model_asked", answer=_cut(str(evidence.get("model", "")), 80))
                 if evidence.get("model_asked") else say("im_why_routing_model_not_asked"))
    if evidence.get("needs"):
        lines.append(say("im_why_routing_needs", needs=", ".join(evidence["needs"])))
    return lines


def _percent(value: Any) -> str:
    return f"{float(value):.0%}" if isinstance(value, (int, float)) else "-"


def _cut(text: str, limit: int = NEIGHBOUR_CHARS) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"
