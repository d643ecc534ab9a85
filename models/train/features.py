"""Tokenise and run the encoder (onnxruntime, only to train quickly; the service runs tract)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from tokenizers import Tokenizer

PAD_ID = 1


def encode(tok: Tokenizer, texts: list[str], prefix: str, max_tokens: int) -> list[list[int]]:
    out = []
    for enc in tok.encode_batch([prefix + t for t in texts]):
        ids = enc.ids
        if len(ids) > max_tokens:  # keep </s> last, as the service does
            ids = ids[: max_tokens - 1] + [ids[-1]]
        out.append(ids)
    return out


def pad(batch: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    width = max(len(x) for x in batch)
    ids = np.full((len(batch), width), PAD_ID, dtype=np.int64)
    mask = np.zeros((len(batch), width), dtype=np.int64)
    for i, x in enumerate(batch):
        ids[i, : len(x)] = x
        mask[i, : len(x)] = 1
    return ids, mask


def session(model: onnx.ModelProto, threads: int = 2) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    # ENABLE_ALL fuses DequantizeLinear+MatMul into kernels that quantise activations too (2e-3 off);
    # BASIC keeps the graph's exact semantics, which is what tract computes (1e-7 apart).
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def run(sess: ort.InferenceSession, token_ids: list[list[int]], batch_tokens: int = 4096, progress: str | None = None) -> dict[str, np.ndarray]:
    """All outputs for all texts, in input order. Texts are batched by length to limit padding."""
    from tqdm import tqdm

    bar = tqdm(total=len(token_ids), desc=progress, unit="text", disable=progress is None, mininterval=2.0)
    order = sorted(range(len(token_ids)), key=lambda i: len(token_ids[i]))
    names = [o.name for o in sess.get_outputs()]
    results: dict[str, list] = {n: [None] * len(token_ids) for n in names}
    start = 0
    while start < len(order):
        width = len(token_ids[order[start]])
        end = start
        while end < len(order) and (end - start + 1) * len(token_ids[order[end]]) <= max(batch_tokens, width):
            end += 1
        idx = order[start:end]
        ids, mask = pad([token_ids[i] for i in idx])
        outs = sess.run(names, {"input_ids": ids, "attention_mask": mask})
        for n, o in zip(names, outs):
            for j, i in enumerate(idx):
                results[n][i] = o[j]
        bar.update(len(idx))
        start = end
    bar.close()
    return {n: np.stack(v) for n, v in results.items()}
