/**
 * The pool on real btrfs: open (tmpfs kind), import a busybox tree, plain env
 * roots (snapshot only), reopen after close finds everything, bad input.
 */
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { Code } from "../../../common/errors.js";
import { run } from "../../../common/exec.js";
import { silentLogger } from "../../../common/logger.js";
import { makeBusyboxRootfs } from "../../../test/fixtures/rootfs.js";
import { loopBackingFile } from "../attachments/loop.js";
import { findMount } from "./mounts.js";
import { type BtrfsPool, openPool } from "./pool.js";

const log = silentLogger();
let stateDir: string;
let rootfs: string;
let pool: BtrfsPool;

beforeAll(async () => {
  stateDir = await mkdtemp(join(tmpdir(), "protoctl-pool-basics-"));
  rootfs = await makeBusyboxRootfs(join(stateDir, "rootfs"));
  pool = await openPool({ kind: "tmpfs", stateDir, sizeBytes: 512 * 1024 * 1024 }, log);
});

afterAll(async () => {
  await pool?.destroy();
  await rm(stateDir, { recursive: true, force: true });
});

describe("btrfs pool", () => {
  it("creates the layout subvolumes on a tmpfs-backed loop device", async () => {
    for (const d of ["@init", "@base", "@overlay", "@env", "@workdir", "@cache"]) {
      expect((await stat(join(pool.mountpoint, d))).ino).toBe(256);
    }
    expect((await findMount(pool.mountpoint))?.fstype).toBe("btrfs");
    expect((await findMount(join(stateDir, "pool/tmpfs")))?.fstype).toBe("tmpfs");
    const cap = await pool.capacity();
    expect(cap.sizeBytes).toBe(512 * 1024 * 1024);
    expect(cap.freeBytes).toBeGreaterThan(0);
  });

  it("imports a directory as a read-only version with metadata", async () => {
    const m = await pool.importBase("busybox", { dir: rootfs });
    expect(m).toMatchObject({ base: "busybox", version: 1, source: `dir:${rootfs}` });
    expect(m.recipeDigest).toMatch(/^[0-9a-f]{64}$/);
    expect(m.sizeBytes).toBeGreaterThan(1_000_000);
    await expect(writeFile(join(pool.mountpoint, "@base/busybox@1/root/x"), "x")).rejects.toThrow(
      /read-only/,
    );
    const m2 = await pool.importBase("busybox", { dir: rootfs });
    expect(m2.version).toBe(2);
    expect(await pool.getBaseVersion("busybox", 0)).toEqual(m2);
  });

  it("prepares a plain env root as a writable snapshot and removes it (idempotent)", async () => {
    const env = await pool.prepareEnvRoot("e1", "busybox", 1, []);
    expect(env).toMatchObject({ name: "e1", base: "busybox", version: 1, layers: [] });
    expect((await stat(env.rootDir)).ino).toBe(256);
    await writeFile(join(env.rootDir, "hello"), "world");
    expect(await readFile(join(env.rootDir, "hello"), "utf8")).toBe("world");
    expect((await pool.listEnvRoots()).map((e) => e.name)).toEqual(["e1"]);
    await pool.removeEnvRoot("e1");
    await pool.removeEnvRoot("e1");
    expect(await pool.listEnvRoots()).toEqual([]);
    expect(await pool.openEnvRoot("e1")).toBeUndefined();
  });

  it("rejects bad input with the right code and changes nothing", async () => {
    const before = await pool.listBaseVersions();
    await expect(pool.importBase("Bad_Name", { dir: rootfs })).rejects.toMatchObject({
      code: Code.INVALID_ARGUMENT,
    });
    await expect(pool.prepareEnvRoot("../x", "busybox", 1, [])).rejects.toMatchObject({
      code: Code.INVALID_ARGUMENT,
    });
    await expect(pool.prepareEnvRoot("e2", "nope", 0, [])).rejects.toMatchObject({
      code: Code.NOT_FOUND,
      reason: "BASE_NOT_FOUND",
    });
    await expect(pool.prepareEnvRoot("e2", "busybox", 9, [])).rejects.toMatchObject({ code: Code.NOT_FOUND });
    await expect(pool.prepareEnvRoot("e2", "busybox", 1, ["nolayer"])).rejects.toMatchObject({
      code: Code.NOT_FOUND,
      reason: "LAYER_NOT_FOUND",
    });
    await expect(pool.importBase("other", { dir: join(stateDir, "missing") })).rejects.toMatchObject({
      code: Code.NOT_FOUND,
    });
    await pool.prepareEnvRoot("e2", "busybox", 1, []);
    await expect(pool.prepareEnvRoot("e2", "busybox", 2, [])).rejects.toMatchObject({
      code: Code.ALREADY_EXISTS,
    });
    expect((await pool.listEnvRoots()).map((e) => [e.name, e.version])).toEqual([["e2", 1]]);
    await pool.removeEnvRoot("e2");
    expect(await pool.listBaseVersions()).toEqual(before);
  });

  it("reopens after close and finds every object", async () => {
    await pool.prepareEnvRoot("keep", "busybox", 2, []);
    await pool.close();
    pool = await openPool({ kind: "tmpfs", stateDir, sizeBytes: 512 * 1024 * 1024 }, log);
    expect((await pool.listBaseVersions("busybox")).map((m) => m.version)).toEqual([1, 2]);
    expect((await pool.openEnvRoot("keep"))?.version).toBe(2);
    expect(await pool.cleanOrphans(new Set(["keep"]))).toEqual([]);
    await pool.removeEnvRoot("keep");
  });

  it("leaves no loop device behind when its mounts go without a teardown (a killed run's lazy unmounts)", async () => {
    const dir = await mkdtemp(join(tmpdir(), "protoctl-pool-orphan-"));
    try {
      const p = await openPool({ kind: "tmpfs", stateDir: dir, sizeBytes: 256 * 1024 * 1024 }, log);
      const loop = p.storage.loopDevice!;
      expect(await loopBackingFile(loop)).toBe(p.storage.image);
      expect(await readFile(`/sys/block/${loop.slice(5)}/loop/autoclear`, "utf8")).toBe("1\n");
      await run("umount", ["-l", p.mountpoint]);
      await run("umount", ["-l", join(dir, "pool/tmpfs")]);
      // the device is not left bound to an image on a filesystem that is gone ("/pool.img")
      await vi.waitFor(async () => expect(await loopBackingFile(loop)).not.toBe("/pool.img"), {
        timeout: 10_000,
        interval: 100,
      });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
