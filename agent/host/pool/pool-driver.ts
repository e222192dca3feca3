/**
 * The pool driver's narrow interface: the btrfs pool (BtrfsPool in pool.ts)
 * as the agent's services see it; test/fakes/fake-pool.ts keeps the same
 * contract in memory (test/contracts/pool-contract.ts holds both to it).
 */

import type { Readable } from "node:stream";
import type { ImageConfig } from "../../../proto/gen/protoctl/v1/types.js";
import type { EnvReceiveHeader, EnvSend } from "./env-transfer.js";

/** Progress callback for long work (build, import, update). */
export type ProgressFn = (p: { step: string; fraction?: number; message?: string; log?: string }) => void;

export type PoolKindName = "tmpfs" | "file" | "mount";

export interface PoolConfig {
  kind: PoolKindName;
  /** State directory of the agent (holds the tmpfs/image and the mountpoint). */
  stateDir: string;
  /** For tmpfs/file pools: size of the image in bytes. */
  sizeBytes: number;
  /** For "mount": an existing btrfs mount; for "file": the image path (optional). */
  path?: string;
}

export interface PoolCapacity {
  sizeBytes: number;
  usedBytes: number;
  freeBytes: number;
}

export interface BaseVersionMeta {
  base: string;
  version: number;
  source: string;
  createdMs: number;
  recipeDigest: string;
  sizeBytes: number;
  parent?: string;
  /** Imported from an OCI image: its config's run defaults. */
  image?: ImageConfig;
}

export interface LayerBuildMeta {
  layer: string;
  /** "base@N" the build sits on. */
  base: string;
  /** Digest of the recipe (and of its parents' digests). */
  digest: string;
  parents: string[];
  kind: "shell" | "ansible";
  builtMs: number;
  sizeBytes: number;
  /** How it was built: "scratch" or "rebased from BASE@N" (layers.ts); absent on older builds. */
  from?: string;
}

/** Where an env's root lives once prepared. */
export interface EnvRoot {
  name: string;
  /** Directory to hand to systemd-nspawn --directory. */
  rootDir: string;
  base: string;
  version: number;
  layers: string[];
}

/**
 * The btrfs pool: layout @init @base @overlay @env @workdir, bases and their
 * versions, layer builds, env roots. Implemented in host/pool/.
 */
export interface PoolDriver {
  readonly mountpoint: string;
  capacity(): Promise<PoolCapacity>;
  /** Per-object exclusive/referenced bytes (btrfs qgroups). */
  usage(): Promise<
    Array<{ kind: "base" | "layer" | "env"; name: string; exclusiveBytes: number; referencedBytes: number }>
  >;

  listBaseVersions(name?: string): Promise<BaseVersionMeta[]>;
  /** Resolves version 0 to the latest; NOT_FOUND when absent. */
  getBaseVersion(name: string, version: number): Promise<BaseVersionMeta>;
  importBase(
    name: string,
    source: { dir: string } | { tar: string } | { ociArchive: string },
    progress?: ProgressFn,
    signal?: AbortSignal,
  ): Promise<BaseVersionMeta>;
  buildBase(
    name: string,
    spec:
      | { debootstrap: { suite: string; variant?: string; packages?: string[]; mirror?: string } }
      | { script: Uint8Array },
    progress?: ProgressFn,
    signal?: AbortSignal,
  ): Promise<BaseVersionMeta>;
  /** Snapshot latest, run the command inside nspawn, seal N+1 only on success. */
  updateBase(
    name: string,
    command: string[],
    opts: { network: boolean; script?: Uint8Array },
    progress?: ProgressFn,
    signal?: AbortSignal,
  ): Promise<BaseVersionMeta>;
  /** Deletes base@N (every version when 0) and returns the versions left; FAILED_PRECONDITION naming the users while envs or layers use it. */
  deleteBaseVersion(name: string, version: number): Promise<BaseVersionMeta[]>;

  /** Builds (or returns the cached build of) a layer on base@N; parents are built first. */
  buildLayer(
    spec: {
      name: string;
      kind: "shell" | "ansible";
      main: Uint8Array;
      files: Array<{ path: string; content: Uint8Array; mode: number }>;
      parents: string[];
    },
    base: string,
    version: number,
    progress?: ProgressFn,
    signal?: AbortSignal,
  ): Promise<LayerBuildMeta>;
  listLayerBuilds(): Promise<LayerBuildMeta[]>;
  deleteLayer(name: string, base?: string): Promise<void>;

  /** Snapshot base@N into @env/NAME, stack the layers with overlayfs; returns the dir to boot. */
  /** `opts.diskBytes`: cap what the env may write (disk-limit.ts); 0 or absent: the pool's space. */
  prepareEnvRoot(
    name: string,
    base: string,
    version: number,
    layers: string[],
    opts?: { diskBytes?: number },
  ): Promise<EnvRoot>;
  /** Re-mounts overlays of an existing env root after a restart (idempotent). */
  openEnvRoot(name: string): Promise<EnvRoot | undefined>;
  /** Unmounts and deletes everything of the env root (idempotent). */
  removeEnvRoot(name: string): Promise<void>;
  listEnvRoots(): Promise<EnvRoot[]>;
  /** Seals the env's current root (merged view) as base `asBase` version N+1. */
  snapshotEnvAsBase(name: string, asBase: string): Promise<BaseVersionMeta>;
  /** Env move (env-transfer.ts): a stopped env's writable part as a btrfs send stream. */
  sendEnvRoot?(name: string, withParent: boolean): Promise<EnvSend>;
  /** Env move: receives an env part into @env/NAME, adopted by the next prepareEnvRoot. */
  receiveEnvRoot?(h: EnvReceiveHeader, stream: Readable): Promise<void>;
  /** Startup inventory: removes half-made objects (no record, stray mounts). */
  cleanOrphans(knownEnvs: Set<string>): Promise<string[]>;
  /** Releases in-process state; the pool stays mounted (running envs outlive the agent). */
  close(): Promise<void>;
  /** Unmounts and deletes the pool's storage for good (tests, `protoctl down`). */
  destroy?(): Promise<void>;
  /** The node's package cache for layer builds and base updates (package-cache.ts), when it has one. */
  readonly packageCache?: { stats(): Promise<{ bytes: number; files: number; maxBytes: number }> };
}
