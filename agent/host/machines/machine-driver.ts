/**
 * The machine driver's narrow interface: systemd-nspawn machines
 * (NspawnMachineDriver) as the agent's services see them;
 * test/fakes/fake-machines.ts keeps the same contract in memory
 * (test/contracts/machine-contract.ts holds both to it).
 */
import type { Readable, Writable } from "node:stream";

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
  /** Command mode only: a command the init starts (an OCI image's Entrypoint + Cmd), output to the log. */
  command?: { argv: string[]; workdir?: string; user?: string };
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
  /** The env's IPv4 addresses (no prefix) as of its last start, those the driver picked included. */
  addresses?: string[];
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
