"""The Router decides, for every idle task, its kind, its executor and its model tier, records why,
and hands the task to the executor.

It keeps no task state of its own: idle tasks are announced by the StateStore, and a periodic
`Reconcile` re-reads the store so that nothing announced while the Router was restarting is lost.

The kind comes from the submitter, a rule (the user's explicit word) or the local classifier; a P1 model is
asked only when the classifier is unsure (routing/decide.py). Needs read from the text pick an executor
that provides them; with none healthy the task waits, saying so.
"""
from __future__ import annotations

import re
import threading
import time
from typing import Any

from config import RoutingConfig
from messages import (ChooseTier, Complete, Completion, CompletionFailed, Execute, ExecutorHealth, GetMode, GetTask,
                      ListTasks, ModeChanged, Reconcile, RecordDecision, TaskChanged, TaskView, Transition)

from messages.routing import RecordEvidence
from routing import load_classifier
from routing.decide import KindDecision, after_model, choose_executor, decide_kind

from runtime import ChildContext, SupervisedActor
from store import IllegalTransition
from vocabulary import ActorName, Mode, TaskState, Tier

STORE = ActorName.STATE_STORE
GUARD = ActorName.LITELLM_GUARD


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
        self._classifying: dict[int, KindDecision] = {}   # task → the classifier's decision, a model asked
        self._decisions = 0
        self._mode = "normal"

    def started(self) -> None:
        # Read now (scikit-learn imported: a second, more on a busy machine), not on the first task; beside the
        # start, so that the gateway answers meanwhile (a first decision waits on the classifier's lock).
        threading.Thread(target=load_classifier, name="classifier-warm-up", daemon=True).start()
        self._mode = self.directory.ask(ActorName.SYSTEM_MODE, GetMode())["mode"]
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

    def _dispatch(self, task: TaskView, decision: KindDecision | None = None) -> None:
        if task.task_id in self._classifying:
            return
        if self._mode == Mode.BRAINSTEM:
            self._park(task)
            return
        decision = decision or decide_kind(task, self._routing)
        if decision.ask_model and self._models and self._routing.classify_with_model:
            self._ask_model_for_kind(task, decision)
            return
        rule = self._routing.rule_for(decision.kind) or self._routing.rule_for(self._routing.default_kind)
        executor, executor_reason = choose_executor(rule.executors, decision.needs, self._routing, self._down)
        if executor is None:
            self._keep_waiting(task, executor_reason, decision)
            return
        tier, tier_reason = self._choose_tier(task.tier or rule.tier)
        if tier is None:
            self._keep_waiting(task, tier_reason)
            return
        self._waiting.pop(task.task_id, None)
        kind = decision.kind
        reason = (f"kind {kind} ({decision.reason}); executor {executor} ({executor_reason}); "
                  f"tier {tier} ({tier_reason})")
        self.directory.tell(STORE, RecordEvidence(task.task_id, {"model_asked": False, **decision.evidence,
                                                                 "executor": executor}))
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

    def _keep_waiting(self, task: TaskView, reason: str, decision: KindDecision | None = None) -> None:
        """It stays idle; the reason is recorded once, and the reconcile tick tries again."""
        if self._waiting.get(task.task_id) != reason:
            self._waiting[task.task_id] = reason
            if decision is not None:
                self.directory.tell(STORE, RecordEvidence(task.task_id, {"model_asked": False, **decision.evidence,
                                                                         "waiting": reason}))
            self.directory.tell(STORE, RecordDecision(task.task_id, f"waiting: {reason}"))

    def _ask_model_for_kind(self, task: TaskView, decision: KindDecision) -> None:
        self._classifying[task.task_id] = decision
        kinds = ", ".join(rule.kind for rule in self._routing.rules)
        question = ({"role": "system", "content": f"Classify the user's task as exactly one of: {kinds}. "
                                                  "Answer with that one word."},
                    {"role": "user", "content": task.description})
        self.directory.tell(GUARD, Complete(question, tier=Tier.P1, task_id=task.task_id, purpose="classify",
                                            max_tokens=8, allow_fallback=False, reply_to=self.name,
                                            correlation=task.task_id))

    def _classified(self, answer: Completion | CompletionFailed) -> None:
        task_id = answer.correlation
        decision = self._classifying.pop(task_id, None)
        task = self.directory.ask(STORE, GetTask(task_id))
        if task is None or task.state != TaskState.IDLE or decision is None:
            return
        kind = kind_from_model_answer(answer.text, self._routing) if isinstance(answer, Completion) else None
        why = (answer.reason if isinstance(answer, CompletionFailed) else
               f"a {answer.tier} model said {answer.text[:40]!r}")
        self._dispatch(task, after_model(task, decision, kind, why, self._routing))

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
        needs = decide_kind(task, self._routing).needs if task.kind else ()
        return choose_executor(rule.executors, needs, self._routing, self._down)[0] not in (None, task.executor)

    def _reroute(self, task: TaskView) -> None:
        """Its executor is down: back to idle, so that the announcement dispatches it to a healthy one."""
        try:
            self.directory.ask(STORE, Transition(task.task_id, TaskState.IDLE, f"{task.executor} is down "
                                                 f"({self._down[task.executor]}); routing again",
                                                 expect=frozenset({TaskState.DISPATCHING})))
        except IllegalTransition:
            pass   # the executor took it meanwhile
