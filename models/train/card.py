"""Rewrite a package's MODEL_CARD.md from its metrics.json (the figures of the run that trained it),
after a change to the card's template in package.py, without retraining:

    python3 models/train/card.py models/handoff-zh-en/2.2.0
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import package as P  # noqa: E402


def main() -> None:
    out = sys.argv[1]
    m = json.load(open(os.path.join(out, "metrics.json"), encoding="utf-8"))
    results = {int(d): r for d, r in m["by_depth"].items()}
    version = next(line.split('"')[1] for line in open(os.path.join(out, "manifest.toml"), encoding="utf-8") if line.startswith("version = "))
    with open(os.path.join(out, "MODEL_CARD.md"), "w", encoding="utf-8") as f:
        f.write(P.model_card(version, results, m["chosen_depth"], m["info"], out))


if __name__ == "__main__":
    main()
