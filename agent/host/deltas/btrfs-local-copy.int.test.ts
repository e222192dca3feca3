import { readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code } from "../../../common/errors.js";
import { output, run } from "../../../common/exec.js";
import { makeTestPool, type TestPool } from "../../../test/fixtures/pool.js";
import { makeBaseSubvolume, treeDigest } from "../../../test/support/agent/exports.js";
import { copySubvolume } from "./btrfs-local-copy.js";

/** Pids of the processes whose command line names `path`. */
async function processesNaming(path: string): Promise<number[]> {
  const pids: number[] = [];
  for (const e of await readdir("/proc")) {
    if (!/^\d+$/.test(e)) continue;
    const cmd = await readFile(join("/proc", e, "cmdline"), "utf8").catch(() => "");
    if (cmd.split("\0").some((a) => a.startsWith(path))) pids.push(Number(e));
  }
  return pids;
}

describe("copySubvolume (btrfs send | btrfs receive, one kernel pipe)", () => {
  let origin: TestPool;
  let target: TestPool;
  let small: TestPool;
  let v1: string;
  let v2: string;
  let big: string;

  beforeAll(async () => {
    origin = await makeTestPool({ sizeMiB: 1024, prefix: "protoctl-origin-" });
    target = await makeTestPool({ sizeMiB: 512, prefix: "protoctl-target-" });
    small = await makeTestPool({ sizeMiB: 256, prefix: "protoctl-small-" });
    v1 = await makeBaseSubvolume(origin.mountpoint, "demo@1", [16]);
    v2 = join(origin.mountpoint, "demo@2");
    await run("btrfs", ["subvolume", "snapshot", v1, v2]);
    await writeFile(join(v2, "etc/hostname"), "v2\n");
    await run("btrfs", ["property", "set", "-ts", v2, "ro", "true"]);
    big = await makeBaseSubvolume(origin.mountpoint, "big@1", [320]);
  });
  afterAll(async () => {
    await small?.cleanup();
    await target?.cleanup();
    await origin?.cleanup();
  });

  it("copies a full version, then a delta onto its parent, read-only and identical", async () => {
    const r1 = await copySubvolume({ subvolume: v1, dir: target.mountpoint });
    expect(r1).toMatchObject({ name: "demo@1", kind: "full", path: join(target.mountpoint, "demo@1") });
    const r2 = await copySubvolume({ subvolume: v2, parent: v1, dir: target.mountpoint });
    expect(r2).toMatchObject({ name: "demo@2", kind: "incremental" });
    expect(await treeDigest(r2.path)).toEqual(await treeDigest(v2));
    expect(await output("btrfs", ["property", "get", "-ts", r2.path, "ro"])).toBe("ro=true");
    for (const p of [r2.path, r1.path]) await run("btrfs", ["subvolume", "delete", p]);
  });

  it("a failing send: its own error, nothing received, no process left", async () => {
    const rw = join(origin.mountpoint, "rw");
    await run("btrfs", ["subvolume", "create", rw]);
    try {
      const err = await copySubvolume({ subvolume: rw, dir: target.mountpoint }).catch((e) => e);
      expect(err).toMatchObject({ code: Code.FAILED_PRECONDITION, reason: "NOT_READ_ONLY" });
      const missing = await copySubvolume({ subvolume: v2, parent: v1, dir: target.mountpoint }).catch(
        (e) => e,
      );
      expect(missing).toMatchObject({ code: Code.FAILED_PRECONDITION, reason: "PARENT_MISSING" });
      expect(await readdir(target.mountpoint)).toEqual([]);
      expect(await processesNaming(target.mountpoint)).toEqual([]);
    } finally {
      await run("btrfs", ["subvolume", "delete", rw]);
    }
  });

  it("a receive that runs out of space: RESOURCE_EXHAUSTED, the half-received subvolume deleted", async () => {
    const err = await copySubvolume({ subvolume: big, dir: small.mountpoint }).catch((e) => e);
    expect(err).toMatchObject({ code: Code.RESOURCE_EXHAUSTED });
    expect(await readdir(small.mountpoint)).toEqual([]);
    expect(await processesNaming(small.mountpoint)).toEqual([]);
    expect(await processesNaming(big)).toEqual([]);
  });

  it("an abort stops both sides and deletes what was received", async () => {
    const ac = new AbortController();
    const copying = copySubvolume({ subvolume: big, dir: target.mountpoint, signal: ac.signal });
    // wait until receive has created the subvolume, then abort mid-stream
    for (let i = 0; i < 200 && !(await readdir(target.mountpoint)).length; i++)
      await new Promise((r) => setTimeout(r, 10));
    ac.abort();
    await expect(copying).rejects.toMatchObject({ name: "AbortError" });
    expect(await readdir(target.mountpoint)).toEqual([]);
    expect(await processesNaming(target.mountpoint)).toEqual([]);
    expect(await processesNaming(big)).toEqual([]);
  });
});
