/**
 * What the parts of the push executor share: one push's run state, the
 * progress line constructor, and reading an agent's server stream to its end.
 */
import type { ClientReadableStream } from "@grpc/grpc-js";
import type { ProtoctlError } from "../../common/errors.js";
import { fromServiceError } from "../../common/grpc.js";
import type { PushProgress } from "../../proto/gen/protoctl/v1/control.js";
import { AttachmentPhase, type SeedImage } from "../../proto/gen/protoctl/v1/types.js";
import type { Holdings } from "./plan.js";
import type { SourcePicker } from "./sources.js";

export type PushSink = (p: PushProgress) => void;

/** Per-target outcomes beside the progress lines: usable (attached or local), or failed with a code. */
export interface PushHooks {
  usable?(node: string): void;
  failed?(node: string, err: ProtoctlError): void;
  /** How the push got its seed image, and how long it waited for it. */
  seed?(wait: SeedWait): void;
}

/**
 * How a push got its seed (issue 20 item 5), in its record: already recorded,
 * the rest of the publish the origin began at seal, or published for this
 * push; `waitMs` is what the push spent on it (its critical path).
 */
export interface SeedWait {
  node: string;
  how: "recorded" | "at-seal" | "published";
  waitMs: number;
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

/** Reports how the push got `seed` (SeedWait): a progress line without a node, and the hook. */
export function reportSeedWait(
  send: PushSink,
  hooks: PushHooks,
  seed: SeedImage,
  recorded: SeedImage | undefined,
  sealSum: string,
  ms: number,
): void {
  const fromRecord = !!recorded && recorded.node === seed.node && recorded.checksum === seed.checksum;
  const how: SeedWait["how"] =
    fromRecord && (!sealSum || recorded.checksum === sealSum)
      ? "recorded"
      : seed.publishedAtSeal
        ? "at-seal"
        : "published";
  const wait: SeedWait = { node: seed.node, how, waitMs: Math.round(ms) };
  const what = {
    recorded: "seed image already published",
    "at-seal": "seed image published at seal",
    published: "seed image published for this push",
  }[how];
  send(
    progress("", AttachmentPhase.ATTACHMENT_PHASE_UNSPECIFIED, {
      sourceNode: seed.node,
      message: `${what} on ${seed.node || "(hydrated nodes)"}; waited ${wait.waitMs} ms`,
    }),
  );
  hooks.seed?.(wait);
}
