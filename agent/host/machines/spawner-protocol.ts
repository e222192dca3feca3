/**
 * The wire format of protoctl-spawner (enter/spawner.c), pure and unit
 * tested: requests are a u32 little-endian length then NUL-terminated words,
 * the first two the request id and the operation, each later one a one-letter
 * tag then its value; replies are text lines. Words never hold NUL (refused
 * here) and are passed on as whole argv/env entries, never as shell text.
 */

export interface StartRequest {
  /** cgroup.procs files the child joins before it execs (host paths). */
  procsFiles: readonly string[];
  /** stdout and stderr, opened for append (created 0600). */
  logFile: string;
  /** The child's whole environment (its PATH finds argv[0]). */
  env: Readonly<Record<string, string>>;
  argv: readonly string[];
  /** A socket path for the child's sd_notify (the caller puts NOTIFY_SOCKET in env). */
  notifySocket?: string;
}

export interface SnapshotRequest {
  source: string;
  /** The new subvolume's parent directory and its name there. */
  parent: string;
  name: string;
  readonly: boolean;
  /**
   * Then cap the new subvolume's qgroup at this many bytes (max referenced);
   * the helper destroys the snapshot again when that fails. Quotas must be on.
   */
  limitBytes?: number;
}

export type Reply =
  | { kind: "ok"; id: number; pid?: number }
  | { kind: "err"; id: number; stage: string; errno: number }
  | { kind: "leader"; pid: number; leader: number }
  | { kind: "exit"; pid: number; code: number | null; signal: number | null };

/** Largest request the helper reads (it exits on a bigger one). */
export const MAX_FRAME = 1 << 20;
const ENV_KEY = /^[A-Za-z_][A-Za-z0-9_]*$/;

function frame(words: readonly string[]): Buffer {
  for (const w of words) if (w.includes("\0")) throw new Error("spawner words cannot hold NUL bytes");
  const payload = Buffer.from(words.map((w) => `${w}\0`).join(""), "utf8");
  if (payload.length > MAX_FRAME) throw new Error("spawner request too large");
  const head = Buffer.alloc(4);
  head.writeUInt32LE(payload.length);
  return Buffer.concat([head, payload]);
}

export function encodeStart(id: number, r: StartRequest): Buffer {
  if (r.argv.length === 0 || r.argv[0] === "") throw new Error("start needs a command");
  if (r.logFile === "") throw new Error("start needs a log file");
  const words = [String(id), "start", `o${r.logFile}`];
  if (r.notifySocket) words.push(`n${r.notifySocket}`);
  for (const p of r.procsFiles) {
    if (p === "") throw new Error("empty cgroup.procs path");
    words.push(`c${p}`);
  }
  for (const [k, v] of Object.entries(r.env)) {
    if (!ENV_KEY.test(k)) throw new Error(`invalid environment variable name ${JSON.stringify(k)}`);
    words.push(`e${k}=${v}`);
  }
  // an empty argument is a real one: the tag keeps the word non-empty
  for (const a of r.argv) words.push(`a${a}`);
  return frame(words);
}

export function encodeSnapshot(id: number, r: SnapshotRequest): Buffer {
  if (r.name === "" || r.name.includes("/") || r.name === "." || r.name === "..")
    throw new Error(`bad subvolume name ${JSON.stringify(r.name)}`);
  if (r.source === "" || r.parent === "") throw new Error("snapshot needs a source and a parent");
  const words = [String(id), "snap", `s${r.source}`, `d${r.parent}`, `n${r.name}`];
  if (r.readonly) words.push("r");
  if (r.limitBytes !== undefined) {
    if (!Number.isSafeInteger(r.limitBytes) || r.limitBytes <= 0)
      throw new Error(`bad disk limit ${r.limitBytes}: a positive whole number of bytes`);
    words.push(`q${r.limitBytes}`);
  }
  return frame(words);
}

/** Deletes subvolume `name` in directory `parent` (`btrfs subvolume delete`). */
export function encodeDestroy(id: number, parent: string, name: string): Buffer {
  if (name === "" || name.includes("/") || name === "." || name === "..")
    throw new Error(`bad subvolume name ${JSON.stringify(name)}`);
  if (parent === "") throw new Error("destroy needs a parent directory");
  return frame([String(id), "destroy", `d${parent}`, `n${name}`]);
}

/** Turns btrfs simple quotas on for the filesystem holding directory `dir` (no-op when on). */
export function encodeSimpleQuotas(id: number, dir: string): Buffer {
  if (dir === "") throw new Error("simple quotas need a directory");
  return frame([String(id), "squota", `p${dir}`]);
}

const INT = /^-?\d+$/;

/** One reply line (without its newline); undefined when it is not one. */
export function parseReply(line: string): Reply | undefined {
  const f = line.split(" ");
  if (f[0] === "x" && f.length === 4 && f.slice(1).every((x) => INT.test(x!))) {
    const code = Number(f[2]);
    const signal = Number(f[3]);
    return {
      kind: "exit",
      pid: Number(f[1]),
      code: code < 0 ? null : code,
      signal: signal < 0 ? null : signal,
    };
  }
  if (f[0] === "l" && f.length === 3 && f.slice(1).every((x) => /^\d+$/.test(x!)))
    return { kind: "leader", pid: Number(f[1]), leader: Number(f[2]) };
  if (!f[0] || !/^\d+$/.test(f[0])) return undefined;
  const id = Number(f[0]);
  if (f[1] === "ok" && f.length === 2) return { kind: "ok", id };
  if (f[1] === "ok" && f.length === 3 && /^\d+$/.test(f[2]!)) return { kind: "ok", id, pid: Number(f[2]) };
  if (f[1] === "err" && f.length === 4 && f[2] && /^\d+$/.test(f[3]!))
    return { kind: "err", id, stage: f[2], errno: Number(f[3]) };
  return undefined;
}
