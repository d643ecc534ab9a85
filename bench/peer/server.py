"""The alternative a user would pick: a Python gRPC server that answers `handoff.v1.Handoff/Classify`
with onnxruntime on the same model package, one `session.run` per request, 2 intra-op threads.

    python3 bench/peer/server.py --model models/handoff-zh-en/2.2.0 --port 50061

The load generator starts it (`--peer`) and drives it with the same client and the same messages as
our server, so the two are compared in one run. It speaks our proto (stubs are generated at start
with grpc_tools from proto/handoff/v1/handoff.proto), so any Classify client works against it.
`--batching` turns on a simple dynamic batcher on grpc.aio (up to 32 texts or 2 ms), the stronger
variant of the same alternative.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import tomllib
from concurrent import futures

import grpc
import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")


def load_stubs():
    from grpc_tools import protoc

    out = tempfile.mkdtemp(prefix="handoff-peer-")
    proto_dir = os.path.join(ROOT, "proto")
    rc = protoc.main(["protoc", f"-I{proto_dir}", f"--python_out={out}", f"--grpc_python_out={out}", os.path.join(proto_dir, "handoff/v1/handoff.proto")])
    if rc != 0:
        raise SystemExit("protoc failed")
    sys.path.insert(0, out)
    from handoff.v1 import handoff_pb2, handoff_pb2_grpc

    return handoff_pb2, handoff_pb2_grpc


class Engine:
    def __init__(self, package: str, threads: int):
        self.manifest = tomllib.load(open(os.path.join(package, "manifest.toml"), "rb"))
        self.tok = Tokenizer.from_file(os.path.join(package, self.manifest["files"]["tokenizer"]))
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        self.sess = ort.InferenceSession(os.path.join(package, self.manifest["files"]["model"]), so, providers=["CPUExecutionProvider"])
        o = self.manifest["onnx"]
        self.outputs = [o["intent"], o["sentiment"]]
        self.pad = self.manifest["pad_id"]

    def encode(self, text: str) -> list[int]:
        ids = self.tok.encode(self.manifest["text_prefix"] + text).ids
        m = self.manifest["max_tokens"]
        return ids[: m - 1] + ids[-1:] if len(ids) > m else ids

    def run(self, rows: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
        width = max(len(r) for r in rows)
        ids = np.full((len(rows), width), self.pad, np.int64)
        mask = np.zeros((len(rows), width), np.int64)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = r
            mask[i, : len(r)] = 1
        intent, sentiment = self.sess.run(self.outputs, {"input_ids": ids, "attention_mask": mask})
        return intent, sentiment


def classification(pb, engine: Engine, intent: np.ndarray, sentiment: np.ndarray, tokens: int):
    li, ls = engine.manifest["labels"]["intent"], engine.manifest["labels"]["sentiment"]
    i, s = int(intent.argmax()), int(sentiment.argmax())
    return pb.Classification(
        intent=li[i],
        intent_score=float(intent[i]),
        intents=[pb.LabelScore(label=li[k], score=float(intent[k])) for k in np.argsort(-intent)],
        sentiment=ls[s],
        sentiment_score=float(sentiment[s]),
        sentiments=[pb.LabelScore(label=ls[k], score=float(sentiment[k])) for k in np.argsort(-sentiment)],
        negativity=float(sentiment[ls.index("negative")]),
        tokens=tokens,
    )


def response(pb, engine: Engine, intent: np.ndarray, sentiment: np.ndarray, tokens: int, timing):
    return pb.ClassifyResponse(
        result=classification(pb, engine, intent, sentiment, tokens),
        model=pb.ModelRef(name=engine.manifest["name"], version=engine.manifest["version"]),
        timing=timing,
    )


def serve_sync(pb, pbg, engine: Engine, port: int) -> None:
    class Handoff(pbg.HandoffServicer):
        def Classify(self, request, context):
            t0 = time.perf_counter()
            ids = engine.encode(request.text)
            intent, sentiment = engine.run([ids])
            us = int((time.perf_counter() - t0) * 1e6)
            return response(pb, engine, intent[0], sentiment[0], len(ids), pb.Timing(inference_us=us, total_us=us, batch_size=1))

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    pbg.add_HandoffServicer_to_server(Handoff(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    print(f"peer listening on 127.0.0.1:{port}", flush=True)
    server.wait_for_termination()


async def serve_batching(pb, pbg, engine: Engine, port: int, max_batch: int = 32, max_delay_s: float = 0.002) -> None:
    queue: asyncio.Queue = asyncio.Queue()
    loop = asyncio.get_running_loop()
    pool = futures.ThreadPoolExecutor(max_workers=1)

    async def batcher():
        while True:
            items = [await queue.get()]
            deadline = loop.time() + max_delay_s
            while len(items) < max_batch:
                timeout = deadline - loop.time()
                if timeout <= 0:
                    break
                try:
                    items.append(await asyncio.wait_for(queue.get(), timeout))
                except asyncio.TimeoutError:
                    break
            rows = [ids for ids, _ in items]
            intent, sentiment = await loop.run_in_executor(pool, engine.run, rows)
            for k, (ids, fut) in enumerate(items):
                fut.set_result((intent[k], sentiment[k], len(ids)))

    class Handoff(pbg.HandoffServicer):
        async def Classify(self, request, context):
            t0 = time.perf_counter()
            fut = loop.create_future()
            await queue.put((engine.encode(request.text), fut))
            intent, sentiment, tokens = await fut
            us = int((time.perf_counter() - t0) * 1e6)
            return response(pb, engine, intent, sentiment, tokens, pb.Timing(total_us=us))

    server = grpc.aio.server()
    pbg.add_HandoffServicer_to_server(Handoff(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    task = asyncio.create_task(batcher())
    print(f"peer (batching) listening on 127.0.0.1:{port}", flush=True)
    await server.wait_for_termination()
    task.cancel()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "handoff-zh-en", "2.2.0"))
    ap.add_argument("--port", type=int, default=50061)
    ap.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads")
    ap.add_argument("--batching", action="store_true", help="grpc.aio with a dynamic batcher")
    args = ap.parse_args()
    pb, pbg = load_stubs()
    engine = Engine(args.model, args.threads)
    engine.run([engine.encode("warm up")])
    if args.batching:
        asyncio.run(serve_batching(pb, pbg, engine, args.port))
    else:
        serve_sync(pb, pbg, engine, args.port)


if __name__ == "__main__":
    main()
