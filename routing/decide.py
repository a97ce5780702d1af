"""The routing decision's pure parts: a task's kind (the submitter's word, a rule, the classifier, and
whether a model must be asked), the needs it carries, and the executor that has them. The Router actor
calls these; they do no I/O and keep no state.

>>> from config.schema import RoutingConfig, RoutingRule
>>> routing = RoutingConfig(rules=(RoutingRule("general", ("general",)),), default_kind="general")
>>> choose_executor(("general",), ("gpu",), routing, down={})
(None, 'needs gpu: no executor provides it')
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from config.schema import RoutingConfig
from messages import TaskView

from .classifier import KIND_NEEDS, load_classifier


# The sandbox stubs' steering markers ([sleep=2], [fail], [crash]) are no words of the task.
MARKERS = re.compile(r"\[[a-z_]+(=[^\]]*)?\]")


def task_words(text: str) -> str:
    return MARKERS.sub(" ", text).strip()


@dataclass(frozen=True, slots=True)
class KindDecision:
    kind: str
    reason: str                          # for the transition's reason (English, as every reason)
    evidence: dict[str, Any] = field(default_factory=dict)   # for `/why` and get_task, rendered per locale
    needs: tuple[str, ...] = ()
    ask_model: bool = False              # the classifier is unsure: a P1 model should have the last word


def decide_kind(task: TaskView, routing: RoutingConfig) -> KindDecision:
    """The submitter's word, else the first rule whose pattern matches (the user's explicit word), else the
    local classifier; below `confidence_threshold` it asks for a model (the Router decides whether one can be)."""
    if task.kind:
        return KindDecision(task.kind, "kind given by the submitter", {"by": "submitter", "kind": task.kind},
                            _needs_of(task, task.kind, routing))
    for rule in routing.rules:
        for pattern in rule.patterns:
            if found := pattern.search(task.description):
                return KindDecision(rule.kind, f"the text mentions '{found.group(0)}'",
                                    {"by": "rule", "kind": rule.kind, "matched": found.group(0)},
                                    _needs_of(task, rule.kind, routing))
    if not routing.classifier:
        return KindDecision(routing.default_kind, "no rule matched: the default kind",
                            {"by": "default", "kind": routing.default_kind})
    verdict = load_classifier().classify(task_words(task.description))
    unsure = verdict.confidence < routing.confidence_threshold
    evidence = {"by": "classifier", **verdict.evidence(), "threshold": routing.confidence_threshold}
    return KindDecision(verdict.kind, f"the local classifier: {verdict.confidence:.2f}"
                        + (f", below the threshold {routing.confidence_threshold:g}" if unsure else ""),
                        evidence, verdict.needs, ask_model=unsure)


def after_model(task: TaskView, decision: KindDecision, model_kind: str | None, why: str,
                routing: RoutingConfig) -> KindDecision:
    """The model's answer replaces the classifier's kind; no answer (failed, cooling down, unparsable): the
    classifier's answer stands."""
    evidence = {**decision.evidence, "model_asked": True, "model": why}
    if model_kind is None:
        return KindDecision(decision.kind, f"{decision.reason}; no model answered ({why}): the classifier's "
                            "kind stands", evidence, decision.needs)
    needs = decision.needs if model_kind == decision.kind else _needs_of(task, model_kind, routing)
    return KindDecision(model_kind, f"{decision.reason}; a P1 model classified it", {**evidence, "kind": model_kind,
                                                                                    "needs": list(needs)}, needs)


def _needs_of(task: TaskView, kind: str, routing: RoutingConfig) -> tuple[str, ...]:
    """A kind given or matched by rule still carries the needs the text says (a `heavy` task: 24/7 or batch)."""
    if kind not in KIND_NEEDS or not routing.classifier:
        return ()
    return load_classifier().needs_for(task_words(task.description), kind)


def choose_executor(candidates: tuple[str, ...], needs: tuple[str, ...], routing: RoutingConfig,
                    down: Mapping[str, str]) -> tuple[str | None, str]:
    """The first healthy candidate that provides every need; None and why when none can take it now.
    Without needs: the first healthy candidate, else the first (it runs when that one is back)."""
    if not needs:
        for name in candidates:
            if name not in down:
                return name, "first healthy of " + ", ".join(candidates)
        return candidates[0], f"all of {', '.join(candidates)} are down; it will run when {candidates[0]} is back"
    wanted = ", ".join(needs)
    able = [name for name in (*candidates, *routing.provides) if set(needs) <= set(routing.provides.get(name, ()))]
    able = list(dict.fromkeys(able))
    if not able:
        return None, f"needs {wanted}: no executor provides it"
    for name in able:
        if name not in down:
            return name, f"needs {wanted}: first healthy of {', '.join(able)}, which provide it"
    return None, f"needs {wanted}: " + "; ".join(f"{name} is down ({down[name]})" for name in able)
