/**
 * The env cgroups' narrow interface: what the nspawn driver asks of the
 * host's cgroup hierarchies (HostCgroups, host-cgroups.ts, over cgroups.ts);
 * test/fakes/fake-cgroups.ts keeps the same contract in memory
 * (test/contracts/cgroup-contract.ts holds both to it).
 */
import type { CgroupSet } from "./cgroups.js";
import type { MachineLimits } from "./machine-driver.js";

export type { CgroupSet };

export interface CgroupDriver {
  /** The limit controllers envs can use on this host ("memory", "cpu", "pids"). */
  controllers(): string[];
  /**
   * The env's cgroup dirs, computed (nothing is made). With `limits`, only
   * the controllers they need (cpu only with a CPU limit); without, every
   * hierarchy (to find what an earlier life left). Path-unsafe names are refused.
   */
  envSet(node: string, env: string, limits?: MachineLimits): CgroupSet;
  /** Makes the set's dirs and writes the limits. */
  create(set: CgroupSet, limits: MachineLimits): void;
  /** The limits the host holds for the set now, read back (unset = unlimited). */
  readLimits(set: CgroupSet): MachineLimits;
  /** cgroup.procs files a process writes its pid to before exec'ing nspawn. */
  startProcsFiles(set: CgroupSet): string[];
  /** cgroup.procs files an exec'd process joins (the limit cgroups and nspawn's payload). */
  execProcsFiles(set: CgroupSet): string[];
  /** Every process in the set's cgroups, children included. */
  pids(set: CgroupSet): number[];
  /** SIGKILLs every process in the set. */
  kill(set: CgroupSet): void;
  /** Kills only nspawn's payload (the container); false when it has none. */
  killPayload(set: CgroupSet): boolean;
  /** Removes the set's dirs, children first; returns those still busy. Idempotent. */
  remove(set: CgroupSet): string[];
  /** Kills and removes until nothing is left or `timeoutMs` passed; returns what stayed. */
  removeSettled(set: CgroupSet, timeoutMs?: number): Promise<string[]>;
  /** Memory usage and OOM kills, when the memory controller is there. */
  memoryStats(set: CgroupSet): { usageBytes: number; oomKills: number } | undefined;
  /** Env names of `node` that have cgroups on this host. */
  listEnvs(node: string): string[];
}
