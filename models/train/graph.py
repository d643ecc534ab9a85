"""Write the encoder (and its heads) as an ONNX graph with `onnx.helper`: no torch, opset 13,
only ops tract runs. Batched: `input_ids` and `attention_mask` are int64 [batch, seq], both dynamic.
Padding is masked out of attention and out of the mean pooling, so a padded row gives the same
outputs as the row alone.

Shaped for tract, where matrix multiplication is ~80 % of the time at chat lengths (~15 tokens):
Q, K and V can be one wider MatMul (one activation packing instead of three) and the attention
scale 1/sqrt(d) can be folded into the Q weights and bias. `Options` turns each change on or off
so its effect is measured, not assumed (`bench_graph.py` prints times and a per-op profile)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto as TP
from onnx import helper as h
from onnx import numpy_helper as nh

from e5_import import E5Weights

# One MLP head: [(weight [in, out], bias [out]), ...], ReLU between layers, softmax at the end.
Head = list[tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class Options:
    int8: bool = True  # int8 weights through DequantizeLinear (tract folds them to f32 at load)
    fuse_qkv: bool = True  # one [H, 3H] MatMul for Q, K and V
    fold_scale: bool = True  # 1/sqrt(head_dim) folded into the Q projection


BASELINE = Options(fuse_qkv=False, fold_scale=False)  # the 1.0.0 graph


class _Builder:
    def __init__(self, int8: bool):
        self.int8 = int8
        self.inits: list[onnx.TensorProto] = []
        self.nodes: list[onnx.NodeProto] = []
        self.count = 0

    def const(self, name: str, arr: np.ndarray) -> str:
        self.inits.append(nh.from_array(np.ascontiguousarray(arr), name))
        return name

    def node(self, op: str, inputs: list[str], out: str | None = None, **attrs) -> str:
        if out is None:
            self.count += 1
            out = f"{op}_{self.count}"
        self.nodes.append(h.make_node(op, inputs, [out], **attrs))
        return out

    def weight(self, name: str, w_out_in: np.ndarray) -> str:
        wt = np.ascontiguousarray(w_out_in.T.astype(np.float32))  # MatMul wants [in, out]
        if not self.int8:
            return self.const(name, wt)
        # Symmetric int8, one scale per output channel: tract folds DequantizeLinear into the matmul.
        s = (np.abs(wt).max(0) / 127.0).astype(np.float32)
        s[s == 0] = 1e-8
        q = np.clip(np.round(wt / s), -127, 127).astype(np.int8)
        return self.dequantised(name, q, s)

    def dequantised(self, name: str, q: np.ndarray, s: np.ndarray) -> str:
        zero = np.zeros_like(s, dtype=np.int8)
        return self.node(
            "DequantizeLinear",
            [self.const(name + "_q", q), self.const(name + "_s", s), self.const(name + "_z", zero)],
            axis=1,
        )

    def int8_matmul(self, x: str, name: str, q: np.ndarray, s: np.ndarray, act: tuple[np.ndarray, float] | None) -> str:
        """x @ W for int8 weights `q` [in, out] with one scale per output channel `s`. Without `act`
        the weights are dequantised (tract folds them to f32 at load, the matmul runs in f32). With
        `act` = (inverse smoothing per input channel [in], one activation scale), the activations
        are quantised too (`int8_activations.py` chose both on training texts) and the matmul runs
        on int8 (MatMulInteger, tract's VNNI kernels): x / smooth is rounded to int8 at the one scale,
        and the int32 sums are scaled back per output channel by `s`, which is then the weight scale
        times the activation scale (stored as `<name>_os`, so stages slice it exactly)."""
        if act is None:
            return self.node("MatMul", [x, self.dequantised(name, q, s)])
        inv, xs = act
        # Per-tensor scale, smoothing as a Mul: tract's per-axis QuantizeLinear costs most of the gain.
        smoothed = self.node("Mul", [x, self.const(name + "_xinv", inv.astype(np.float32))])
        xq = self.node("QuantizeLinear", [smoothed, self.const(name + "_xs", np.array(xs, np.float32)), self.const(name + "_xz", np.array(0, np.int8))])
        acc = self.node("MatMulInteger", [xq, self.const(name + "_q", q)])
        return self.node("Mul", [self.node("Cast", [acc], to=TP.FLOAT), self.const(name + "_os", s.astype(np.float32))])

    def linear(self, x: str, w_out_in: np.ndarray, b: np.ndarray, name: str) -> str:
        mm = self.node("MatMul", [x, self.weight(name, w_out_in)])
        return self.node("Add", [mm, self.const(name + "_b", b.astype(np.float32))])

    def layernorm(self, x: str, w: np.ndarray, b: np.ndarray, eps: str, name: str) -> str:
        mu = self.node("ReduceMean", [x], axes=[-1], keepdims=1)
        d = self.node("Sub", [x, mu])
        var = self.node("ReduceMean", [self.node("Mul", [d, d])], axes=[-1], keepdims=1)
        y = self.node("Div", [d, self.node("Sqrt", [self.node("Add", [var, eps])])])
        y = self.node("Mul", [y, self.const(name + "_w", w.astype(np.float32))])
        return self.node("Add", [y, self.const(name + "_b", b.astype(np.float32))])


def quantize_rows(e: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = (np.abs(e).max(1) / 127.0).astype(np.float32)
    s[s == 0] = 1e-8
    return np.clip(np.round(e / s[:, None]), -127, 127).astype(np.int8), s


def build(
    w: E5Weights,
    depth: int,
    heads: dict[str, Head] | None = None,
    embed_proj: tuple[np.ndarray, np.ndarray] | None = None,
    pooled_layers: list[int] | None = None,
    opts: Options = Options(),
) -> onnx.ModelProto:
    """`heads` maps output name (e.g. "intent_probs") to an MLP over the mean-pooled last layer.
    `embedding` is that pooled state, through `embed_proj` ([in, out] weight and bias) when given,
    L2-normalised. `pooled_layers` adds an output `pooled_<n>` (normalised mean-pooled state)
    per entry: the training pipeline reads teacher embeddings from one pass."""
    B = _Builder(opts.int8)
    H, NH = w.hidden, w.heads
    HD = H // NH
    eps = B.const("eps", np.array(w.eps, np.float32))
    axis_last = B.const("axis_last", np.array([-1], np.int64))

    if opts.int8:
        q, s = quantize_rows(w.word)
        g = B.node("Cast", [B.node("Gather", [B.const("word_q", q), "input_ids"], axis=0)], to=TP.FLOAT)
        sc = B.node("Unsqueeze", [B.node("Gather", [B.const("word_s", s), "input_ids"], axis=0), axis_last])
        x = B.node("Mul", [g, sc])
    else:
        x = B.node("Gather", [B.const("word", w.word.astype(np.float32)), "input_ids"], axis=0)
    seq_len = B.node("Gather", [B.node("Shape", ["input_ids"]), B.const("one_i", np.array([1], np.int64))], axis=0)
    zero_i = B.const("zero_i", np.array([0], np.int64))
    pos = B.node("Slice", [B.const("pos_type", w.pos_type.astype(np.float32)), zero_i, seq_len, zero_i])
    x = B.layernorm(B.node("Add", [x, pos]), *w.emb_ln, eps, "eln")

    # mask [B, L] as float; attention bias [B, 1, 1, L]: 0 for tokens, -1e4 for padding (exp underflows to 0).
    maskf = B.node("Cast", ["attention_mask"], to=TP.FLOAT)
    one = B.const("one_f", np.array(1.0, np.float32))
    neg = B.const("neg_big", np.array(-10000.0, np.float32))
    bias = B.node("Mul", [B.node("Sub", [one, maskf]), neg])
    bias = B.node("Unsqueeze", [bias, B.const("axes_12", np.array([1, 2], np.int64))])
    mask3 = B.node("Unsqueeze", [maskf, axis_last])  # [B, L, 1]
    count = B.node("ReduceSum", [maskf, B.const("axis_1", np.array([1], np.int64))], keepdims=1)  # [B, 1]
    count = B.node("Max", [count, one])  # an all-padding row must not divide by zero
    ax1 = B.const("ax1", np.array([1], np.int64))
    tiny = B.const("tiny", np.array(1e-12, np.float32))

    def mean_pool(x: str) -> str:
        return B.node("Div", [B.node("ReduceSum", [B.node("Mul", [x, mask3]), ax1], keepdims=0), count])

    def l2(x: str, out: str | None) -> str:
        norm = B.node("ReduceSum", [B.node("Mul", [x, x]), axis_last], keepdims=1)
        return B.node("Div", [x, B.node("Sqrt", [B.node("Max", [norm, tiny])])], out)

    shp_heads = B.const("shp_heads", np.array([0, -1, NH, HD], np.int64))
    shp_back = B.const("shp_back", np.array([0, -1, H], np.int64))
    scale = 1 / np.sqrt(HD)
    scale_c = None if opts.fold_scale else B.const("scale", np.array(scale, np.float32))
    split3 = B.const("split3", np.array([H, H, H], np.int64))
    half = B.const("half", np.array(0.5, np.float32))
    rs2 = B.const("rs2", np.array(1 / np.sqrt(2), np.float32))
    outputs = []

    def heads_view(t: str, perm: list[int]) -> str:
        return B.node("Transpose", [B.node("Reshape", [t, shp_heads])], perm=perm)

    for n in range(depth):
        p = w.layer[n]
        qw, qb = (p["qw"] * scale, p["qb"] * scale) if opts.fold_scale else (p["qw"], p["qb"])
        if opts.fuse_qkv:
            qkv = B.linear(x, np.concatenate([qw, p["kw"], p["vw"]], 0), np.concatenate([qb, p["kb"], p["vb"]]), f"l{n}qkv")
            qn, kn, vn = f"l{n}_q", f"l{n}_k", f"l{n}_v"
            B.nodes.append(h.make_node("Split", [qkv, split3], [qn, kn, vn], axis=-1))
        else:
            qn, kn, vn = (B.linear(x, qw, qb, f"l{n}q"), B.linear(x, p["kw"], p["kb"], f"l{n}k"), B.linear(x, p["vw"], p["vb"], f"l{n}v"))
        q, k, v = heads_view(qn, [0, 2, 1, 3]), heads_view(kn, [0, 2, 3, 1]), heads_view(vn, [0, 2, 1, 3])
        scores = B.node("MatMul", [q, k])
        if not opts.fold_scale:
            scores = B.node("Mul", [scores, scale_c])
        a = B.node("Softmax", [B.node("Add", [scores, bias])], axis=-1)
        c = B.node("Reshape", [B.node("Transpose", [B.node("MatMul", [a, v])], perm=[0, 2, 1, 3]), shp_back])
        x = B.layernorm(B.node("Add", [x, B.linear(c, p["aow"], p["aob"], f"l{n}ao")]), p["alnw"], p["alnb"], eps, f"l{n}aln")
        f = B.linear(x, p["fiw"], p["fib"], f"l{n}fi")
        f = B.node("Mul", [B.node("Mul", [f, half]), B.node("Add", [one, B.node("Erf", [B.node("Mul", [f, rs2])])])])
        x = B.layernorm(B.node("Add", [x, B.linear(f, p["fow"], p["fob"], f"l{n}fo")]), p["olnw"], p["olnb"], eps, f"l{n}oln")
        if pooled_layers and n + 1 in pooled_layers:
            name = f"pooled_{n + 1}"
            l2(mean_pool(x), name)
            outputs.append(h.make_tensor_value_info(name, TP.FLOAT, ["batch", H]))

    if heads is not None:
        pooled = mean_pool(x)
        emb_in = pooled
        if embed_proj is not None:
            pw, pb = embed_proj
            emb_in = B.node("Add", [B.node("MatMul", [pooled, B.const("embed_w", pw.astype(np.float32))]), B.const("embed_b", pb.astype(np.float32))])
        l2(emb_in, "embedding")
        outputs.append(h.make_tensor_value_info("embedding", TP.FLOAT, ["batch", H]))
        for out_name, layers in heads.items():
            y = pooled
            for i, (wt, b) in enumerate(layers):
                y = B.node("MatMul", [y, B.const(f"{out_name}_w{i}", wt.astype(np.float32))])
                y = B.node("Add", [y, B.const(f"{out_name}_b{i}", b.astype(np.float32))])
                if i + 1 < len(layers):
                    y = B.node("Relu", [y])
            B.node("Softmax", [y], out_name, axis=-1)
            outputs.append(h.make_tensor_value_info(out_name, TP.FLOAT, ["batch", layers[-1][1].shape[0]]))

    inputs = [
        h.make_tensor_value_info("input_ids", TP.INT64, ["batch", "seq"]),
        h.make_tensor_value_info("attention_mask", TP.INT64, ["batch", "seq"]),
    ]
    graph = h.make_graph(B.nodes, "handoff_e5_small_zh_en", inputs, outputs, B.inits)
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 13)], producer_name="handoff-train")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model
