"""Compare the held-out metrics of two runs (timings excluded): exit 1 if any differs.

    python3 models/train/compare_metrics.py models/handoff-zh-en/2.2.0/metrics.json /tmp/rebuild/metrics.json
"""

import json
import sys


def scores(path: str) -> dict:
    data = json.load(open(path, encoding="utf-8"))
    out = {"chosen_depth": data["chosen_depth"]}
    for depth, r in data["by_depth"].items():
        for head in ("intent", "sentiment", "upset", "upset_real_style", "hard_negatives"):
            for lang, m in r.get(head, {}).items():
                for key, value in m.items():
                    out[f"{depth}/{head}/{lang}/{key}"] = value
        for key, value in r.get("paraphrase", {}).items():
            out[f"{depth}/paraphrase/{key}"] = value
    return out


def main() -> int:
    a, b = scores(sys.argv[1]), scores(sys.argv[2])
    diffs = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    for k in diffs:
        print(f"differs: {k}: {a.get(k)} vs {b.get(k)}")
    print(f"{len(a)} held-out figures compared, {len(diffs)} differ")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
