"""The training code path, end to end in seconds: fine-tune a 2-layer slice for a few steps on a
handful of examples, export it, and check the exported graph runs in tract like in onnxruntime
and that the written package has everything the service reads. Needs requirements-smoke.txt."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))

pytest.importorskip("torch", reason="pip install -r models/train/requirements-smoke.txt")


def write_exported_examples(root) -> None:
    """A directory in the layout `handoff export-examples` writes (tests/export.rs checks that side)."""
    texts = {
        ("en", "order_status"): [f"where is parcel number {i}, it said two days" for i in range(8)],
        ("zh", "refund_return"): [f"第{i}件衣服想退货，怎么申请退款" for i in range(8)],
    }
    for (lang, label), lines in texts.items():
        folder = root / "intents" / lang
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{label}.txt").write_text("# exported by handoff export-examples\n" + "\n".join(lines) + "\n", encoding="utf-8")


def test_smoke_fine_tune_exports_a_graph_tract_runs(tmp_path):
    out = tmp_path / "pkg"
    extra = tmp_path / "exported"
    write_exported_examples(extra)
    subprocess.run([sys.executable, os.path.join(HERE, "train.py"), "--smoke", "--out", str(out), "--extra", str(extra)], check=True, timeout=600)
    # Real-traffic examples are reported apart, on their own held-out split.
    card = (out / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert "en, real traffic (export-examples)" in card and "zh, real traffic (export-examples)" in card, card
    for f in ("model.onnx", "tokenizer.json", "manifest.toml", "MODEL_CARD.md", "metrics.json"):
        assert (out / f).is_file(), f
    manifest = tomllib.load(open(out / "manifest.toml", "rb"))
    assert manifest["metrics"]["encoder_layers"] == 2
    assert "security_incident" in manifest["labels"]["intent"]

    import onnxruntime as ort
    import tract
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(out / "tokenizer.json"))
    ids = [tok.encode(manifest["text_prefix"] + t).ids for t in ("转人工", "my account was hacked!!")]
    width = max(len(r) for r in ids)
    x = np.full((len(ids), width), manifest["pad_id"], np.int64)
    mask = np.zeros_like(x)
    for i, r in enumerate(ids):
        x[i, : len(r)], mask[i, : len(r)] = r, 1
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    expected = ort.InferenceSession(str(out / "model.onnx"), so).run(None, {"input_ids": x, "attention_mask": mask})
    runnable = tract.onnx().load(str(out / "model.onnx")).into_model().into_runnable()
    got = [t.to_numpy() for t in runnable.run([x, mask])]
    assert len(got) == 3
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a, b, atol=1e-4)
    # The package carries its tensor-parallel stages (test_parallel.py checks their arithmetic).
    assert manifest["parallel"]["layers"] == 2
    for n in range(2):
        for part in ("attn", "ffn"):
            for k in range(2):
                assert (out / "tp2" / f"l{n}_{part}_{k}.onnx").is_file()
    assert (out / "tp2" / "head.onnx").is_file()
