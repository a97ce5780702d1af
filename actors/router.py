"""The Router decides, for every idle task, its kind, its executor and its model tier, records why,
and hands the task to the executor.

It keeps no task state of its own: idle tasks are announced by the StateStore, and a periodic
`Reconcile` re-reads the store so that nothing announced while the Router was restarting is lost.

>>> from config import EMBEDDED_DEFAULT, load_config
>>> routing = load_config(EMBEDDED_DEFAULT).routing
>>> classify(TaskView(1, "refactor the login module", "idle"), routing)
('coding', "the text mentions 'refactor'")
>>> classify(TaskView(2, "幫我整理會議紀錄", "idle"), routing)
(None, 'no rule matched')
"""
from __future__ import annotations

import re
import time
from typing import Any

from config import RoutingConfig
from messages import (ChooseTier, Complete, Completion, CompletionFailed, Execute, ExecutorHealth, GetMode, GetTask,
                      ListTasks, ModeChanged, Reconcile, RecordDecision, TaskChanged, TaskView, Transition)

from .supervised import ChildContext, SupervisedActor
from .task_lifecycle import IllegalTransition, TaskState

STORE = "state_store"
GUARD = "litellm_guard"


def classify(task: TaskView, routing: RoutingConfig) -> tuple[str | None, str]:
    """The task's kind and why: the submitter's word, else the first rule whose pattern matches, else None."""
    if task.kind:
        return task.kind, "kind given by the submitter"
    for rule in routing.rules:
        for pattern in rule.patterns:
            if found := pattern.search(task.description):
                return rule.kind, f"the text mentions '{found.group(0)}'"
    return None, "no rule matched"


def kind_from_model_answer(answer: str, routing: RoutingConfig) -> str | None:
    words = re.findall(r"[a-z_]+", answer.lower())
    return next((rule.kind for word in words for rule in routing.rules if rule.kind == word), None)


class Router(SupervisedActor):
    def __init__(self, context: ChildContext, routing: RoutingConfig, reconcile_interval_s: float,
                 models: bool = False):
        super().__init__(context)
        self._routing = routing
        self._reconcile_interval_s = reconcile_interval_s
        self._models = models                # is there a LiteLLMGuard to ask for tiers and classifications?
        self._down: dict[str, str] = {}      # executor → why it is down
        self._waiting: dict[int, str] = {}   # task → why it waits (recorded once per reason)
        self._classifying: set[int] = set()
        self._decisions = 0
        self._mode = "normal"

    def started(self) -> None:
        self._mode = self.directory.ask("system_mode", GetMode())["mode"]
        self._reconcile(older_than_s=0)
        self.loop.tell_every(self._reconcile_interval_s, self.actor_ref, Reconcile())

    def on_receive(self, message: Any) -> Any:
        match message:
            case TaskChanged(task=task) if task.state == TaskState.IDLE: self._dispatch(task)
            case TaskChanged():                                          pass
            case ExecutorHealth() as health:                             self._note_health(health)
            case Completion() | CompletionFailed() as answer:            self._classified(answer)
            case ModeChanged(mode=mode):                                 self._mode = mode
            case Reconcile():                                            self._reconcile(self._reconcile_interval_s)
            case _:                                                      return self.unhandled(message)

    def snapshot(self) -> dict[str, Any]:
        return {"decisions": self._decisions, "executors_down": dict(self._down), "waiting": dict(self._waiting),
                "classifying": sorted(self._classifying)}

    def _dispatch(self, task: TaskView, kind: str | None = None, kind_reason: str = "") -> None:
        if task.task_id in self._classifying:
            return
        if self._mode == "brainstem":
            self._park(task)
            return
        if kind is None:
            kind, kind_reason = classify(task, self._routing)
        if kind is None and self._models and self._routing.classify_with_model:
            self._ask_model_for_kind(task)
            return
        if kind is None:
            kind, kind_reason = self._routing.default_kind, "no rule matched: the default kind"
        rule = self._routing.rule_for(kind) or self._routing.rule_for(self._routing.default_kind)
        executor, executor_reason = self._choose_executor(rule.executors)
        tier, tier_reason = self._choose_tier(task.tier or rule.tier)
        if tier is None:
            self._keep_waiting(task, tier_reason)
            return
        self._waiting.pop(task.task_id, None)
        reason = f"kind {kind} ({kind_reason}); executor {executor} ({executor_reason}); tier {tier} ({tier_reason})"
        try:
            dispatched = self.directory.ask(STORE, Transition(task.task_id, TaskState.DISPATCHING, reason,
                                                              expect=frozenset({TaskState.IDLE}), kind=kind,
                                                              executor=executor, tier=tier))
        except IllegalTransition:
            return   # someone moved it first (cancelled, or dispatched by an earlier announcement)
        self._decisions += 1
        self.directory.tell(executor, Execute(dispatched))

    def _park(self, task: TaskView) -> None:
        """The cloud is down: new work waits for it (the brainstem resumes it)."""
        try:
            self.directory.ask(STORE, Transition(task.task_id, TaskState.WAITING, "cloud offline: waiting for it",
                                                 expect=frozenset({TaskState.IDLE})))
        except IllegalTransition:
            pass

    def _choose_tier(self, wanted: str) -> tuple[str | None, str]:
        if not self._models:
            return wanted, "no model route configured"
        choice = self.directory.ask(GUARD, ChooseTier(wanted))
        return choice.tier, choice.reason

    def _keep_waiting(self, task: TaskView, reason: str) -> None:
        """It stays idle; the reason is recorded once, and the reconcile tick tries again."""
        if self._waiting.get(task.task_id) != reason:
            self._waiting[task.task_id] = reason
            self.directory.tell(STORE, RecordDecision(task.task_id, f"waiting: {reason}"))

    def _ask_model_for_kind(self, task: TaskView) -> None:
        self._classifying.add(task.task_id)
        kinds = ", ".join(rule.kind for rule in self._routing.rules)
        question = ({"role": "system", "content": f"Classify the user's task as exactly one of: {kinds}. "
                                                  "Answer with that one word."},
                    {"role": "user", "content": task.description})
        self.directory.tell(GUARD, Complete(question, tier="P1", task_id=task.task_id, purpose="classify",
                                            max_tokens=8, allow_fallback=False, reply_to=self.name,
                                            correlation=task.task_id))

    def _classified(self, answer: Completion | CompletionFailed) -> None:
        task_id = answer.correlation
        self._classifying.discard(task_id)
        task = self.directory.ask(STORE, GetTask(task_id))
        if task is None or task.state != TaskState.IDLE:
            return
        kind = kind_from_model_answer(answer.text, self._routing) if isinstance(answer, Completion) else None
        if kind is not None:
            self._dispatch(task, kind, f"a {answer.tier} model classified it")
        else:
            why = answer.reason if isinstance(answer, CompletionFailed) else f"the model said {answer.text[:40]!r}"
            self._dispatch(task, self._routing.default_kind, f"model classification gave no kind ({why}); "
                                                             "the default kind")

    def _choose_executor(self, candidates: tuple[str, ...]) -> tuple[str, str]:
        for name in candidates:
            if name not in self._down:
                return name, "first healthy of " + ", ".join(candidates)
        return candidates[0], f"all of {', '.join(candidates)} are down; it will run when {candidates[0]} is back"

    def _note_health(self, health: ExecutorHealth) -> None:
        if health.up:
            self._down.pop(health.name, None)
        else:
            self._down[health.name] = health.detail

    def _reconcile(self, older_than_s: float) -> None:
        """Re-dispatch idle tasks and re-send work orders that a restart may have swallowed."""
        cutoff = time.time() - older_than_s
        for task in self.directory.ask(STORE, ListTasks(state=TaskState.IDLE, limit=10_000, oldest_first=True)):
            if task.updated_at <= cutoff:
                self._dispatch(task)
        for task in self.directory.ask(STORE, ListTasks(state=TaskState.DISPATCHING, limit=10_000,
                                                        oldest_first=True)):
            if task.updated_at > cutoff or not task.executor:
                continue
            if task.executor in self._down and self._has_healthy_alternative(task):
                self._reroute(task)
            else:
                self.directory.tell(task.executor, Execute(task))

    def _has_healthy_alternative(self, task: TaskView) -> bool:
        rule = self._routing.rule_for(task.kind or "") or self._routing.rule_for(self._routing.default_kind)
        return any(name not in self._down for name in rule.executors)

    def _reroute(self, task: TaskView) -> None:
        """Its executor is down: back to idle, so that the announcement dispatches it to a healthy one."""
        try:
            self.directory.ask(STORE, Transition(task.task_id, TaskState.IDLE, f"{task.executor} is down "
                                                 f"({self._down[task.executor]}); routing again",
                                                 expect=frozenset({TaskState.DISPATCHING})))
        except IllegalTransition:
            pass   # the executor took it meanwhile
