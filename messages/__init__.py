"""Typed messages, one module per protocol. Actors `match` on these; nothing else crosses a mailbox."""
from .control import ChildExited, CrashNow, Introspect, Reconcile, RestartChild, SweepChildren
from .health import CheckProxyMemory, ExecutorHealth, ProxyActionDone, ProxyRestarting, LinkDown, LinkOpened, Respawn
from .im import EventWaited, LoadState, MessageSent, SaveState, WaitAgain
from .memory import DeliverQueued, DeliveryEnded, ForgetSender, RecallEnded, RecallMemories, SearchEnded
from .mode import (CloudAnswered, CloudDown, CloudUp, GetMode, LiteLLMDown, LiteLLMUp, LocalModelSettled, ModeChanged,
                   Notice, PingCloud, RepairDue, ReplyWhileDown, VerifyRepair)
from .models import (ChooseTier, Complete, Completion, CompletionFailed, CurrentRoute, Probe, ProbeResult, RecordCost,
                     RouteChanged, SumCosts, TierChoice)
from .tasks import (DESCRIPTION_LIMIT, KEY_LIMIT, MAX_TASK_ID, CallEnded, CountTasksByState, CreateTask, Execute,
                    GetTask, GetTaskHistory, LastSystemEvent, ListTasks, RecordDecision, RecordProgress,
                    RecordSystemEvent, SumCostsByTask, TaskChanged, TaskProgressed, TaskView, Transition)

__all__ = ["ProxyRestarting", "CloudAnswered", "CloudDown", "CloudUp", "LocalModelSettled", "ModeChanged",
           "PingCloud", "ReplyWhileDown", "LastSystemEvent", "CheckProxyMemory", "ProxyActionDone",
           "ChooseTier", "Complete", "Completion", "CompletionFailed", "CurrentRoute", "GetMode",
           "LiteLLMDown", "LiteLLMUp", "Notice", "Probe", "ProbeResult", "RecordCost", "RepairDue",
           "RouteChanged", "SumCosts", "TierChoice", "VerifyRepair", "CallEnded", "ChildExited",
           "CountTasksByState", "CrashNow", "CreateTask", "Execute", "ExecutorHealth", "GetTask",
           "GetTaskHistory", "Introspect", "LinkDown", "LinkOpened", "ListTasks", "Reconcile",
           "RecordDecision", "RecordProgress", "RecordSystemEvent", "Respawn", "SumCostsByTask",
           "RestartChild", "SweepChildren", "DESCRIPTION_LIMIT", "KEY_LIMIT", "MAX_TASK_ID", "TaskChanged",
           "TaskProgressed", "TaskView", "Transition", "EventWaited", "LoadState", "MessageSent", "SaveState",
           "WaitAgain",
           "DeliverQueued", "DeliveryEnded", "ForgetSender", "RecallEnded", "RecallMemories", "SearchEnded"]
