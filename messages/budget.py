"""The BudgetWarden's protocol: what the LiteLLMGuard tells it after each paid call."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PaidSpendBooked:
    """A paid call was settled: the paid spend it brought today and this month to, and the task it was for."""

    task_id: int | None
    spent_today_usd: float
    spent_month_usd: float
    at: float
