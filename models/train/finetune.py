"""Multi-task fine-tuning on CPU: one shared encoder, an intent head, a sentiment head, the ordinal
upset head, and an embedding kept close to the frozen 12-layer e5 embedding (cosine distillation),
all in one loss. An example carries an intent label, a sentiment label, an upset grade, an intent
it is not (a hard negative), or none (-1 = no loss from that head).
Batches group texts of similar length (little padding: CPU time is proportional to tokens) and
their order is shuffled with a fixed seed, so a rerun trains the same model."""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

import encoder as EN

PAD_ID = 1


@dataclass
class Batch:
    ids: torch.Tensor
    mask: torch.Tensor
    intent: torch.Tensor
    sentiment: torch.Tensor
    upset: torch.Tensor
    not_intent: torch.Tensor
    weight: torch.Tensor
    teacher: torch.Tensor
    lower: torch.Tensor | None  # frozen layers' output, when the encoder has frozen layers


@dataclass
class TrainSet:
    token_ids: list[list[int]]
    intent: np.ndarray  # [n] label index or -1
    sentiment: np.ndarray  # [n] label index or -1
    upset: np.ndarray  # [n] grade index (calm 0, annoyed 1, upset 2) or -1
    not_intent: np.ndarray  # [n] index of an intent the text is known not to be, or -1
    weight: np.ndarray  # [n] loss weight of the example
    teacher: np.ndarray  # [n, hidden] normalised e5 embeddings
    triplets: list[tuple[list[int], list[int], list[int]]]  # anchor, same question reworded, different question


def pad(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), PAD_ID, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    return ids, mask


def pad_states(rows: list[torch.Tensor]) -> torch.Tensor:
    width = max(r.shape[0] for r in rows)
    out = torch.zeros((len(rows), width, rows[0].shape[1]), dtype=torch.float32)
    for i, r in enumerate(rows):
        out[i, : r.shape[0]] = r.float()
    return out


@torch.no_grad()
def lower_states(enc: EN.Encoder, token_ids: list[list[int]], batch_size: int = 64, desc: str = "frozen layers") -> list[torch.Tensor] | None:
    """Each example's hidden states after the frozen layers, computed once (f16 to halve memory)."""
    if not len(enc.frozen):
        return None
    enc.eval()
    order = sorted(range(len(token_ids)), key=lambda i: len(token_ids[i]))
    out: list[torch.Tensor | None] = [None] * len(order)
    for b in tqdm(range(0, len(order), batch_size), desc=desc, unit="batch", mininterval=2.0):
        idx = order[b : b + batch_size]
        ids, mask = pad([token_ids[i] for i in idx])
        x = enc.lower(ids, mask)
        for j, i in enumerate(idx):
            out[i] = x[j, : len(token_ids[i])].half()
    return out  # type: ignore[return-value]


def batches(data: TrainSet, batch_size: int, rng: random.Random, lower: list[torch.Tensor] | None = None) -> list[Batch]:
    """Shuffle, then sort within windows of 50 batches by length, so batches are short-padded
    but their contents still vary from epoch to epoch."""
    order = list(range(len(data.token_ids)))
    rng.shuffle(order)
    window = batch_size * 50
    out = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lambda i: len(data.token_ids[i]))
        for b in range(0, len(chunk), batch_size):
            idx = chunk[b : b + batch_size]
            ids, mask = pad([data.token_ids[i] for i in idx])
            out.append(
                Batch(
                    ids,
                    mask,
                    torch.tensor(data.intent[idx], dtype=torch.long),
                    torch.tensor(data.sentiment[idx], dtype=torch.long),
                    torch.tensor(data.upset[idx], dtype=torch.long),
                    torch.tensor(data.not_intent[idx], dtype=torch.long),
                    torch.tensor(data.weight[idx], dtype=torch.float32),
                    torch.tensor(data.teacher[idx], dtype=torch.float32),
                    pad_states([lower[i] for i in idx]) if lower is not None else None,
                )
            )
    rng.shuffle(out)
    return out


def _contrastive(enc: EN.Encoder, triplets: list[tuple[list[int], list[int], list[int]]], temperature: float = 0.05) -> torch.Tensor:
    """InfoNCE: each anchor must pick its rewording among every positive and hard negative of the
    batch, so a follow-up on the same topic ends up further away than a real repeat."""
    n = len(triplets)
    ids, mask = pad([t[0] for t in triplets] + [t[1] for t in triplets] + [t[2] for t in triplets])
    *_, emb = enc(ids, mask)
    logits = emb[:n] @ emb[n:].T / temperature
    return nn.functional.cross_entropy(logits, torch.arange(n))


def _masked_ce(logits: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor, smoothing: float) -> torch.Tensor:
    keep = labels >= 0
    if not keep.any():
        return logits.sum() * 0.0
    loss = nn.functional.cross_entropy(logits[keep], labels[keep], reduction="none", label_smoothing=smoothing)
    return (loss * weight[keep]).sum() / weight[keep].sum()


def _intent_loss(logits: torch.Tensor, labels: torch.Tensor, not_labels: torch.Tensor, weight: torch.Tensor, smoothing: float) -> torch.Tensor:
    """Cross-entropy on labelled examples and, for hard negatives, -log(1 - P(the intent they are
    not)): a message with person words but no ask for a person pushes request_human down without
    being told which intent it is. Averaged together, so a hard negative weighs one example."""
    keep, neg = labels >= 0, not_labels >= 0
    if not (keep.any() or neg.any()):
        return logits.sum() * 0.0
    total = logits.new_zeros(())
    if keep.any():
        total = total + (nn.functional.cross_entropy(logits[keep], labels[keep], reduction="none", label_smoothing=smoothing) * weight[keep]).sum()
    if neg.any():
        z = logits[neg]
        others = z.masked_fill(nn.functional.one_hot(not_labels[neg], z.shape[1]).bool(), float("-inf"))
        total = total + ((torch.logsumexp(z, 1) - torch.logsumexp(others, 1)) * weight[neg]).sum()
    return total / weight[keep | neg].sum()


def train(
    enc: EN.Encoder,
    data: TrainSet,
    epochs: int,
    seed: int,
    batch_size: int = 32,
    lr: float = 8e-5,
    head_lr: float = 2e-3,
    distill: float = 1.0,
    contrastive: float = 0.5,
    upset_weight: float = 0.5,
    triplet_batch: int = 16,
    triplet_every: int = 4,
    desc: str = "fine-tune",
) -> None:
    torch.manual_seed(seed)
    rng = random.Random(seed)
    named = [(n, p) for n, p in enc.named_parameters() if p.requires_grad]
    head_names = ("intent", "sentiment", "upset", "proj")
    heads = [p for n, p in named if n.split(".")[0] in head_names]
    body = [p for n, p in named if n.split(".")[0] not in head_names]
    opt = torch.optim.AdamW([{"params": body, "lr": lr}, {"params": heads, "lr": head_lr}], weight_decay=0.01)
    steps = epochs * ((len(data.token_ids) + batch_size - 1) // batch_size)
    warm = max(1, steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min((s + 1) / warm, max(0.0, (steps - s) / (steps - warm))))
    lower = lower_states(enc, data.token_ids, desc=f"{desc}: frozen layers")
    enc.train()
    bar = tqdm(total=steps, desc=desc, unit="batch", leave=True, mininterval=2.0)
    for _ in range(epochs):
        for b in batches(data, batch_size, rng, lower):
            intent, sentiment, upset, emb = enc(b.ids, b.mask, lower=b.lower)
            loss = _intent_loss(intent, b.intent, b.not_intent, b.weight, 0.05) + _masked_ce(sentiment, b.sentiment, b.weight, 0.05)
            # Adam scales each parameter's steps by its own gradients, so upset_weight hardly changes
            # how fast the upset head learns: it sets how far the shared layers bend towards it.
            loss = loss + upset_weight * _masked_ce(upset, b.upset, b.weight, 0.05)
            loss = loss + distill * (1.0 - (emb * b.teacher).sum(-1)).mean()
            # Every few steps, not every one: a triplet batch costs more than a classification batch.
            if data.triplets and contrastive > 0 and bar.n % triplet_every == 0:
                loss = loss + contrastive * _contrastive(enc, rng.sample(data.triplets, min(triplet_batch, len(data.triplets))))
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(enc.parameters(), 1.0)
            opt.step()
            sched.step()
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    bar.close()
    enc.eval()


def fit_projection(
    enc: EN.Encoder,
    triplets: list[tuple[list[int], list[int], list[int]]],
    seed: int,
    epochs: int = 30,
    batch_size: int = 64,
    lr: float = 1e-3,
    temperature: float = 0.2,
) -> None:
    """Refit the embedding projection alone on the paraphrase triplets, the encoder frozen.
    Joint training shares the pooled vector with the intent head, which pulls every message of
    an intent together, and the distillation pulls the embedding back towards e5; a projection
    fitted afterwards only has to separate a rewording from a same-topic follow-up. Cheap (the
    pooled vectors are computed once) and it leaves both heads exactly as they were."""
    if not triplets:
        return
    torch.manual_seed(seed)
    enc.eval()
    with torch.no_grad():
        pooled = []
        for k in range(3):
            rows = [t[k] for t in triplets]
            parts = []
            for b in range(0, len(rows), 64):
                ids, mask = pad(rows[b : b + 64])
                parts.append(enc.pooled(enc.lower(ids, mask), mask))
            pooled.append(torch.cat(parts))
    proj = nn.Linear(enc.proj.in_features, enc.proj.out_features)
    proj.load_state_dict(enc.proj.state_dict())
    opt = torch.optim.AdamW(proj.parameters(), lr=lr, weight_decay=0.01)
    n = len(triplets)
    for _ in tqdm(range(epochs), desc="paraphrase projection", unit="epoch", mininterval=2.0):
        perm = torch.randperm(n)
        for b in range(0, n, batch_size):
            i = perm[b : b + batch_size]
            a, p, neg = (nn.functional.normalize(proj(x[i]), dim=-1) for x in pooled)
            # Each anchor picks its rewording among every rewording and follow-up of the batch.
            loss = nn.functional.cross_entropy(a @ torch.cat([p, neg]).T / temperature, torch.arange(len(i)))
            opt.zero_grad()
            loss.backward()
            opt.step()
    enc.proj.load_state_dict(proj.state_dict())


@torch.no_grad()
def predict(enc: EN.Encoder, token_ids: list[list[int]], word: torch.Tensor | None = None, batch_size: int = 64) -> dict[str, np.ndarray]:
    """Logits of the three heads and the embedding for every text, in input order."""
    enc.eval()
    order = sorted(range(len(token_ids)), key=lambda i: len(token_ids[i]))
    keys = ("intent", "sentiment", "upset", "embedding")
    out: dict[str, list] = {k: [None] * len(order) for k in keys}
    for b in range(0, len(order), batch_size):
        idx = order[b : b + batch_size]
        ids, mask = pad([token_ids[i] for i in idx])
        for k, v in zip(keys, enc(ids, mask, word)):
            for j, i in enumerate(idx):
                out[k][i] = v[j].numpy()
    return {k: np.stack(v) for k, v in out.items()}
