"""The e5 encoder in PyTorch, for fine-tuning: the same computation as `graph.py` writes for tract
(post-norm BERT layers, exact GELU, -1e4 attention bias on padding, masked mean pooling), so the
weights it learns export unchanged. Word and position embeddings stay frozen: they are most of the
parameters, the pruned and full vocabularies share them (see `tokenizer_fidelity`), and freezing
them keeps a fine-tune of a few thousand examples from drifting rare pieces."""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
from torch import nn

from e5_import import E5Weights


def _t(a: np.ndarray) -> torch.Tensor:
    # A copy: torch.from_numpy would share memory with the imported weights, and fine-tuning one
    # depth would then change the starting point of the next.
    return torch.tensor(np.array(a, dtype=np.float32))


class Layer(nn.Module):
    def __init__(self, p: dict[str, np.ndarray], heads: int, eps: float):
        super().__init__()
        self.heads, self.eps = heads, eps
        self.lin = nn.ModuleDict()
        for k in ("q", "k", "v", "ao", "fi", "fo"):
            w = p[k + "w"]
            lin = nn.Linear(w.shape[1], w.shape[0])
            lin.weight.data, lin.bias.data = _t(w), _t(p[k + "b"])
            self.lin[k] = lin
        self.aln = nn.LayerNorm(p["alnw"].shape[0], eps=eps)
        self.oln = nn.LayerNorm(p["olnw"].shape[0], eps=eps)
        self.aln.weight.data, self.aln.bias.data = _t(p["alnw"]), _t(p["alnb"])
        self.oln.weight.data, self.oln.bias.data = _t(p["olnw"]), _t(p["olnb"])

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        b, n, h = x.shape
        hd = h // self.heads

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, n, self.heads, hd).transpose(1, 2)

        q, k, v = split(self.lin["q"](x)), split(self.lin["k"](x)), split(self.lin["v"](x))
        a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd) + bias, dim=-1)
        c = (a @ v).transpose(1, 2).reshape(b, n, h)
        x = self.aln(x + self.lin["ao"](c))
        f = nn.functional.gelu(self.lin["fi"](x))
        return self.oln(x + self.lin["fo"](f))

    def export(self) -> dict[str, np.ndarray]:
        out = {}
        for k, lin in self.lin.items():
            out[k + "w"] = lin.weight.detach().numpy().copy()
            out[k + "b"] = lin.bias.detach().numpy().copy()
        for k, ln in (("aln", self.aln), ("oln", self.oln)):
            out[k + "w"] = ln.weight.detach().numpy().copy()
            out[k + "b"] = ln.bias.detach().numpy().copy()
        return out


class OrdinalHead(nn.Module):
    """The upset grade (calm < annoyed < upset) as an adjacent-category logit model: one learned
    "how upset" score s(x) and one cut per step, log P(grade k+1) / P(grade k) = s(x) - cut_k.

    Why not three free softmax logits: one direction in the pooled space instead of three suits
    ~300 training lines a grade per language, and it keeps the grades ordered (for every message a
    higher score moves probability from calm towards upset, in grade order), so annoyed is learned
    as "between", not as a third topic.
    Why not cumulative sigmoids (P(>calm), P(>annoyed)): the logits here, k * s(x) - (cut_0 + ...
    + cut_{k-1}), are linear in the pooled vector, so the exported head is an ordinary Linear +
    Softmax over the 3 grades, which graph.py, parallel.py, the temperature fit and the server
    already handle; cumulative sigmoids need Sigmoid and Sub in the graph, a clamp where the two
    cross, and a calibration of their own."""

    def __init__(self, hidden: int, grades: int):
        super().__init__()
        self.score = nn.Linear(hidden, 1, bias=False)  # the cuts carry every offset
        self.cut = nn.Parameter(torch.zeros(grades - 1))  # zero: every grade equally likely at the start
        self.register_buffer("steps", torch.arange(grades, dtype=torch.float32))

    def _offsets(self) -> torch.Tensor:
        return torch.cat([self.cut.new_zeros(1), -torch.cumsum(self.cut, 0)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.score(x) * self.steps + self._offsets()

    def as_linear(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(weight [grades, hidden], bias [grades]) of the same logits as one Linear layer."""
        return self.steps[:, None] * self.score.weight, self._offsets()


class Encoder(nn.Module):
    """The first `depth` layers of e5, three heads (intent, sentiment, the ordinal upset grade) over
    the mean-pooled last layer, and an embedding projection (initialised to identity) trained to
    stay close to the full 12-layer e5 embedding, so paraphrase detection keeps working while the
    heads learn the intents.
    Only the top `trainable` layers learn: the layers below are frozen, so their output can be
    computed once per example (`lower`) instead of every epoch, which makes every depth cost
    about the same to fine-tune on a 2-core CPU."""

    def __init__(self, w: E5Weights, depth: int, n_intents: int, n_sentiments: int, n_grades: int = 3, trainable: int = 3, dropout: float = 0.1):
        super().__init__()
        self.register_buffer("word", _t(w.word))
        self.register_buffer("pos", _t(w.pos_type))
        self.eln = nn.LayerNorm(w.hidden, eps=w.eps)
        self.eln.weight.data, self.eln.bias.data = _t(w.emb_ln[0]), _t(w.emb_ln[1])
        n_frozen = max(0, depth - trainable)
        self.frozen = nn.ModuleList(Layer(w.layer[i], w.heads, w.eps) for i in range(n_frozen))
        self.layers = nn.ModuleList(Layer(w.layer[i], w.heads, w.eps) for i in range(n_frozen, depth))
        if n_frozen:
            for p in [*self.eln.parameters(), *self.frozen.parameters()]:
                p.requires_grad_(False)
        self.drop = nn.Dropout(dropout)
        self.intent = nn.Linear(w.hidden, n_intents)
        self.sentiment = nn.Linear(w.hidden, n_sentiments)
        self.upset = OrdinalHead(w.hidden, n_grades)
        self.proj = nn.Linear(w.hidden, w.hidden)
        self.proj.weight.data = torch.eye(w.hidden)
        self.proj.bias.data.zero_()
        self.base = w

    @property
    def depth(self) -> int:
        return len(self.frozen) + len(self.layers)

    @staticmethod
    def _bias(mask: torch.Tensor) -> torch.Tensor:
        return ((1.0 - mask.float()) * -10000.0)[:, None, None, :]

    def lower(self, ids: torch.Tensor, mask: torch.Tensor, word: torch.Tensor | None = None) -> torch.Tensor:
        """Hidden states after the embeddings and the frozen layers: [batch, seq, hidden]."""
        table = self.word if word is None else word
        x = self.eln(table[ids] + self.pos[: ids.shape[1]])
        bias = self._bias(mask)
        for layer in self.frozen:
            x = layer(x, bias)
        return x

    def pooled(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        maskf = mask.float()
        bias = self._bias(mask)
        for layer in self.layers:
            x = self.drop(layer(x, bias)) if self.training else layer(x, bias)
        return (x * maskf[..., None]).sum(1) / maskf.sum(1, keepdim=True).clamp(min=1.0)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor, word: torch.Tensor | None = None, lower: torch.Tensor | None = None):
        if lower is None:
            with torch.set_grad_enabled(self.training and not len(self.frozen)):
                lower = self.lower(ids, mask, word)
        p = self.pooled(lower, mask)
        d = self.drop(p)
        emb = nn.functional.normalize(self.proj(p), dim=-1)
        return self.intent(d), self.sentiment(d), self.upset(d), emb

    def export(self, intent_temp: float = 1.0, sentiment_temp: float = 1.0, upset_temp: float = 1.0):
        """(weights for graph.build, heads with the temperatures folded in, embedding projection)."""
        w = copy.copy(self.base)
        w.emb_ln = (self.eln.weight.detach().numpy().copy(), self.eln.bias.detach().numpy().copy())
        w.layer = [layer.export() for layer in [*self.frozen, *self.layers]]

        def head(weight: torch.Tensor, bias: torch.Tensor, t: float):
            return [(weight.detach().numpy().T / t, bias.detach().numpy() / t)]

        heads = {
            "intent_probs": head(self.intent.weight, self.intent.bias, intent_temp),
            "sentiment_probs": head(self.sentiment.weight, self.sentiment.bias, sentiment_temp),
            "upset_probs": head(*self.upset.as_linear(), upset_temp),  # last: graph outputs keep their order
        }
        proj = (self.proj.weight.detach().numpy().T.copy(), self.proj.bias.detach().numpy().copy())
        return w, heads, proj
