/**
 * Base versions on real btrfs: tar imports, update success and failure,
 * delete refusal, a full pool, a file-backed pool that survives a detach,
 * orphan cleanup after a simulated crash.
 */
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { Code } from "../../../common/errors.js";
import { run } from "../../../common/exec.js";
import { silentLogger } from "../../../common/logger.js";
import { makeBusyboxRootfs } from "../../../test/fixtures/rootfs.js";
import { loopBackingFile } from "../attachments/loop.js";
import { createSubvolume } from "./btrfs.js";
import { findMount, mountOverlay, mountsUnder } from "./mounts.js";
import { type BtrfsPool, openPool } from "./pool.js";

const log = silentLogger();
let stateDir: string;
let rootfs: string;
let pool: BtrfsPool;

async function tmpLeftovers(p: BtrfsPool): Promise<string[]> {
  const out: string[] = [];
  for (const area of ["@base", "@overlay", "@env", "@workdir"]) {
    for (const e of await readdir(join(p.mountpoint, area)))
      if (e.startsWith(".tmp-")) out.push(`${area}/${e}`);
  }
  return out;
}

beforeAll(async () => {
  stateDir = await mkdtemp(join(tmpdir(), "protoctl-bases-"));
  rootfs = await makeBusyboxRootfs(join(stateDir, "rootfs"));
  pool = await openPool({ kind: "tmpfs", stateDir: join(stateDir, "a"), sizeBytes: 384 * 1024 * 1024 }, log);
});

afterAll(async () => {
  await pool?.destroy();
  await rm(stateDir, { recursive: true, force: true });
});

describe("bases", () => {
  it.each([
    ["plain", []],
    ["gz", ["-z"]],
    ["xz", ["-J"]],
    ["zst", ["--zstd"]],
  ])("imports a %s tar archive keeping owners and modes", async (kind, flags) => {
    const tar = join(stateDir, `rootfs.${kind}.tar`);
    await run("tar", ["-c", ...flags, "-f", tar, "--numeric-owner", "-C", rootfs, "."]);
    const m = await pool.importBase(`tar-${kind}`, { tar });
    expect(m).toMatchObject({ base: `tar-${kind}`, version: 1, source: `tar:${tar}` });
    const root = join(pool.mountpoint, `@base/tar-${kind}@1/root`);
    expect((await stat(join(root, "tmp"))).mode & 0o7777).toBe(0o1777);
    expect(await readFile(join(root, "etc/hostname"), "utf8")).toBe("busybox\n");
  });

  it("rejects a file that is not an archive, leaving nothing", async () => {
    const junk = join(stateDir, "junk.tar");
    await writeFile(junk, "this is not a tar archive at all".repeat(40));
    await expect(pool.importBase("junk", { tar: junk })).rejects.toMatchObject({
      code: Code.INVALID_ARGUMENT,
      reason: "BAD_ARCHIVE",
    });
    expect(await pool.listBaseVersions("junk")).toEqual([]);
    expect(await tmpLeftovers(pool)).toEqual([]);
  });

  it("updates inside nspawn and seals N+1 only on success", async () => {
    const v1 = await pool.importBase("upd", { dir: rootfs });
    const logs: string[] = [];
    const v2 = await pool.updateBase(
      "upd",
      [
        "/bin/sh",
        "-c",
        "echo updated > /etc/motd; rm /bin/vi; grep -v '0 *0 *4294967295' /proc/self/uid_map > /uidmap; echo said-so",
      ],
      { network: true },
      (p) => p.log && logs.push(p.log),
    );
    // the command's own output reaches the user; nspawn's propagate-dir noise does not
    expect(logs.join("")).toContain("said-so\n");
    expect(logs.join("")).not.toMatch(/Attempted to remove disk file system/);
    expect(v2).toMatchObject({ base: "upd", version: 2, parent: "upd@1" });
    expect(v2.recipeDigest).not.toBe(v1.recipeDigest);
    const r2 = join(pool.mountpoint, "@base/upd@2/root");
    expect(await readFile(join(r2, "etc/motd"), "utf8")).toBe("updated\n");
    // ran in a user namespace (not the identity map), yet root's files are uid 0 on disk (idmapped)
    expect((await readFile(join(r2, "uidmap"), "utf8")).trim()).toMatch(/^0\s+\d+\s+65536$/);
    expect((await stat(join(r2, "etc/motd"))).uid).toBe(0);
    await expect(stat(join(r2, "etc/resolv.conf"))).rejects.toThrow(); // nspawn's bind target is not kept
    await expect(stat(join(pool.mountpoint, "@base/upd@1/root/etc/motd"))).rejects.toThrow();

    const script = Buffer.from('echo from-script "$1"\n');
    const v3 = await pool.updateBase("upd", ["arg1"], { network: false, script });
    expect(v3.version).toBe(3);

    const err = await pool
      .updateBase("upd", ["/bin/sh", "-c", "echo half > /etc/half; echo 'apt exploded' >&2; exit 100"], {
        network: true,
      })
      .catch((e) => e);
    expect(err).toMatchObject({ code: Code.FAILED_PRECONDITION, reason: "UPDATE_FAILED" });
    expect(err.output).toContain("apt exploded");
    expect((await pool.listBaseVersions("upd")).map((m) => m.version)).toEqual([1, 2, 3]);
    expect(await tmpLeftovers(pool)).toEqual([]);
  });

  it("refuses to delete a version in use, naming the users; never reuses a number", async () => {
    await pool.prepareEnvRoot("user-a", "upd", 3, []);
    const err = await pool.deleteBaseVersion("upd", 3).catch((e) => e);
    expect(err).toMatchObject({ code: Code.FAILED_PRECONDITION, reason: "BASE_IN_USE" });
    expect(err.message).toContain("env/user-a");
    await pool.removeEnvRoot("user-a");
    const left = await pool.deleteBaseVersion("upd", 3);
    expect(left.map((m) => m.version)).toEqual([1, 2]);
    expect((await pool.updateBase("upd", ["true"], { network: false })).version).toBe(4);
    await expect(pool.deleteBaseVersion("upd", 3)).rejects.toMatchObject({ code: Code.NOT_FOUND });
  });

  it("version 0 deletes every version of the base, and none while one is in use", async () => {
    await pool.importBase("whole", { dir: rootfs });
    await pool.updateBase("whole", ["true"], { network: false });
    await pool.updateBase("whole", ["true"], { network: false });
    await pool.prepareEnvRoot("user-b", "whole", 1, []);
    const err = await pool.deleteBaseVersion("whole", 0).catch((e) => e);
    expect(err).toMatchObject({ code: Code.FAILED_PRECONDITION, reason: "BASE_IN_USE" });
    expect((await pool.listBaseVersions("whole")).map((m) => m.version)).toEqual([1, 2, 3]);
    await pool.removeEnvRoot("user-b");
    expect(await pool.deleteBaseVersion("whole", 0)).toEqual([]);
    expect(await pool.listBaseVersions("whole")).toEqual([]);
    await expect(pool.deleteBaseVersion("whole", 0)).rejects.toMatchObject({ code: Code.NOT_FOUND });
  });

  it("builds a base with a builder script", async () => {
    const script = Buffer.from(
      `#!/bin/sh\nset -e\ncp -a ${rootfs}/. "$1"/\necho scripted > "$1"/etc/origin\n`,
    );
    const m = await pool.buildBase("scripted", { script });
    expect(m).toMatchObject({ source: "script", version: 1 });
    expect(await readFile(join(pool.mountpoint, "@base/scripted@1/root/etc/origin"), "utf8")).toBe(
      "scripted\n",
    );
    const bad = await pool
      .buildBase("scripted", { script: Buffer.from("echo nope >&2; exit 1\n") })
      .catch((e) => e);
    expect(bad).toMatchObject({ code: Code.FAILED_PRECONDITION, reason: "BUILD_FAILED" });
    expect(bad.output).toContain("nope");
    expect((await pool.listBaseVersions("scripted")).length).toBe(1);
  });

  it("reports usage per object without quotas", async () => {
    await pool.prepareEnvRoot("big", "upd", 1, []);
    const env = await pool.openEnvRoot("big");
    await run("dd", [
      "if=/dev/urandom",
      `of=${join(env!.rootDir, "blob")}`,
      "bs=1M",
      "count=4",
      "status=none",
    ]);
    const usage = await pool.usage();
    const big = usage.find((u) => u.kind === "env" && u.name === "big")!;
    expect(big.exclusiveBytes).toBeGreaterThanOrEqual(4 * 1024 * 1024);
    const base = usage.find((u) => u.kind === "base" && u.name === "upd@1")!;
    expect(base.referencedBytes).toBeGreaterThan(1_000_000);
    expect(base.exclusiveBytes).toBeLessThan(base.referencedBytes);
    const q = await run("btrfs", ["qgroup", "show", pool.mountpoint], { allowFailure: true });
    expect(q.exitCode).not.toBe(0); // quotas stay off
    await pool.removeEnvRoot("big");
  });

  it("cleans orphans: temp objects, unknown env roots, stray mounts", async () => {
    await pool.prepareEnvRoot("known", "upd", 1, []);
    await pool.prepareEnvRoot("forgotten", "upd", 1, []);
    // what a SIGKILL in the middle of work leaves
    await mkdir(join(pool.mountpoint, "@base/.tmp-crash1"));
    await createSubvolume(join(pool.mountpoint, "@base/.tmp-crash1/root"));
    await createSubvolume(join(pool.mountpoint, "@env/.tmp-crash2"));
    const merged = join(pool.mountpoint, "@workdir/.tmp-crash3");
    const vol = join(pool.mountpoint, "@overlay/.tmp-crash4");
    await mkdir(merged);
    await createSubvolume(vol);
    await mkdir(join(vol, "upper"));
    await mkdir(join(vol, "work"));
    await mountOverlay(
      merged,
      [join(pool.mountpoint, "@base/upd@1/root")],
      join(vol, "upper"),
      join(vol, "work"),
    );
    const removed = await pool.cleanOrphans(new Set(["known"]));
    expect(removed).toEqual(
      expect.arrayContaining([
        "mount:@workdir/.tmp-crash3",
        "@base/.tmp-crash1",
        "@env/.tmp-crash2",
        "@overlay/.tmp-crash4",
        "@workdir/.tmp-crash3",
        "@env/forgotten",
      ]),
    );
    expect((await pool.listEnvRoots()).map((e) => e.name)).toEqual(["known"]);
    expect(await tmpLeftovers(pool)).toEqual([]);
    expect(await mountsUnder(pool.mountpoint)).toEqual([]);
    expect(await pool.cleanOrphans(new Set(["known"]))).toEqual([]);
    await pool.removeEnvRoot("known");
  });
});

describe("pool kinds and limits", () => {
  it("fails a too-big import with RESOURCE_EXHAUSTED and leaves nothing", async () => {
    const small = await openPool(
      { kind: "tmpfs", stateDir: join(stateDir, "small"), sizeBytes: 128 * 1024 * 1024 },
      log,
    );
    try {
      const src = join(stateDir, "huge");
      await mkdir(src);
      await run("dd", ["if=/dev/urandom", `of=${join(src, "blob")}`, "bs=1M", "count=200", "status=none"]);
      const before = await small.capacity();
      const err = await small.importBase("huge", { dir: src }).catch((e) => e);
      await rm(src, { recursive: true, force: true });
      expect(err).toMatchObject({ code: Code.RESOURCE_EXHAUSTED, reason: "POOL_FULL" });
      expect(await small.listBaseVersions()).toEqual([]);
      expect(await tmpLeftovers(small)).toEqual([]);
      // deleted subvolumes are freed by the btrfs cleaner in the background: wait for it
      await run("btrfs", ["filesystem", "sync", small.mountpoint]);
      await run("btrfs", ["subvolume", "sync", small.mountpoint]);
      await run("btrfs", ["filesystem", "sync", small.mountpoint]);
      const after = await small.capacity();
      expect(after.usedBytes).toBeLessThan(before.usedBytes + 16 * 1024 * 1024);
      // the pool still works after being full
      expect((await small.importBase("fits", { dir: rootfs })).version).toBe(1);
    } finally {
      await small.destroy();
    }
  });

  it("keeps a file-backed pool across a detach (reboot) and finds its objects", async () => {
    const cfg = { kind: "file" as const, stateDir: join(stateDir, "file"), sizeBytes: 256 * 1024 * 1024 };
    let p = await openPool(cfg, log);
    try {
      await p.importBase("persist", { dir: rootfs });
      await p.prepareEnvRoot("stays", "persist", 1, []);
      await p.close();
      const loop = p.storage.loopDevice!;
      expect(await loopBackingFile(loop)).toBe(p.storage.image);
      await run("umount", [p.mountpoint]);
      // the loop device went with the mount (autoclear): a reboot leaves nothing bound either
      await vi.waitFor(async () => expect(await loopBackingFile(loop)).not.toBe(p.storage.image), {
        timeout: 10_000,
        interval: 100,
      });
      expect(await findMount(p.mountpoint)).toBeUndefined();
      p = await openPool(cfg, log);
      expect((await p.listBaseVersions()).map((m) => `${m.base}@${m.version}`)).toEqual(["persist@1"]);
      expect((await p.openEnvRoot("stays"))?.base).toBe("persist");
      // a second open while mounted reuses the mount and the loop device
      const again = await openPool(cfg, log);
      expect(again.storage.loopDevice).toBe(p.storage.loopDevice);
    } finally {
      await p.destroy();
    }
  });

  it("uses an existing btrfs mount as-is", async () => {
    const { makeTestPool } = await import("../../../test/fixtures/pool.js");
    const tp = await makeTestPool({ sizeMiB: 256 });
    try {
      const p = await openPool(
        { kind: "mount", stateDir: join(stateDir, "m"), sizeBytes: 0, path: tp.mountpoint },
        log,
      );
      await p.importBase("m", { dir: rootfs });
      expect((await p.prepareEnvRoot("m1", "m", 1, [])).rootDir).toBe(join(tp.mountpoint, "@env/m1/root"));
      await p.removeEnvRoot("m1");
      await p.close();
    } finally {
      await tp.cleanup();
    }
    await expect(
      openPool({ kind: "mount", stateDir: join(stateDir, "m"), sizeBytes: 0, path: stateDir }, log),
    ).rejects.toMatchObject({ code: Code.FAILED_PRECONDITION, reason: "POOL_NOT_BTRFS" });
  });
});
