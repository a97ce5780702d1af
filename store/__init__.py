"""What the StateStore keeps and the rules it keeps it by: the SQLite schema (`schema`) and the task
lifecycle, the one table of legal moves between its states (`lifecycle`). No actor lives here."""
from .lifecycle import (INTERRUPTED_BY_RESTART, IllegalTransition, KeyReused, LEGAL_TRANSITIONS, UnknownTask,
                        check_transition)
from .schema import (INSERT_EVENT, INSERT_TASK, SELECT_TASK, SELECT_TASK_BY_KEY, SELECT_TASKS, UPDATE_PROGRESS,
                     UPDATE_TASK, ActorState, CostEntry, ImHeld, ImInbound, ImOutbound, NotifySetting, SystemEvent,
                     Task, TaskEvent, open_database)

__all__ = ["INSERT_EVENT", "INSERT_TASK", "SELECT_TASK", "SELECT_TASK_BY_KEY", "SELECT_TASKS", "UPDATE_PROGRESS",
           "UPDATE_TASK", "ActorState", "CostEntry", "INTERRUPTED_BY_RESTART", "IllegalTransition", "ImHeld",
           "ImInbound", "ImOutbound", "NotifySetting", "KeyReused", "LEGAL_TRANSITIONS", "SystemEvent", "Task",
           "TaskEvent", "UnknownTask", "check_transition", "open_database"]
