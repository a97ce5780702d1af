"""`python -m routing build`: train the classifier from routing/data into build/ (what `make classifier` runs);
`python -m routing classify TEXT…`: print the verdict and its evidence."""
from __future__ import annotations

import json
import sys

from .classifier import MODEL, TEST, accuracy, build, load_classifier, read_rows


def main(argv: list[str]) -> int:
    if argv[:1] == ["build"]:
        path = build()
        print(f"routing classifier: {path} (held-out accuracy {accuracy(load_classifier(path), read_rows(TEST)):.3f})")
        return 0
    if argv[:1] == ["classify"] and argv[1:]:
        for text in argv[1:]:
            print(json.dumps(load_classifier(MODEL).classify(text).evidence(), ensure_ascii=False))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
