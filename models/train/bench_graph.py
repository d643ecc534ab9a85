"""Measure the graph levers in tract, one run, same machine: for each `graph.Options` variant, the
single-thread batch-1 time per chat message and a per-op profile (tract's own profiler), and the
largest output difference from the 1.0.0-shaped graph. Weights are e5's (needs requirements.txt).

    python3 models/train/bench_graph.py --depth 4 --depth 12
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile
import time

import numpy as np
import onnx

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dataset as D  # noqa: E402
import e5_import as E  # noqa: E402
import graph as G  # noqa: E402

VARIANTS = {
    "1.0.0 graph": G.BASELINE,
    "+ fused QKV": G.Options(fold_scale=False),
    "+ folded scale": G.Options(fuse_qkv=False),
    "both (shipped)": G.Options(),
}


def runnable(model: onnx.ModelProto):
    import tract

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "m.onnx")
        onnx.save(model, path)
        return tract.onnx().load(path).into_model().into_runnable()


def best_ms(runnables: dict, ids: list[list[int]], rounds: int) -> dict[str, float]:
    """Best-of-rounds ms per message of each tract runnable, batch 1, over `ids`; the runnables
    take turns each round, so machine noise hits them alike."""
    runs = [(np.array([i], np.int64), np.ones((1, len(i)), np.int64)) for i in ids]
    best = {name: float("inf") for name in runnables}
    for _ in range(rounds):
        for name, r in runnables.items():
            r.run(list(runs[0]))
            t = time.perf_counter()
            for a, b in runs:
                r.run([a, b])
            best[name] = min(best[name], (time.perf_counter() - t) * 1000 / len(runs))
    return best


def profile(r, ids: list[int]) -> dict[str, float]:
    x = np.array([ids], np.int64)
    js = json.loads(r.profile_json([x, np.ones_like(x)]))
    agg: dict[str, float] = collections.defaultdict(float)
    for n in js["nodes"]:
        if n.get("secs_per_iter") is not None:
            agg[n["op_name"]] += n["secs_per_iter"] * 1000
    return dict(agg)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--depth", type=int, action="append")
    ap.add_argument("--messages", type=int, default=150)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    m = E.parse_e5s1(E.wheel_model_path())
    keep = E.select_vocab(m)
    tok, w = E.build_tokenizer(m, keep), E.load_weights(m, keep)
    _, held = D.intents()
    ids = [tok.encode("query: " + e.text).ids for e in held[: args.messages]]
    print(f"{len(ids)} held-out chat messages, {np.mean([len(i) for i in ids]):.1f} tokens on average; tract, 1 thread, batch 1")
    rng = np.random.default_rng(0)
    heads = {"intent_probs": [(rng.normal(size=(w.hidden, 12)).astype(np.float32), np.zeros(12, np.float32))], "sentiment_probs": [(rng.normal(size=(w.hidden, 3)).astype(np.float32), np.zeros(3, np.float32))]}
    for depth in args.depth or [4, 12]:
        rs = {name: runnable(G.build(w, depth, heads=heads, opts=o)) for name, o in VARIANTS.items()}
        runs = [(np.array([i], np.int64), np.ones((1, len(i)), np.int64)) for i in ids]
        best = best_ms(rs, ids, args.rounds)
        ref = [o.to_numpy() for o in rs["1.0.0 graph"].run(list(runs[0]))]
        print(f"\ndepth {depth}:")
        for name, r in rs.items():
            diff = max(float(np.abs(a.to_numpy() - b).max()) for a, b in zip(r.run(list(runs[0])), ref))
            print(f"  {name:<16} {best[name]:6.2f} ms/msg  ({best[name] / best['1.0.0 graph']:.2f}x)  max output diff {diff:.1e}")
        for name in ("1.0.0 graph", "both (shipped)"):
            p = profile(rs[name], ids[0])
            total = sum(p.values())
            top = sorted(p.items(), key=lambda kv: -kv[1])[:6]
            print(f"  profile, {name} ({len(ids[0])} tokens, {total:.2f} ms): " + ", ".join(f"{k} {v / total:.0%}" for k, v in top))


if __name__ == "__main__":
    main()
