"""The BudgetWarden tells, once per period, that paid spend has reached a configured share of a cap
(`budget.warn_at`, e.g. [0.8] of the daily and of the monthly cap).

Who hears it: the console and the journal always (a `notice` system event, as every notice); the sender of
the task whose call crossed the share, by IM when they are an IM sender (and in the task's history, which
`/why` shows, whoever they are); and the IM senders in `budget.operators`. Nobody else: a warning naming no
IM recipient is not handed to the bridge, which would send it to everyone who wrote recently.

Once per period means durably: the shares already told for the current day and month are kept in the
StateStore (`actor_state`, owner `budget_warden`) before the warning goes out, so a restart never repeats
one. Shares crossed together (a call from 40 % to 95 %) make one warning naming the highest.

    directory.tell("budget_warden", PaidSpendBooked(task_id=12, spent_today_usd=0.85, spent_month_usd=3.1,
                                                    at=time.time()))
"""
from __future__ import annotations

from typing import Any

from clients import day_start, month_start
from config import BudgetConfig
from messages import Notice, RecordDecision, RecordSystemEvent
from messages.budget import PaidSpendBooked
from messages.im import LoadState, SaveState
from messages.tasks import GetTask
from runtime import ChildContext, SupervisedActor
from texts import say
from vocabulary import ActorName

STORE = ActorName.STATE_STORE
OWNER = ActorName.BUDGET_WARDEN


def shares_reached(spent: float, cap: float, warn_at: tuple[float, ...]) -> list[float]:
    """The configured shares of `cap` that `spent` has reached (a cap of 0 refuses all paid calls: no warning).

    >>> shares_reached(0.85, 1.0, (0.5, 0.8, 0.9))
    [0.5, 0.8]
    """
    return [share for share in warn_at if cap > 0 and spent >= share * cap - 1e-12]


class BudgetWarden(SupervisedActor):
    def __init__(self, context: ChildContext, budget: BudgetConfig, locale: str):
        super().__init__(context)
        self._budget = budget
        self._locale = locale
        self._told: set[str] = set()          # "daily:<period start>:<share>" already told

    def started(self) -> None:
        state = self.directory.ask(STORE, LoadState(OWNER)) or {}
        self._told = set(state.get("told", ()))

    def on_receive(self, message: Any) -> Any:
        match message:
            case PaidSpendBooked() as booked:   self._weigh(booked)
            case _:                             return self.unhandled(message)

    def snapshot(self) -> dict[str, Any]:
        return {"warn_at": list(self._budget.warn_at), "told": sorted(self._told)}

    def _weigh(self, booked: PaidSpendBooked) -> None:
        for period, spent, cap, start in (
                ("daily", booked.spent_today_usd, self._budget.daily_usd, day_start(booked.at)),
                ("monthly", booked.spent_month_usd, self._budget.monthly_usd, month_start(booked.at))):
            keys = {f"{period}:{start:.0f}:{share:g}": share
                    for share in shares_reached(spent, cap, self._budget.warn_at)}
            new = [share for key, share in keys.items() if key not in self._told]
            if new:
                self._remember(set(keys), booked.at)
                self._warn(period, max(new), spent, cap, booked.task_id)

    def _remember(self, keys: set[str], now: float) -> None:
        """Durably, before the warning goes out: a crash after this loses a warning, never repeats one.
        Only the current periods' keys are kept, so the document stays small."""
        current = {f"daily:{day_start(now):.0f}:", f"monthly:{month_start(now):.0f}:"}
        self._told = {key for key in self._told | keys if key.startswith(tuple(current))}
        self.directory.ask(STORE, SaveState(OWNER, {"told": sorted(self._told)}))

    def _warn(self, period: str, share: float, spent: float, cap: float, task_id: int | None) -> None:
        key = f"budget_warning_{period}"
        params = {"share": str(round(share * 100)), "spent": _usd(spent), "cap": _usd(cap)}
        text = say(self._locale, key, **params)
        sender = self._sender_of(task_id)
        to = tuple(dict.fromkeys(([sender] if sender else []) + list(self._budget.operators)))
        self.directory.tell(STORE, RecordSystemEvent("notice", text, {"key": key, "to": list(to), "share": share,
                                                                     "task_id": task_id, "spent_usd": spent}))
        notice = Notice(key, text, to, params=tuple(params.items()))
        self.directory.tell(ActorName.TRANSITION_FEED, notice)
        if to:
            self.directory.tell(ActorName.OPENCLAW_BRIDGE, notice)
        if task_id is not None:
            self.directory.tell(STORE, RecordDecision(task_id, text))

    def _sender_of(self, task_id: int | None) -> str | None:
        task = self.directory.ask(STORE, GetTask(task_id)) if task_id is not None else None
        return task.sender if task is not None else None


def _usd(amount: float) -> str:
    """Cents for everyday amounts; more digits where cents would show $0.00 (the sandbox's tiny prices)."""
    return f"{amount:.2f}" if amount >= 0.1 or amount == 0 else f"{amount:.2g}"
