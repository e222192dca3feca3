/**
 * What the parts of the push executor share: one push's run state, the
 * progress line constructor, and reading an agent's server stream to its end.
 */
import type { ClientReadableStream } from "@grpc/grpc-js";
import type { ProtoctlError } from "../../common/errors.js";
import { fromServiceError } from "../../common/grpc.js";
import type { PushProgress } from "../../proto/gen/protoctl/v1/control.js";
import type { AttachmentPhase, SeedImage } from "../../proto/gen/protoctl/v1/types.js";
import type { Holdings } from "./plan.js";
import type { SourcePicker } from "./sources.js";

export type PushSink = (p: PushProgress) => void;

/** Per-target outcomes beside the progress lines: usable (attached or local), or failed with a code. */
export interface PushHooks {
  usable?(node: string): void;
  failed?(node: string, err: ProtoctlError): void;
}

export interface PushRun {
  base: string;
  version: number;
  ref: string;
  origin: string;
  picker: SourcePicker;
  holds: Holdings;
  send: PushSink;
  maxClients: number;
  exports: Map<string, Promise<string>>;
  transport: string;
  seed: SeedImage | undefined;
  /** Every target of this push is usable (or failed): copies start then, see SeedTransport.push. */
  allAttached: Promise<void>;
}

export const progress = (
  node: string,
  phase: AttachmentPhase,
  extra: Partial<PushProgress> = {},
): PushProgress => ({
  node,
  phase,
  fraction: 0,
  sourceNode: "",
  message: "",
  done: false,
  ...extra,
});

export function collect<T>(stream: ClientReadableStream<T>, on: (m: T) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    stream.on("data", on);
    stream.on("error", (e) => reject(fromServiceError(e)));
    stream.on("end", () => resolve());
  });
}
