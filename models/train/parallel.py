"""Cut a package's encoder into two-way tensor-parallel stages, so one message can use both cores.

tract runs one graph on one thread, and at chat lengths the weight matmuls are ~80 % of a call: an
idle server answers a single call in the time of one core while onnxruntime spreads it over two.
Every layer splits cleanly in two (Megatron style): half the attention heads (their Q, K and V
columns and their rows of the output projection) and half the feed-forward width (its columns of
the first matmul and rows of the second). Each half ends in a partial sum [batch, seq, hidden]
(half 1's carries the output bias). Both threads then form the next stage's input, x + partial_0 +
partial_1 (the residual stream before the layer norm), in plain code: in tract an Add of two
runtime tensors costs ~20 µs at chat lengths, a loop over 6k floats ~2. The stage applies the layer
norm (cheap, so both threads do it instead of exchanging once more), returns the normalised x for
the next sum, and runs its own half. Two exchanges per layer, no weight read twice.

Stages, in `<package>/tp2/` (int8 weights sliced from model.onnx exactly, scales kept):
  l0_attn_K.onnx   (x, bias) -> partial                      x: the embedded tokens
  lN_attn_K.onnx   (state, bias) -> (x, partial)             N > 0; state = x + partial_0 + partial_1
  lN_ffn_K.onnx    (state) -> (x, partial)
  head.onnx        (state, attention_mask) -> intent_probs, sentiment_probs, embedding[, upset_probs]
The embedding stage is not copied (its table is most of model.onnx): the server cuts it out of
model.onnx by output name, given in the manifest's [parallel] section with the file names.

    python models/train/parallel.py models/handoff-zh-en/2.2.0   # writes tp2/, prints [parallel]
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto as TP
from onnx import helper as h
from onnx import numpy_helper as nh

from graph import _Builder

DIR = "tp2"
HALVES = 2
HEADS = ("intent_probs", "sentiment_probs")
# The server reads head.onnx's outputs by position (intent, sentiment, embedding): heads added since
# come after the embedding, so a server that reads three still gets the right three.
LATE_HEADS = ("upset_probs",)


def _inits(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {i.name: nh.to_array(i) for i in model.graph.initializer}


def _producer_of(model: onnx.ModelProto, op: str, uses: str) -> str:
    """Output name of the one `op` node that reads initializer `uses`."""
    found = [n.output[0] for n in model.graph.node if n.op_type == op and uses in n.input]
    if len(found) != 1:
        raise ValueError(f"expected one {op} reading {uses}, found {len(found)}: not a graph.py encoder")
    return found[0]


def embed_outputs(model: onnx.ModelProto) -> tuple[str, str]:
    """Names in model.onnx of the embedded tokens [B, L, H] (after the embedding layer norm) and the
    attention bias [B, 1, 1, L]: the server runs model.onnx up to these as the first stage."""
    return _producer_of(model, "Add", "eln_b"), _producer_of(model, "Unsqueeze", "axes_12")


def _layers(w: dict[str, np.ndarray]) -> int:
    n = 0
    while f"l{n}qkv_q" in w:
        n += 1
    if n == 0:
        raise ValueError("no fused QKV layers (l0qkv_q): re-export with graph.Options(fuse_qkv=True)")
    return n


class _Stage(_Builder):
    def __init__(self, hidden: int, eps: float):
        super().__init__(int8=True)
        self.hidden = hidden
        self.inputs: list[onnx.ValueInfoProto] = []
        self.eps = self.const("eps", np.array(eps, np.float32))

    def input(self, name: str, dtype=TP.FLOAT, shape=None) -> str:
        self.inputs.append(h.make_tensor_value_info(name, dtype, shape or ["batch", "seq", self.hidden]))
        return name

    def matmul(self, x: str, w: dict, layer: int, name: str, cols=slice(None), rows=slice(None)) -> str:
        """x @ this half's slice of weight `l{layer}{name}`: its output columns (Q/K/V, first
        feed-forward matmul) or its input rows (output projections); int8 activations when the
        package has them, sliced with the rows (the scale is one per tensor, so halves sum exactly)."""
        key = f"l{layer}{name}"
        if key + "_xinv" in w:
            return self.int8_matmul(x, name, w[key + "_q"][rows][:, cols], w[key + "_os"][cols], (w[key + "_xinv"][rows], float(w[key + "_xs"])))
        return self.int8_matmul(x, name, w[key + "_q"][rows][:, cols], w[key + "_s"][cols], None)

    def combine(self, ln: str, w) -> str:
        """x = LN(state): the previous stage's output, also an output of this one."""
        return self.layernorm(self.input("state"), w[ln + "_w"], w[ln + "_b"], self.eps, ln)

    def close(self, mm: str, k: int, bias: np.ndarray) -> None:
        """This half's share of the sum; half 1 carries the bias."""
        if k == 0:
            self.node("Identity", [mm], "partial")
        else:
            self.node("Add", [mm, self.const("out_b", bias)], "partial")

    def finish(self, outputs: list[tuple[str, list]], name: str) -> onnx.ModelProto:
        outs = [h.make_tensor_value_info(o, TP.FLOAT, shape) for o, shape in outputs]
        graph = h.make_graph(self.nodes, name, self.inputs, outs, self.inits)
        model = h.make_model(graph, opset_imports=[h.make_opsetid("", 13)], producer_name="handoff-train")
        model.ir_version = 8
        onnx.checker.check_model(model)
        return model


def _previous_norm(n: int, part: str) -> str:
    """The layer norm that closes the stage before (layer n, `attn` or `ffn`)."""
    return f"l{n - 1}oln" if part == "attn" else f"l{n}aln"


def _outputs(S: _Stage, x: str, with_x: bool) -> list[tuple[str, list]]:
    shape = ["batch", "seq", S.hidden]
    if not with_x:
        return [("partial", shape)]
    S.node("Identity", [x], "x")
    return [("x", shape), ("partial", shape)]


def attention_half(w, n: int, k: int, heads: int, eps: float) -> onnx.ModelProto:
    H = w[f"l{n}qkv_q"].shape[0]
    hd, half = H // heads, H // HALVES
    S = _Stage(H, eps)
    if n == 0:
        x = S.input("x")
    else:
        x = S.combine(_previous_norm(n, "attn"), w)
    bias = S.input("bias", shape=["batch", 1, 1, "seq"])
    cols = np.concatenate([np.arange(j * H + k * half, j * H + (k + 1) * half) for j in range(3)])
    qkv = S.matmul(x, w, n, "qkv", cols=cols)
    qkv = S.node("Add", [qkv, S.const("qkv_b", w[f"l{n}qkv_b"][cols])])
    q, kk, v = "q", "k", "v"
    S.nodes.append(h.make_node("Split", [qkv, S.const("split3", np.array([half] * 3, np.int64))], [q, kk, v], axis=-1))
    shp = S.const("shp_heads", np.array([0, -1, heads // HALVES, hd], np.int64))

    def view(t, perm):
        return S.node("Transpose", [S.node("Reshape", [t, shp])], perm=perm)

    scores = S.node("MatMul", [view(q, [0, 2, 1, 3]), view(kk, [0, 2, 3, 1])])
    a = S.node("Softmax", [S.node("Add", [scores, bias])], axis=-1)
    c = S.node("Transpose", [S.node("MatMul", [a, view(v, [0, 2, 1, 3])])], perm=[0, 2, 1, 3])
    c = S.node("Reshape", [c, S.const("shp_back", np.array([0, -1, half], np.int64))])
    rows = slice(k * half, (k + 1) * half)
    S.close(S.matmul(c, w, n, "ao", rows=rows), k, w[f"l{n}ao_b"])
    return S.finish(_outputs(S, x, n > 0), f"l{n}_attn_{k}")


def ffn_half(w, n: int, k: int, eps: float) -> onnx.ModelProto:
    H = w[f"l{n}qkv_q"].shape[0]
    inner = w[f"l{n}fi_q"].shape[1]
    half = inner // HALVES
    S = _Stage(H, eps)
    x = S.combine(_previous_norm(n, "ffn"), w)
    cols = slice(k * half, (k + 1) * half)
    f = S.matmul(x, w, n, "fi", cols=cols)
    f = S.node("Add", [f, S.const("fi_b", w[f"l{n}fi_b"][cols])])
    one = S.const("one_f", np.array(1.0, np.float32))
    f = S.node("Mul", [S.node("Mul", [f, S.const("half", np.array(0.5, np.float32))]), S.node("Add", [one, S.node("Erf", [S.node("Mul", [f, S.const("rs2", np.array(1 / np.sqrt(2), np.float32))])])])])
    S.close(S.matmul(f, w, n, "fo", rows=cols), k, w[f"l{n}fo_b"])
    return S.finish(_outputs(S, x, True), f"l{n}_ffn_{k}")


def head(w, layers: int, eps: float, head_names: list[str], late_names: tuple[str, ...] = ()) -> onnx.ModelProto:
    H = w["l0qkv_q"].shape[0]
    S = _Stage(H, eps)
    x = S.combine(f"l{layers - 1}oln", w)
    maskf = S.node("Cast", [S.input("attention_mask", TP.INT64, ["batch", "seq"])], to=TP.FLOAT)
    mask3 = S.node("Unsqueeze", [maskf, S.const("axis_last", np.array([-1], np.int64))])
    one = S.const("one_f", np.array(1.0, np.float32))
    count = S.node("Max", [S.node("ReduceSum", [maskf, S.const("axis_1", np.array([1], np.int64))], keepdims=1), one])
    pooled = S.node("Div", [S.node("ReduceSum", [S.node("Mul", [x, mask3]), S.const("ax1", np.array([1], np.int64))], keepdims=0), count])
    emb = pooled
    if "embed_w" in w:
        emb = S.node("Add", [S.node("MatMul", [pooled, S.const("embed_w", w["embed_w"])]), S.const("embed_b", w["embed_b"])])
    norm = S.node("ReduceSum", [S.node("Mul", [emb, emb]), S.const("axis_l", np.array([-1], np.int64))], keepdims=1)
    S.node("Div", [emb, S.node("Sqrt", [S.node("Max", [norm, S.const("tiny", np.array(1e-12, np.float32))])])], "embedding")
    outputs = []
    for name in [*head_names, *late_names]:
        y, i = pooled, 0
        while f"{name}_w{i}" in w:
            y = S.node("Add", [S.node("MatMul", [y, S.const(f"{name}_w{i}", w[f"{name}_w{i}"])]), S.const(f"{name}_b{i}", w[f"{name}_b{i}"])])
            i += 1
            if f"{name}_w{i}" in w:
                y = S.node("Relu", [y])
        S.node("Softmax", [y], name, axis=-1)
        outputs.append((name, ["batch", w[f"{name}_b{i - 1}"].shape[0]]))
    outputs.insert(len(head_names), ("embedding", ["batch", emb_dim(w, H)]))
    return S.finish(outputs, "head")


def emb_dim(w, hidden: int) -> int:
    return w["embed_b"].shape[0] if "embed_b" in w else hidden


def write_stages(model: onnx.ModelProto, out: str) -> list[str]:
    """Write the stages of `model` (a graph.py encoder with fused QKV and the attention scale
    folded into Q) to `out/tp2/`; returns the manifest lines of its [parallel] section."""
    w = _inits(model)
    layers = _layers(w)
    if "scale" in w:
        raise ValueError("the attention scale is not folded into Q: re-export with graph.Options(fold_scale=True)")
    heads = int(w["shp_heads"][2])  # [0, -1, heads, head_dim]
    eps = float(w["eps"].reshape(-1)[0])
    os.makedirs(os.path.join(out, DIR), exist_ok=True)
    files = []

    def save(m: onnx.ModelProto, name: str):
        onnx.save(m, os.path.join(out, DIR, name))
        files.append(f"{DIR}/{name}")

    for n in range(layers):
        for k in range(HALVES):
            save(attention_half(w, n, k, heads, eps), f"l{n}_attn_{k}.onnx")
        for k in range(HALVES):
            save(ffn_half(w, n, k, eps), f"l{n}_ffn_{k}.onnx")
    save(head(w, layers, eps, list(HEADS), tuple(n for n in LATE_HEADS if f"{n}_w0" in w)), "head.onnx")
    tokens, bias = embed_outputs(model)
    return [
        "",
        "# Two-way tensor-parallel stages (models/train/parallel.py): an idle server runs one message",
        "# on two threads, each with half of every layer; batches use model.onnx.",
        "[parallel]",
        f'embed_outputs = ["{tokens}", "{bias}"]',
        f"layers = {layers}",
        f'dir = "{DIR}"',
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("package")
    args = ap.parse_args()
    model = onnx.load(os.path.join(args.package, "model.onnx"))
    lines = write_stages(model, args.package)
    manifest = os.path.join(args.package, "manifest.toml")
    text = open(manifest, encoding="utf-8").read()
    if "[parallel]" in text:
        sys.exit(f"{manifest} already has a [parallel] section")
    head_end = text.index("\n[labels]")
    with open(manifest, "w", encoding="utf-8") as f:
        f.write(text[:head_end] + "\n".join(lines) + "\n" + text[head_end:])
    print("\n".join(lines))


if __name__ == "__main__":
    main()
