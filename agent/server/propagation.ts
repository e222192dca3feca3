/**
 * AgentService: propagation (seed images over NBD, btrfs send deltas). The
 * drivers come later; until a `PropagationHandlers` implementation is passed
 * to the server, these answer UNIMPLEMENTED. Plug in by giving
 * `createAgentServer({ propagation })` an object with any of these methods.
 */
import { status } from "@grpc/grpc-js";
import type { AgentServiceServer } from "../../proto/gen/protoctl/v1/agent.js";

export type PropagationHandlers = Pick<
  AgentServiceServer,
  | "publishSeed"
  | "serveExport"
  | "stopExport"
  | "attach"
  | "getAttachment"
  | "detach"
  | "sendDelta"
  | "receiveDelta"
>;

function unimplemented(method: string) {
  return Object.assign(new Error(`${method} is not implemented on this agent yet`), {
    code: status.UNIMPLEMENTED,
    details: `${method} is not implemented on this agent yet`,
  });
}

export function unimplementedPropagation(): PropagationHandlers {
  // one stub serves every unary signature
  const unary = (m: string): never =>
    ((_call: unknown, cb: (err: unknown) => void) => cb(unimplemented(m))) as never;
  const stream = (m: string) => (call: { emit(e: "error", err: unknown): boolean }) => {
    call.emit("error", unimplemented(m));
  };
  return {
    publishSeed: stream("PublishSeed"),
    serveExport: unary("ServeExport"),
    stopExport: unary("StopExport"),
    attach: stream("Attach"),
    getAttachment: unary("GetAttachment"),
    detach: unary("Detach"),
    sendDelta: stream("SendDelta"),
    receiveDelta: unary("ReceiveDelta"),
  };
}
