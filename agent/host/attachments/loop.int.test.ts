import { mkdir, open, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeTestPool, type TestPool } from "../../../test/fixtures/pool.js";
import { attachLoop, detachLoop, loopBackingFile, prepareLoopSwitch } from "./loop.js";
import { isMountpoint } from "./nbd-transport.js";
import { prepareSprout } from "./sprout.js";

async function firstBytes(dev: string): Promise<string> {
  const fh = await open(dev, "r");
  try {
    const b = Buffer.alloc(8);
    await fh.read(b, 0, 8, 0);
    return b.toString();
  } finally {
    await fh.close();
  }
}

describe("prepared loop switch (LOOP_CHANGE_FD under a freeze)", () => {
  let pool: TestPool;
  let loop: string;
  const a = () => join(pool.tmpfs, "a.img");
  const b = () => join(pool.tmpfs, "b.img");
  beforeAll(async () => {
    pool = await makeTestPool({ sizeMiB: 128, prefix: "protoctl-loop-" });
    await writeFile(a(), Buffer.alloc(1 << 20, "A"));
    await writeFile(b(), Buffer.alloc(1 << 20, "B"));
    loop = await attachLoop(a(), { readOnly: true });
  });
  afterAll(async () => {
    if (loop) await detachLoop(loop);
    await pool?.cleanup();
  });

  it("switches the backing file while the device stays open, and thaws", async () => {
    const sw = await prepareLoopSwitch(loop, pool.mountpoint);
    expect(await firstBytes(loop)).toBe("AAAAAAAA");
    await writeFile(join(pool.mountpoint, "before"), "dirty");
    await sw.go(b());
    expect(await loopBackingFile(loop)).toBe(b());
    expect(await firstBytes(loop)).toBe("BBBBBBBB");
    // Thawed: a write to the frozen filesystem completes.
    await writeFile(join(pool.mountpoint, "after"), "x");
    expect(await readFile(join(pool.mountpoint, "after"), "utf8")).toBe("x");
    expect(await readFile(join(pool.mountpoint, "before"), "utf8")).toBe("dirty");
    await expect(sw.go(a())).rejects.toThrow(/once/);
  });

  it("changes nothing when cancelled or when the file cannot be opened, and thaws", async () => {
    const before = await loopBackingFile(loop);
    const c = await prepareLoopSwitch(loop, pool.mountpoint);
    await c.cancel();
    expect(await loopBackingFile(loop)).toBe(before);
    const bad = await prepareLoopSwitch(loop, pool.mountpoint);
    await expect(bad.go(join(pool.tmpfs, "missing.img"))).rejects.toThrow(/LOOP_CHANGE_FD/);
    expect(await loopBackingFile(loop)).toBe(before);
    await writeFile(join(pool.mountpoint, "after-bad"), "y");
  });

  it("sprout helper: a device without btrfs fails at the mount, leaving nothing mounted", async () => {
    const mnt = join(pool.tmpfs, "mnt");
    await mkdir(mnt);
    const s = prepareSprout();
    await expect(s.go(loop, pool.loopDevice, mnt)).rejects.toThrow(/^mount exited with 10/);
    expect(await isMountpoint(mnt)).toBe(false);
    await prepareSprout().cancel();
  });

  it("refuses a writable loop device before starting anything", async () => {
    await expect(prepareLoopSwitch(pool.loopDevice, pool.mountpoint)).rejects.toThrow(/not a read-only/);
  });
});
