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

export interface MachineNetwork {
  mode: "none" | "host" | "private" | "bridge";
  /** For bridge mode. */
  bridge?: string;
  /** CIDR address given to the env's interface, e.g. 10.1.0.5/24. */
  address?: string;
  gateway?: string;
  ports?: Array<{ protocol: "tcp" | "udp"; hostPort: number; containerPort: number }>;
  hosts?: Record<string, string>;
}

export interface MachineSpec {
  /** Env name (validated). */
  name: string;
  rootDir: string;
  boot: boolean;
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
