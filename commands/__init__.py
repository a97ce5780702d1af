"""The IM command interpreter (`/status`, `/task 12`, plain text as a new task …): one for every route in,
used by actors (the OpenClaw bridge, the gateway's `command` tool) and by surfaces alike; and the system's
status (`status`), composed once for the gateway, IM and the REPL."""
from .interpreter import CommandInterpreter, allowed, shorten, task_news
from .status import system_status, system_status_now

__all__ = ["CommandInterpreter", "allowed", "shorten", "system_status", "system_status_now", "task_news"]
