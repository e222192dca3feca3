/**
 * Contracts of the target side of base propagation (DESIGN.md, "Propagation:
 * seed + NBD, lazy then local"): attach a remote seed image lazily over NBD,
 * sprout it into a local read-write btrfs, hydrate it to a local file in the
 * background, and switch the seed's loop device to that file live.
 *
 * Layout of one attachment under `<stateDir>/<key>/`:
 *   nbd-<n>/image   nbdfuse view of the export (the n-th source used)
 *   sprout.img      sparse backing file of the sprout's local device
 *   seed.img        the hydrated, verified copy of the seed image
 *   mnt/            where the sprout is mounted (unless a mountpoint is given)
 */
import type { TlsFiles } from "../exports/types.js";

/** Same values as proto AttachmentPhase (types.proto), minus UNSPECIFIED. */
export type AttachmentPhase = "attaching" | "attached" | "hydrating" | "local" | "failed";

/** What the target expects of the image (recorded by the origin at publish). */
export interface SeedInfo {
  sizeBytes: number;
  /** "ALGO:HEX" (exports/checksum.ts). */
  checksum: string;
  /** Name of the subvolume inside the image, e.g. "debian@3". */
  subvolume: string;
}

export type NbdTransportKind = "kernel" | "nbdfuse";

export interface AttachOptions {
  /** Unique per seed on this host (one mounted sprout per seed per host), e.g. "debian@3". */
  key: string;
  /** nbd://host:port/name or nbds://… */
  uri: string;
  seed: SeedInfo;
  /** The agent's state directory (tmpfs by default); holds everything of the attachment. */
  stateDir: string;
  /** Where to mount the sprout; default `<stateDir>/<key>/mnt`. */
  mountpoint?: string;
  /** Size of the sprout's local device (sparse file); envs' writes land there. */
  sproutBytes: number;
  /**
   * Where the sprout device's file goes (`<key>.sprout.img`): a tmpfs, so env
   * writes on the attached version stay in memory as they do in a pool on
   * tmpfs. Default: the attachment's directory in stateDir.
   */
  sproutDir?: string;
  /**
   * Free bytes required in stateDir before anything is made (default
   * sproutBytes; with sproutDir, the hydrated image's room only).
   */
  reserveBytes?: number;
  /** NBD connections per source (nbdfuse -C, nbdcopy --connections); default 4. */
  connections?: number;
  /** Client TLS files for nbds:// sources. */
  tls?: TlsFiles;
  /** Run NBD clients inside this network namespace (tests); mounts stay in ours. */
  netns?: string;
  /** Default "auto": kernel nbd-client where /dev/nbd0 exists, else nbdfuse. */
  transport?: NbdTransportKind | "auto";
}

/** A snapshot of one attachment. */
export interface AttachmentState {
  key: string;
  phase: AttachmentPhase;
  /** The current source (empty once local). */
  uri: string;
  transport: NbdTransportKind | "local";
  /** Where the sprout (rw btrfs) is mounted. */
  mountpoint: string;
  /** The base subvolume inside the sprout: snapshot envs from here. */
  subvolumePath: string;
  /** Read-only loop device over the seed (NBD view, then the local copy). */
  seedLoop: string;
  /** Loop device of the sprout's local file. */
  sproutLoop: string;
  /** What the seed loop device reads from now. */
  seedBacking: string;
  hydratedBytes: number;
  sizeBytes: number;
  /** Last error or note, e.g. why hydration failed. */
  message: string;
  /** Where the last successful hydration spent its time. */
  hydration?: {
    copyMs: number;
    /** The hash's tail after the copy, plus a second full hash when the first did not match. */
    verifyMs: number;
    switchMs: number;
    tailMs: number;
    /** The hash that followed the copy did not match and the finished file was hashed again. */
    rehashed: boolean;
  };
  /**
   * Where the attach spent its time: the NBD client, the loop devices and sprout file, waiting
   * for the host lock (other agents on this kernel mounting the same seed), the mounts.
   */
  attachTiming?: { nbdMs: number; devicesMs: number; lockWaitMs: number; mountMs: number; totalMs: number };
}

export interface HydrateOptions {
  progress?: (doneBytes: number, totalBytes: number) => void;
  signal?: AbortSignal;
}

/** Target side of propagation. */
export interface AttachmentDriver {
  /** Attaches lazily; idempotent for the same key and URI. */
  attach(opts: AttachOptions): Promise<AttachmentState>;
  /** Copies the image locally, verifies it, switches the seed loop to it, drops NBD. */
  hydrate(key: string, opts?: HydrateOptions): Promise<AttachmentState>;
  /** Moves the seed loop device to another source of the same image, live. */
  switchSource(key: string, uri: string): Promise<AttachmentState>;
  /** Unmounts and removes everything of the attachment; idempotent. */
  detach(key: string): Promise<void>;
  get(key: string): AttachmentState | undefined;
  list(): AttachmentState[];
}

/**
 * What the agent's propagation service holds: the driver, plus taking back
 * attachments a previous agent process left mounted (SeedAttachments.adopt).
 */
export interface AgentAttachments extends AttachmentDriver {
  /** The attachment as it survived a restart, or undefined once what is left of it is removed. */
  adopt(o: AttachOptions, s: AttachmentState): Promise<AttachmentState | undefined>;
  /** The node's client TLS files, once known (adopted attachments use them). */
  setTls(tls: TlsFiles | undefined): void;
  /** Starts what hydrations need ahead of the first one. */
  warm(): void;
}
