"""The dashboard's figures, read from the orchestrator's SQLite file over a read-only connection.

Why not ask the StateStore: these are aggregate scans over up to 90 days of cost rows (a health ping is
one every 15 s), and the store's mailbox serialises every task move; a scan there would delay them. The
database is in WAL mode, so a reader on its own connection never blocks the store's writes, nor they it.
Days are local calendar days, as the budget counts them (`clients.budget.day_start`).

>>> figures = read_figures(Path("~/.omni/omni.db"), Caps(1.0, 20.0, (0.8,)), paid_tiers=("P2",), days=7)
>>> figures["spend_by_tier"]["P2"][-1]       # today's paid spend, USD
0.0123
"""
from __future__ import annotations

import datetime
import json
import sqlite3
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PERIODS = (7, 30, 90)                       # the choices the page offers (?days=)
OUTCOMES = ("completed", "failed", "cancelled")
MOMENTS_SHOWN = 50                          # the latest P1→P2 moments listed by the page
NO_TASK = "(no task)"                       # cost rows of calls made for no task: health pings
EPOCH = datetime.date(1970, 1, 1)


class NoDatabase(RuntimeError):
    """The orchestrator has not created its database yet."""


@dataclass(frozen=True, slots=True)
class Caps:
    daily_usd: float
    monthly_usd: float
    warn_at: tuple[float, ...] = ()


def read_figures(path: Path, caps: Caps, paid_tiers: tuple[str, ...], days: int,
                 now: float | None = None) -> dict[str, Any]:
    """Every figure the page draws, for the `days` local days up to today, as plain JSON-able data."""
    now = time.time() if now is None else now
    axis = _day_axis(now, days)
    since = _midnight(axis[0])
    day = _local_day(since, now + 86400)
    with _read_only(path) as db:
        paid = _paid_condition(paid_tiers)
        costs = _costs(db, axis, day, paid, since)
        return {
            "generated_at": now, "days": days, "axis": axis, "since": since,
            "budget": _budget(db, caps, paid, now),
            **costs,
            "tasks_by_outcome": _series(db, axis, f"select {day('at')}, to_state, count(*) from task_event where "
                                                  "kind = 'transition' and to_state in ('completed', 'failed', "
                                                  "'cancelled') and at >= ? group by 1, 2", since, keys=OUTCOMES),
            "latency": _latency(db, axis, day, since),
            "escalations": _escalations(db, axis, since),
            "warnings": _warnings(db, since),
        }


# --- the figures ------------------------------------------------------------------------------------------------
def _budget(db: sqlite3.Connection, caps: Caps, paid: str, now: float) -> dict[str, Any]:
    """Today's and this month's paid spend against the caps, and the month to date day by day."""
    today, month = _midnight(_date(now)), _month_start(now)
    spent_today = _scalar(db, f"select coalesce(sum(c.usd), 0) from cost_entry c where c.at >= ? and {paid}", today)
    day = _local_day(month, now + 86400)
    rows = db.execute(f"select {day('c.at')}, sum(c.usd) from cost_entry c where c.at >= ? and {paid} group by 1",
                      (month,)).fetchall()
    by_day = {_day_name(number): float(usd or 0) for number, usd in rows}
    month_axis = _day_axis(now, _date(now).day)
    running, cumulative = 0.0, []
    for day in month_axis:
        running += by_day.get(day, 0.0)
        cumulative.append(round(running, 8))
    return {"daily_cap_usd": caps.daily_usd, "monthly_cap_usd": caps.monthly_usd, "warn_at": list(caps.warn_at),
            "spent_today_usd": round(spent_today, 8), "spent_month_usd": cumulative[-1],
            "month_axis": month_axis, "month_cumulative_usd": cumulative}


def _costs(db: sqlite3.Connection, axis: list[str], day: Any, paid: str, since: float) -> dict[str, Any]:
    """Spend per tier and per executor, paid spend, and free and paid calls, per day: one scan of the cost
    rows (on a busy 90 days they are half a million, nearly all health pings), grouped four ways at once."""
    index = {name: i for i, name in enumerate(axis)}
    tiers: dict[str, list[float]] = {}
    executors: dict[str, list[float]] = {}
    calls = {"free": [0] * len(axis), "paid": [0] * len(axis)}
    paid_by_day = [0.0] * len(axis)
    rows = db.execute(f"select {day('c.at')}, c.tier, coalesce(t.executor, '{NO_TASK}'), {paid}, sum(c.usd), "
                      "count(*) from cost_entry c left join task t on t.id = c.task_id where +c.at >= ? "
                      "group by 1, 2, 3, 4", (since,))   # +: a plain scan beats the index for most of a table
    for number, tier, executor, is_paid, usd, count in rows:
        if (i := index.get(_day_name(number))) is None:
            continue
        usd = float(usd or 0)
        for series, name in ((tiers, tier), (executors, executor)):
            series.setdefault(name, [0.0] * len(axis))[i] += usd
        calls["paid" if is_paid else "free"][i] += count
        if is_paid:
            paid_by_day[i] += usd
    def rounded(series: dict[str, list[float]]) -> dict[str, list[float]]:
        return {name: [round(v, 8) for v in values] for name, values in series.items()}
    return {"spend_by_tier": rounded(tiers), "spend_by_executor": rounded(executors), "calls": calls,
            "paid_by_day": [round(v, 8) for v in paid_by_day]}


def _latency(db: sqlite3.Connection, axis: list[str], day: Any, since: float) -> dict[str, list[float | None]]:
    """Per day, the median and 95th percentile of a completed task's time from creation to completion
    (`total_*`) and of its last run, from `executing` to completed (`run_*`), in seconds."""
    rows = db.execute(
        f"select {day('e.at')}, e.at - t.created_at, e.at - (select max(x.at) from task_event x "
        "where x.task_id = e.task_id "
        "and x.to_state = 'executing' and x.at <= e.at) from task_event e join task t on t.id = e.task_id "
        "where e.kind = 'transition' and e.to_state = 'completed' and e.at >= ?", (since,)).fetchall()
    total: dict[str, list[float]] = {}
    run: dict[str, list[float]] = {}
    for number, whole, last_run in rows:
        day = _day_name(number)
        total.setdefault(day, []).append(whole)
        if last_run is not None:
            run.setdefault(day, []).append(last_run)
    return {"total_p50_s": [_percentile(total.get(d), 50) for d in axis],
            "total_p95_s": [_percentile(total.get(d), 95) for d in axis],
            "run_p50_s": [_percentile(run.get(d), 50) for d in axis],
            "run_p95_s": [_percentile(run.get(d), 95) for d in axis],
            "completed": [len(total.get(d, ())) for d in axis]}


def _escalations(db: sqlite3.Connection, axis: list[str], since: float) -> dict[str, Any]:
    """The P1→P2 moments and why: the router's dispatches onto P2 (the guard's tier choice is in the reason)
    and the guard's fallbacks from P1 to P2 within a call (`tier_fallback` events)."""
    moments = []
    dispatched = db.execute("select at, task_id, reason from task_event where kind = 'transition' and "
                            "to_state = 'dispatching' and reason like '%tier P2 (%' and at >= ?", (since,))
    for at, task_id, reason in dispatched:
        why = reason.split("tier P2 (", 1)[1].removesuffix(")")
        cause = "asked" if why.startswith("the task needs") else "fallback"
        moments.append({"at": at, "task_id": task_id, "cause": cause, "where": "routing", "reason": why})
    fallbacks = db.execute("select at, detail, data from system_event where kind = 'tier_fallback' and at >= ?",
                           (since,))
    for at, detail, data in fallbacks:
        moments.append({"at": at, "task_id": json.loads(data or "{}").get("task_id"), "cause": "fallback",
                        "where": "model call", "reason": detail})
    moments.sort(key=lambda moment: moment["at"])
    per_day = {cause: [0] * len(axis) for cause in ("asked", "fallback")}
    index = {day: i for i, day in enumerate(axis)}
    for moment in moments:
        moment["day"] = _date(moment["at"]).isoformat()
        if moment["day"] in index:
            per_day[moment["cause"]][index[moment["day"]]] += 1
    return {"per_day": per_day, "count": len(moments), "latest": moments[-MOMENTS_SHOWN:][::-1]}


def _warnings(db: sqlite3.Connection, since: float) -> list[dict[str, Any]]:
    """The budget warnings sent (notices whose key starts with budget_warning)."""
    rows = db.execute("select at, detail, data from system_event where kind = 'notice' and at >= ? "
                      "order by at desc", (since,))
    return [{"at": at, "text": detail} for at, detail, data in rows
            if str(json.loads(data or "{}").get("key", "")).startswith("budget_warning")]


# --- plumbing ---------------------------------------------------------------------------------------------------
def _series(db: sqlite3.Connection, axis: list[str], sql: str, since: float, keys: tuple[str, ...] = (),
            money: bool = False) -> dict[str, list[float]]:
    """Rows of (day, name, value) as one list per name along the day axis (missing days are 0)."""
    index = {day: i for i, day in enumerate(axis)}
    series = {key: [0.0 if money else 0] * len(axis) for key in keys}
    for number, name, value in db.execute(sql, (since,)):
        if (day := _day_name(number)) in index:
            line = series.setdefault(str(name), [0.0 if money else 0] * len(axis))
            line[index[day]] = round(float(value or 0), 8) if money else int(value or 0)
    return series


def _paid_condition(paid_tiers: tuple[str, ...]) -> str:
    """SQL for "cost row `c` is a paid call": its tier is a paid one; with no tiers configured, it cost money."""
    if not paid_tiers:
        return "c.usd > 0"
    return "c.tier in (" + ", ".join("'" + tier.replace("'", "''") + "'" for tier in paid_tiers) + ")"


def _percentile(values: list[float] | None, share: int) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return round(values[0], 3)
    return round(statistics.quantiles(values, n=100, method="inclusive")[share - 1], 3)


def _scalar(db: sqlite3.Connection, sql: str, *params: Any) -> float:
    return float(db.execute(sql, params).fetchone()[0] or 0)


def _local_day(since: float, until: float) -> Any:
    """SQL for the local day number (days since 1970-01-01) of a time column, from `since` to `until`.

    Why not SQLite's date(at, 'unixepoch', 'localtime'): it calls localtime for every row, which made a
    90-day read take seconds. The UTC offset changes only at DST transitions, so the offsets in force over
    the period, and the instants they start, are found here once, and the SQL only adds the right one."""
    changes = [(since, time.localtime(since).tm_gmtoff)]
    at = since
    while at < until:
        step = min(at + 86400, until)
        if time.localtime(step).tm_gmtoff != changes[-1][1]:
            low, high = at, step             # the offset changed in between: find the second it did
            while high - low > 1:
                middle = (low + high) // 2
                low, high = (middle, high) if time.localtime(middle).tm_gmtoff == changes[-1][1] else (low, middle)
            changes.append((high, time.localtime(high).tm_gmtoff))
        at = step

    def day(column: str) -> str:
        if len(changes) == 1:
            return f"cast(({column} + {changes[0][1]}) / 86400 as integer)"
        cases = " ".join(f"when {column} < {start!r} then {offset}" for (_, offset), (start, _) in
                         zip(changes, changes[1:], strict=False))
        return f"cast(({column} + case {cases} else {changes[-1][1]} end) / 86400 as integer)"
    return day


def _day_name(number: int) -> str:
    return (EPOCH + datetime.timedelta(days=int(number))).isoformat()


def _date(at: float) -> datetime.date:
    return datetime.date.fromtimestamp(at)


def _day_axis(now: float, days: int) -> list[str]:
    today = _date(now)
    return [(today - datetime.timedelta(days=back)).isoformat() for back in range(days - 1, -1, -1)]


def _midnight(day: str | datetime.date) -> float:
    day = datetime.date.fromisoformat(day) if isinstance(day, str) else day
    return time.mktime((day.year, day.month, day.day, 0, 0, 0, 0, 0, -1))


def _month_start(now: float) -> float:
    today = _date(now)
    return _midnight(today.replace(day=1))


class _read_only:
    """A read-only connection (`mode=ro`): the page can never write, nor take the store's write lock."""

    def __init__(self, path: Path):
        self._path = path

    def __enter__(self) -> sqlite3.Connection:
        if not self._path.exists():
            raise NoDatabase(f"no database at {self._path} yet: the orchestrator has not started there")
        self._db = sqlite3.connect(f"{self._path.resolve().as_uri()}?mode=ro", uri=True, timeout=5)
        self._db.execute("pragma query_only = on")
        return self._db

    def __exit__(self, *exc: Any) -> None:
        self._db.close()
