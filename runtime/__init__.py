"""The runtime every actor runs on: the Supervisor (OTP restarts), the supervised base, the Directory of
stable names, the one asyncio loop, and the journal.

    loop, directory = EventLoopThread().start(), Directory()
    tree = Supervisor.start([ChildSpec("state_store", lambda ctx: StateStore.start(ctx, path, 3, journal, ()))],
                            SupervisionConfig(), loop, directory)
    directory.ask("state_store", CreateTask("hello"))
"""
from .directory import ActorUnavailable, Caller, Directory, IncarnationStopped
from .event_loop import EventLoopThread
from .journal import Journal
from .link_supervisor import LinkSupervisor
from .supervised import ChildContext, DrillCrash, SupervisedActor, describe
from .supervisor import ChildSpec, ChildWouldNotStart, Supervisor

__all__ = ["ActorUnavailable", "Caller", "ChildContext", "ChildSpec", "ChildWouldNotStart", "Directory",
           "DrillCrash", "EventLoopThread", "IncarnationStopped", "Journal", "LinkSupervisor",
           "SupervisedActor", "Supervisor", "describe"]
