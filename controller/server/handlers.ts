/**
 * Handler wrappers for the ControlService: errors become gRPC statuses with
 * an ErrorDetail (common/grpc.ts), streams end cleanly when the client goes
 * away, and proxying helpers pipe an agent stream to a client stream.
 */
import type { ClientReadableStream, ServerWritableStream } from "@grpc/grpc-js";
import { toServiceError, unaryHandler } from "../../common/grpc.js";

export { unaryHandler as unary };

/** Wraps an async server-streaming handler; `send` is a no-op once the client is gone. */
export function serverStream<Req, Res>(
  fn: (req: Req, send: (m: Res) => void, call: ServerWritableStream<Req, Res>) => Promise<void>,
) {
  return (call: ServerWritableStream<Req, Res>): void => {
    let open = true;
    call.on("cancelled", () => {
      open = false;
    });
    const send = (m: Res) => {
      if (open) call.write(m);
    };
    fn(call.request, send, call).then(
      () => {
        if (open) call.end();
      },
      (err) => {
        if (open) call.emit("error", toServiceError(err));
      },
    );
  };
}

/** Forwards every message of an agent stream (optionally mapped / observed), rejecting on its error. */
export function pipeFrom<T, U = T>(
  src: ClientReadableStream<T>,
  send: (m: U) => void,
  map: (m: T) => U = (m) => m as unknown as U,
): Promise<void> {
  return new Promise((resolve, reject) => {
    src.on("data", (m: T) => send(map(m)));
    src.on("error", reject);
    src.on("end", () => resolve());
  });
}

/** A promise that rejects when the client cancels, for racing long waits. */
export function cancelled(call: { on(e: "cancelled", f: () => void): unknown }): Promise<never> {
  const p = new Promise<never>((_, reject) =>
    call.on("cancelled", () => reject(new Error("cancelled by client"))),
  );
  p.catch(() => undefined); // only meaningful while raced; never an unhandled rejection
  return p;
}
