"""The local task classifier: TF-IDF over character n-grams (1–4, within word boundaries) beside word
n-grams (1–2), and a logistic regression, one for the kind and one per need. Character n-grams need no
tokenizer, so English, zh-Hant and zh-Hans go through the same model (a Chinese clause is one "word", its
characters carry it); word n-grams give English phrases ("every day", "the snake") their own weight. It runs
in-process in about half a millisecond with its evidence and downloads nothing. The choice was measured by
cross-validation on the training set (`python -m routing cv --compare`), not on the held-out set.

It is trained with scikit-learn from `routing/data/train.jsonl` (`make classifier`, run by `make setup`) into
`build/routing-classifier.pkl`: vocabularies, idf weights and coefficients as plain arrays, which this module
turns into verdicts with numpy alone (no scikit-learn or SciPy in the running orchestrator), stamped with the
hashes of the data and of this module (the build is deterministic: the same data and code give the same
coefficients); a missing or stale file is rebuilt in-process on first use (some seconds), so a fresh clone
routes by it either way.

>>> verdict = load_classifier().classify("nginx 一直回 502，幫我查原因")
>>> verdict.kind, verdict.confidence > 0.3
('coding', True)
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import pickle
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


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
WORD_PATTERN = r"(?u)\b\w+\b"   # scikit-learn's default, but for one-letter words too ("a", "C")
_WORDS = re.compile(WORD_PATTERN)

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
    """The data's and this module's hash: a model built from other data, or by other code (other features, C,
    another way of computing a verdict), is stale. The build is scikit-learn's, the verdicts are this module's
    own arithmetic, so its version is no part of it."""
    return hashlib.sha256(path.read_bytes() + Path(__file__).read_bytes()).hexdigest()[:16]


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
                                           token_pattern=WORD_PATTERN)))
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


def char_grams(text: str, low: int = 1, high: int = 4) -> list[str]:
    """The character n-grams of each word padded with a space, as scikit-learn's `char_wb` analyzer gives them.

    >>> char_grams("Hi  you", 2, 3)
    [' h', 'hi', 'i ', ' hi', 'hi ', ' y', 'yo', 'ou', 'u ', ' yo', 'you', 'ou ']
    """
    grams = []
    for word in text.lower().split():
        word = f" {word} "
        for n in range(low, high + 1):
            grams += [word[i:i + n] for i in range(max(1, len(word) - n + 1))]
            if len(word) <= n:   # a word shorter than n gives itself once
                break
    return grams


def word_grams(text: str, low: int = 1, high: int = 2) -> list[str]:
    """The word n-grams of the text, as scikit-learn's `word` analyzer with `WORD_PATTERN` gives them.

    >>> word_grams("Fix the bug")
    ['fix', 'the', 'bug', 'fix the', 'the bug']
    """
    words = _WORDS.findall(text.lower())
    return [" ".join(words[i:i + n]) for n in range(low, high + 1) for i in range(len(words) - n + 1)]


@dataclass(frozen=True, slots=True)
class _Part:
    """One TF-IDF part: its n-grams' columns, their idf weights, and where its columns start."""

    analyzer: str                # "char" or "word"
    vocabulary: dict[str, int]
    idf: Any                     # numpy array, by column
    offset: int

    def columns(self, text: str) -> tuple[list[int], list[float]]:
        """The part's sublinear TF-IDF of `text`, L2-normalised: columns and values."""
        import numpy   # (here, not at the top: numpy is read with the model, off the orchestrator's start-up path)
        counts: dict[int, int] = {}
        for gram in char_grams(text) if self.analyzer == "char" else word_grams(text):
            if (column := self.vocabulary.get(gram)) is not None:
                counts[column] = counts.get(column, 0) + 1
        columns = sorted(counts)
        values = numpy.array([1.0 + math.log(counts[c]) for c in columns]) * self.idf[columns] \
            if columns else numpy.zeros(0)
        norm = math.sqrt(float(values @ values)) or 1.0
        return [c + self.offset for c in columns], list(values / norm)


@dataclass(frozen=True, slots=True)
class _Linear:
    """A logistic regression's coefficients: one row per class (one row in all for two classes)."""

    classes: tuple[Any, ...]
    coef: Any                    # numpy array, classes (or 1) × columns
    intercept: Any

    def probabilities(self, columns: Any, values: Any) -> Any:
        """What scikit-learn's `predict_proba` answers: the multinomial softmax (a sigmoid for two classes)."""
        import numpy
        scores = self.coef[:, columns] @ values + self.intercept
        if scores.size == 1:
            chance = 1.0 / (1.0 + math.exp(-float(scores[0])))
            return numpy.array([1.0 - chance, chance])
        exps = numpy.exp(scores - scores.max())
        return exps / exps.sum()


class Classifier:
    """The trained model as plain arrays, and its verdicts computed from them: routing imports numpy, not
    scikit-learn and SciPy (a second of start-up and about 100 MB that the orchestrator does not need).
    `tests/test_routing_classifier.py` holds its TF-IDF rows and probabilities equal to scikit-learn's."""

    def __init__(self, parts: list[_Part], kind_model: _Linear, need_models: dict[str, _Linear],
                 by_gram: tuple[Any, Any, Any], texts: list[str], kinds: list[str], names: list[str]):
        self.parts, self.kind_model, self.need_models = parts, kind_model, need_models
        self.by_gram = by_gram            # CSR of n-grams × labelled texts (indptr, indices, data), rows normalised
        self.texts, self.kinds, self.names = texts, kinds, names

    def classify(self, text: str, explain: bool = True) -> Verdict:
        columns, values = self.vector(text)
        probabilities = self.kind_model.probabilities(columns, values)
        best = int(probabilities.argmax())
        kind = str(self.kind_model.classes[best])
        scores = {str(k): float(p) for k, p in zip(self.kind_model.classes, probabilities, strict=True)}
        needs = self._needs(columns, values, kind)
        if not explain:
            return Verdict(kind, float(probabilities[best]), needs, scores=scores)
        return Verdict(kind, float(probabilities[best]), needs, self._features(text, columns, values, best),
                       self._neighbours(columns, values), scores)

    def needs_for(self, text: str, kind: str) -> tuple[str, ...]:
        """The needs of `text` as a task of `kind` (a kind the submitter or a rule gave)."""
        return self._needs(*self.vector(text), kind)

    def vector(self, text: str) -> tuple[Any, Any]:
        """The text's TF-IDF row, each part's side by side: columns and values."""
        import numpy
        columns: list[int] = []
        values: list[float] = []
        for part in self.parts:
            part_columns, part_values = part.columns(text)
            columns += part_columns
            values += part_values
        return numpy.array(columns, dtype=numpy.int64), numpy.array(values)

    def _needs(self, columns: Any, values: Any, kind: str) -> tuple[str, ...]:
        """Needs come with the kinds that have them: a general text that mentions a GPU needs none."""
        wanted = KIND_NEEDS.get(kind, ())
        if not wanted:
            return ()
        chances = {need: float(self.need_models[need].probabilities(columns, values)[1]) for need in wanted}
        found = tuple(need for need in wanted if chances[need] >= NEED_THRESHOLD)
        return found or (max(chances, key=chances.get),)

    def _features(self, text: str, columns: Any, values: Any, best: int, count: int = 4) -> tuple[str, ...]:
        coef = self.kind_model.coef
        weights = coef[best] if coef.shape[0] > 1 else coef[0]
        pushes = sorted(zip((values * weights[columns]).tolist(), columns.tolist(), strict=True), reverse=True)
        shown: list[str] = []
        words = spaced_words(text)
        for push, column in pushes:
            gram = self.names[column].strip()
            if push <= 0 or len(shown) == count:
                break
            if telling(gram, words) and not any(gram in other for other in shown):
                shown.append(gram)
        return tuple(shown)

    def _neighbours(self, columns: Any, values: Any, count: int = 2) -> tuple[tuple[str, str, float], ...]:
        """The labelled texts nearest by cosine: the sum, over the text's n-grams, of their columns' rows."""
        import numpy
        indptr, indices, data = self.by_gram
        norm = math.sqrt(float(values @ values)) or 1.0
        spans = [(indptr[c], indptr[c + 1], v / norm) for c, v in zip(columns.tolist(), values.tolist(),
                                                                       strict=True)]
        if not spans:
            return ()
        texts = numpy.concatenate([indices[a:b] for a, b, _ in spans])
        weights = numpy.concatenate([data[a:b] * v for a, b, v in spans])
        similarities = numpy.bincount(texts, weights, minlength=len(self.texts))
        nearest = similarities.argsort()[::-1][:count]
        return tuple((self.kinds[i], self.texts[i], float(similarities[i])) for i in nearest if similarities[i] > 0)


def fit(rows: list[dict[str, Any]], c: float = C) -> tuple[Any, Any, dict[str, Any], Any]:
    """scikit-learn's models trained on `rows`: the vectorizer, the kind model, a model per need, the matrix."""
    from sklearn.linear_model import LogisticRegression
    texts = [row["text"] for row in rows]
    union = vectorizer()
    matrix = union.fit_transform(texts)
    kind_model = LogisticRegression(C=c, class_weight=CLASS_WEIGHT, max_iter=5000).fit(
        matrix, [row["kind"] for row in rows])
    need_models = {need: LogisticRegression(C=c, class_weight=CLASS_WEIGHT, max_iter=5000).fit(
        matrix, [need in row.get("needs", ()) for row in rows]) for need in NEEDS}
    return union, kind_model, need_models, matrix


def compile_model(rows: list[dict[str, Any]], union: Any, kind_model: Any, need_models: dict[str, Any],
                  matrix: Any) -> Classifier:
    """The run-time form of scikit-learn's models: their vocabularies, idf weights and coefficients as arrays."""
    import numpy
    from sklearn.preprocessing import normalize
    parts, names, offset = [], [], 0
    for _prefix, part in union.transformer_list:
        analyzer = "char" if part.analyzer == "char_wb" else "word"
        if (analyzer, part.ngram_range) not in (("char", (1, 4)), ("word", (1, 2))) or part.lowercase is not True:
            raise ValueError(f"the run-time classifier has no {part.analyzer} {part.ngram_range} part")
        vocabulary = {gram: int(column) for gram, column in part.vocabulary_.items()}
        parts.append(_Part(analyzer, vocabulary, numpy.asarray(part.idf_, dtype=numpy.float64), offset))
        names += sorted(vocabulary, key=vocabulary.get)
        offset += len(vocabulary)
    linear = {name: _Linear(tuple(model.classes_.tolist()), numpy.asarray(model.coef_), numpy.asarray(model.intercept_))
              for name, model in {"kind": kind_model, **need_models}.items()}
    # columns (n-grams) by rows (labelled texts), L2-normalised by text: a text's cosines are the sum of the rows
    # of its own n-grams, a tenth of a millisecond instead of a product with every labelled text
    by_gram = normalize(matrix).T.tocsr()
    return Classifier(parts, linear.pop("kind"), linear, (by_gram.indptr, by_gram.indices, by_gram.data),
                      [row["text"] for row in rows], [row["kind"] for row in rows], names)


def train(path: Path = TRAIN) -> Classifier:
    rows = read_rows(path)
    return compile_model(rows, *fit(rows))


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

