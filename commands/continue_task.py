"""`/continue ID TEXT`: a follow-up to a finished task of the sender's own.

The new task continues the earlier one (`continues`): the WorkspaceKeeper gives it the earlier task's worktree,
and its executor resumes the earlier Claude Code session there (the tool takes `session_id` and the earlier
result had one), or else sends the earlier task and result along as context (actors/workspace_keeper.py,
`workspace_arguments`). Only the sender of the earlier task may continue it; it must have finished.
"""
from __future__ import annotations

from typing import Any

from messages import DESCRIPTION_LIMIT, CreateTask
from vocabulary import ActorName, TaskState

USAGE = "/continue ID TEXT"
FINISHED = frozenset({TaskState.COMPLETED, TaskState.FAILED})


async def continue_task(interpreter: Any, argument: str, sender: str) -> str:
    """`interpreter`: the CommandInterpreter (not imported: it imports this module for its COMMANDS table)."""
    number, _, text = argument.partition(" ")
    earlier = await interpreter._known_task(number)
    if isinstance(earlier, str):
        return earlier
    if earlier.sender != sender:
        return interpreter._say("im_continue_not_yours", task_id=earlier.task_id)
    if earlier.state not in FINISHED:
        return interpreter._say("im_continue_not_finished", task_id=earlier.task_id,
                                state=interpreter._state(earlier.state))
    text = text.strip()
    if not text:
        return interpreter._say("im_missing_argument", command="/continue", argument="", usage=USAGE,
                                expected=interpreter._say("im_expect_continue_text"))
    if len(text) > DESCRIPTION_LIMIT:
        return interpreter._say("im_task_too_long", limit=DESCRIPTION_LIMIT, length=len(text))
    task = await interpreter._ask(ActorName.STATE_STORE, CreateTask(text, kind=earlier.kind, sender=sender,
                                                                    source="im", continues=earlier.task_id))
    return interpreter._say("im_continue_created", task_id=task.task_id, earlier=earlier.task_id)
