"""What the Router records about its decisions beyond their one-line reasons."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping


@dataclass(frozen=True, slots=True)
class RecordEvidence:
    """The evidence for a task's routing (kind, confidence, rule or features and nearest labelled texts,
    whether a model was asked), kept with its history for `/why` and `get_task`."""

    task_id: int
    evidence: Mapping[str, Any]
