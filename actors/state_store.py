"""The StateStore owns the SQLite database: the only durable truth in the system.

Every task move goes through `Transition`, checked against the lifecycle table and written with
its reason in the same transaction; then the change is announced (`TaskChanged`) to the task's
executor and to the subscribers. On the first start in a process it also recovers tasks that a
crash left `dispatching` or `executing`.

Writes are committed in groups: a write takes with it the asked writes queued behind it in the mailbox
(at most `GROUP_MAX`), all in one transaction, and nobody hears of any of them (answers, announcements)
before that transaction is committed. So an acknowledged task is on disk, as with one commit per write,
at a fraction of the commits when many clients write at once.

    view = directory.ask("state_store", CreateTask("summarise my inbox", sender="telegram:42"))
    directory.ask("state_store", Transition(view.task_id, "dispatching", reason="kind general → general"))
"""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any, Mapping

from peewee import OperationalError, fn

# The inbox's own wrapper: the writes queued behind a group's first come in these.
from pykka._envelope import Envelope

from messages import (
    DESCRIPTION_LIMIT,
    MAX_TASK_ID,
    CountTasksByState,
    CreateTask,
    GetTask,
    GetTaskHistory,
    LastSystemEvent,
    ListTasks,
    RecordCost,
    RecordDecision,
    RecordProgress,
    RecordSystemEvent,
    SumCosts,
    SumCostsByTask,
    TaskChanged,
    TaskProgressed,
    TaskView,
    Transition,
)
from messages.notify import GetNotifySetting, HoldNotification, PendingHeld, ReleaseHeld, SaveNotifySetting
from messages.im import (
    LoadState,
    MarkSent,
    PendingOutbound,
    QueueOutbound,
    RecordInbound,
    SaveState,
    SeenInbound,
)
from messages.routing import RecordEvidence
from messages.workspaces import ListWorkspaceClaims, RecordSession, RecordWorkspace
from runtime import ChildContext, Journal, SupervisedActor
from store import (ActorState, CostEntry, INSERT_EVENT, INSERT_TASK, INTERRUPTED_BY_RESTART,
                   IllegalTransition, ImInbound, ImOutbound, KeyReused, SELECT_TASK, SELECT_TASK_BY_KEY, SELECT_TASKS,
                   SystemEvent, Task, TaskEvent, UPDATE_PROGRESS, UPDATE_TASK, UnknownTask, check_transition,
                   open_database)
from store import ImHeld, NotifySetting
from notifications import SETTINGS, progress_text
from vocabulary import EXECUTOR_HEARS, ActorName, TaskState

WRITES = (Transition, CreateTask, RecordProgress, RecordSystemEvent, RecordDecision, RecordCost, SaveState,
          RecordInbound, QueueOutbound, MarkSent, RecordWorkspace, RecordSession,
          SaveNotifySetting, HoldNotification, ReleaseHeld, RecordEvidence)
GROUP_MAX = 64
PROGRESS_LISTENERS = (ActorName.OPENCLAW_BRIDGE,)   # the console reads the task's progress column
# What a write refuses before it has written anything: the rest of its group commits regardless.
REFUSALS = (IllegalTransition, UnknownTask, KeyReused, KeyError, ValueError)


class StateStore(SupervisedActor):
    def __init__(self, context: ChildContext, database_path: Path, max_attempts: int, journal: Journal,
                 subscribers: Mapping[str, frozenset[str]]):
        super().__init__(context)
        self._path = database_path
        self._max_attempts = max_attempts
        self._journal = journal
        self._subscribers = subscribers
        self._database = None
        self._news: list[tuple[TaskView, str | None, str]] = []   # announced once their group is committed
        self._progress_news: list[TaskView] = []                  # likewise (TaskProgressed)

    def started(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._database = open_database(str(self._path))
        if self.context.incarnation == 0:   # a new process: whatever was running was interrupted
            self._recover_interrupted_tasks()
            self._tell_news()

    def release(self) -> None:
        if self._database is not None:
            self._database.close()

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, WRITES):
            return self._write_group(message)
        return self._handle(message)

    def _handle(self, message: Any) -> Any:
        match message:
            case Transition() as move:            return self._transition(move)
            case CreateTask() as new:             return self._create(new)
            case GetTask(task_id=task_id):        return self._view(task_id)
            case ListTasks() as query:            return self._list(query)
            case CountTasksByState():             return self._count_by_state()
            case GetTaskHistory(task_id=task_id): return self._history(task_id)
            case RecordProgress() as progress:    self._record_progress(progress)
            case RecordSystemEvent() as event:    self._record_system_event(event)
            case RecordDecision() as decision:    self._record_decision(decision)
            case RecordEvidence() as evidence:    self._record_evidence(evidence)
            case RecordCost() as cost:            self._record_cost(cost)
            case SumCosts(since=since):           return self._sum_costs(since)
            case SumCostsByTask(task_ids=ids):    return self._sum_costs_by_task(ids)
            case LastSystemEvent(kind=kind):      return self._last_system_event(kind)
            case SaveState(owner=owner, state=state): self._save_state(owner, state)
            case LoadState(owner=owner):          return self._load_state(owner)
            case SeenInbound(keys=keys):          return self._seen_inbound(keys)
            case RecordInbound() as handled:      return self._record_inbound(handled)
            case QueueOutbound() as queued:       return self._queue_outbound(queued.session_key, queued.text,
                                                                              queued.what)
            case MarkSent(outbound_id=sent):      self._mark_sent(sent)
            case PendingOutbound():               return self._pending_outbound()
            case RecordWorkspace() | RecordSession() | ListWorkspaceClaims():
                return self._workspaces(message)
            case GetNotifySetting(sender=sender): return self._notify_setting(sender)
            case SaveNotifySetting() as changed:  return self._save_notify_setting(changed)
            case HoldNotification() as held:      return self._hold(held)
            case PendingHeld():                   return self._pending_held()
            case ReleaseHeld() as released:       return self._release_held(released)
            case _:                               return self.unhandled(message)

    def snapshot(self) -> dict[str, Any]:
        return {"database": str(self._path), "tasks": self._count_by_state()}

    # --- group commits ---------------------------------------------------------------------------------------
    def _write_group(self, first: Any) -> Any:
        """`first` and the asked writes queued behind it, in one transaction; then the answers and news."""
        group = [Envelope(first)] + self._queued_writes()
        try:
            with self._database.atomic():
                outcomes = [self._attempt(envelope.message) for envelope in group]
        except Exception as failure:   # noqa: BLE001 (a write failed half-way: none of the group stands)
            self._news.clear()
            self._progress_news.clear()
            if len(group) == 1 or isinstance(failure, OperationalError):
                # Alone, or the database itself refused (locked past busy_timeout, disk full): trying each write
                # again would only wait busy_timeout once more per write, past the asker's timeout.
                outcomes = [(None, failure)] * len(group)
            else:                      # one write broke the group: each on its own, so only that one fails
                outcomes = [self._alone(envelope.message) for envelope in group]
        self._tell_news()
        for envelope, (answer, error) in zip(group[1:], outcomes[1:], strict=True):
            if error is None:
                envelope.reply_to.set(answer)
            else:
                envelope.reply_to.set_exception((type(error), error, error.__traceback__))
        answer, error = outcomes[0]
        if error is not None:
            raise error
        return answer

    def _attempt(self, message: Any) -> tuple[Any, BaseException | None]:
        try:
            return self._handle(message), None
        except REFUSALS as refused:
            return None, refused

    def _alone(self, message: Any) -> tuple[Any, BaseException | None]:
        news = len(self._news)
        try:
            with self._database.atomic():
                return self._handle(message), None
        except Exception as error:   # noqa: BLE001 (the asker gets it, as pykka would hand it over)
            del self._news[news:]
            return None, error

    def _queued_writes(self) -> list[Envelope]:
        """Take the asked writes waiting at the head of the mailbox (a tell, a read or a stop ends the group)."""
        inbox, taken = self.actor_inbox, []
        with inbox.mutex:   # this thread is the only one that takes from the inbox
            while len(taken) < GROUP_MAX and inbox.queue:
                head = inbox.queue[0]
                if getattr(head, "reply_to", None) is None or not isinstance(head.message, WRITES):
                    break
                taken.append(inbox.queue.popleft())
        return taken

    def _tell_news(self) -> None:
        news, self._news = self._news, []
        for view, previous, reason in news:
            self._announce_now(view, previous, reason)
        progressed, self._progress_news = self._progress_news, []
        for view in progressed:
            for name in PROGRESS_LISTENERS:
                self.directory.tell(name, TaskProgressed(view))

    # --- tasks ---------------------------------------------------------------------------------------------
    def _create(self, new: CreateTask) -> TaskView:
        """A new task; or, for an idempotency key seen before, the task it created then (announced once)."""
        if len(new.description) > DESCRIPTION_LIMIT:
            raise ValueError(f"a task's description has at most {DESCRIPTION_LIMIT:,} characters, "
                             f"not {len(new.description):,}")
        if new.idempotency_key is not None and (earlier := self._row(SELECT_TASK_BY_KEY, new.idempotency_key)):
            if earlier.description != new.description:
                raise KeyReused(new.idempotency_key, earlier.task_id)
            return earlier
        now = time.time()
        view = TaskView(0, new.description, str(TaskState.IDLE), new.kind, None, new.tier, 0, new.sender, new.source,
                        None, None, now, now, new.idempotency_key, continues=new.continues)
        cursor = self._sql(INSERT_TASK, _values(view)[1:])
        view = dataclasses.replace(view, task_id=cursor.lastrowid)
        self._sql(INSERT_EVENT, (view.task_id, now, "transition", None, view.state,
                                 f"received from {new.source}" + (f" ({new.sender})" if new.sender else "")))
        self._announce(view, None, "created")
        return view

    def _transition(self, move: Transition) -> TaskView:
        """(Inside the caller's transaction: a write group's, or recovery's.)"""
        current = self._row(SELECT_TASK, move.task_id)
        if current is None:
            raise UnknownTask(f"there is no task {move.task_id}")
        check_transition(current.state, move.to, move.expect)
        view = _moved(current, move)
        self._sql(UPDATE_TASK, (view.state, view.kind, view.executor, view.tier, view.attempts, view.result,
                                view.error, view.updated_at, view.task_id))
        self._sql(INSERT_EVENT, (view.task_id, view.updated_at, "transition", current.state, view.state,
                                 move.reason))
        self._announce(view, current.state, move.reason)
        return view

    def _sql(self, statement: str, values: tuple[Any, ...]) -> Any:
        return self._database.connection().execute(statement, values)

    def _row(self, statement: str, *values: Any) -> TaskView | None:
        found = self._sql(statement, values).fetchone()
        return None if found is None else TaskView(*found)

    def _announce(self, view: TaskView, previous: str | None, reason: str) -> None:
        self._news.append((view, previous, reason))

    def _announce_now(self, view: TaskView, previous: str | None, reason: str) -> None:
        self._journal.record("transition", task_id=view.task_id, from_state=previous, to_state=view.state,
                             executor=view.executor, kind=view.kind, tier=view.tier, attempts=view.attempts,
                             reason=reason)
        changed = TaskChanged(view, previous, reason)
        for name, states in self._subscribers.items():
            if view.state in states:
                self.directory.tell(name, changed)
        if view.executor and view.executor not in self._subscribers and view.state in EXECUTOR_HEARS:
            self.directory.tell(view.executor, changed)

    def _recover_interrupted_tasks(self) -> None:
        interrupted = Task.select().where(Task.state.in_([str(s) for s in INTERRUPTED_BY_RESTART]))
        for row in list(interrupted):
            with self._database.atomic():
                self._recover(row)

    def _recover(self, row: Task) -> None:
        if row.attempts >= self._max_attempts:
            self._transition(Transition(row.id, TaskState.FAILED, error=f"interrupted by a restart on attempt "
                                        f"{row.attempts} of {self._max_attempts}",
                                        reason="recovered after a restart: no attempts left"))
        else:
            self._transition(Transition(row.id, TaskState.IDLE, reason=f"recovered after a restart while "
                                        f"{row.state} (attempt {row.attempts} of {self._max_attempts})"))

    def _workspaces(self, message: Any) -> Any:
        """A coding task's worktree claim and session, on its row: what the WorkspaceKeeper rebuilds from."""
        match message:
            case RecordWorkspace(task_id=task_id, workspace=path, branch=branch):
                self._sql('UPDATE "task" SET "workspace" = ?, "branch" = ? WHERE "id" = ?', (path, branch, task_id))
            case RecordSession(task_id=task_id, session_id=session_id):
                self._sql('UPDATE "task" SET "session_id" = ? WHERE "id" = ?', (session_id, task_id))
            case ListWorkspaceClaims():
                return [tuple(row) for row in self._sql('SELECT "id", "workspace", "branch", "state", "updated_at" '
                                                        'FROM "task" WHERE "workspace" IS NOT NULL', ())]
        return None

    # --- queries -------------------------------------------------------------------------------------------
    def _view(self, task_id: int) -> TaskView | None:
        if not 0 < task_id <= MAX_TASK_ID:   # SQLite cannot even compare a larger number
            return None
        return self._row(SELECT_TASK, task_id)

    def _list(self, query: ListTasks) -> list[TaskView]:
        # Plain SQL, not a peewee query built anew: the Router reconciles with two of these every few seconds,
        # and building the query was most of an idle store's CPU.
        where = {column: value for column, value in (("state", query.state), ("executor", query.executor))
                 if value is not None}
        conditions = " AND ".join(f'"{column}" = ?' for column in where)
        sql = (SELECT_TASKS + (f" WHERE {conditions}" if conditions else "")
               + f' ORDER BY "id" {"ASC" if query.oldest_first else "DESC"} LIMIT ?')
        return [TaskView(*row) for row in self._sql(sql, (*where.values(), query.limit)).fetchall()]

    def _count_by_state(self) -> dict[str, int]:
        counts = {str(state): 0 for state in TaskState}
        for state, count in Task.select(Task.state, fn.COUNT(Task.id)).group_by(Task.state).tuples():
            counts[state] = count
        return counts

    def _history(self, task_id: int) -> list[dict[str, Any]]:
        events = TaskEvent.select().where(TaskEvent.task == task_id).order_by(TaskEvent.id)
        return [{"at": e.at, "kind": e.kind, "from": e.from_state, "to": e.to_state, "reason": e.reason}
                for e in events]

    def _record_progress(self, progress: RecordProgress) -> None:
        text = progress_text(progress.progress, progress.total, progress.message)
        self._sql(INSERT_EVENT, (progress.task_id, time.time(), "progress", None, None, text))
        self._sql(UPDATE_PROGRESS, (text, progress.task_id))   # the latest, for /task and the console
        if (view := self._row(SELECT_TASK, progress.task_id)) is not None:
            self._progress_news.append(view)

    def _record_decision(self, decision: RecordDecision) -> None:
        self._sql(INSERT_EVENT, (decision.task_id, time.time(), "decision", None, None, decision.reason))
        self._journal.record("decision", task_id=decision.task_id, reason=decision.reason)

    def _record_evidence(self, recorded: RecordEvidence) -> None:
        """A history entry of kind `evidence`, its reason the evidence as JSON (rendered by routing/explain.py)."""
        self._sql(INSERT_EVENT, (recorded.task_id, time.time(), "evidence", None, None,
                                 json.dumps(dict(recorded.evidence), ensure_ascii=False)))

    def _record_cost(self, cost: RecordCost) -> None:
        task = cost.task_id if cost.task_id is not None and Task.get_or_none(Task.id == cost.task_id) else None
        CostEntry.create(task=task, at=time.time(), tier=cost.tier, model=cost.model, route=cost.route,
                         tokens_in=cost.tokens_in, tokens_out=cost.tokens_out, usd=cost.usd)
        self._journal.record("cost", task_id=cost.task_id, tier=cost.tier, model=cost.model, route=cost.route,
                             tokens_in=cost.tokens_in, tokens_out=cost.tokens_out, usd=cost.usd, purpose=cost.purpose)

    def _sum_costs(self, since: float) -> dict[str, dict[str, float]]:
        rows = (CostEntry.select(CostEntry.tier, fn.SUM(CostEntry.usd), fn.COUNT(CostEntry.id))
                .where(CostEntry.at >= since).group_by(CostEntry.tier).tuples())
        return {tier: {"usd": float(usd or 0), "calls": calls} for tier, usd, calls in rows}

    def _sum_costs_by_task(self, task_ids: tuple[int, ...]) -> dict[int, float]:
        rows = (CostEntry.select(CostEntry.task, fn.SUM(CostEntry.usd))
                .where(CostEntry.task.in_(list(task_ids))).group_by(CostEntry.task).tuples())
        return {task_id: float(usd or 0) for task_id, usd in rows}

    def _save_state(self, owner: str, state: Any) -> None:
        data = json.dumps(dict(state), ensure_ascii=False, default=str)
        ActorState.insert(owner=owner, data=data, updated_at=time.time()).on_conflict_replace().execute()

    def _load_state(self, owner: str) -> dict[str, Any] | None:
        row = ActorState.get_or_none(ActorState.owner == owner)
        return None if row is None else json.loads(row.data)

    # --- the IM inbox and outbox ----------------------------------------------------------------------------
    def _seen_inbound(self, keys: tuple[str, ...]) -> frozenset[str]:
        seen: set[str] = set()
        for start in range(0, len(keys), 500):     # SQLite's limit on bound parameters
            chunk = list(keys[start:start + 500])
            seen.update(key for (key,) in ImInbound.select(ImInbound.key).where(ImInbound.key.in_(chunk)).tuples())
        return frozenset(seen)

    def _record_inbound(self, handled: RecordInbound) -> int | None:
        message, now = handled.message, time.time()
        if ImInbound.get_or_none(ImInbound.key == message.key) is not None:
            raise KeyError(f"IM message {message.key} was handled already")
        ImInbound.create(key=message.key, session_key=message.session_key, sender=message.sender,
                         written_at=message.written_at, handled_at=now)
        if handled.reply is None:
            return None
        return self._queue_outbound(message.session_key, handled.reply, "reply")

    @staticmethod
    def _queue_outbound(session_key: str, text: str, what: str) -> int:
        return ImOutbound.create(session_key=session_key, text=text, what=what, created_at=time.time()).id

    @staticmethod
    def _mark_sent(outbound_id: int) -> None:
        ImOutbound.update(sent_at=time.time()).where(ImOutbound.id == outbound_id).execute()

    @staticmethod
    def _pending_outbound() -> list[tuple[int, str, str, float]]:
        rows = ImOutbound.select().where(ImOutbound.sent_at.is_null()).order_by(ImOutbound.id)
        return [(row.id, row.session_key, row.text, row.created_at) for row in rows]

    # --- notification settings and news held for quiet hours -----------------------------------------------
    @staticmethod
    def _notify_setting(sender: str) -> dict[str, Any]:
        row = NotifySetting.get_or_none(NotifySetting.sender == sender)
        if row is None:
            return {}
        return {name: getattr(row, name) for name in SETTINGS if getattr(row, name) is not None}

    def _save_notify_setting(self, changed: SaveNotifySetting) -> dict[str, Any]:
        stored = {} if changed.reset else self._notify_setting(changed.sender)
        stored.update(changed.changes)
        stored = {name: stored.get(name) for name in SETTINGS}
        if all(value is None for value in stored.values()):
            NotifySetting.delete().where(NotifySetting.sender == changed.sender).execute()
        else:
            NotifySetting.insert(sender=changed.sender, updated_at=time.time(), **stored).on_conflict_replace() \
                .execute()
        return {name: value for name, value in stored.items() if value is not None}

    @staticmethod
    def _hold(held: HoldNotification) -> int:
        return ImHeld.create(sender=held.sender, event=held.event, text=held.text, held_at=time.time()).id

    @staticmethod
    def _pending_held() -> list[tuple[int, str, str, str, float]]:
        rows = ImHeld.select().where(ImHeld.released_at.is_null()).order_by(ImHeld.id)
        return [(row.id, row.sender, row.event, row.text, row.held_at) for row in rows]

    def _release_held(self, released: ReleaseHeld) -> int | None:
        row = ImHeld.get_or_none(ImHeld.id == released.held_id)
        if row is None or row.released_at is not None:
            return None
        outbound_id = self._queue_outbound(released.session_key, row.text, "held")
        ImHeld.update(released_at=time.time(), outbound=outbound_id).where(ImHeld.id == row.id).execute()
        return outbound_id

    def _last_system_event(self, kind: str) -> dict[str, Any] | None:
        row = SystemEvent.select().where(SystemEvent.kind == kind).order_by(SystemEvent.id.desc()).first()
        return None if row is None else {"at": row.at, "detail": row.detail, "data": json.loads(row.data or "{}")}

    def _record_system_event(self, event: RecordSystemEvent) -> None:
        SystemEvent.create(at=time.time(), kind=event.kind, detail=event.detail,
                           data=json.dumps(dict(event.data), ensure_ascii=False, default=str))
        self._journal.record("system", kind=event.kind, detail=event.detail)


def _moved(task: TaskView, move: Transition) -> TaskView:
    """`task` after `move`: fields the move leaves None are kept; back to idle, last run's outcome is cleared
    (it lives on in task_event)."""
    changes: dict[str, Any] = {"state": str(move.to), "updated_at": time.time(),
                               "attempts": task.attempts + (1 if move.count_attempt else 0)}
    if move.to == TaskState.IDLE:
        changes["result"] = changes["error"] = None
    for field in ("kind", "executor", "tier", "result", "error"):
        if getattr(move, field) is not None:
            changes[field] = getattr(move, field)
    return dataclasses.replace(task, **changes)


def _values(view: TaskView) -> tuple[Any, ...]:
    return tuple(getattr(view, name) for name in TaskView.__slots__)
