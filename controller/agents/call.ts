/**
 * The one style of a controller→agent unary call: grpc-js client of the node
 * (AgentClients), a deadline always (the agent may hang; the caller decides
 * how long it waits), errors as ProtoctlError from the gRPC status, so
 * retryability is `ProtoctlError.retryable` and nothing parses messages.
 */
import { callUnary, type UnaryMethod } from "../../common/grpc.js";
import type { AgentServiceClient } from "../../proto/gen/protoctl/v1/agent.js";
import type { AgentClients, NodeAddresses } from "./clients.js";

/** Deadline of a call that names none: a quick question to an agent. */
export const AGENT_CALL_DEADLINE_MS = 30_000;

/** `agentCall(c.getEnv.bind(c), { name }, 3000)`. */
export function agentCall<Req, Res>(
  method: UnaryMethod<Req, Res>,
  req: Req,
  deadlineMs = AGENT_CALL_DEADLINE_MS,
  signal?: AbortSignal,
): Promise<Res> {
  return callUnary(method, req, { deadlineMs, signal });
}

/** The client of a node's agent, its address read from the store; NOT_FOUND for an unknown node. */
export function agentFor(
  ctx: { agents: AgentClients; store: NodeAddresses },
  node: string,
): Promise<AgentServiceClient> {
  return ctx.agents.forNode(ctx.store, node);
}
