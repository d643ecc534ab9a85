"""The tensor-parallel stages (parallel.py) compute what model.onnx computes: run stage by stage in
onnxruntime, both halves and their sums, they give the whole graph's outputs; and the stages shipped
in the package are the ones parallel.py writes today from its model.onnx."""

from __future__ import annotations

import filecmp
import os
import sys
import tomllib

import numpy as np
import onnx
import onnxruntime as ort
from tokenizers import Tokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import parallel  # noqa: E402

PACKAGE = os.path.join(HERE, "..", "handoff-zh-en", "2.2.0")
TEXTS = ["转人工", "I want a real person, this bot is useless 😡", "我的订单三天了还没发货，到底怎么回事？？", "hi", "发票开错了 thanks"]


def _session(model: onnx.ModelProto | str) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    data = model if isinstance(model, str) else model.SerializeToString()
    return ort.InferenceSession(data, so)


def _batch(manifest) -> tuple[np.ndarray, np.ndarray]:
    tok = Tokenizer.from_file(os.path.join(PACKAGE, manifest["files"]["tokenizer"]))
    rows = [tok.encode(manifest["text_prefix"] + t).ids for t in TEXTS]
    width = max(map(len, rows))
    ids = np.full((len(rows), width), manifest["pad_id"], np.int64)
    mask = np.zeros_like(ids)
    for r, row in enumerate(rows):
        ids[r, : len(row)], mask[r, : len(row)] = row, 1
    return ids, mask


def run_stages(model: onnx.ModelProto, stages: str, layers: int, ids: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
    """The outputs of head.onnx, running every stage in `stages` (a tp2 directory) as the server
    does: both halves of each layer, their partial sums added in between."""
    tokens, bias_name = parallel.embed_outputs(model)
    embed = onnx.utils.Extractor(onnx.shape_inference.infer_shapes(model)).extract_model(["input_ids", "attention_mask"], [tokens, bias_name])
    x, bias = _session(embed).run(None, {"input_ids": ids, "attention_mask": mask})
    stage = lambda name, feeds: _session(os.path.join(stages, name)).run(None, feeds)  # noqa: E731
    parts = [stage(f"l0_attn_{k}.onnx", {"x": x, "bias": bias})[0] for k in range(2)]
    for n in range(layers):
        for part in ["attn", "ffn"] if n else ["ffn"]:
            feeds = {"state": x + (parts[0] + parts[1])}  # as the server sums them
            if part == "attn":
                feeds["bias"] = bias
            outs = [stage(f"l{n}_{part}_{k}.onnx", feeds) for k in range(2)]
            np.testing.assert_array_equal(outs[0][0], outs[1][0])  # both halves hold the same x
            x, parts = outs[0][0], [o[1] for o in outs]
    head = _session(os.path.join(stages, "head.onnx"))
    got = head.run(None, {"state": x + (parts[0] + parts[1]), "attention_mask": mask})
    return dict(zip([o.name for o in head.get_outputs()], got))


def test_stages_run_in_halves_give_the_whole_graphs_outputs(tmp_path):
    manifest = tomllib.load(open(os.path.join(PACKAGE, "manifest.toml"), "rb"))
    model = onnx.load(os.path.join(PACKAGE, "model.onnx"))
    parallel.write_stages(model, str(tmp_path))
    ids, mask = _batch(manifest)
    whole = _session(os.path.join(PACKAGE, "model.onnx"))
    want = dict(zip([o.name for o in whole.get_outputs()], whole.run(None, {"input_ids": ids, "attention_mask": mask})))
    got = run_stages(model, str(tmp_path / "tp2"), manifest["metrics"]["encoder_layers"], ids, mask)
    # The server reads head.onnx by position: intent, sentiment, embedding first.
    assert list(got)[:3] == ["intent_probs", "sentiment_probs", "embedding"]
    for name in ["intent_probs", "sentiment_probs", "embedding"]:
        np.testing.assert_allclose(got[name], want[name], atol=2e-5, err_msg=name)


def test_the_shipped_stages_are_the_ones_parallel_py_writes(tmp_path):
    manifest = tomllib.load(open(os.path.join(PACKAGE, "manifest.toml"), "rb"))
    lines = parallel.write_stages(onnx.load(os.path.join(PACKAGE, "model.onnx")), str(tmp_path))
    shipped = os.path.join(PACKAGE, manifest["parallel"]["dir"])
    names = sorted(os.listdir(tmp_path / "tp2"))
    assert sorted(os.listdir(shipped)) == names
    _, mismatch, errors = filecmp.cmpfiles(shipped, tmp_path / "tp2", names, shallow=False)
    assert not mismatch and not errors
    section = tomllib.loads("\n".join(lines))["parallel"]
    assert section == manifest["parallel"]


def test_int8_activation_stages_give_the_whole_graphs_outputs(tmp_path):
    """A package written by int8_activations.py splits the same way: each half quantises its slice of
    the same input at the same scale, so the halves' int32 sums add up to the whole graph's."""
    import int8_activations as Q

    manifest = tomllib.load(open(os.path.join(PACKAGE, "manifest.toml"), "rb"))
    model = onnx.load(os.path.join(PACKAGE, "model.onnx"))
    ids, mask = _batch(manifest)
    mms = {k: mm for k, mm in Q.linears(model).items() if k.endswith(Q.QUANTISED)}
    acts = Q.activations(model, mms, [row[: int(m.sum())].tolist() for row, m in zip(ids, mask)])
    quantised = Q.quantised(model, mms, acts, 0.85, 99.995)
    assert sum(n.op_type == "MatMulInteger" for n in quantised.graph.node) == len(mms) == 18
    parallel.write_stages(quantised, str(tmp_path))
    assert any(n.op_type == "MatMulInteger" for n in onnx.load(str(tmp_path / "tp2" / "l0_attn_1.onnx")).graph.node)
    whole = _session(quantised)
    want = dict(zip([o.name for o in whole.get_outputs()], whole.run(None, {"input_ids": ids, "attention_mask": mask})))
    got = run_stages(quantised, str(tmp_path / "tp2"), manifest["metrics"]["encoder_layers"], ids, mask)
    for name in ["intent_probs", "sentiment_probs", "embedding"]:
        np.testing.assert_allclose(got[name], want[name], atol=2e-5, err_msg=name)
    f32 = _session(model)
    f32 = dict(zip([o.name for o in f32.get_outputs()], f32.run(None, {"input_ids": ids, "attention_mask": mask})))
    assert (want["intent_probs"].argmax(1) == f32["intent_probs"].argmax(1)).all()
