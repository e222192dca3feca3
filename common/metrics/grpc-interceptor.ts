/**
 * A gRPC server interceptor that counts every call by method and status
 * code and times it, from the request's arrival to its status. Both daemons
 * put it first in their interceptor chain, so refused calls count too.
 */
import { ResponderBuilder, ServerInterceptingCall, type ServerInterceptor, status } from "@grpc/grpc-js";
import { Counter, Histogram, type Registry } from "prom-client";
import { LATENCY_BUCKETS } from "./buckets.js";

export interface GrpcMetrics {
  /** labels: service, method, code */
  handled: Counter<"service" | "method" | "code">;
  /** labels: service, method */
  seconds: Histogram<"service" | "method">;
  /** Called with every finished call (for per-operation histograms). */
  onDone?: (method: string, code: number, seconds: number) => void;
}

/**
 * The call counter and duration histogram of one daemon's gRPC server:
 * `protoctl_<daemon>_grpc_server_handled_total` and `..._handling_seconds`.
 */
export function grpcServerMetrics(daemon: string, service: string, registry: Registry) {
  const registers = [registry];
  return {
    handled: new Counter({
      name: `protoctl_${daemon}_grpc_server_handled_total`,
      help: `${service} calls finished, by method and gRPC status code.`,
      labelNames: ["service", "method", "code"] as const,
      registers,
    }),
    seconds: new Histogram({
      name: `protoctl_${daemon}_grpc_server_handling_seconds`,
      help: `${service} call duration, from the request to its status.`,
      labelNames: ["service", "method"] as const,
      buckets: LATENCY_BUCKETS,
      registers,
    }),
  };
}

const CODE_NAMES: Record<number, string> = Object.fromEntries(
  Object.entries(status)
    .filter(([, v]) => typeof v === "number")
    .map(([k, v]) => [v as number, k]),
);

export function codeName(code: number): string {
  return CODE_NAMES[code] ?? String(code);
}

/** "/protoctl.v1.AgentService/CreateEnv" -> ["AgentService", "CreateEnv"] */
export function splitPath(path: string): [string, string] {
  const [, svc = "", method = ""] = path.split("/");
  return [svc.slice(svc.lastIndexOf(".") + 1), method];
}

export function grpcMetricsInterceptor(m: GrpcMetrics): ServerInterceptor {
  return (descriptor, call) => {
    const [service, method] = splitPath(descriptor.path);
    const t0 = process.hrtime.bigint();
    let done = false;
    const responder = new ResponderBuilder()
      .withSendStatus((st, next) => {
        if (!done) {
          done = true;
          const s = Number(process.hrtime.bigint() - t0) / 1e9;
          m.handled.inc({ service, method, code: codeName(st.code) });
          m.seconds.observe({ service, method }, s);
          m.onDone?.(method, st.code, s);
        }
        next(st);
      })
      .build();
    return new ServerInterceptingCall(call, responder);
  };
}
