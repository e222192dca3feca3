/**
 * Small /proc readers: process liveness (with start time against pid reuse),
 * children, and the container leader of an nspawn process. Synchronous reads
 * of tiny files: cheaper than anything asynchronous on the start/exec path.
 */
import { readdirSync, readFileSync, readlinkSync } from "node:fs";

/** Fields of /proc/<pid>/stat after the command name: state and start time (clock ticks). */
export function parseStat(stat: string): { state: string; ppid: number; startTime: number } | undefined {
  const close = stat.lastIndexOf(")");
  if (close < 0) return undefined;
  const f = stat.slice(close + 2).split(" ");
  // f[0] is field 3 (state); starttime is field 22.
  const state = f[0];
  const ppid = Number(f[1]);
  const startTime = Number(f[19]);
  if (!state || !Number.isFinite(startTime)) return undefined;
  return { state, ppid, startTime };
}

export function procStat(pid: number): { state: string; ppid: number; startTime: number } | undefined {
  try {
    return parseStat(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return undefined;
  }
}

/** True when pid exists, is not a zombie, and (when given) started at `startTime`. */
export function isAlive(pid: number, startTime?: number): boolean {
  const st = procStat(pid);
  if (!st || st.state === "Z" || st.state === "X") return false;
  return startTime === undefined || st.startTime === startTime;
}

export function childrenOf(pid: number): number[] {
  const out: number[] = [];
  let tasks: string[];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const t of tasks) {
    try {
      for (const c of readFileSync(`/proc/${pid}/task/${t}/children`, "utf8").split(" ")) {
        if (c.trim()) out.push(Number(c));
      }
    } catch {
      // thread went away
    }
  }
  return out;
}

function link(path: string): string | undefined {
  try {
    return readlinkSync(path);
  } catch {
    return undefined;
  }
}

/**
 * The container's PID 1 once it runs its payload: a child of nspawn in another
 * PID namespace whose executable is no longer nspawn's (before its exec the
 * inner child is still a copy of nspawn, mounts half made).
 */
export function findLeader(nspawnPid: number): number | undefined {
  const ns = link(`/proc/${nspawnPid}/ns/pid`);
  const exe = link(`/proc/${nspawnPid}/exe`);
  if (!ns || !exe) return undefined;
  for (const c of childrenOf(nspawnPid)) {
    const cns = link(`/proc/${c}/ns/pid`);
    if (!cns || cns === ns) continue;
    const cexe = link(`/proc/${c}/exe`);
    if (cexe && cexe !== exe) return c;
  }
  return undefined;
}

/** True when `pid` no longer runs nspawn's executable (the leader has exec'd its payload). */
export function hasExecd(pid: number, nspawnPid: number): boolean {
  const exe = link(`/proc/${pid}/exe`);
  const nspawnExe = link(`/proc/${nspawnPid}/exe`);
  return exe !== undefined && nspawnExe !== undefined && exe !== nspawnExe;
}

export function cmdline(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").filter(Boolean);
  } catch {
    return [];
  }
}
