/**
 * CgroupDriver over the host's hierarchies (cgroups.ts does the work; this
 * binds it to one set of hierarchies and reads limits back).
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { invalidArgument } from "../../../common/errors.js";
import type { CgroupDriver, CgroupSet } from "./cgroup-driver.js";
import {
  cgroupPids,
  createCgroups,
  detectHierarchies,
  envCgroupSet,
  execProcsFiles,
  killCgroups,
  killPayload,
  limitControllers,
  listEnvCgroups,
  memoryStats,
  removeCgroups,
  removeCgroupsSettled,
  startProcsFiles,
} from "./cgroups.js";
import type { MachineLimits } from "./machine-driver.js";

/** Names that stay one path component (node and env names are checked by names.ts before). */
const SAFE_COMPONENT = /^(?!\.{1,2}$)[^/\0]{1,255}$/;

export class HostCgroups implements CgroupDriver {
  constructor(readonly hierarchies: Record<string, string> = detectHierarchies()) {}

  controllers(): string[] {
    return limitControllers(this.hierarchies);
  }

  envSet(node: string, env: string, limits?: MachineLimits): CgroupSet {
    for (const [what, name] of [
      ["node", node],
      ["env", env],
    ] as const) {
      if (!SAFE_COMPONENT.test(name)) {
        throw invalidArgument(`invalid ${what} name for a cgroup: ${JSON.stringify(name)}`, {
          reason: "BAD_NAME",
        });
      }
    }
    return envCgroupSet(this.hierarchies, node, env, limits);
  }

  create(set: CgroupSet, limits: MachineLimits): void {
    createCgroups(set, limits);
  }

  readLimits(set: CgroupSet): MachineLimits {
    const out: MachineLimits = {};
    const read = (dir: string | undefined, file: string) => {
      if (dir === undefined) return undefined;
      try {
        return readFileSync(join(dir, file), "utf8").trim();
      } catch {
        return undefined;
      }
    };
    const num = (s: string | undefined) => (s !== undefined && /^\d+$/.test(s) ? Number(s) : undefined);
    const u = set.dirs.unified;
    const v2 = set.v2Base !== undefined || set.scope !== undefined;
    // v1 "no limit" is a page-rounded LLONG_MAX; anything from 2^62 up means none
    const mem = v2 ? num(read(u, "memory.max")) : num(read(set.dirs.memory, "memory.limit_in_bytes"));
    if (mem !== undefined && mem < 2 ** 62) out.memoryBytes = mem;
    const pids = num(read(v2 ? u : set.dirs.pids, "pids.max"));
    if (pids !== undefined) out.pids = pids;
    let quota: number | undefined;
    let period: number | undefined;
    if (v2) {
      const [q, p] = (read(u, "cpu.max") ?? "").split(" ");
      quota = num(q);
      period = num(p);
    } else {
      quota = num(read(set.dirs.cpu, "cpu.cfs_quota_us"));
      period = num(read(set.dirs.cpu, "cpu.cfs_period_us"));
    }
    if (quota !== undefined && period) out.cpus = quota / period;
    return out;
  }

  startProcsFiles(set: CgroupSet): string[] {
    return startProcsFiles(set);
  }

  execProcsFiles(set: CgroupSet): string[] {
    return execProcsFiles(set);
  }

  pids(set: CgroupSet): number[] {
    return cgroupPids(set);
  }

  kill(set: CgroupSet): void {
    killCgroups(set);
  }

  killPayload(set: CgroupSet): boolean {
    return killPayload(set);
  }

  remove(set: CgroupSet): string[] {
    return removeCgroups(set);
  }

  removeSettled(set: CgroupSet, timeoutMs?: number): Promise<string[]> {
    return removeCgroupsSettled(set, timeoutMs);
  }

  memoryStats(set: CgroupSet) {
    return memoryStats(set);
  }

  listEnvs(node: string): string[] {
    return listEnvCgroups(this.hierarchies, node);
  }
}
