/**
 * The controller's hooks, each called from one line at a seam: the gRPC
 * interceptor chain, the scheduler call, the reconcile queues' error
 * callbacks, the etcd KV client and the leader callbacks.
 */
import type { ServerInterceptor } from "@grpc/grpc-js";
import { status } from "@grpc/grpc-js";
import { grpcMetricsInterceptor } from "../../common/metrics/grpc-interceptor.js";
import {
  depositions,
  elections,
  envOperationSeconds,
  etcdSeconds,
  grpcHandled,
  grpcSeconds,
  placements,
  reconcileFailures,
  reconcileRetries,
  scheduleSeconds,
} from "./metrics.js";

/** ControlService methods that are env operations, by their operation label. */
const ENV_OPERATIONS: Record<string, string> = {
  CreateEnv: "create",
  StartEnv: "start",
  StopEnv: "stop",
  DeleteEnv: "delete",
  ExecEnv: "exec",
};

export function controllerMetricsInterceptor(): ServerInterceptor {
  return grpcMetricsInterceptor({
    handled: grpcHandled,
    seconds: grpcSeconds,
    onDone: (method, code, s) => {
      const op = ENV_OPERATIONS[method];
      if (op) envOperationSeconds.observe({ operation: op, outcome: code === status.OK ? "ok" : "error" }, s);
    },
  });
}

/** Times one placement: `const done = placementTimer(); const plan = schedule(...); done(plan.node);` */
export function placementTimer(): (node: string | undefined) => void {
  const t0 = process.hrtime.bigint();
  return (node) => {
    scheduleSeconds.observe(Number(process.hrtime.bigint() - t0) / 1e9);
    placements.inc(node ? { result: "placed", node } : { result: "unschedulable", node: "" });
  };
}

/** A reconcile pass failed: `retryInMs` undefined means terminal (not retried). */
export function reconcileFailed(queue: string, retryInMs: number | undefined): void {
  reconcileFailures.inc({ queue, terminal: String(retryInMs === undefined) });
  if (retryInMs !== undefined) reconcileRetries.inc({ queue });
}

export function leadershipChanged(leading: boolean): void {
  (leading ? elections : depositions).inc();
}

type AsyncMethod = (...args: never[]) => Promise<unknown>;

/** Times etcd3's KV client calls (every store read and write goes through them). */
export function instrumentEtcdKv(kv: object): void {
  const target = kv as Record<string, AsyncMethod>;
  for (const [method, operation] of [
    ["range", "range"],
    ["put", "put"],
    ["txn", "txn"],
    ["deleteRange", "delete"],
  ] as const) {
    const orig = target[method];
    if (typeof orig !== "function") continue;
    target[method] = async function (this: unknown, ...args: never[]) {
      const t0 = process.hrtime.bigint();
      let outcome = "error";
      try {
        const r = await orig.apply(this, args);
        outcome = "ok";
        return r;
      } finally {
        etcdSeconds.observe({ operation, outcome }, Number(process.hrtime.bigint() - t0) / 1e9);
      }
    };
  }
}
