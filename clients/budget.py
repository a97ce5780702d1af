"""Caps on paid model spend, per day and per month: reserve before a paid call, settle with its real cost.

Shared by the LiteLLMGuard and its call coroutines (so it locks); the StateStore's cost ledger
seeds it at start, so a restart does not forget what was spent.

>>> budget = Budget(BudgetConfig(daily_usd=1.0, monthly_usd=5.0, paid_call_reserve_usd=0.1), 0.95, 2.0)
>>> try:
...     budget.reserve()
... except BudgetExceeded as refused:
...     print(refused)
the daily budget for paid models ($1.00) is used up ($0.95 spent, $0.00 held)
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from config import BudgetConfig


class BudgetExceeded(RuntimeError):
    def __init__(self, period: str, cap: float, spent: float, held: float):
        self.period, self.cap = period, cap
        super().__init__(f"the {period} budget for paid models (${cap:.2f}) is used up "
                         f"(${spent:.2f} spent, ${held:.2f} held)")


@dataclass(slots=True)
class Reservation:
    usd: float
    settled: bool = False


def day_start(now: float) -> float:
    local = time.localtime(now)
    return time.mktime((local.tm_year, local.tm_mon, local.tm_mday, 0, 0, 0, 0, 0, -1))


def month_start(now: float) -> float:
    local = time.localtime(now)
    return time.mktime((local.tm_year, local.tm_mon, 1, 0, 0, 0, 0, 0, -1))


def week_start(now: float) -> float:
    """The last seven days, today included."""
    return day_start(now) - 6 * 86400


PERIOD_STARTS = {"today": day_start, "week": week_start, "month": month_start}   # cost reports' periods


class Budget:
    def __init__(self, config: BudgetConfig, spent_today: float, spent_month: float, paid_calls_today: int = 0,
                 now: float | None = None):
        self._config = config
        self._lock = threading.Lock()
        self._today, self._month = day_start(now or time.time()), month_start(now or time.time())
        self._spent_today, self._spent_month = spent_today, spent_month
        self._held = 0.0
        self.paid_calls_today = paid_calls_today

    def reserve(self) -> Reservation:
        """Hold the configured amount against both caps, or refuse with the period that is used up."""
        with self._lock:
            self._roll_over()
            amount = self._config.paid_call_reserve_usd
            self._check(amount)
            self._held += amount
            return Reservation(amount)

    def settle(self, reservation: Reservation, usd: float) -> bool:
        """Release the hold and book the real cost; True when this was the first paid call of the day."""
        with self._lock:
            if reservation.settled:
                return False
            reservation.settled = True
            self._held -= reservation.usd
            self._roll_over()
            self._spent_today += usd
            self._spent_month += usd
            self.paid_calls_today += 1
            return self.paid_calls_today == 1

    def release(self, reservation: Reservation) -> None:
        """The call did not happen (or failed): give the hold back, book nothing."""
        with self._lock:
            if not reservation.settled:
                reservation.settled = True
                self._held -= reservation.usd

    def refusal(self) -> str | None:
        """Why a paid call would be refused now, or None."""
        with self._lock:
            self._roll_over()
            try:
                self._check(self._config.paid_call_reserve_usd)
            except BudgetExceeded as exceeded:
                return str(exceeded)
            return None

    def _check(self, amount: float) -> None:
        for period, cap, spent in (("daily", self._config.daily_usd, self._spent_today),
                                   ("monthly", self._config.monthly_usd, self._spent_month)):
            if spent + self._held + amount > cap + 1e-12:
                raise BudgetExceeded(period, cap, spent, self._held)

    def snapshot(self) -> dict[str, float]:
        with self._lock:
            self._roll_over()
            return {"spent_today_usd": round(self._spent_today, 6), "daily_cap_usd": self._config.daily_usd,
                    "spent_month_usd": round(self._spent_month, 6), "monthly_cap_usd": self._config.monthly_usd,
                    "held_usd": round(self._held, 6)}

    def _roll_over(self) -> None:
        now = time.time()
        if day_start(now) != self._today:
            self._today, self._spent_today, self.paid_calls_today = day_start(now), 0.0, 0
        if month_start(now) != self._month:
            self._month, self._spent_month = month_start(now), 0.0
