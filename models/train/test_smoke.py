"""The training code path, end to end in seconds: fine-tune a 2-layer slice for a few steps on a
handful of examples, export it, and check the exported graph runs in tract like in onnxruntime,
that the upset head comes out as calibrated probabilities (in model.onnx and in the tensor-parallel
stages), and that the written package has everything the service reads. Needs requirements-smoke.txt."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

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


@pytest.fixture(scope="module")
def smoke_package(tmp_path_factory):
    """One smoke run (about a minute) shared by the tests below."""
    tmp_path = tmp_path_factory.mktemp("smoke")
    out = tmp_path / "pkg"
    extra = tmp_path / "exported"
    write_exported_examples(extra)
    subprocess.run([sys.executable, os.path.join(HERE, "train.py"), "--smoke", "--out", str(out), "--extra", str(extra)], check=True, timeout=600)
    return out


def encoded_batch(out, manifest, texts):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(out / "tokenizer.json"))
    ids = [tok.encode(manifest["text_prefix"] + t).ids for t in texts]
    width = max(len(r) for r in ids)
    x = np.full((len(ids), width), manifest["pad_id"], np.int64)
    mask = np.zeros_like(x)
    for i, r in enumerate(ids):
        x[i, : len(r)], mask[i, : len(r)] = r, 1
    return x, mask


def test_smoke_fine_tune_exports_a_graph_tract_runs(smoke_package):
    out = smoke_package
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

    x, mask = encoded_batch(out, manifest, ["转人工", "my account was hacked!!"])
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    expected = ort.InferenceSession(str(out / "model.onnx"), so).run(None, {"input_ids": x, "attention_mask": mask})
    runnable = tract.onnx().load(str(out / "model.onnx")).into_model().into_runnable()
    got = [t.to_numpy() for t in runnable.run([x, mask])]
    assert len(got) == 4  # embedding, intent, sentiment, upset
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a, b, atol=1e-4)
    # The package carries its tensor-parallel stages (test_parallel.py checks their arithmetic).
    assert manifest["parallel"]["layers"] == 2
    for n in range(2):
        for part in ("attn", "ffn"):
            for k in range(2):
                assert (out / "tp2" / f"l{n}_{part}_{k}.onnx").is_file()
    assert (out / "tp2" / "head.onnx").is_file()


def test_smoke_package_has_upset_probs_summing_to_one(smoke_package):
    import onnxruntime as ort

    out = smoke_package
    manifest = tomllib.load(open(out / "manifest.toml", "rb"))
    assert manifest["onnx"]["upset"] == "upset_probs"
    assert manifest["labels"]["upset"] == ["calm", "annoyed", "upset"]
    for lang in ("zh", "en"):
        for key in ("upset_accuracy", "upset_auc", "upset_ece", "upset_real_style_accuracy", "upset_real_style_auc", "upset_real_style_ece",
                    "upset_sarcasm_accuracy", "upset_hedged_accuracy", "hard_negative_request_human_rate"):
            assert 0.0 <= manifest["metrics"][f"{key}_{lang}"] <= 1.0, (key, lang)
    card = (out / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert "### Upset grade" in card and "real-style, `sarcasm` lines only" in card and "real-style, `hedged` lines only" in card
    texts = ["你好，请问这款有没有黑色的？", "thanks for the five-hour delay 🙃", "有点慢啊", "billed twice and NOBODY fixed it!!"]
    x, mask = encoded_batch(out, manifest, texts)
    sess = ort.InferenceSession(str(out / "model.onnx"))
    (upset,) = sess.run([manifest["onnx"]["upset"]], {"input_ids": x, "attention_mask": mask})
    assert upset.shape == (len(texts), 3)
    assert (upset >= 0).all()
    np.testing.assert_allclose(upset.sum(1), 1.0, atol=1e-5)


def test_smoke_tensor_parallel_stages_carry_the_upset_head(smoke_package):
    import onnx

    from test_parallel import _session, run_stages

    out = smoke_package
    manifest = tomllib.load(open(out / "manifest.toml", "rb"))
    x, mask = encoded_batch(out, manifest, ["转人工", "this is the THIRD time I ask, I'm done 😡", "hi"])
    whole = _session(str(out / "model.onnx"))  # exact semantics, as the stages and tract
    want = dict(zip([o.name for o in whole.get_outputs()], whole.run(None, {"input_ids": x, "attention_mask": mask})))
    model = onnx.load(str(out / "model.onnx"))
    got = run_stages(model, str(out / manifest["parallel"]["dir"]), manifest["parallel"]["layers"], x, mask)
    # The server reads head.onnx by position: the three it knows first, the upset head after them.
    assert list(got) == ["intent_probs", "sentiment_probs", "embedding", "upset_probs"]
    for name, value in got.items():
        np.testing.assert_allclose(value, want[name], atol=2e-5, err_msg=name)
