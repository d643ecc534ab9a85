"""Write the encoder (and its heads) as an ONNX graph with `onnx.helper`: no torch, opset 13,
only ops tract runs. Batched: `input_ids` and `attention_mask` are int64 [batch, seq], both dynamic.
Padding is masked out of attention and out of the mean pooling, so a padded row gives the same
outputs as the row alone."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto as TP
from onnx import helper as h
from onnx import numpy_helper as nh

from e5_import import E5Weights

# One MLP head: [(weight [in, out], bias [out]), ...], ReLU between layers, softmax at the end.
Head = list[tuple[np.ndarray, np.ndarray]]


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
        zero = np.zeros_like(s, dtype=np.int8)
        return self.node(
            "DequantizeLinear",
            [self.const(name + "_q", q), self.const(name + "_s", s), self.const(name + "_z", zero)],
            axis=1,
        )

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
    int8: bool = True,
    heads: dict[str, Head] | None = None,
    head_layers: list[int] | None = None,
    pooled_layers: list[int] | None = None,
) -> onnx.ModelProto:
    """`heads` maps output name (e.g. "intent_probs") to an MLP whose input is the concatenation of
    the normalised mean-pooled states after each layer in `head_layers` (the last layer's is the
    `embedding` output). `pooled_layers` adds an output `pooled_<n>` per entry: the training
    pipeline reads every candidate depth from one pass."""
    B = _Builder(int8)
    H, NH = w.hidden, w.heads
    HD = H // NH
    eps = B.const("eps", np.array(w.eps, np.float32))
    axis_last = B.const("axis_last", np.array([-1], np.int64))

    if int8:
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

    def pooled(x: str, out: str | None) -> str:
        s = B.node("ReduceSum", [B.node("Mul", [x, mask3]), B.const(f"ax1_{B.count}", np.array([1], np.int64))], keepdims=0)
        mean = B.node("Div", [s, count])
        norm = B.node("ReduceSum", [B.node("Mul", [mean, mean]), axis_last], keepdims=1)
        norm = B.node("Sqrt", [B.node("Max", [norm, B.const(f"tiny_{B.count}", np.array(1e-12, np.float32))])])
        return B.node("Div", [mean, norm], out)

    shp_heads = B.const("shp_heads", np.array([0, -1, NH, HD], np.int64))
    shp_back = B.const("shp_back", np.array([0, -1, H], np.int64))
    scale = B.const("scale", np.array(1 / np.sqrt(HD), np.float32))
    half = B.const("half", np.array(0.5, np.float32))
    rs2 = B.const("rs2", np.array(1 / np.sqrt(2), np.float32))
    outputs = []
    head_inputs: list[str] = []
    for n in range(depth):
        p = w.layer[n]
        q = B.node("Transpose", [B.node("Reshape", [B.linear(x, p["qw"], p["qb"], f"l{n}q"), shp_heads])], perm=[0, 2, 1, 3])
        k = B.node("Transpose", [B.node("Reshape", [B.linear(x, p["kw"], p["kb"], f"l{n}k"), shp_heads])], perm=[0, 2, 3, 1])
        v = B.node("Transpose", [B.node("Reshape", [B.linear(x, p["vw"], p["vb"], f"l{n}v"), shp_heads])], perm=[0, 2, 1, 3])
        scores = B.node("Add", [B.node("Mul", [B.node("MatMul", [q, k]), scale]), bias])
        a = B.node("Softmax", [scores], axis=-1)
        c = B.node("Reshape", [B.node("Transpose", [B.node("MatMul", [a, v])], perm=[0, 2, 1, 3]), shp_back])
        x = B.layernorm(B.node("Add", [x, B.linear(c, p["aow"], p["aob"], f"l{n}ao")]), p["alnw"], p["alnb"], eps, f"l{n}aln")
        f = B.linear(x, p["fiw"], p["fib"], f"l{n}fi")
        f = B.node("Mul", [B.node("Mul", [f, half]), B.node("Add", [one, B.node("Erf", [B.node("Mul", [f, rs2])])])])
        x = B.layernorm(B.node("Add", [x, B.linear(f, p["fow"], p["fob"], f"l{n}fo")]), p["olnw"], p["olnb"], eps, f"l{n}oln")
        if pooled_layers and n + 1 in pooled_layers:
            name = f"pooled_{n + 1}"
            pooled(x, name)
            outputs.append(h.make_tensor_value_info(name, TP.FLOAT, ["batch", H]))
        if heads is not None and n + 1 in (head_layers or []) and n + 1 < depth:
            head_inputs.append(pooled(x, None))

    if heads is not None:
        emb = pooled(x, "embedding")
        outputs.append(h.make_tensor_value_info("embedding", TP.FLOAT, ["batch", H]))
        head_in = B.node("Concat", head_inputs + [emb], axis=-1) if head_inputs else emb
        for out_name, layers in heads.items():
            y = head_in
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
