"""k-fold cross-validation of the kind model on the training set (`python -m routing cv`), so that choices
(features, C, class weights) are made without looking at the held-out set, which only `python -m bench routing`
reads. Folds are stratified by kind and language; the split is seeded, so a run repeats.

`python -m routing cv --compare` measures the alternatives in CANDIDATES as well (slower: one fit per fold each).

>>> rows = [{"text": t, "kind": k, "lang": "en"} for t, k in [("fix the bug", "coding"), ("a poem", "general")] * 3]
>>> sorted(cells(rows, [r["kind"] for r in rows])[("all", "all")])
[True, True, True, True, True, True]
"""
from __future__ import annotations

import time
from collections import defaultdict
from typing import Any, Callable

from .classifier import C, CLASS_WEIGHT, KINDS, TRAIN, read_rows

LANGS = ("en", "zh-Hant", "zh-Hans")
FOLDS = 5
SEED = 12


def features(chars: tuple[int, int] | None = (1, 4), words: tuple[int, int] | None = (1, 2),
             char_analyzer: str = "char_wb") -> Callable[[], Any]:
    """A factory of the vectorizer: character n-grams, word n-grams or both side by side."""
    def make() -> Any:
        from .classifier import vectorizer
        return vectorizer(chars, words, char_analyzer)
    return make


# name -> (vectorizer factory, C, class_weight); the first is what routing/classifier.py uses.
CANDIDATES: dict[str, tuple[Callable[[], Any], float, str | None]] = {
    f"char_wb 1-4 + word 1-2, LR C={C:g}, {CLASS_WEIGHT}": (features(), C, CLASS_WEIGHT),
    "char_wb 1-4, LR C=10 (the first model)": (features(words=None), 10.0, None),
    "char_wb 1-4, LR C=30, balanced": (features(words=None), 30.0, "balanced"),
    "char_wb 1-4 + word 1-2, LR C=10, balanced": (features(), 10.0, "balanced"),
    "char_wb 1-4 + word 1-2, LR C=100, balanced": (features(), 100.0, "balanced"),
    "char_wb 1-4 + word 1-2, LR C=30, unweighted": (features(), 30.0, None),
    "char_wb 2-5 + word 1-2, LR C=30, balanced": (features(chars=(2, 5)), 30.0, "balanced"),
    "char 1-4 + word 1-2, LR C=30, balanced": (features(char_analyzer="char"), 30.0, "balanced"),
}


def predict_folds(rows: list[dict[str, Any]], make: Callable[[], Any], c: float, weight: str | None,
                  folds: int = FOLDS) -> list[str]:
    """Each row's kind as predicted by a model trained on the other folds."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    strata = [f"{row['kind']}/{row['lang']}" for row in rows]
    predicted = [""] * len(rows)
    for fit, held in StratifiedKFold(folds, shuffle=True, random_state=SEED).split(rows, strata):
        vectorizer = make()
        matrix = vectorizer.fit_transform([rows[i]["text"] for i in fit])
        model = LogisticRegression(C=c, class_weight=weight, max_iter=5000).fit(matrix, [rows[i]["kind"] for i in fit])
        for i, kind in zip(held, model.predict(vectorizer.transform([rows[i]["text"] for i in held])), strict=True):
            predicted[i] = str(kind)
    return predicted


def cells(rows: list[dict[str, Any]], predicted: list[str]) -> dict[tuple[str, str], list[bool]]:
    """Right or wrong per (kind, language), with "all" margins, and coding vs general as ("coding|general", …)."""
    out: dict[tuple[str, str], list[bool]] = defaultdict(list)
    for row, kind in zip(rows, predicted, strict=True):
        for key in ((row["kind"], row["lang"]), (row["kind"], "all"), ("all", row["lang"]), ("all", "all")):
            out[key].append(kind == row["kind"])
        if row["kind"] in ("coding", "general"):
            right = (kind == "coding") == (row["kind"] == "coding")
            out[("coding|general", row["lang"])].append(right)
            out[("coding|general", "all")].append(right)
    return out


def share(values: list[bool]) -> float:
    return sum(values) / len(values) if values else 0.0


def report(name: str, rows: list[dict[str, Any]], predicted: list[str], seconds: float) -> str:
    found = cells(rows, predicted)
    worst = min(((share(found[(k, lang)]), f"{k}/{lang}") for k in KINDS for lang in LANGS))
    return (f"{name:<46} all {share(found[('all', 'all')]):6.1%}  coding|general "
            f"{share(found[('coding|general', 'all')]):6.1%}  worst cell {worst[1]} {worst[0]:6.1%}  ({seconds:.0f} s)")


def table(rows: list[dict[str, Any]], predicted: list[str]) -> str:
    found = cells(rows, predicted)
    lines = [f"{'':<16}" + "".join(f"{lang:>10}" for lang in (*LANGS, "all"))]
    for kind in (*KINDS, "coding|general", "all"):
        lines.append(f"{kind:<16}" + "".join(f"{share(found[(kind, lang)]):>10.1%}" for lang in (*LANGS, "all")))
    return "\n".join(lines)


def run(compare: bool = False) -> int:
    rows = read_rows(TRAIN)
    print(f"{FOLDS}-fold cross-validation on {TRAIN.name} ({len(rows)} texts), stratified by kind and language")
    for number, (name, (make, c, weight)) in enumerate(CANDIDATES.items()):
        if number and not compare:
            break
        started = time.perf_counter()
        predicted = predict_folds(rows, make, c, weight)
        print(report(name, rows, predicted, time.perf_counter() - started))
        if not number:
            print(table(rows, predicted))
    return 0
