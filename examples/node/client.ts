// Calling handoff from Node.js: classify a message, route two turns of a conversation, send feedback
// on the escalation, and read the machine-readable details of an error.
//
//     cd examples/node && npm ci && npm run build
//     node dist/client.js --addr 127.0.0.1:50051 [--api-key KEY]
//
// The types in gen/ are generated from proto/handoff/v1/handoff.proto by `npm run gen`
// (@grpc/proto-loader's proto-loader-gen-types); the proto itself is loaded at run time, so the
// example always matches the proto it sits next to.

import * as path from "path";

import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import * as protobuf from "protobufjs";

import type { ProtoGrpcType } from "./gen/handoff";
import type { ClassifyRequest } from "./gen/handoff/v1/ClassifyRequest";
import type { ClassifyResponse__Output } from "./gen/handoff/v1/ClassifyResponse";
import type { FeedbackRequest } from "./gen/handoff/v1/FeedbackRequest";
import type { FeedbackResponse__Output } from "./gen/handoff/v1/FeedbackResponse";
import type { HandoffClient } from "./gen/handoff/v1/Handoff";
import type { RouteRequest } from "./gen/handoff/v1/RouteRequest";
import type { RouteResponse__Output } from "./gen/handoff/v1/RouteResponse";

const PROTO_ROOT = path.join(__dirname, "..", "..", "..", "proto");

function arg(name: string, fallback?: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : fallback;
}

function connect(addr: string): HandoffClient {
  const definition = protoLoader.loadSync("handoff/v1/handoff.proto", {
    includeDirs: [PROTO_ROOT],
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  const proto = grpc.loadPackageDefinition(definition) as unknown as ProtoGrpcType;
  return new proto.handoff.v1.Handoff(addr, grpc.credentials.createInsecure());
}

type Unary<Req, Res> = (
  request: Req,
  metadata: grpc.Metadata,
  options: grpc.CallOptions,
  callback: grpc.requestCallback<Res>,
) => grpc.ClientUnaryCall;

/** One unary call as a promise, with a deadline (every call should carry one). */
function call<Req, Res>(client: HandoffClient, method: Unary<Req, Res>, request: Req, metadata: grpc.Metadata): Promise<Res> {
  const deadline = new Date(Date.now() + 2000);
  return new Promise((resolve, reject) => {
    method.call(client, request, metadata, { deadline }, (error, response) => {
      if (error) reject(error);
      else resolve(response as Res);
    });
  });
}

// google.rpc.Status and the two detail messages handoff sends (BadRequest for bad input, RetryInfo
// with RESOURCE_EXHAUSTED), declared by field number: the wire format is all a decoder needs.
const details = protobuf.Root.fromJSON({
  nested: {
    Status: {
      fields: {
        code: { type: "int32", id: 1 },
        message: { type: "string", id: 2 },
        details: { rule: "repeated", type: "Any", id: 3 },
      },
    },
    Any: { fields: { typeUrl: { type: "string", id: 1 }, value: { type: "bytes", id: 2 } } },
    BadRequest: {
      fields: { fieldViolations: { rule: "repeated", type: "FieldViolation", id: 1 } },
      nested: {
        FieldViolation: {
          fields: { field: { type: "string", id: 1 }, description: { type: "string", id: 2 } },
        },
      },
    },
    RetryInfo: { fields: { retryDelay: { type: "Duration", id: 1 } } },
    Duration: { fields: { seconds: { type: "int64", id: 1 }, nanos: { type: "int32", id: 2 } } },
  },
});

/** The error's details, one line each: the field a BadRequest names, the delay a RetryInfo asks for. */
function explain(error: grpc.ServiceError): string[] {
  const raw = error.metadata?.get("grpc-status-details-bin")[0];
  if (!raw) return [];
  const status = details.lookupType("Status").decode(raw as Buffer) as unknown as {
    details: { typeUrl: string; value: Uint8Array }[];
  };
  return status.details.map((any) => {
    if (any.typeUrl.endsWith("google.rpc.BadRequest")) {
      const bad = details.lookupType("BadRequest").decode(any.value) as unknown as {
        fieldViolations: { field: string; description: string }[];
      };
      return bad.fieldViolations.map((v) => `bad request: field ${v.field}: ${v.description}`).join("; ");
    }
    if (any.typeUrl.endsWith("google.rpc.RetryInfo")) {
      const retry = details.lookupType("RetryInfo").toObject(details.lookupType("RetryInfo").decode(any.value), {
        longs: Number,
      }) as { retryDelay?: { seconds?: number; nanos?: number } };
      const ms = (retry.retryDelay?.seconds ?? 0) * 1000 + (retry.retryDelay?.nanos ?? 0) / 1e6;
      return `retry after ${ms} ms`;
    }
    return `detail ${any.typeUrl}`;
  });
}

async function main(): Promise<void> {
  const client = connect(arg("addr", "127.0.0.1:50051")!);
  const metadata = new grpc.Metadata();
  const key = arg("api-key");
  if (key) metadata.set("authorization", `Bearer ${key}`);

  const c = await call<ClassifyRequest, ClassifyResponse__Output>(client, client.Classify, { text: "where is my refund?? waited 2 weeks" }, metadata);
  console.log(
    `classify: intent=${c.result?.intent} (${c.result?.intentScore.toFixed(2)}) sentiment=${c.result?.sentiment} model=${c.model?.name}/${c.model?.version}`,
  );

  const conversation = `example-${Math.random().toString(16).slice(2, 10)}`;
  let escalation = "";
  for (const [i, text] of ["我的订单到哪了", "转人工！！"].entries()) {
    const r = await call<RouteRequest, RouteResponse__Output>(
      client,
      client.Route,
      { conversationId: conversation, messageId: `m${i}`, text, channel: "CHANNEL_WECHAT", tier: "CUSTOMER_TIER_STANDARD" },
      metadata,
    );
    // One reason per fact a rule relied on: the rule, the signal and its value against the threshold.
    const reasons = r.reasons.map((x) => `${x.ruleId}: ${x.signal} ${x.value.toFixed(2)} (${x.threshold})`).join("; ");
    console.log(
      `route turn ${i}: action=${r.action} queue=${r.queue || "-"} priority=${r.priority} reasons=[${reasons}] decision_id=${r.decisionId}`,
    );
    if (r.action === "ACTION_ESCALATE") escalation = r.decisionId;
  }

  // What happened next: a person was needed, and the customer rated the service 4 of 5.
  const f = await call<FeedbackRequest, FeedbackResponse__Output>(
    client,
    client.Feedback,
    { decisionId: escalation, humanNeeded: "HUMAN_NEEDED_NEEDED", resolvedBy: "RESOLVED_BY_HUMAN", csat: 4 },
    metadata,
  );
  console.log(`feedback: recorded=${f.recorded}`);

  try {
    await call<ClassifyRequest, ClassifyResponse__Output>(client, client.Classify, { text: "   " }, metadata);
  } catch (e) {
    const error = e as grpc.ServiceError;
    console.log(`empty text: ${grpc.status[error.code]}: ${error.details}`);
    for (const line of explain(error)) console.log(`  ${line}`);
  }
  client.close();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
