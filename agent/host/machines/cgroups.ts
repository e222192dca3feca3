/**
 * The env's cgroups, made by the agent itself: `--property` is ignored with
 * `--keep-unit` (no system bus), so limits only hold when nspawn is started
 * from inside cgroups we made and limited, and every exec'd process joins them.
 *
 * Hybrid hierarchy here: v1 memory, cpu, pids carry the limits; name=systemd
 * and the unified tree are where nspawn puts its `supervisor` and `payload`
 * children (below its own cgroup, so each env needs its own dir there too, or
 * all machines would share one `/payload`). The unified tree also gives
 * `cgroup.kill` to end everything at once.
 *
 * Each env's dir is `<mount>/<agent's own cgroup>/protoctl/<node>/<env>`: below
 * the agent's cgroup, so whatever limits its supervisor set still apply.
 *
 * Pure cgroup v2 (one unified hierarchy): the set has only `unified`, the
 * env's dir below the agent's base, with `v2Base` set; cgroup-v2.ts makes the
 * tree and the limits. Everything else here (joins, kill, removal) is shared.
 *
 * Pure v2 with systemd as PID 1: one transient scope per env
 * (systemd-scopes.ts); `dirs.unified` is the scope's dir and `scope` its unit.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { detectCgroupMode, parseControllers, parseProcCgroup } from "../../../common/cgroup-mode.js";
import type { MachineLimits } from "../interfaces.js";
import { prepareV2Tree, v2LimitWrites, v2MemoryStats } from "./cgroup-v2.js";
import { listScopeEnvs, SCOPE_SLICE, SCOPES_KEY, scopeUnit, systemdScopesUsable } from "./systemd-scopes.js";

export { parseProcCgroup };

export const CGROUP_ROOT = "/sys/fs/cgroup";
const LIMIT_CONTROLLERS = ["memory", "cpu", "pids"] as const;
const CPU_PERIOD_US = 100_000;

export interface CgroupSet {
  /** Controller name ("memory", "cpu", "pids", "systemd", "unified") → absolute dir. */
  dirs: Record<string, string>;
  /** Pure cgroup v2: the agent's base dir; `dirs.unified` is the env's dir below it. */
  v2Base?: string;
  /** systemd scope mode: the env's scope unit (systemd makes and removes its dir). */
  scope?: string;
}

/** Key of the agent's base dir in the hierarchies of a pure v2 host. */
export const V2_KEY = "v2";

/** Mounted hierarchies we use, with the agent's own path in each. */
export function detectHierarchies(
  selfCgroup = readFileSync("/proc/self/cgroup", "utf8"),
): Record<string, string> {
  const host = detectCgroupMode("/", selfCgroup);
  if (host.mode === "v2") {
    if (systemdScopesUsable()) return { [SCOPES_KEY]: join(CGROUP_ROOT, SCOPE_SLICE) };
    return { [V2_KEY]: join(CGROUP_ROOT, host.base!) };
  }
  const own = parseProcCgroup(selfCgroup);
  const out: Record<string, string> = {};
  for (const c of [...LIMIT_CONTROLLERS, "systemd", "unified"]) {
    const mount = join(CGROUP_ROOT, c);
    if (own[c] !== undefined && existsSync(join(mount, "cgroup.procs"))) out[c] = join(mount, own[c]!);
  }
  return out;
}

/** The limit controllers envs can use with these hierarchies (v2: what the base dir offers its children). */
export function limitControllers(hierarchies: Record<string, string>): string[] {
  // scopes: systemd enables what a scope's properties need, from what the root offers
  const v2 = hierarchies[SCOPES_KEY] !== undefined ? CGROUP_ROOT : hierarchies[V2_KEY];
  if (v2 === undefined) return LIMIT_CONTROLLERS.filter((c) => hierarchies[c] !== undefined);
  let offered: string[] = [];
  try {
    offered = parseControllers(readFileSync(join(v2, "cgroup.controllers"), "utf8"));
  } catch {
    // no such dir: nothing to offer
  }
  return LIMIT_CONTROLLERS.filter((c) => offered.includes(c));
}

/**
 * The env's cgroup dirs. With `limits`, the cpu controller is left out unless
 * a CPU limit is set (as systemd does on v1 without CPUQuota/CPUWeight): a
 * cpu cgroup makes the whole env one scheduling entity, which under load
 * slowed nspawn's start by ~20 ms here. memory and pids always: exec'd
 * processes must not be charged to the agent's own memory cgroup.
 */
export function envCgroupSet(
  hierarchies: Record<string, string>,
  node: string,
  env: string,
  limits?: MachineLimits,
): CgroupSet {
  const dirs: Record<string, string> = {};
  const slice = hierarchies[SCOPES_KEY];
  if (slice !== undefined)
    return { dirs: { unified: join(slice, scopeUnit(node, env)) }, scope: scopeUnit(node, env) };
  const v2 = hierarchies[V2_KEY];
  if (v2 !== undefined) return { dirs: { unified: join(v2, "protoctl", node, env) }, v2Base: v2 };
  for (const [c, base] of Object.entries(hierarchies)) {
    if (limits && c === "cpu" && !(limits.cpus && limits.cpus > 0)) continue;
    dirs[c] = join(base, "protoctl", node, env);
  }
  return { dirs };
}

/** The limit files to write, as [controller, file, value], in write order. */
export function limitWrites(limits: MachineLimits, hasMemsw: boolean): Array<[string, string, string]> {
  const w: Array<[string, string, string]> = [];
  if (limits.memoryBytes && limits.memoryBytes > 0) {
    w.push(["memory", "memory.limit_in_bytes", String(limits.memoryBytes)]);
    if (hasMemsw) w.push(["memory", "memory.memsw.limit_in_bytes", String(limits.memoryBytes)]);
  }
  if (limits.cpus && limits.cpus > 0) {
    w.push(["cpu", "cpu.cfs_period_us", String(CPU_PERIOD_US)]);
    w.push(["cpu", "cpu.cfs_quota_us", String(Math.max(1000, Math.round(limits.cpus * CPU_PERIOD_US)))]);
  }
  if (limits.pids && limits.pids > 0) w.push(["pids", "pids.max", String(limits.pids)]);
  return w;
}

/** Creates the env's cgroups and writes its limits. */
export function createCgroups(set: CgroupSet, limits: MachineLimits): void {
  if (set.scope !== undefined) return; // systemd-run makes the scope, limits included
  if (set.v2Base !== undefined) {
    const dir = set.dirs.unified!;
    prepareV2Tree(set.v2Base, dir, resolve(CGROUP_ROOT));
    const hasSwap = existsSync(join(dir, "memory.swap.max"));
    for (const [file, value] of v2LimitWrites(limits, hasSwap)) writeFileSync(join(dir, file), value);
    return;
  }
  for (const dir of Object.values(set.dirs)) {
    try {
      mkdirSync(dir, { recursive: true });
    } catch {
      // another agent removed an empty shared parent in between: once more
      mkdirSync(dir, { recursive: true });
    }
  }
  const mem = set.dirs.memory;
  const hasMemsw = mem !== undefined && existsSync(join(mem, "memory.memsw.limit_in_bytes"));
  for (const [c, file, value] of limitWrites(limits, hasMemsw)) {
    const dir = set.dirs[c];
    if (dir) writeFileSync(join(dir, file), value);
  }
}

/** cgroup.procs files nspawn's wrapper joins before exec'ing nspawn. */
export function startProcsFiles(set: CgroupSet): string[] {
  if (set.scope !== undefined) return []; // systemd-run moves itself into the scope
  return Object.values(set.dirs).map((d) => join(d, "cgroup.procs"));
}

/** cgroup.procs files an exec'd process joins: the limit cgroups and nspawn's `payload`. */
export function execProcsFiles(set: CgroupSet): string[] {
  const out: string[] = [];
  for (const [c, d] of Object.entries(set.dirs)) {
    const dir = c === "systemd" || c === "unified" ? join(d, "payload") : d;
    if (existsSync(dir)) out.push(join(dir, "cgroup.procs"));
  }
  return out;
}

export function cgroupPids(set: CgroupSet): number[] {
  const pids = new Set<number>();
  for (const d of Object.values(set.dirs)) {
    for (const dir of [d, ...subdirsDeepestFirst(d)]) {
      try {
        for (const p of readFileSync(join(dir, "cgroup.procs"), "utf8").split("\n"))
          if (p) pids.add(Number(p));
      } catch {
        // absent
      }
    }
  }
  return [...pids];
}

/** Kills every process in the env's cgroups (unified cgroup.kill, else SIGKILL each pid). */
export function killCgroups(set: CgroupSet): void {
  const u = set.dirs.unified;
  if (u && existsSync(join(u, "cgroup.kill"))) {
    try {
      writeFileSync(join(u, "cgroup.kill"), "1");
    } catch {
      // fall through to per-pid kill
    }
  }
  for (const pid of cgroupPids(set)) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // gone
    }
  }
}

/**
 * Kills only the container (nspawn's `payload` cgroup), so nspawn itself
 * sees its child die and exits on its own, undoing what it set up (e.g. the
 * nftables rules of `--port`). Returns false when there is no payload cgroup.
 */
export function killPayload(set: CgroupSet): boolean {
  const u = set.dirs.unified;
  if (u && existsSync(join(u, "payload", "cgroup.kill"))) {
    try {
      writeFileSync(join(u, "payload", "cgroup.kill"), "1");
      return true;
    } catch {
      // fall through
    }
  }
  const sd = set.dirs.systemd;
  if (!sd) return false;
  let any = false;
  try {
    for (const p of readFileSync(join(sd, "payload", "cgroup.procs"), "utf8").split("\n")) {
      if (!p) continue;
      any = true;
      try {
        process.kill(Number(p), "SIGKILL");
      } catch {
        // gone
      }
    }
  } catch {
    return false;
  }
  return any;
}

/** Removes the env's cgroup dirs (children nspawn made first). Returns dirs that could not go. */
export function removeCgroups(set: CgroupSet): string[] {
  const left: string[] = [];
  for (const d of Object.values(set.dirs)) {
    // depth first: nspawn's payload/supervisor, and below payload whatever systemd made in a booted env
    for (const dir of [...subdirsDeepestFirst(d), d]) {
      try {
        rmdirSync(dir);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "ENOENT") left.push(dir);
      }
    }
    // `<node>` and `protoctl` go too once empty (another env or agent may still use them);
    // a scope's parent is systemd's slice.
    if (set.scope !== undefined) continue;
    for (const dir of [dirname(d), dirname(dirname(d))]) {
      try {
        rmdirSync(dir);
      } catch {
        break;
      }
    }
  }
  return left;
}

/**
 * Kills what is left and removes the dirs, again and again for up to
 * `timeoutMs`: a killed process leaves its cgroups only once it has exited,
 * and until then rmdir says EBUSY (the memory controller first, as it is
 * removed first). Returns the dirs still there at the end.
 */
export async function removeCgroupsSettled(set: CgroupSet, timeoutMs = 3000): Promise<string[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    killCgroups(set);
    const left = removeCgroups(set);
    if (left.length === 0 || Date.now() >= deadline) return left;
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Every directory below `dir`, children before their parents. */
function subdirsDeepestFirst(dir: string): string[] {
  const out: string[] = [];
  let entries: import("node:fs").Dirent[];
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return out;
  }
  for (const e of entries) {
    if (!e.isDirectory()) continue;
    const sub = join(dir, e.name);
    out.push(...subdirsDeepestFirst(sub), sub);
  }
  return out;
}

/** Memory usage and OOM kills of the env, when the memory controller is there. */
export function memoryStats(set: CgroupSet): { usageBytes: number; oomKills: number } | undefined {
  if (set.v2Base !== undefined || set.scope !== undefined) return v2MemoryStats(set.dirs.unified!);
  const d = set.dirs.memory;
  if (!d) return undefined;
  try {
    const usageBytes = Number(readFileSync(join(d, "memory.usage_in_bytes"), "utf8"));
    const oc = readFileSync(join(d, "memory.oom_control"), "utf8");
    const oomKills = Number(/oom_kill (\d+)/.exec(oc)?.[1] ?? 0);
    return { usageBytes, oomKills };
  } catch {
    return undefined;
  }
}

/** Env names that have a cgroup dir of this node in any hierarchy. */
export function listEnvCgroups(hierarchies: Record<string, string>, node: string): string[] {
  const slice = hierarchies[SCOPES_KEY];
  if (slice !== undefined) return listScopeEnvs(slice, node);
  const names = new Set<string>();
  for (const base of Object.values(hierarchies)) {
    try {
      for (const e of readdirSync(join(base, "protoctl", node), { withFileTypes: true })) {
        if (e.isDirectory()) names.add(e.name);
      }
    } catch {
      // no dir for this node in that hierarchy
    }
  }
  return [...names];
}
