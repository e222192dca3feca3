/**
 * CgroupDriver in memory: a set's dirs are names under a fake root, each
 * with its limits and member pids; "processes" are numbers that live until
 * killed. It computes and refuses what HostCgroups does on a hybrid v1 host
 * (test/contracts/cgroup-contract.ts holds both to the same behaviour).
 */
import { dirname, join } from "node:path";
import type { CgroupDriver, CgroupSet } from "../../agent/host/machines/cgroup-driver.js";
import type { MachineLimits } from "../../agent/host/machines/machine-driver.js";
import { invalidArgument } from "../../common/errors.js";

const SAFE_COMPONENT = /^(?!\.{1,2}$)[^/\0]{1,255}$/;
const HIERARCHIES = ["memory", "cpu", "pids", "systemd", "unified"];

interface FakeDir {
  limits: MachineLimits;
  pids: Set<number>;
}

export class FakeCgroups implements CgroupDriver {
  /** Dir → what is in it. */
  readonly dirs = new Map<string, FakeDir>();
  /** Pids started by join() that are not killed yet. */
  readonly live = new Set<number>();
  private nextPid = 50_000;

  constructor(
    readonly root = "/fake-cgroup",
    private readonly limitControllers = ["memory", "cpu", "pids"],
  ) {}

  /** A new process that joined `procsFiles` (what nspawn's wrapper and exec slots do). */
  join(procsFiles: string[]): number {
    const pid = this.nextPid++;
    this.live.add(pid);
    for (const f of procsFiles) {
      const d = this.dirs.get(dirname(f));
      if (!d) throw new Error(`no cgroup ${dirname(f)}`);
      d.pids.add(pid);
    }
    return pid;
  }

  controllers(): string[] {
    return [...this.limitControllers];
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
    const dirs: Record<string, string> = {};
    for (const c of HIERARCHIES) {
      if (limits && c === "cpu" && !(limits.cpus && limits.cpus > 0)) continue;
      dirs[c] = join(this.root, c, "protoctl", node, env);
    }
    return { dirs };
  }

  create(set: CgroupSet, limits: MachineLimits): void {
    for (const [c, dir] of Object.entries(set.dirs)) {
      const own: MachineLimits = {};
      if (c === "memory" && limits.memoryBytes) own.memoryBytes = limits.memoryBytes;
      if (c === "cpu" && limits.cpus) own.cpus = limits.cpus;
      if (c === "pids" && limits.pids) own.pids = limits.pids;
      const d = this.dirs.get(dir);
      if (d) Object.assign(d.limits, own);
      else this.dirs.set(dir, { limits: own, pids: new Set() });
    }
  }

  readLimits(set: CgroupSet): MachineLimits {
    const out: MachineLimits = {};
    for (const dir of Object.values(set.dirs)) Object.assign(out, this.dirs.get(dir)?.limits);
    return out;
  }

  startProcsFiles(set: CgroupSet): string[] {
    return Object.values(set.dirs).map((d) => join(d, "cgroup.procs"));
  }

  execProcsFiles(set: CgroupSet): string[] {
    return Object.values(set.dirs)
      .filter((d) => this.dirs.has(d))
      .map((d) => join(d, "cgroup.procs"));
  }

  pids(set: CgroupSet): number[] {
    const out = new Set<number>();
    for (const dir of Object.values(set.dirs)) for (const p of this.dirs.get(dir)?.pids ?? []) out.add(p);
    return [...out];
  }

  kill(set: CgroupSet): void {
    for (const pid of this.pids(set)) {
      this.live.delete(pid);
      for (const d of this.dirs.values()) d.pids.delete(pid);
    }
  }

  killPayload(_set: CgroupSet): boolean {
    return false; // no nspawn here: never a payload
  }

  remove(set: CgroupSet): string[] {
    const left: string[] = [];
    for (const dir of Object.values(set.dirs)) {
      const d = this.dirs.get(dir);
      if (d && d.pids.size > 0) left.push(dir);
      else this.dirs.delete(dir);
    }
    return left;
  }

  async removeSettled(set: CgroupSet): Promise<string[]> {
    this.kill(set);
    return this.remove(set);
  }

  memoryStats(set: CgroupSet): { usageBytes: number; oomKills: number } | undefined {
    const mem = set.dirs.memory;
    if (mem === undefined || !this.dirs.has(mem)) return undefined;
    return { usageBytes: this.dirs.get(mem)!.pids.size * 1024 * 1024, oomKills: 0 };
  }

  listEnvs(node: string): string[] {
    const names = new Set<string>();
    for (const dir of this.dirs.keys())
      if (dirname(dir).endsWith(`/protoctl/${node}`)) names.add(dir.split("/").at(-1)!);
    return [...names];
  }
}
