/**
 * Which cgroup layout the host has, and so how the agent limits envs: the
 * same answer for `protoctl doctor` and for the agent's machine driver.
 *
 * - `hybrid`: v1 controllers (memory, cpu, pids) each on their own mount,
 *   plus name=systemd and an (often empty) unified tree: the v1 limit files.
 * - `v2`: one unified hierarchy at /sys/fs/cgroup: each env gets a cgroup
 *   below the agent's own (memory.max, cpu.max, pids.max), the controllers
 *   enabled in subtree_control of the dirs the agent made (cgroup-v2.ts).
 * - `none`: neither: envs run, but no limit can be enforced.
 *
 * Pure functions take the files' text; `detectCgroupMode` reads them.
 */
import { existsSync, readFileSync } from "node:fs";
import { join, posix } from "node:path";

export type CgroupMode = "hybrid" | "v2" | "none";
export const LIMIT_CONTROLLERS = ["memory", "cpu", "pids"] as const;
export type LimitController = (typeof LIMIT_CONTROLLERS)[number];

/**
 * On v2 the agent moves the processes of its own cgroup into this leaf (the
 * "no internal processes" rule: a cgroup that enables controllers for its
 * children may hold no process itself); an agent found in it uses the parent.
 */
export const AGENT_LEAF = "protoctl-agent";

export interface CgroupHost {
  mode: CgroupMode;
  /** v2: the agent's base cgroup dir (envs go to `<base>/protoctl/<node>/<env>`). */
  base?: string;
  /** Limit controllers the agent can use for envs. */
  available: LimitController[];
  /** v2 under systemd: envs in systemd scopes (systemdScopesUsable). */
  scopes?: boolean;
}

/** Parses /proc/<pid>/cgroup into controller → path (v1 "name=systemd" → "systemd", v2 → "unified"). */
export function parseProcCgroup(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split("\n")) {
    const m = /^(\d+):([^:]*):(.*)$/.exec(line);
    if (!m) continue;
    const [, id, ctrls, path] = m;
    if (id === "0" && ctrls === "") out.unified = path!;
    for (const c of ctrls!.split(",")) {
      if (c) out[c.replace(/^name=/, "")] = path!;
    }
  }
  return out;
}

/** A cgroup.controllers or cgroup.subtree_control file's controller names. */
export function parseControllers(text: string): string[] {
  return text.split(/\s+/).filter((c) => c !== "");
}

/** The agent's base cgroup path on v2: its own, or the parent of the leaf it moved into. */
export function v2BasePath(ownPath: string): string {
  return posix.basename(ownPath) === AGENT_LEAF ? posix.dirname(ownPath) : ownPath;
}

export interface CgroupFacts {
  /** /proc/self/cgroup. */
  selfCgroup: string;
  /** /sys/fs/cgroup/cgroup.controllers when /sys/fs/cgroup is itself cgroup2, else undefined. */
  rootControllers?: string;
  /** v1 controllers mounted at /sys/fs/cgroup/<name>. */
  v1Mounted: string[];
  /** cgroup.controllers of the v2 base dir (what its children may use). */
  baseControllers?: string;
}

/** The mode and what it offers, from the facts (pure). */
export function classifyCgroups(f: CgroupFacts): CgroupHost {
  const own = parseProcCgroup(f.selfCgroup);
  if (f.rootControllers !== undefined && own.unified !== undefined) {
    const usable = parseControllers(f.baseControllers ?? "");
    return {
      mode: "v2",
      base: v2BasePath(own.unified),
      available: LIMIT_CONTROLLERS.filter((c) => usable.includes(c)),
    };
  }
  const v1 = LIMIT_CONTROLLERS.filter((c) => f.v1Mounted.includes(c) && own[c] !== undefined);
  if (v1.length > 0) return { mode: "hybrid", available: v1 };
  return { mode: "none", available: [] };
}

function readOr(path: string): string | undefined {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return undefined;
  }
}

/** Reads the facts under `root` ("/" but in tests) and classifies them. */
export function detectCgroupMode(root = "/", selfCgroup?: string): CgroupHost {
  const cg = join(root, "sys/fs/cgroup");
  const self = selfCgroup ?? readOr(join(root, "proc/self/cgroup")) ?? "";
  const rootControllers = readOr(join(cg, "cgroup.controllers"));
  const v1Mounted = LIMIT_CONTROLLERS.filter((c) => existsSync(join(cg, c, "cgroup.procs")));
  let baseControllers: string | undefined;
  const own = parseProcCgroup(self).unified;
  if (rootControllers !== undefined && own !== undefined) {
    baseControllers = readOr(join(cg, v2BasePath(own), "cgroup.controllers"));
  }
  return classifyCgroups({ selfCgroup: self, rootControllers, v1Mounted, baseControllers });
}

/** What a limit needs, for the error when the host lacks it. */
export const LIMIT_FLAGS: Record<LimitController, string> = {
  memory: "--memory",
  cpu: "--cpus",
  pids: "--pids",
};

/** The controllers the given limits need that are not available (pure). */
export function missingControllers(
  limits: { memoryBytes?: number; cpus?: number; pids?: number },
  available: readonly string[],
): LimitController[] {
  const need: LimitController[] = [];
  if (limits.memoryBytes && limits.memoryBytes > 0) need.push("memory");
  if (limits.cpus && limits.cpus > 0) need.push("cpu");
  if (limits.pids && limits.pids > 0) need.push("pids");
  return need.filter((c) => !available.includes(c));
}

/**
 * True where a v2 agent puts each env in a systemd scope of its own
 * (agent/host/machines/systemd-scopes.ts says why): systemd is PID 1 (it made
 * /run/systemd/system) and systemd-run exists. PROTOCTL_SYSTEMD_SCOPES=0 opts out.
 */
export function systemdScopesUsable(root = "/"): boolean {
  if (process.env.PROTOCTL_SYSTEMD_SCOPES === "0") return false;
  return (
    existsSync(join(root, "run/systemd/system")) &&
    ["usr/bin/systemd-run", "bin/systemd-run"].some((p) => existsSync(join(root, p)))
  );
}

/** One line for doctor and logs: the mode and where envs' cgroups go. */
export function describeCgroupHost(h: CgroupHost): string {
  const ctrls = h.available.length ? h.available.join(" ") : "no limit controllers";
  switch (h.mode) {
    case "hybrid":
      return `hybrid (cgroup v1 limits): ${ctrls}`;
    case "v2":
      if (h.scopes)
        return `cgroup v2 unified, systemd PID 1: each env in a scope protoctl.slice/protoctl_<node>_<env>.scope, ${ctrls}`;
      return `cgroup v2 unified: envs below ${h.base === "/" ? "" : h.base}/protoctl, ${ctrls}`;
    default:
      return "no usable cgroup hierarchy";
  }
}
