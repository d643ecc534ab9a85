"""Add the 95 %-specificity paraphrase threshold to a package's metrics.json (for packages trained
before train.py recorded it), by running the package's graph on data/paraphrase.tsv; then rewrite the
card with card.py:

    python3 models/train/paraphrase_threshold.py models/handoff-zh-en/2.2.0
    python3 models/train/card.py models/handoff-zh-en/2.2.0
"""

import json
import os
import sys

import numpy as np
import onnx
from tokenizers import Tokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dataset as D  # noqa: E402
import evaluate as EV  # noqa: E402
import features as F  # noqa: E402


def main() -> None:
    pkg = sys.argv[1]
    path = os.path.join(pkg, "metrics.json")
    m = json.load(open(path, encoding="utf-8"))
    tok = Tokenizer.from_file(os.path.join(pkg, "tokenizer.json"))
    sess = F.session(onnx.load(os.path.join(pkg, "model.onnx")))
    prefix, max_tokens = m["info"]["text_prefix"], m["info"]["max_tokens"]
    pairs = D.paraphrase_pairs()
    a, b = (F.run(sess, F.encode(tok, [getattr(p, k) for p in pairs], prefix, max_tokens))["embedding"] for k in ("a", "b"))
    strict = EV.strict_threshold((a * b).sum(1), np.array([p.same for p in pairs]))
    m["by_depth"][str(m["chosen_depth"])]["paraphrase"].update(strict)
    json.dump(m, open(path, "w", encoding="utf-8"), indent=1, ensure_ascii=False, sort_keys=True)
    print(strict)


if __name__ == "__main__":
    main()
