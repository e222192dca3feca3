import { describe, expect, it } from "vitest";
import { agentCalls, etcdWork, parseCounters, perEach, sumOf } from "./work-counts.js";

const SAMPLE = `# HELP grpc_server_handled_total Total number of RPCs completed on the server.
# TYPE grpc_server_handled_total counter
grpc_server_handled_total{grpc_code="OK",grpc_method="Range",grpc_service="etcdserverpb.KV",grpc_type="unary"} 120
grpc_server_handled_total{grpc_code="NotFound",grpc_method="Range",grpc_service="etcdserverpb.KV",grpc_type="unary"} 3
grpc_server_handled_total{grpc_code="OK",grpc_method="Txn",grpc_service="etcdserverpb.KV",grpc_type="unary"} 40
grpc_server_msg_received_total{grpc_code="OK",grpc_method="Watch",grpc_service="etcdserverpb.Watch",grpc_type="bidi_stream"} 7
etcd_debugging_mvcc_put_total 55
etcd_mvcc_put_total 50
etcd_debugging_mvcc_events_total 1.5e+3
etcd_debugging_mvcc_range_total 9
`;

describe("bench schedule work counts", () => {
  it("parses counter samples and sums them by name and labels", () => {
    const s = parseCounters(SAMPLE);
    expect(s.size).toBe(8);
    expect(sumOf(s, "grpc_server_handled_total", { grpc_method: "Range" })).toBe(123);
    expect(sumOf(s, "grpc_server_handled_total")).toBe(163);
    expect(sumOf(s, "grpc_server_handled_total", { grpc_method: "Put" })).toBe(0);
    // a name that is a prefix of another is not summed with it
    expect(sumOf(s, "etcd_mvcc_put")).toBe(0);
  });

  it("takes etcd's stable MVCC names over the debugging ones, which it falls back to", () => {
    const w = etcdWork(parseCounters(SAMPLE));
    expect(w.grpc_Range).toBe(123);
    expect(w.grpc_Txn).toBe(40);
    expect(w.grpc_Watch_requests).toBe(7);
    expect(w.mvcc_put).toBe(50);
    expect(w.mvcc_range).toBe(9);
    expect(w.watch_events_sent).toBe(1500);
  });

  it("divides the growth of each counter by the env count", () => {
    expect(perEach({ a: 10, b: 1 }, { a: 40, b: 1, c: 5 }, 10)).toEqual({ a: 3, b: 0, c: 0.5 });
    const calls = agentCalls([
      { calls: new Map([["createEnv", 2]]) },
      {
        calls: new Map([
          ["createEnv", 1],
          ["startEnv", 4],
        ]),
      },
    ]);
    expect(calls).toEqual({ createEnv: 3, startEnv: 4 });
  });
});
