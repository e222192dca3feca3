/**
 * The agent's host drivers, behind small interfaces (after Incus's Pool over
 * Driver split and Nomad's task driver). The agent's services talk to these;
 * each has one real implementation over the system tools, and fakes for unit
 * tests of logic. Implementations live beside this file:
 *   host/pool/      — PoolDriver (btrfs pool, bases, layers, env roots)
 *   host/machines/  — MachineDriver (systemd-nspawn machines, cgroups, exec)
 *   host/networks/  — NetworkDriver (veth, bridges, VXLAN)
 */
import type { Readable, Writable } from "node:stream";

// ---------------------------------------------------------------- pool

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

// ---------------------------------------------------------------- machines

export interface MachineLimits {
  memoryBytes?: number;
  cpus?: number;
  pids?: number;
}

/** One veth of an env: a private point-to-point link to the host, or a port on a bridge. */
export interface MachineLink {
  mode: "private" | "bridge";
  bridge?: string;
  /** CIDR inside the env. */
  address?: string;
  gateway?: string;
  /** Interface name inside the env (default host0 for a single link, eth<i> for several). */
  ifname?: string;
}

export interface MachineNetwork {
  mode: "none" | "host" | "private" | "bridge";
  /**
   * Every attachment, in order, when the env has several (labs: one per
   * network); when absent, the one link described by mode/bridge/address/gateway.
   */
  links?: MachineLink[];
  /** For bridge mode. */
  bridge?: string;
  /** CIDR address given to the env's interface, e.g. 10.1.0.5/24. */
  address?: string;
  gateway?: string;
  ports?: Array<{ protocol: "tcp" | "udp"; hostPort: number; containerPort: number }>;
  hosts?: Record<string, string>;
  /** private only: outbound traffic leaves through the node (networks/nat.ts). */
  nat?: boolean;
}

export interface MachineSpec {
  /** Env name (validated). */
  name: string;
  rootDir: string;
  boot: boolean;
  /** No user namespace (see common/privilege.ts); default: a user namespace. */
  privileged?: boolean;
  limits: MachineLimits;
  network: MachineNetwork;
  env: Record<string, string>;
  hostname?: string;
}

export interface MachineState {
  name: string;
  running: boolean;
  /** PID of the container's PID 1 (the process nsenter targets). */
  leaderPid?: number;
  /** PID of the systemd-nspawn process. */
  nspawnPid?: number;
  startedMs?: number;
  exitCode?: number;
}

export interface ExecRequest {
  name: string;
  command: string[];
  tty: boolean;
  env?: Record<string, string>;
  workdir?: string;
  rows?: number;
  cols?: number;
  /** User to run as: a name from the env's /etc/passwd or numeric `uid[:gid]`; root when absent. */
  user?: string;
}

/** A running exec: write stdin, read stdout/stderr, resize, signal, await exit. */
export interface ExecSession {
  pid: number;
  stdin: Writable;
  stdout: Readable;
  /** Null for TTY sessions (the terminal merges both). */
  stderr: Readable | null;
  resize(rows: number, cols: number): void;
  signal(sig: NodeJS.Signals): void;
  /** Exit code; 128+N when killed by signal N. */
  exit: Promise<number>;
}

// ---------------------------------------------------------------- driver contracts

/** Progress callback for long work (build, import, update). */
export type ProgressFn = (p: { step: string; fraction?: number; message?: string; log?: string }) => void;

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
    source: { dir: string } | { tar: string },
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
  /** FAILED_PRECONDITION naming the users while envs or layers use it. */
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
  prepareEnvRoot(name: string, base: string, version: number, layers: string[]): Promise<EnvRoot>;
  /** Re-mounts overlays of an existing env root after a restart (idempotent). */
  openEnvRoot(name: string): Promise<EnvRoot | undefined>;
  /** Unmounts and deletes everything of the env root (idempotent). */
  removeEnvRoot(name: string): Promise<void>;
  listEnvRoots(): Promise<EnvRoot[]>;
  /** Seals the env's current root (merged view) as base `asBase` version N+1. */
  snapshotEnvAsBase(name: string, asBase: string): Promise<BaseVersionMeta>;
  /** Startup inventory: removes half-made objects (no record, stray mounts). */
  cleanOrphans(knownEnvs: Set<string>): Promise<string[]>;
  /** Releases in-process state; the pool stays mounted (running envs outlive the agent). */
  close(): Promise<void>;
  /** Unmounts and deletes the pool's storage for good (tests, `protoctl down`). */
  destroy?(): Promise<void>;
}

/** systemd-nspawn machines with agent-managed cgroups. Implemented in host/machines/. */
export interface MachineDriver {
  /**
   * Optional: gets what a start needs besides the root (cgroups, exec slot)
   * ready while the root is still being prepared. `cleanup` undoes it.
   */
  prewarm?(name: string, limits: MachineLimits): void;
  start(spec: MachineSpec): Promise<MachineState>;
  stop(name: string, opts: { timeoutMs: number; force?: boolean }): Promise<MachineState>;
  state(name: string): Promise<MachineState>;
  list(): Promise<MachineState[]>;
  exec(req: ExecRequest): Promise<ExecSession>;
  /** Console output (and journal where present). */
  logs(
    name: string,
    opts: { follow: boolean; tailLines?: number; signal?: AbortSignal },
  ): AsyncIterable<{ stream: string; data: Buffer; timeMs: number }>;
  /** Re-adopts machines left running by a previous agent process. */
  adopt(): Promise<MachineState[]>;
  /** Removes cgroups/state of a stopped machine. */
  cleanup(name: string): Promise<void>;
}
