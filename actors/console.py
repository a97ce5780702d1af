"""The console's transition feed: one line per task move, as the StateStore announces them.

(The full Rich live console with panels comes later; this stays its event feed.)
"""
from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.markup import escape

from messages import ModeChanged, Notice, TaskChanged

from .supervised import ChildContext, SupervisedActor

STATE_STYLE = {"idle": "white", "dispatching": "cyan", "executing": "blue", "waiting": "yellow",
               "completed": "green", "failed": "red", "cancelled": "magenta"}


def transition_line(changed: TaskChanged, now: float | None = None) -> str:
    """Rich markup for one move.

    >>> transition_line(TaskChanged(TaskView(7, "fix it", "completed", executor="coder", tier="P1"), "executing", "ok"))
    '20:41:07  #7  executing → [green]completed[/]  coder P1  fix it  · ok'
    """
    task = changed.task
    clock = time.strftime("%H:%M:%S", time.localtime(now if now is not None else task.updated_at))
    route = " ".join(part for part in (task.executor, task.tier) if part)
    text = task.description if len(task.description) <= 60 else task.description[:57] + "…"
    style = STATE_STYLE.get(task.state, "white")
    parts = [clock, f"#{task.task_id}", f"{changed.previous or 'new'} → [{style}]{task.state}[/]", escape(route),
             escape(text), f"· {escape(changed.reason)}"]
    return "  ".join(part for part in parts if part)


class TransitionFeed(SupervisedActor):
    def __init__(self, context: ChildContext, console: Console):
        super().__init__(context)
        self._console = console
        self._lines = 0

    def on_receive(self, message: Any) -> Any:
        match message:
            case TaskChanged() as changed:
                self._lines += 1
                self._console.print(transition_line(changed), highlight=False, soft_wrap=True)
            case Notice(text=text, to=to, wording=wording):
                audience = f" → {', '.join(to)}" if to else ""
                local = f"  [dim](local model: {escape(wording[:80])})[/]" if wording else ""
                self._console.print(f"{time.strftime('%H:%M:%S')}  [bold yellow]notice{escape(audience)}[/]  "
                                    f"{escape(text)}{local}", highlight=False, soft_wrap=True)
            case ModeChanged(mode=mode, previous=previous):
                self._console.print(f"{time.strftime('%H:%M:%S')}  [bold]mode {previous} → {mode}[/]",
                                    highlight=False)
            case _:
                return self.unhandled(message)

    def snapshot(self) -> dict[str, Any]:
        return {"lines_printed": self._lines}
