"""Typed messages, one module per protocol. Actors `match` on these; nothing else crosses a mailbox."""
from .control import ChildExited, CrashNow, Introspect, Reconcile, RestartChild, SweepChildren
from .health import ExecutorHealth, LinkDown, LinkOpened, Respawn
from .tasks import (TERMINAL_STATES, CallEnded, CountTasksByState, CreateTask, Execute, GetTask, GetTaskHistory,
                    ListTasks, RecordProgress, RecordSystemEvent, TaskChanged, TaskView, Transition)

__all__ = ["CallEnded", "ChildExited", "CountTasksByState", "CrashNow", "CreateTask", "Execute", "ExecutorHealth",
           "GetTask", "GetTaskHistory", "Introspect", "LinkDown", "LinkOpened", "ListTasks", "Reconcile",
           "RecordProgress", "RecordSystemEvent", "Respawn", "RestartChild", "SweepChildren", "TERMINAL_STATES",
           "TaskChanged", "TaskView", "Transition"]
