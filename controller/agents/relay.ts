/**
 * A DeltaChunk stream relayed from one agent's Send* call into another's
 * Receive* call through this controller (base deltas, env moves), with
 * back-pressure: the source pauses while the target's buffer is full.
 */
import type { DeltaChunk } from "../../proto/gen/protoctl/v1/agent.js";

export interface ChunkSource {
  on(ev: "data", fn: (c: DeltaChunk) => void): unknown;
  on(ev: "end", fn: () => void): unknown;
  on(ev: "error", fn: (e: Error) => void): unknown;
  pause(): unknown;
  resume(): unknown;
}

export interface ChunkSink {
  write(c: DeltaChunk): boolean;
  once(ev: "drain", fn: () => void): unknown;
  end(): unknown;
  cancel(): unknown;
}

/** Pipes `up` into `down`; a source error cancels the target call and goes to `onError`. */
export function pipeChunks(up: ChunkSource, down: ChunkSink, onError: (e: Error) => void): void {
  up.on("data", (c: DeltaChunk) => {
    if (!down.write(c)) {
      up.pause();
      down.once("drain", () => up.resume());
    }
  });
  up.on("end", () => down.end());
  up.on("error", (e) => {
    down.cancel();
    onError(e);
  });
}
