/**
 * What PropagationService (propagation-service.ts) is given and reports: its
 * options, the pool it needs, its seed and attachment records, and how an
 * attachment's options follow from them.
 */

import type { Logger } from "pino";
import type { AgentAttachments, AttachmentState, AttachOptions } from "../host/attachments/types.js";
import type { ExportDriver, SeedImage, TlsFiles } from "../host/exports/types.js";
import type { BaseVersionMeta } from "../host/interfaces.js";
import type { BtrfsPool } from "../host/pool/pool.js";
import type { ForegroundActivity } from "./foreground.js";

const MiB = 1024 * 1024;

/** What the pool must offer propagation (BtrfsPool does). */
export type PropagationPool = Pick<
  BtrfsPool,
  | "baseRoot"
  | "getBaseVersion"
  | "registerExternalBase"
  | "unregisterExternalBase"
  | "setExternalState"
  | "externalState"
  | "adoptBaseVersion"
  | "usersOf"
  | "listBaseVersions"
>;

export interface PropagationOptions {
  node: string;
  /** Holds seeds/ and attachments/ (default: <agent state>/propagation). */
  dir: string;
  pool: PropagationPool;
  /** The agent's cluster address (exports bind here, never a wildcard). */
  bindAddress: string;
  /** Cluster TLS files: exports serve nbds:// and clients present the node certificate. */
  tls?: TlsFiles;
  /** Sparse size of each sprout device (env writes on an attached version land there). */
  sproutBytes?: number;
  /**
   * When set, sprout devices live on a tmpfs of this size at <dir>/sprouts
   * (the agent passes its tmpfs pool's size: env writes on attached versions
   * then stay in memory, as on local ones); else in the attachments' dirs.
   */
  sproutTmpfsBytes?: number;
  /** NBD connections per attachment and hydration. */
  connections?: number;
  /** Publish each version made here in the background at once (default true; seed-publisher.ts). */
  publishAtSeal?: boolean;
  /** Env creates, which a publish at seal lets go first (seed-publisher.ts). */
  activity?: ForegroundActivity;
  log: Logger;
  /** Host drivers; default the real ones (SeedAttachments, seed images and nbdkit). */
  attachments?: AgentAttachments;
  exports?: ExportDriver;
}

export interface SeedRecord extends SeedImage {
  base: string;
  version: number;
  createdMs: number;
  node: string;
  /** Begun when the version was made here, not at a push's request (seed-publisher.ts). */
  atSeal?: boolean;
  /** A PublishSeed call has returned it: the controller may have bound the seal to it. */
  claimed?: boolean;
}

export interface AttachmentRecord {
  base: string;
  version: number;
  sourceNode: string;
  seed: { sizeBytes: number; checksum: string; subvolume: string };
  meta: BaseVersionMeta;
  state: AttachmentState;
}

export interface ExportInfo {
  base: string;
  version: number;
  uri: string;
  maxClients: number;
  allow: string[];
}

export interface AttachmentInfo {
  base: string;
  version: number;
  sourceNode: string;
  /** The seed image's checksum ("" for a local subvolume). */
  checksum: string;
  state: AttachmentState;
}

export interface AttachRequestInfo {
  base: string;
  version: number;
  uri: string;
  seed: { sizeBytes: number; checksum: string; subvolume: string };
  sourceNode: string;
  hydrate: boolean;
  /** Metadata of the version (from the origin; a minimal one is made when absent). */
  meta?: BaseVersionMeta;
}

/** An attachment's options: where its files go, how big its sprout is, how it connects. */
export function attachOptionsFor(
  o: Pick<PropagationOptions, "sproutBytes" | "connections" | "tls">,
  dirs: { stateDir: string; sproutDir: string | undefined },
  key: string,
  uri: string,
  seed: AttachmentRecord["seed"],
): AttachOptions {
  return {
    key,
    uri,
    seed,
    stateDir: dirs.stateDir,
    sproutBytes: o.sproutBytes ?? 1024 * MiB,
    sproutDir: dirs.sproutDir,
    // Room for the hydrated copy and some env writes, so hydration cannot run out later.
    reserveBytes: seed.sizeBytes + 64 * MiB,
    connections: o.connections ?? 4,
    tls: o.tls,
  };
}

/** GetAttachment's answer for a version that is a local subvolume here. */
export function localAttachmentState(key: string, subvolumePath: string): AttachmentState {
  return {
    key,
    phase: "local",
    uri: "",
    transport: "local",
    mountpoint: "",
    subvolumePath,
    seedLoop: "",
    sproutLoop: "",
    seedBacking: "",
    hydratedBytes: 0,
    sizeBytes: 0,
    message: "",
  };
}

/** Timings rounded to 0.1 ms for a log line. */
export function roundMs<T extends object>(t: T | undefined): T | undefined {
  if (!t) return undefined;
  return Object.fromEntries(
    Object.entries(t).map(([k, v]) => [k, typeof v === "number" ? Math.round(v * 10) / 10 : v]),
  ) as T;
}
