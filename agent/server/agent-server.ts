/**
 * The AgentService gRPC server: one handler group per file (info, bases,
 * envs, exec, networks, propagation), assembled here. Credentials are
 * insecure unless given (TLS is designed elsewhere).
 */

import { Server, ServerCredentials, type ServerInterceptor } from "@grpc/grpc-js";
import { unavailable } from "../../common/errors.js";
import { GRPC_BASE_OPTIONS, GRPC_SERVER_LIMITS } from "../../common/grpc.js";
import { type AgentServiceServer, AgentServiceService } from "../../proto/gen/protoctl/v1/agent.js";
import { BaseService } from "../service/base-service.js";
import { NetworkService } from "../service/network-service.js";
import { baseHandlers } from "./base-handlers.js";
import type { AgentContext } from "./context.js";
import { copyHandlers } from "./copy-handlers.js";
import { envHandlers } from "./env-handlers.js";
import { execHandlers } from "./exec-handlers.js";
import { infoHandlers } from "./info-handlers.js";
import { moveHandlers } from "./move-handlers.js";
import { networkHandlers } from "./network-handlers.js";
import { type PropagationHandlers, unimplementedPropagation } from "./propagation-handlers.js";

export interface AgentServerOptions {
  ctx: AgentContext;
  stateDir: string;
  /** "host:port" or "unix:///path". */
  listen: string;
  credentials?: ServerCredentials;
  /** e.g. controllerOnly(caPem) from common/tls.ts when serving TLS. */
  interceptors?: ServerInterceptor[];
  /** Largest base upload (ImportBase tar bytes) accepted; 0: the pool's size. */
  maxUploadBytes?: number;
  /** Propagation RPCs; UNIMPLEMENTED where absent. */
  propagation?: Partial<PropagationHandlers>;
}

export function agentServiceImpl(
  opts: Omit<AgentServerOptions, "listen" | "credentials">,
): AgentServiceServer {
  const { ctx } = opts;
  const bases = new BaseService({
    pool: ctx.pool,
    stateDir: opts.stateDir,
    maxUploadBytes: opts.maxUploadBytes,
    heldState: (b, v) => ctx.propagation?.heldState(b, v) ?? "local",
    sealed: (meta) => ctx.propagation?.sealed(meta),
    beforeDelete: async (b, v) => ctx.propagation?.beforeDelete(b, v),
  });
  return {
    ...infoHandlers(ctx),
    ...baseHandlers(bases, ctx.node),
    ...envHandlers(ctx),
    ...execHandlers(ctx),
    ...copyHandlers(ctx),
    ...moveHandlers(ctx),
    ...networkHandlers(new NetworkService(ctx.networks)),
    ...unimplementedPropagation(),
    ...(opts.propagation ?? {}),
  };
}

/** Starts the server; resolves with the bound address (port filled in when 0 was asked). */
export async function startAgentServer(
  opts: AgentServerOptions,
): Promise<{ server: Server; address: string }> {
  const server = new Server({
    ...GRPC_BASE_OPTIONS,
    ...GRPC_SERVER_LIMITS,
    ...(opts.interceptors?.length ? { interceptors: opts.interceptors } : {}),
  });
  server.addService(AgentServiceService, agentServiceImpl(opts));
  const creds = opts.credentials ?? ServerCredentials.createInsecure();
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(opts.listen, creds, (err, p) => {
      if (err)
        reject(unavailable(`cannot listen on ${opts.listen}: ${err.message}`, { reason: "LISTEN_FAILED" }));
      else resolve(p);
    });
  });
  const address = opts.listen.startsWith("unix:") ? opts.listen : opts.listen.replace(/:\d+$/, `:${port}`);
  return { server, address };
}

/** Graceful shutdown, forced after `timeoutMs`. */
export function stopAgentServer(server: Server, timeoutMs = 2000): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, timeoutMs);
    server.tryShutdown(() => {
      clearTimeout(t);
      resolve();
    });
  });
}
