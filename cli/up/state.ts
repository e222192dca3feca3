/**
 * Layout of the one-machine cluster's state directory (default
 * /var/lib/protoctl/local) and the small records `up`, `down` and the
 * supervisor share through it.
 *
 *   <state>/up.json                 what `up` started (ports, node, pool size)
 *   <state>/run/children.json       the supervisor's children (command lines)
 *   <state>/run/supervisor.pid      the supervisor; <name>.pid for each child
 *   <state>/logs/<name>.log         each process's output (supervise.log too)
 *   <state>/etcd, controller, agent data of each process
 *   <state>/etcd-pki/               etcd's TLS material (cli/up/etcd-pki.ts)
 *   everything 0700 / 0600, root's (secureStateDir)
 */
import { existsSync, readFileSync } from "node:fs";
import { chmod, mkdir, rename, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";

export const DEFAULT_STATE_DIR = "/var/lib/protoctl/local";

export interface UpRecord {
  version: 1;
  stateDir: string;
  nodeName: string;
  etcdPort: number;
  etcdPeerPort: number;
  controllerPort: number;
  agentPort: number;
  /** Absent in records of an older `up`. */
  consolePort?: number;
  controllerMetricsPort?: number;
  agentMetricsPort?: number;
  poolSizeBytes: number;
  insecure: boolean;
  contextName: string;
  startedMs: number;
}

export interface ChildSpec {
  name: string;
  command: string;
  args: string[];
  env?: Record<string, string>;
  /** Grace period between SIGTERM and SIGKILL when stopping. */
  stopTimeoutMs?: number;
}

export interface ChildrenFile {
  children: ChildSpec[];
}

export class StatePaths {
  readonly root: string;
  constructor(stateDir: string) {
    this.root = resolve(stateDir);
  }
  get upFile() {
    return join(this.root, "up.json");
  }
  get runDir() {
    return join(this.root, "run");
  }
  get logDir() {
    return join(this.root, "logs");
  }
  get childrenFile() {
    return join(this.runDir, "children.json");
  }
  get supervisorPidFile() {
    return join(this.runDir, "supervisor.pid");
  }
  pidFile(name: string) {
    return join(this.runDir, `${name}.pid`);
  }
  log(name: string) {
    return join(this.logDir, `${name}.log`);
  }
  get etcdDir() {
    return join(this.root, "etcd");
  }
  get controllerDir() {
    return join(this.root, "controller");
  }
  get agentDir() {
    return join(this.root, "agent");
  }
  /** Where the controller writes the admin credential (common/tls.ts CredentialFile). */
  get adminCredential() {
    return join(this.controllerDir, "admin.json");
  }
}

/**
 * The state dir and its folders 0700, root's: children.json holds the join
 * token, the folders keys and credentials; a local user reads none of them.
 */
export async function secureStateDir(paths: StatePaths): Promise<void> {
  await mkdir(paths.root, { recursive: true, mode: 0o700 });
  await chmod(paths.root, 0o700);
  for (const d of [paths.logDir, paths.runDir, paths.controllerDir, paths.agentDir]) {
    await mkdir(d, { recursive: true, mode: 0o700 });
    await chmod(d, 0o700);
  }
}

/** Writes JSON atomically (temp file + rename), 0600 unless told. */
export async function writeJson(path: string, value: unknown, mode = 0o600): Promise<void> {
  await mkdir(resolve(path, ".."), { recursive: true, mode: 0o700 });
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, `${JSON.stringify(value, null, 2)}\n`, { mode });
  await rename(tmp, path);
}

export function readJson<T>(path: string): T | undefined {
  try {
    return JSON.parse(readFileSync(path, "utf8")) as T;
  } catch {
    return undefined;
  }
}

export function readPid(path: string): number | undefined {
  try {
    const n = Number(readFileSync(path, "utf8").trim());
    return Number.isInteger(n) && n > 1 ? n : undefined;
  } catch {
    return undefined;
  }
}

/** True when `pid` runs and its command line mentions `marker` (guards against reused pids). */
export function isOurProcess(pid: number | undefined, marker: string): boolean {
  if (!pid) return false;
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EPERM") return false;
  }
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8")
      .split("\0")
      .some((a) => a.includes(marker));
  } catch {
    return false;
  }
}

/** The supervisor's pid when it is alive, else undefined. */
export function runningSupervisor(paths: StatePaths): number | undefined {
  const pid = readPid(paths.supervisorPidFile);
  return isOurProcess(pid, paths.root) ? pid : undefined;
}

export function stateExists(paths: StatePaths): boolean {
  return existsSync(paths.root);
}
