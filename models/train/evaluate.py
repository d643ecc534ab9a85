"""Held-out scoring: accuracy and macro-F1 per language and source, calibration (temperature
scaling fitted on a calibration split, expected calibration error), the upset grade (ROC AUC of
P(upset), tag subsets), request_human on hard negatives, and paraphrase detection (ROC AUC of
cosine similarity, and the threshold the policy's `repeated_question` rule uses)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import confusion_matrix, f1_score, roc_auc_score

import dataset as D


def softmax(z: np.ndarray, t: float = 1.0) -> np.ndarray:
    z = z / t
    z = np.exp(z - z.max(1, keepdims=True))
    return z / z.sum(1, keepdims=True)


def scores(examples: list[D.Example], probs: np.ndarray, labels: tuple[str, ...]) -> dict:
    pred = [labels[i] for i in probs.argmax(1)]
    out = {}
    for lang in D.LANGS:
        idx = [i for i, e in enumerate(examples) if e.lang == lang]
        if not idx:
            continue
        y = [examples[i].label for i in idx]
        p = [pred[i] for i in idx]
        out[lang] = {
            "n": len(idx),
            "accuracy": round(float(np.mean([a == b for a, b in zip(y, p)])), 4),
            "macro_f1": round(float(f1_score(y, p, labels=list(labels), average="macro", zero_division=0)), 4),
            "confusion": confusion_matrix(y, p, labels=list(labels)).tolist(),
            "ece": round(ece(probs[idx], np.array([labels.index(a) for a in y])), 4),
        }
        for source in sorted({examples[i].source for i in idx}):
            sidx = [k for k, i in enumerate(idx) if examples[i].source == source]
            out[lang][f"accuracy_{source}"] = round(float(np.mean([y[k] == p[k] for k in sidx])), 4)
            out[lang][f"n_{source}"] = len(sidx)
    return out


def upset_scores(examples: list[D.Example], probs: np.ndarray) -> dict:
    """`scores` plus what a graded signal is used for: the ROC AUC of P(upset) for upset against
    calm and annoyed (how well a threshold on it finds the upset), the share two grades off (calm
    called upset or the reverse: the costly errors), and the accuracy on each tag subset apart
    (sarcasm: upset said nicely; hedged: annoyed said softly), which the overall figure hides."""
    out = scores(examples, probs, D.UPSET_GRADES)
    y = np.array([D.UPSET_GRADES.index(e.label) for e in examples])
    pred = probs.argmax(1)
    for lang, r in out.items():
        m = np.array([e.lang == lang for e in examples])
        top = y[m] == len(D.UPSET_GRADES) - 1
        r["auc"] = round(float(roc_auc_score(top, probs[m, -1])), 4) if 0 < top.sum() < m.sum() else None
        r["two_off"] = round(float((np.abs(pred[m] - y[m]) == 2).mean()), 4)
        for tag in D.UPSET_TAGS:
            t = m & np.array([tag in e.tags for e in examples])
            if t.any():
                r[f"n_{tag}"], r[f"accuracy_{tag}"] = int(t.sum()), round(float((pred[t] == y[t]).mean()), 4)
    return out


def request_human_rate(examples: list[D.Example], probs: np.ndarray) -> dict:
    """Per language, the share of hard negatives (person words, no ask for a person) the intent
    head still calls request_human: each one would be handed to a person for nothing."""
    k = D.INTENTS.index("request_human")
    out = {}
    for lang in D.LANGS:
        idx = [i for i, e in enumerate(examples) if e.lang == lang]
        if idx:
            out[lang] = {"n": len(idx), "request_human_rate": round(float((probs[idx].argmax(1) == k).mean()), 4)}
    return out


def ece(probs: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error: the gap between confidence and accuracy, averaged over 10
    equal-width confidence bins weighted by their share of examples."""
    conf, pred = probs.max(1), probs.argmax(1)
    total = 0.0
    for lo in np.linspace(0, 1, bins, endpoint=False):
        m = (conf > lo) & (conf <= lo + 1 / bins)
        if m.any():
            total += m.mean() * abs(conf[m].mean() - (pred[m] == y[m]).mean())
    return float(total)


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The temperature that minimises negative log-likelihood on the calibration split (a 1-D
    search over log T is exact enough and needs no optimiser)."""
    best_t, best_nll = 1.0, np.inf
    for t in np.exp(np.linspace(np.log(0.25), np.log(8.0), 241)):
        p = softmax(logits, t)
        nll = -np.log(p[np.arange(len(y)), y] + 1e-12).mean()
        if nll < best_nll:
            best_t, best_nll = float(t), nll
    return best_t


def paraphrase(pairs: list[D.Pair], emb_a: np.ndarray, emb_b: np.ndarray) -> dict:
    """ROC AUC per language and overall, and the threshold that maximises balanced accuracy
    (true-positive rate + true-negative rate) over both languages."""
    sim = (emb_a * emb_b).sum(1)
    y = np.array([p.same for p in pairs])
    out = {"n": len(pairs), "auc": round(float(roc_auc_score(y, sim)), 4)}
    for lang in D.LANGS:
        m = np.array([p.lang == lang for p in pairs])
        if m.any() and len(set(y[m])) == 2:
            out[f"auc_{lang}"] = round(float(roc_auc_score(y[m], sim[m])), 4)
    cands = np.unique(np.round(sim, 3))
    bal = [((sim >= t) & (y == 1)).sum() / max(1, (y == 1).sum()) + ((sim < t) & (y == 0)).sum() / max(1, (y == 0).sum()) for t in cands]
    t = float(cands[int(np.argmax(bal))])
    out["threshold"] = round(t, 3)
    out["tpr"] = round(float(((sim >= t) & (y == 1)).sum() / max(1, (y == 1).sum())), 4)
    out["tnr"] = round(float(((sim < t) & (y == 0)).sum() / max(1, (y == 0).sum())), 4)
    out.update(strict_threshold(sim, y))
    return out


def strict_threshold(sim: np.ndarray, y: np.ndarray, specificity: float = 0.95) -> dict:
    """The similarity that `specificity` of same-topic follow-ups stay at or below: the policy's
    `repeated_question` threshold (a customer adding detail must rarely be told they repeat)."""
    neg = np.sort(sim[y == 0])
    t = float(neg[int(np.ceil(specificity * len(neg))) - 1])
    return {"threshold_95": round(t, 3), "tpr_95": round(float((sim[y == 1] > t).mean()), 4)}
