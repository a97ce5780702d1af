"""The Rich live console of `python supervisor.py`: a header (mode, model route, cloud, uptime, config),
the actors, the tasks, the model spend against the budget, and the latest events.

Three layers, so that the screen never slows the actors and every panel can be tested as text:

- `gather(directory)` sends all its asks at once and waits for them together, a fraction of a second
  at most; an actor that is missing, restarting or busy is shown as such, never waited for;
- `render_*(snapshot)` are pure functions from that plain data to Rich renderables;
- `run_live(console, directory, cfg, stop_event)` is the refresh loop, in the caller's (main) thread.

    snapshot = gather(directory, config="config/sandbox.yaml", started_at=time.monotonic())
    Console().print(render_screen(snapshot, 120, 40))
"""
from __future__ import annotations

import io
import logging
import sys
import threading
import time
from collections import deque
from typing import Any, Iterable

import pykka
from rich.columns import Columns
from rich.console import Console, Group, RenderableType
from rich.layout import Layout
from rich.live import Live
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from clients import day_start, month_start
from messages import Introspect, ListTasks, SumCosts, SumCostsByTask
from runtime import Directory, describe
from vocabulary import ActorName, Mode, TERMINAL_STATES, TaskState

log = logging.getLogger(__name__)

SUPERVISOR, STORE, GUARD, HEALTH = (ActorName.SUPERVISOR, ActorName.STATE_STORE, ActorName.LITELLM_GUARD,
                                   ActorName.HEALTH_MONITOR)
MODE, FEED = ActorName.SYSTEM_MODE, ActorName.TRANSITION_FEED
ACTIVE_STATES = (TaskState.EXECUTING, TaskState.DISPATCHING, TaskState.WAITING, TaskState.IDLE)
ASK_DEADLINE_S = 0.25        # all of one round's asks together; a slower actor is shown as busy
REFRESH_S = 0.33             # a frame (gather + render) starts every third of a second
TASK_ROWS = 30               # tasks asked for (per active state, and recent): the panel shows what fits
EVENTS_KEPT = 50
BUSY = "busy"                # an actor that is registered but did not answer in time
QUIET_LOGGERS = ("pykka", "mcp", "httpx", "uvicorn")   # their warnings go to the log file only

MODE_STYLE = {Mode.NORMAL: "bold green", Mode.DEGRADED: "bold yellow", Mode.BRAINSTEM: "bold red"}
ROUTE_STYLE = {"proxy": "green", "direct": "yellow"}
CHILD_STYLE = {"running": "green", "restarting": "yellow", "stopped": "red", "dead": "red"}
STATE_STYLE = {TaskState.IDLE: "white", TaskState.DISPATCHING: "cyan", TaskState.EXECUTING: "blue",
               TaskState.WAITING: "yellow", TaskState.COMPLETED: "green", TaskState.FAILED: "red",
               TaskState.CANCELLED: "magenta"}
NONE = "—"


# --- gathering ----------------------------------------------------------------------------------------------
def ask_all(directory: Directory, questions: dict[Any, tuple[str, Any]], deadline_s: float) -> dict[Any, Any]:
    """Ask every `(actor name, message)` at once and wait for all together until `deadline_s` has passed.

    Answers by key: the answer, `BUSY` when the actor did not answer in time, None when there is no live
    actor of that name (or it refused the question)."""
    futures = {}
    for key, (name, message) in questions.items():
        ref = directory.ref(name)
        try:
            futures[key] = ref.ask(message, block=False) if ref is not None else None
        except pykka.ActorDeadError:
            futures[key] = None
    deadline = time.monotonic() + deadline_s
    answers = {}
    for key, future in futures.items():
        try:
            remaining = max(0.0, deadline - time.monotonic())
            answers[key] = None if future is None else future.get(timeout=remaining)
        except pykka.Timeout:
            answers[key] = BUSY
        except Exception as error:   # dead meanwhile, or the actor's own error for this ask
            log.debug("live console: %s", describe(error))
            answers[key] = None
    return answers


def gather(directory: Directory, config: str = "", started_at: float | None = None,
           log_events: Iterable[dict[str, Any]] = ()) -> dict[str, Any]:
    """One snapshot of the whole system as plain data (what every `render_*` function draws)."""
    now = time.time()
    names = [name for name in directory.names() if name != SUPERVISOR]
    # The store's queries go first: its Introspect then counts only the others' messages in its mailbox.
    questions: dict[Any, tuple[str, Any]] = {
        ("active", state): (STORE, ListTasks(state=state, limit=TASK_ROWS)) for state in ACTIVE_STATES}
    questions |= {"recent": (STORE, ListTasks(limit=TASK_ROWS)), "today": (STORE, SumCosts(day_start(now))),
                  "month": (STORE, SumCosts(month_start(now))), "children": (SUPERVISOR, Introspect())}
    questions |= {("actor", name): (name, Introspect()) for name in names}
    answers = ask_all(directory, questions, ASK_DEADLINE_S)
    snapshots = {name: answers[("actor", name)] for name in names}
    tasks = _tasks(answers)
    if tasks:
        costs = ask_all(directory, {"cost": (STORE, SumCostsByTask(tuple(t["task_id"] for t in tasks)))},
                        ASK_DEADLINE_S)["cost"]
        for task in tasks:
            task["cost_usd"] = costs.get(task["task_id"]) if isinstance(costs, dict) else None
    guard, health, mode, feed = (_plain(snapshots.get(name)) for name in (GUARD, HEALTH, MODE, FEED))
    return {
        "now": now, "config": config,
        "uptime_s": None if started_at is None else time.monotonic() - started_at,
        "mode": mode.get("mode"), "route": guard.get("route"), "cooling": guard.get("cooling") or {},
        "cloud": health.get("cloud"), "cloud_timeouts": health.get("consecutive_timeouts"),
        "actors": _actors(answers["children"], snapshots),
        "tasks": tasks,
        "costs": {"today": _plain(answers["today"]), "month": _plain(answers["month"])},
        "budget": guard.get("budget") or {},
        "dashboard_url": _plain(snapshots.get(ActorName.GATEWAY)).get("dashboard_url"),
        "events": sorted([*feed.get("events", []), *log_events], key=lambda e: e["at"])[-EVENTS_KEPT:],
    }


def _plain(answer: Any) -> dict[str, Any]:
    return answer if isinstance(answer, dict) else {}


def _actors(children: Any, snapshots: dict[str, Any]) -> list[dict[str, Any]]:
    """The Supervisor's view of its children, each with its mailbox depth (or BUSY, or None)."""
    if not isinstance(children, list):   # the Supervisor is busy (restarting someone): the directory's names
        children = [{"name": name, "status": "?", "alive": True, "restarts": None, "last_error": None}
                    for name in snapshots]
    rows = []
    for child in children:
        answer = snapshots.get(child["name"])
        mailbox = answer.get("mailbox") if isinstance(answer, dict) else answer
        rows.append({key: child.get(key) for key in ("name", "status", "alive", "restarts", "last_error")}
                    | {"mailbox": mailbox})
    return rows


def _tasks(answers: dict[Any, Any]) -> list[dict[str, Any]] | None:
    """Active tasks first, then the recent ones, newest first; None when the store did not answer."""
    lists = [answers[("active", state)] for state in ACTIVE_STATES] + [answers["recent"]]
    if not all(isinstance(views, list) for views in lists):
        return None
    active = sorted((view for views in lists[:-1] for view in views), key=lambda v: -v.task_id)
    finished = [view for view in lists[-1] if view.state in TERMINAL_STATES]
    tasks: dict[int, dict[str, Any]] = {}
    for view in active + finished:   # a task that moved between two of the asks shows once
        tasks.setdefault(view.task_id, view.as_dict())
    return list(tasks.values())[:TASK_ROWS]


# --- rendering ----------------------------------------------------------------------------------------------
WIDE_MIN_WIDTH = 110         # layout: below this, or when the actors' table would not fit, the compact screen
LEFT_WIDTH = 50              # layout: the actors and cost column of the wide screen
HEADER_ROWS, COST_ROWS = 4, 7


def render_screen(snapshot: dict[str, Any], width: int, height: int) -> Layout:
    """The whole screen for a `width` x `height` terminal. Wide: actors beside tasks, cost beside events.
    Compact: the actors as a few lines of chips above the tasks, then cost beside events."""
    actors = snapshot.get("actors", [])
    actor_rows = len(actors) + sum(1 for a in actors if a.get("last_error")) + 3
    screen, wide = Layout(), width >= WIDE_MIN_WIDTH and height >= HEADER_ROWS + actor_rows + COST_ROWS
    if wide:
        screen.split_column(Layout(render_header(snapshot), size=HEADER_ROWS),
                            Layout(name="middle", ratio=3, minimum_size=actor_rows),
                            Layout(name="bottom", ratio=2, minimum_size=COST_ROWS))
        screen["middle"].split_row(Layout(render_actors(snapshot), size=LEFT_WIDTH),
                                   Layout(render_tasks(snapshot)))
    else:
        chips = render_actors(snapshot, compact=True)
        screen.split_column(Layout(render_header(snapshot), size=HEADER_ROWS),
                            Layout(chips, size=_rows(chips, width)), Layout(render_tasks(snapshot), ratio=3),
                            Layout(name="bottom", ratio=2, minimum_size=COST_ROWS - 1))
    screen["bottom"].split_row(Layout(render_costs(snapshot), size=LEFT_WIDTH if wide else width // 2),
                               Layout(render_events(snapshot)))
    return screen


def _rows(renderable: RenderableType, width: int) -> int:
    return len(Console(width=width, file=io.StringIO()).render_lines(renderable, pad=False))


def render_header(snapshot: dict[str, Any]) -> Panel:
    mode, route, cloud = snapshot.get("mode"), snapshot.get("route"), snapshot.get("cloud")
    timeouts = snapshot.get("cloud_timeouts")
    status = Text.assemble(
        "mode ", (mode or "?", MODE_STYLE.get(mode, "bold")),
        "   route ", (route or NONE, ROUTE_STYLE.get(route, "dim")),
        *[(f" (cooling {tier} {left:.0f}s)", "yellow") for tier, left in snapshot.get("cooling", {}).items()],
        "   cloud ", (cloud or NONE, {"up": "green", "down": "bold red"}.get(cloud, "dim")),
        (f" ({timeouts} timeout{'s' if timeouts > 1 else ''} in a row)" if timeouts else "", "yellow"),
        "   uptime ", _duration(snapshot.get("uptime_s")))
    where = Text.assemble(("config ", "dim"), snapshot.get("config") or "?", overflow="ellipsis",
                          no_wrap=True)
    return Panel(Group(status, where), title="[bold]Omni-Orchestrator[/]", title_align="left")


def render_actors(snapshot: dict[str, Any], compact: bool = False) -> Panel:
    """Each child of the Supervisor: state, restarts, mailbox depth; the last error of those that have one."""
    actors = snapshot.get("actors", [])
    body = _actor_chips(actors) if compact else _actor_table(actors)
    errors = [Text.assemble((f"{a['name']}: ", "bold red"), (_one_line(a["last_error"]), "red"),
                            overflow="ellipsis", no_wrap=True) for a in actors if a.get("last_error")]
    restarted = sum(1 for actor in actors if actor.get("restarts"))
    title = f"Actors ({len(actors)}" + (f", {restarted} restarted)" if restarted else ")") + \
        ("  [dim]● state · mailbox depth · ↻ restarts[/]" if compact else "")
    return Panel(Group(body, *errors), title=title, title_align="left")


def _state(actor: dict[str, Any]) -> str:
    return "dead" if actor["status"] == "running" and not actor.get("alive", True) else actor["status"]


def _actor_table(actors: list[dict[str, Any]]) -> Table:
    table = Table(box=None, expand=True, padding=(0, 1), pad_edge=False, header_style="bold dim")
    table.add_column("actor", no_wrap=True, overflow="ellipsis", ratio=1)
    table.add_column("state", no_wrap=True)
    table.add_column("restarts", justify="right", no_wrap=True)
    table.add_column("mailbox", justify="right", no_wrap=True)
    for actor in actors:
        restarts = actor.get("restarts")
        table.add_row(actor["name"], Text(_state(actor), CHILD_STYLE.get(_state(actor), "dim")),
                      Text(NONE if restarts is None else str(restarts), "bold yellow" if restarts else ""),
                      _mailbox(actor.get("mailbox")))
    return table


def _actor_chips(actors: list[dict[str, Any]]) -> Columns:
    """`● name mailbox`, the dot coloured by state (named unless running), `↻n` after a restart."""
    chips = []
    for actor in actors:
        state, restarts = _state(actor), actor.get("restarts")
        chips.append(Text.assemble(("● ", CHILD_STYLE.get(state, "dim")), actor["name"],
                                   "" if state == "running" else (f" {state}", CHILD_STYLE.get(state, "dim")),
                                   " ", _mailbox(actor.get("mailbox")),
                                   (f" ↻{restarts}", "bold yellow") if restarts else ""))
    return Columns(chips, padding=(0, 2))


def _mailbox(depth: Any) -> Text:
    if depth == BUSY:
        return Text(BUSY, "yellow")
    return Text("?", "dim") if depth is None else Text(str(depth))


def render_tasks(snapshot: dict[str, Any]) -> Panel:
    tasks, now = snapshot.get("tasks"), snapshot.get("now", time.time())
    if tasks is None:
        return Panel(Text("the state store did not answer in time", "yellow"), title="Tasks",
                     title_align="left")
    table = Table(box=None, expand=True, padding=(0, 1), pad_edge=False, header_style="bold dim")
    for name, justify in (("#", "right"), ("state", "left"), ("kind", "left"), ("executor", "left"),
                          ("tier", "left"), ("age", "right"), ("cost", "right")):
        table.add_column(name, justify=justify, no_wrap=True)
    table.add_column("task", overflow="ellipsis", no_wrap=True, ratio=1, min_width=8)
    for task in tasks:
        cost = task.get("cost_usd")
        table.add_row(str(task["task_id"]), Text(task["state"], STATE_STYLE.get(task["state"], "")),
                      task.get("kind") or NONE, task.get("executor") or NONE, task.get("tier") or NONE,
                      _duration(now - task["created_at"]), NONE if cost is None else f"${cost:.4f}",
                      _task_cell(task))
    active = sum(1 for task in tasks if task["state"] not in TERMINAL_STATES)
    return Panel(table if tasks else Text("no tasks yet", "dim"), title=f"Tasks ({active} active)",
                 title_align="left")


def render_costs(snapshot: dict[str, Any]) -> Panel:
    """Spend per tier today and this month, and the paid tiers' spend against the budget as bars."""
    costs = snapshot.get("costs", {})
    today, month = costs.get("today", {}), costs.get("month", {})
    tiers = Table(box=None, expand=True, padding=(0, 1), pad_edge=False, header_style="bold dim")
    tiers.add_column("tier", no_wrap=True)
    tiers.add_column("today (calls)", justify="right", no_wrap=True)
    tiers.add_column("month (calls)", justify="right", no_wrap=True)
    for tier in sorted(set(today) | set(month)):
        tiers.add_row(tier, _spend(today.get(tier)), _spend(month.get(tier)))
    budget = snapshot.get("budget") or {}
    bars = Table.grid(expand=True, padding=(0, 1))
    bars.add_column(no_wrap=True)
    bars.add_column(ratio=1, vertical="middle")
    bars.add_column(no_wrap=True, justify="right")
    for label, spent, cap in (("paid today", "spent_today_usd", "daily_cap_usd"),
                              ("paid month", "spent_month_usd", "monthly_cap_usd")):
        if budget:
            spent, cap = budget[spent], budget[cap]
            full = cap <= 0   # a zero cap allows no paid call at all: a full bar
            bar = ProgressBar(total=1 if full else cap, completed=1 if full else spent, complete_style="cyan",
                              finished_style="bold red")
            bars.add_row(label, bar, f"${spent:.2f} of ${cap:.2f} {_percent(spent, cap)}")
    parts = [bars if budget else Text("no paid budget: no model route", "dim"),
             tiers if today or month else Text("no model calls this month", "dim")]
    if url := snapshot.get("dashboard_url"):   # the plots; a browser logs in once with ?token=<gateway token>
        parts.append(Text(f"plots: {url}?token=…", "dim", overflow="fold"))
    return Panel(Group(*parts), title="Cost", title_align="left")


def _spend(tier: dict[str, Any] | None) -> str:
    tier = tier or {"usd": 0.0, "calls": 0}
    return f"${tier['usd']:.4f} ({tier['calls']})"


def _percent(spent: float, cap: float) -> str:
    return f"{100 * spent / cap:.0f}%" if cap else NONE


def render_events(snapshot: dict[str, Any]) -> Panel:
    """The latest events, newest first (so the newest survive a short panel)."""
    grid = Table.grid(padding=(0, 1), expand=True)
    grid.add_column(no_wrap=True, style="dim")
    grid.add_column(overflow="ellipsis", no_wrap=True, ratio=1)
    for event in reversed(snapshot.get("events", [])):
        grid.add_row(time.strftime("%H:%M:%S", time.localtime(event["at"])), event_text(event))
    return Panel(grid if snapshot.get("events") else Text("no events yet", "dim"), title="Latest events",
                 title_align="left")


def event_text(event: dict[str, Any]) -> Text:
    """One event (see `actors.transition_feed.event_of`) as a line of the events panel."""
    match event.get("event"):
        case "transition":
            route = " ".join(part for part in (event.get("executor"), event.get("tier")) if part)
            return Text.assemble((f"#{event['task']} ", "bold"), f"{event['from']} → ",
                                 (event["to"], STATE_STYLE.get(event["to"], "")),
                                 f"  {route}" if route else "",
                                 (f"  · {_one_line(event.get('reason'))}", "dim"))
        case "mode":
            return Text.assemble(("mode ", "bold"), f"{event['from']} → ",
                                 (event["to"], MODE_STYLE.get(event["to"], "bold")))
        case "notice":
            audience = f" → {event['to']}" if event.get("to") else ""
            return Text.assemble((f"notice{audience} ", "bold yellow"), _one_line(event.get("text")))
        case _:
            return Text.assemble((f"{event.get('level', event.get('event', '?'))} ", "bold red"),
                                 _one_line(event.get("text")))


def _task_cell(task: dict[str, Any]) -> Text:
    """The task's text, then its executor's latest progress report (dim) while it has one."""
    cell = Text(_one_line(task.get("description")))
    if task.get("progress") and task["state"] not in TERMINAL_STATES:
        cell.append(f" · {_one_line(task['progress'])}", "dim")
    return cell


def _one_line(text: str | None) -> str:
    """A table cell shows one line: newlines and runs of spaces become one space."""
    return " ".join((text or "").split())


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return NONE
    seconds = int(max(0, seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


# --- the refresh loop ---------------------------------------------------------------------------------------
class RecentWarnings(logging.Handler):
    """Keeps the latest warnings logged anywhere as events: the live screen hides stderr."""

    def __init__(self, keep: int = EVENTS_KEPT):
        super().__init__(logging.WARNING)
        self.events: deque[dict[str, Any]] = deque(maxlen=keep)
        self.addFilter(lambda record: not record.name.startswith(QUIET_LOGGERS))

    def emit(self, record: logging.LogRecord) -> None:
        self.events.append({"at": record.created, "event": "log", "level": record.levelname.lower(),
                            "text": record.getMessage()})


class CurrentStderr:
    """A file that writes to whatever `sys.stderr` is at the time: under `Live`, Rich's redirection, so a log
    line never tears the screen."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def run_live(console: Console, directory: Directory, cfg: Any, stop_event: threading.Event,
             refresh_s: float = REFRESH_S) -> None:
    """Draw the console until `stop_event` is set, on the terminal's alternate screen (the terminal is
    restored afterwards, so whatever is printed next stays visible)."""
    started_at = time.monotonic()
    warnings = RecentWarnings()
    logging.getLogger().addHandler(warnings)
    try:
        with Live(console=console, screen=True, auto_refresh=False, redirect_stdout=True,
                  redirect_stderr=True) as live:
            while not stop_event.is_set():
                frame_started = time.monotonic()
                live.update(_frame(console, directory, f"{cfg.source}  (data in {cfg.home})", started_at,
                                   warnings), refresh=True)
                stop_event.wait(max(0.0, refresh_s - (time.monotonic() - frame_started)))
    finally:
        logging.getLogger().removeHandler(warnings)


def _frame(console: Console, directory: Directory, config: str, started_at: float,
           warnings: RecentWarnings) -> RenderableType:
    try:
        return render_screen(gather(directory, config, started_at, list(warnings.events)), *console.size)
    except Exception as error:   # a console fault must never stop the orchestrator
        log.exception("live console: cannot draw")
        return Panel(Text(f"the console cannot draw: {describe(error)} (details in the log)", "red"))
