/** A running agent as a metrics source, and its gRPC interceptor. */
import { type ServerInterceptor, status } from "@grpc/grpc-js";
import { grpcMetricsInterceptor } from "../../common/metrics/grpc-interceptor.js";
import type { AgentContext } from "../server/context.js";
import {
  type AgentStateSource,
  envOperationSeconds,
  grpcHandled,
  grpcSeconds,
  hydratedBytes,
  hydrationThroughput,
  pushSeconds,
} from "./metrics.js";

const ENV_OPERATIONS: Record<string, string> = {
  CreateEnv: "create",
  StartEnv: "start",
  StopEnv: "stop",
  DeleteEnv: "delete",
  Exec: "exec",
};

export function agentMetricsInterceptor(node: string): ServerInterceptor {
  return grpcMetricsInterceptor({
    handled: grpcHandled,
    seconds: grpcSeconds,
    onDone: (method, code, s) => {
      const outcome = code === status.OK ? "ok" : "error";
      const op = ENV_OPERATIONS[method];
      if (op) envOperationSeconds.observe({ node, operation: op, outcome }, s);
      if (method === "Attach") pushSeconds.observe({ node, outcome }, s);
    },
  });
}

export function agentSource(ctx: AgentContext): AgentStateSource {
  // hydrated bytes last counted per attachment (base@version)
  const seen = new Map<string, number>();
  const observeHydration = () => {
    for (const a of ctx.propagation?.listAttachments() ?? []) {
      const key = `${a.base}@${a.version}`;
      const s = a.state;
      const done = s.phase === "local" ? s.sizeBytes || s.hydratedBytes : s.hydratedBytes;
      const before = seen.get(key) ?? 0;
      if (done > before) hydratedBytes.inc({ node: ctx.node }, done - before);
      seen.set(key, Math.max(before, done));
      const copyMs = s.hydration?.copyMs;
      if (s.phase === "local" && copyMs && s.sizeBytes) {
        const labels = { node: ctx.node, base: a.base, version: String(a.version) };
        hydrationThroughput.set(labels, s.sizeBytes / (copyMs / 1000));
      }
    }
  };
  return {
    node: ctx.node,
    pool: async () => {
      const [cap, bases] = await Promise.all([ctx.pool.capacity(), ctx.pool.listBaseVersions()]);
      return {
        sizeBytes: cap.sizeBytes,
        usedBytes: cap.usedBytes,
        freeBytes: cap.freeBytes,
        bases: bases.length,
      };
    },
    envs: () => ctx.envs.names().length,
    attachments: () => (ctx.propagation?.listAttachments() ?? []).map((a) => ({ phase: a.state.phase })),
    observeHydration,
  };
}
