"""`python -m routing build`: train the classifier from routing/data into build/ (what `make classifier` runs);
`python -m routing classify TEXT…`: print the verdict and its evidence;
`python -m routing cv [--compare]`: k-fold cross-validation on the training set (routing/crossval.py), the
place to tune; the held-out set is for `python -m bench routing`."""
from __future__ import annotations

import json
import sys

from .classifier import KINDS, MODEL, TEST, Classifier, build, load_classifier, read_rows
from .crossval import LANGS, cells, share


def held_out(model: Classifier) -> str:
    """Accuracy on routing/data/test.jsonl: overall, coding vs general, and the weakest kind × language."""
    rows = read_rows(TEST)
    found = cells(rows, [model.classify(row["text"], explain=False).kind for row in rows])
    worst = min((share(found[(kind, lang)]), f"{kind}/{lang}") for kind in KINDS for lang in LANGS)
    return (f"accuracy {share(found[('all', 'all')]):.1%}, coding vs general "
            f"{share(found[('coding|general', 'all')]):.1%}, weakest cell {worst[1]} {worst[0]:.1%} "
            f"({len(rows)} texts; `python -m bench routing` for the table)")


def main(argv: list[str]) -> int:
    if argv[:1] == ["build"]:
        path = build()
        print(f"routing classifier: {path}; on the held-out set {held_out(load_classifier(path))}")
        return 0
    if argv[:1] == ["cv"] and set(argv[1:]) <= {"--compare"}:
        from .crossval import run
        return run(compare="--compare" in argv)
    if argv[:1] == ["classify"] and argv[1:]:
        for text in argv[1:]:
            print(json.dumps(load_classifier(MODEL).classify(text).evidence(), ensure_ascii=False))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
