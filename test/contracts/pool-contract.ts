/**
 * What every PoolDriver must do with base versions and env roots, run against
 * the btrfs pool (pool-contract.int.test.ts) and the in-memory fake
 * (test/unit/fakes/fake-pool.test.ts). Each test removes the env roots it made.
 */
import { stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { PoolDriver } from "../../agent/host/pool/pool-driver.js";
import { Code } from "../../common/errors.js";
import { expectCode } from "./expect-code.js";

export interface PoolBed {
  pool: PoolDriver;
  /** A directory to import as a base (a busybox tree for the real pool). */
  rootfs: string;
  cleanup(): Promise<void>;
}

export function poolContract(kind: string, make: () => Promise<PoolBed>): void {
  describe(`PoolDriver contract: ${kind}`, () => {
    let bed: PoolBed;
    beforeAll(async () => {
      bed = await make();
      await bed.pool.importBase("ct-base", { dir: bed.rootfs });
      await bed.pool.importBase("ct-base", { dir: bed.rootfs });
    });
    afterAll(async () => {
      for (const r of (await bed?.pool.listEnvRoots()) ?? []) await bed.pool.removeEnvRoot(r.name);
      await bed?.cleanup();
    });

    it("numbers imported versions and resolves version 0 to the latest", async () => {
      const all = await bed.pool.listBaseVersions("ct-base");
      expect(all.map((m) => m.version)).toEqual([1, 2]);
      expect(all[0]).toMatchObject({ base: "ct-base", version: 1, source: `dir:${bed.rootfs}` });
      expect(await bed.pool.getBaseVersion("ct-base", 0)).toEqual(all[1]);
      expect(await bed.pool.getBaseVersion("ct-base", 1)).toEqual(all[0]);
      await expectCode(bed.pool.getBaseVersion("ct-base", 9), Code.NOT_FOUND, "BASE_NOT_FOUND");
      await expectCode(bed.pool.getBaseVersion("ct-nothing", 0), Code.NOT_FOUND, "BASE_NOT_FOUND");
      await expectCode(bed.pool.getBaseVersion("Bad Name", 0), Code.INVALID_ARGUMENT, "INVALID_NAME");
    });

    it("prepares a writable env root, lists, reopens and removes it (idempotent)", async () => {
      const root = await bed.pool.prepareEnvRoot("ct-env1", "ct-base", 0, []);
      expect(root).toMatchObject({ name: "ct-env1", base: "ct-base", version: 2, layers: [] });
      expect((await stat(root.rootDir)).isDirectory()).toBe(true);
      await writeFile(join(root.rootDir, "written"), "x");
      expect((await bed.pool.listEnvRoots()).map((r) => r.name)).toContain("ct-env1");
      expect(await bed.pool.openEnvRoot("ct-env1")).toEqual(root);
      await bed.pool.removeEnvRoot("ct-env1");
      expect(await bed.pool.openEnvRoot("ct-env1")).toBeUndefined();
      expect((await bed.pool.listEnvRoots()).map((r) => r.name)).not.toContain("ct-env1");
      await bed.pool.removeEnvRoot("ct-env1");
    });

    it("refuses a second root of the same name, an unknown base and bad names", async () => {
      await bed.pool.prepareEnvRoot("ct-env2", "ct-base", 1, []);
      await expectCode(
        bed.pool.prepareEnvRoot("ct-env2", "ct-base", 1, []),
        Code.ALREADY_EXISTS,
        "ENV_EXISTS",
      );
      await expectCode(bed.pool.prepareEnvRoot("ct-env3", "ct-nothing", 0, []), Code.NOT_FOUND);
      await expectCode(
        bed.pool.prepareEnvRoot("../x", "ct-base", 1, []),
        Code.INVALID_ARGUMENT,
        "INVALID_NAME",
      );
      expect((await bed.pool.listEnvRoots()).map((r) => r.name).sort()).toEqual(["ct-env2"]);
      await bed.pool.removeEnvRoot("ct-env2");
    });

    it("keeps a base version while an env root uses it", async () => {
      const v = await bed.pool.importBase("ct-del", { dir: bed.rootfs });
      await bed.pool.prepareEnvRoot("ct-env4", "ct-del", v.version, []);
      await expectCode(
        bed.pool.deleteBaseVersion("ct-del", v.version),
        Code.FAILED_PRECONDITION,
        "BASE_IN_USE",
      );
      await bed.pool.removeEnvRoot("ct-env4");
      expect(await bed.pool.deleteBaseVersion("ct-del", v.version)).toEqual([]);
      await expectCode(bed.pool.getBaseVersion("ct-del", v.version), Code.NOT_FOUND);
    });

    it("seals an env root as the next version of another base", async () => {
      await bed.pool.prepareEnvRoot("ct-env5", "ct-base", 2, []);
      const m = await bed.pool.snapshotEnvAsBase("ct-env5", "ct-snap");
      expect(m).toMatchObject({ base: "ct-snap", version: 1, source: "env:ct-env5", parent: "ct-base@2" });
      await bed.pool.removeEnvRoot("ct-env5");
      expect(await bed.pool.deleteBaseVersion("ct-snap", 1)).toEqual([]);
    });

    it("removes env roots the caller does not know at startup", async () => {
      await bed.pool.prepareEnvRoot("ct-kept", "ct-base", 1, []);
      await bed.pool.prepareEnvRoot("ct-stray", "ct-base", 1, []);
      const removed = await bed.pool.cleanOrphans(new Set(["ct-kept"]));
      expect(removed).toContain("@env/ct-stray");
      expect((await bed.pool.listEnvRoots()).map((r) => r.name)).toEqual(["ct-kept"]);
      await bed.pool.removeEnvRoot("ct-kept");
    });
  });
}
