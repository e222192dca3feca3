/**
 * Server-stream helpers: run long work while streaming OperationEvents
 * (progress, log lines, then one result), and end the call with a status
 * carrying the ProtoctlError on failure.
 */
import type { ServerDuplexStream, ServerWritableStream } from "@grpc/grpc-js";
import { toServiceError } from "../../common/grpc.js";
import type { DeltaChunk } from "../../proto/gen/protoctl/v1/agent.js";
import type { OperationEvent, OperationResult } from "../../proto/gen/protoctl/v1/types.js";
import type { ProgressFn } from "../host/interfaces.js";

/** Streams progress of `work` as OperationEvents, then its result; cancels on client cancel. */
export function operationStream<Req>(
  call: ServerWritableStream<Req, OperationEvent> | ServerDuplexStream<Req, OperationEvent>,
  work: (progress: ProgressFn, signal: AbortSignal) => Promise<OperationResult>,
): void {
  const ac = new AbortController();
  call.on("cancelled", () => ac.abort());
  const progress: ProgressFn = (p) => {
    if (ac.signal.aborted) return;
    if (p.log !== undefined) {
      call.write({
        event: { $case: "log", log: { stream: "stdout", data: Buffer.from(p.log), timeMs: Date.now() } },
      });
    }
    if (p.step || p.message || p.fraction !== undefined) {
      call.write({
        event: {
          $case: "progress",
          progress: {
            step: p.step,
            fraction: p.fraction ?? -1,
            message: p.message ?? "",
            node: "",
            bytesDone: 0,
            bytesTotal: 0,
          },
        },
      });
    }
  };
  work(progress, ac.signal).then(
    (result) => {
      call.write({ event: { $case: "result", result } });
      call.end();
    },
    (err) => failStream(call, err),
  );
}

/** Ends a server stream with the error's status. */
export function failStream(call: { emit(ev: "error", err: unknown): boolean }, err: unknown): void {
  call.emit("error", toServiceError(err));
}

/**
 * Writes a `btrfs send` byte stream to a DeltaChunk call as data parts of
 * about `chunkBytes` each (the stream's own pieces are small), waiting on
 * the call's back-pressure; the caller writes the header first and ends the call.
 */
export async function writeDeltaData(
  call: { write(c: DeltaChunk): boolean; once(ev: "drain", fn: () => void): unknown },
  stream: AsyncIterable<unknown>,
  chunkBytes = 1 << 20,
): Promise<void> {
  let pending: Buffer[] = [];
  let size = 0;
  const flush = async () => {
    if (size === 0) return;
    const data = Buffer.concat(pending, size);
    pending = [];
    size = 0;
    if (!call.write({ part: { $case: "data", data } })) {
      await new Promise<void>((r) => call.once("drain", () => r()));
    }
  };
  for await (const chunk of stream) {
    pending.push(chunk as Buffer);
    size += (chunk as Buffer).length;
    if (size >= chunkBytes) await flush();
  }
  await flush();
}
