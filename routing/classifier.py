"""The local task classifier: TF-IDF over character n-grams (1–4, within word boundaries) beside word
n-grams (1–2), and a logistic regression, one for the kind and one per need. Character n-grams need no
tokenizer, so English, zh-Hant and zh-Hans go through the same model (a Chinese clause is one "word", its
characters carry it); word n-grams give English phrases ("every day", "the snake") their own weight. It runs
in-process in about three milliseconds with its evidence and downloads nothing. The choice was measured by
cross-validation on the training set (`python -m routing cv --compare`), not on the held-out set.

It is trained from `routing/data/train.jsonl` (`make classifier`, run by `make setup`) into
`build/routing-classifier.pkl`, stamped with the hashes of the data and of this module and scikit-learn's
version (the build is deterministic: the same data and code give the same coefficients); a missing or stale
file is rebuilt in-process on first use (a second or so), so a fresh clone routes by it either way.

>>> verdict = load_classifier().classify("nginx 一直回 502，幫我查原因")
>>> verdict.kind, verdict.confidence > 0.3
('coding', True)
"""
from __future__ import annotations

import hashlib
import json
import logging
import pickle
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy

ROOT = Path(__file__).resolve().parent
DATA = ROOT / "data"
TRAIN = DATA / "train.jsonl"
TEST = DATA / "test.jsonl"
MODEL = ROOT.parent / "build" / "routing-classifier.pkl"
KINDS = ("coding", "general", "heavy", "gpu")
NEEDS = ("gpu", "always_on", "long_running")
KIND_NEEDS = {"gpu": ("gpu",), "heavy": ("always_on", "long_running")}   # a kind that cannot do without one
NEED_THRESHOLD = 0.5
STOP_WORDS = frozenset("a all an and are as at be but by do for from has have i if in is it its me my of on or our so "
                       "that the their them then there these this to us was we what when which who will with you "
                       "your".split())   # function words: they explain nothing in /why
C = 30.0                        # chosen by cross-validation on train among 10, 30, 100 (routing/crossval.py)
CLASS_WEIGHT = "balanced"       # the kinds are nearly balanced; weighting keeps a smaller one from losing ties

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Verdict:
    """The classifier's answer for one text, with its evidence."""

    kind: str
    confidence: float                                   # the kind's probability
    needs: tuple[str, ...] = ()
    features: tuple[str, ...] = ()                      # the n-grams that pushed most towards the kind
    neighbours: tuple[tuple[str, str, float], ...] = () # nearest labelled texts: (kind, text, cosine)
    scores: dict[str, float] = field(default_factory=dict)

    def evidence(self) -> dict[str, Any]:
        return {"kind": self.kind, "confidence": round(self.confidence, 3), "needs": list(self.needs),
                "features": list(self.features),
                "neighbours": [{"kind": k, "text": t, "similarity": round(s, 3)} for k, t, s in self.neighbours]}


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The labelled rows of one JSONL file; a bad line is named by file and line."""
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{number}: not JSON ({err})") from None
        if row.get("kind") not in KINDS or not isinstance(row.get("text"), str) or \
                not set(row.get("needs", [])) <= set(NEEDS):
            raise ValueError(f"{path}:{number}: expected text, kind among {', '.join(KINDS)}, needs among "
                             f"{', '.join(NEEDS)}; got {line[:80]!r}")
        rows.append(row)
    return rows


def stamp(path: Path = TRAIN) -> str:
    """The data's and this module's hash and scikit-learn's version: a model built from other data, by other
    code (other features, C) or another scikit-learn is stale."""
    import sklearn
    digest = hashlib.sha256(path.read_bytes() + Path(__file__).read_bytes()).hexdigest()[:16]
    return f"{digest}-sklearn-{sklearn.__version__}"


def vectorizer(chars: tuple[int, int] | None = (1, 4), words: tuple[int, int] | None = (1, 2),
               char_analyzer: str = "char_wb") -> Any:
    """TF-IDF over character n-grams and word n-grams side by side (either may be left out, for measuring)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import FeatureUnion
    parts = []
    if chars:
        parts.append(("c", TfidfVectorizer(analyzer=char_analyzer, ngram_range=chars, sublinear_tf=True)))
    if words:
        parts.append(("w", TfidfVectorizer(analyzer="word", ngram_range=words, sublinear_tf=True,
                                           token_pattern=r"(?u)\b\w+\b")))
    return FeatureUnion(parts)


def telling(gram: str, words: str) -> bool:
    """Whether an n-gram says something to a reader of `/why`, given the text's `words` (`spaced_words`): in
    Latin script a whole word or run of words of the text ("every", not its fragment "ver") that is not only
    English function words ("the", "and": they can carry weight in the model, the set's heavy texts say "and"
    more, but explain nothing); in Chinese at least two characters.

    >>> words = spaced_words("Every day at 8, check the API and 分頁")
    >>> [g for g in ("ver", "the", "and the", "every day", "api", "分頁", "頁") if telling(g, words)]
    ['every day', 'api', '分頁']
    """
    if not gram.isascii():
        return len(gram) > 1
    return f" {gram} " in words and not all(word in STOP_WORDS for word in gram.split())


def spaced_words(text: str) -> str:
    """The text's words, lower-cased, one space around each: a word run is found by a substring test."""
    return " " + " ".join(re.findall(r"\w+", text.lower())) + " "


class Classifier:
    def __init__(self, rows: list[dict[str, Any]], c: float = C):
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import normalize
        texts = [row["text"] for row in rows]
        self.vectorizer = vectorizer()
        matrix = self.vectorizer.fit_transform(texts)
        self.kind_model = LogisticRegression(C=c, class_weight=CLASS_WEIGHT, max_iter=5000).fit(
            matrix, [row["kind"] for row in rows])
        self.need_models = {need: LogisticRegression(C=c, class_weight=CLASS_WEIGHT, max_iter=5000).fit(
            matrix, [need in row.get("needs", ()) for row in rows]) for need in NEEDS}
        # columns (n-grams) by rows (labelled texts), L2-normalised by text: a text's cosines are the sum of
        # the rows of its own n-grams, a tenth of a millisecond instead of a product with every labelled text
        self.by_gram = normalize(matrix).T.tocsr()
        self.texts, self.kinds = texts, [row["kind"] for row in rows]
        # "c__pyth" / "w__every day": the part's prefix is no part of the n-gram the user sees
        self.names = [name.split("__", 1)[1] for name in self.vectorizer.get_feature_names_out()]

    def classify(self, text: str, explain: bool = True) -> Verdict:
        vector = self._vector(text)
        probabilities = _probabilities(self.kind_model, vector)
        best = int(probabilities.argmax())
        kind = str(self.kind_model.classes_[best])
        scores = {str(k): float(p) for k, p in zip(self.kind_model.classes_, probabilities, strict=False)}
        needs = self._needs(vector, kind)
        if not explain:
            return Verdict(kind, float(probabilities[best]), needs, scores=scores)
        return Verdict(kind, float(probabilities[best]), needs, self._features(text, vector, best),
                       self._neighbours(vector), scores)

    def needs_for(self, text: str, kind: str) -> tuple[str, ...]:
        """The needs of `text` as a task of `kind` (a kind the submitter or a rule gave)."""
        return self._needs(self._vector(text), kind)

    def _vector(self, text: str) -> Any:
        """The text's TF-IDF row: each part's, side by side, as FeatureUnion.transform gives it, without the
        joblib dispatch and output wrapping it spends more time on than the parts themselves."""
        from scipy.sparse import hstack
        return hstack([part.transform([text]) for _, part in self.vectorizer.transformer_list], format="csr")

    def _needs(self, vector: Any, kind: str) -> tuple[str, ...]:
        """Needs come with the kinds that have them: a general text that mentions a GPU needs none."""
        wanted = KIND_NEEDS.get(kind, ())
        if not wanted:
            return ()
        chances = {need: float(_probabilities(self.need_models[need], vector)[1]) for need in wanted}
        found = tuple(need for need in wanted if chances[need] >= NEED_THRESHOLD)
        return found or (max(chances, key=chances.get),)

    def _features(self, text: str, vector: Any, best: int, count: int = 4) -> tuple[str, ...]:
        weights = self.kind_model.coef_[best] if self.kind_model.coef_.shape[0] > 1 else self.kind_model.coef_[0]
        row = vector.tocoo()
        pushes = sorted(((value * weights[column], column) for column, value in zip(row.col, row.data, strict=False)),
                        reverse=True)
        shown: list[str] = []
        words = spaced_words(text)
        for push, column in pushes:
            gram = str(self.names[column]).strip()
            if push <= 0 or len(shown) == count:
                break
            if telling(gram, words) and not any(gram in other for other in shown):
                shown.append(gram)
        return tuple(shown)

    def _neighbours(self, vector: Any, count: int = 2) -> tuple[tuple[str, str, float], ...]:
        vector = vector.tocsr()
        norm = float(numpy.sqrt(vector.data @ vector.data)) or 1.0
        similarities = self.by_gram[vector.indices].T @ (vector.data / norm)   # both L2-normalised: cosines
        nearest = similarities.argsort()[::-1][:count]
        return tuple((self.kinds[i], self.texts[i], float(similarities[i])) for i in nearest if similarities[i] > 0)


def _probabilities(model: Any, vector: Any) -> Any:
    """What `model.predict_proba(vector)[0]` answers, computed from its coefficients: the multinomial
    softmax (a logistic sigmoid for two classes). scikit-learn's own call checks its input each time, a
    millisecond of a verdict's few; tests/test_routing_classifier.py holds the two equal."""
    scores = numpy.asarray(vector @ model.coef_.T).ravel() + model.intercept_
    if scores.size == 1:
        chance = 1.0 / (1.0 + numpy.exp(-scores[0]))
        return numpy.array([1.0 - chance, chance])
    exps = numpy.exp(scores - scores.max())
    return exps / exps.sum()


def train(path: Path = TRAIN) -> Classifier:
    return Classifier(read_rows(path))


def build(out: Path = MODEL) -> Path:
    """Train from the repo's data and write the model with its stamp (what `make classifier` runs)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    model = train()
    partial = out.with_suffix(".tmp")
    partial.write_bytes(pickle.dumps({"stamp": stamp(), "model": model}, protocol=5))
    partial.replace(out)
    return out


_lock = threading.Lock()
_loaded: Classifier | None = None


def load_classifier(path: Path = MODEL) -> Classifier:
    """The process's classifier: the built file when its stamp matches the data, else trained here."""
    global _loaded
    with _lock:
        if _loaded is None:
            _loaded = _read(path) or _train_here(path)
        return _loaded


def _read(path: Path) -> Classifier | None:
    try:
        saved = pickle.loads(path.read_bytes())   # our own build output, never a downloaded file
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError):
        return None
    return saved["model"] if saved.get("stamp") == stamp() else None


def _train_here(path: Path) -> Classifier:
    log.info("routing classifier: %s is missing or stale; training from %s", path, TRAIN)
    return train()

