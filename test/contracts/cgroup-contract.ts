/**
 * What every CgroupDriver must do, run against the host's hierarchies
 * (cgroup-contract.int.test.ts) and the in-memory fake
 * (test/unit/fakes/fake-cgroups.test.ts).
 */
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import type { CgroupDriver } from "../../agent/host/machines/cgroup-driver.js";
import { Code } from "../../common/errors.js";
import { expectCode } from "./expect-code.js";

const MiB = 1024 * 1024;

export interface CgroupBed {
  driver: CgroupDriver;
  /** A node name no other agent on this host uses. */
  node: string;
  /** Starts a process that joins `procsFiles`, then waits to be killed; returns its pid. */
  spawnIn(procsFiles: string[]): Promise<number>;
  alive(pid: number): boolean;
  cleanup(): Promise<void>;
}

export function cgroupContract(kind: string, make: () => Promise<CgroupBed>): void {
  describe(`CgroupDriver contract: ${kind}`, () => {
    let bed: CgroupBed;
    beforeAll(async () => {
      bed = await make();
    });
    afterAll(async () => {
      await bed?.cleanup();
    });

    it("computes a set without making it; create makes it with its limits; remove takes it away", () => {
      const d = bed.driver;
      expect(d.controllers()).toEqual(expect.arrayContaining(["memory", "pids"]));
      const limits = { memoryBytes: 64 * MiB, pids: 50 };
      const set = d.envSet(bed.node, "ct1", limits);
      expect(d.envSet(bed.node, "ct1", limits)).toEqual(set);
      expect(d.listEnvs(bed.node)).toEqual([]);
      d.create(set, limits);
      expect(d.listEnvs(bed.node)).toEqual(["ct1"]);
      expect(d.readLimits(set)).toEqual(limits);
      expect(d.pids(set)).toEqual([]);
      expect(d.memoryStats(set)).toMatchObject({ oomKills: 0 });
      expect(d.startProcsFiles(set).length).toBeGreaterThan(0);
      expect(d.remove(set)).toEqual([]);
      expect(d.listEnvs(bed.node)).toEqual([]);
      expect(d.remove(set)).toEqual([]);
    });

    it("holds a CPU limit only where one is set", () => {
      const d = bed.driver;
      const set = d.envSet(bed.node, "ct2", { cpus: 0.5 });
      d.create(set, { cpus: 0.5 });
      expect(d.readLimits(set)).toEqual({ cpus: 0.5 });
      expect(d.remove(set)).toEqual([]);
    });

    it("sees the processes that joined, kills them, and removes the set once they are gone", async () => {
      const d = bed.driver;
      const set = d.envSet(bed.node, "ct3", {});
      d.create(set, {});
      const pid = await bed.spawnIn(d.startProcsFiles(set));
      await vi.waitFor(() => expect(d.pids(set)).toEqual([pid]), { timeout: 5000, interval: 10 });
      expect(d.execProcsFiles(set).length).toBeGreaterThan(0);
      expect(d.killPayload(set)).toBe(false); // no nspawn, no payload
      expect(bed.alive(pid)).toBe(true);
      expect(await d.removeSettled(set, 5000)).toEqual([]);
      expect(bed.alive(pid)).toBe(false);
      expect(d.listEnvs(bed.node)).toEqual([]);
    });

    it("lists what an earlier life left and clears it through the full set", async () => {
      const d = bed.driver;
      const set = d.envSet(bed.node, "ct4", { memoryBytes: 32 * MiB });
      d.create(set, { memoryBytes: 32 * MiB });
      const pid = await bed.spawnIn(d.startProcsFiles(set));
      await vi.waitFor(() => expect(d.pids(set)).toEqual([pid]), { timeout: 5000, interval: 10 });
      expect(d.listEnvs(bed.node)).toEqual(["ct4"]);
      const all = d.envSet(bed.node, "ct4");
      d.kill(all);
      await vi.waitFor(() => expect(bed.alive(pid)).toBe(false), { timeout: 5000, interval: 10 });
      expect(await d.removeSettled(all)).toEqual([]);
      expect(d.listEnvs(bed.node)).toEqual([]);
    });

    it("refuses names that are not one path component", async () => {
      for (const [node, env] of [
        [bed.node, "../x"],
        [bed.node, ".."],
        ["a/b", "ct1"],
        [bed.node, ""],
      ] as const) {
        await expectCode(() => bed.driver.envSet(node, env), Code.INVALID_ARGUMENT, "BAD_NAME");
      }
    });
  });
}
