#!/usr/bin/env python3
"""Calling handoff from Python: classify a message, then route two turns of a conversation.

    python3 -m venv .venv && .venv/bin/pip install grpcio==1.85.1 grpcio-tools==1.85.1
    .venv/bin/python3 examples/python/client.py --addr 127.0.0.1:50051 [--api-key KEY]

The stubs are generated from proto/handoff/v1/handoff.proto into a temporary directory on each run,
so the example always matches the proto it sits next to; a real client would generate them once
(`python3 -m grpc_tools.protoc -I proto --python_out=. --grpc_python_out=. handoff/v1/handoff.proto`).
"""

import argparse
import importlib
import os
import sys
import tempfile
import uuid

import grpc
from grpc_tools import protoc

PROTO_ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "proto")


def load_stubs():
    out = tempfile.mkdtemp(prefix="handoff-stubs-")
    code = protoc.main(["protoc", f"-I{PROTO_ROOT}", f"--python_out={out}", f"--grpc_python_out={out}", "handoff/v1/handoff.proto"])
    if code != 0:
        sys.exit(f"protoc failed ({code})")
    sys.path.insert(0, out)
    return importlib.import_module("handoff.v1.handoff_pb2"), importlib.import_module("handoff.v1.handoff_pb2_grpc")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--addr", default="127.0.0.1:50051")
    ap.add_argument("--api-key", default=None, help="sent as `authorization: Bearer KEY` when the server has [auth]")
    args = ap.parse_args()
    pb, rpc = load_stubs()
    metadata = [("authorization", f"Bearer {args.api_key}")] if args.api_key else []

    with grpc.insecure_channel(args.addr) as channel:
        stub = rpc.HandoffStub(channel)
        c = stub.Classify(pb.ClassifyRequest(text="where is my refund?? waited 2 weeks"), timeout=2.0, metadata=metadata)
        print(f"classify: intent={c.result.intent} ({c.result.intent_score:.2f}) sentiment={c.result.sentiment} model={c.model.name}/{c.model.version}")

        conversation = f"example-{uuid.uuid4().hex[:8]}"
        for i, text in enumerate(["我的订单到哪了", "转人工！！"]):
            r = stub.Route(
                pb.RouteRequest(
                    conversation_id=conversation,
                    message_id=f"m{i}",
                    text=text,
                    channel=pb.CHANNEL_WECHAT,
                    tier=pb.CUSTOMER_TIER_STANDARD,
                ),
                timeout=2.0,
                metadata=metadata,
            )
            reasons = ", ".join(x.rule_id for x in r.reasons)
            print(f"route turn {i}: action={pb.Action.Name(r.action)} queue={r.queue or '-'} priority={r.priority} reasons=[{reasons}] decision_id={r.decision_id}")

        try:
            stub.Classify(pb.ClassifyRequest(text="   "), timeout=2.0, metadata=metadata)
        except grpc.RpcError as e:
            print(f"empty text: {e.code().name}: {e.details()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
