import { appendFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Readable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code } from "../../../common/errors.js";
import { output, run } from "../../../common/exec.js";
import { makeTestPool, type TestPool } from "../../../test/fixtures/pool.js";
import { makeBaseSubvolume, treeDigest, writeRandomFile } from "../../../test/support/agent/exports.js";
import { receiveSubvolume, sendSubvolume } from "./btrfs-stream.js";

/** Origin pool with base@1 and base@2 (a snapshot of @1 plus changes), target pool with @1 only. */
describe("btrfs send -p / receive streams", () => {
  let origin: TestPool;
  let target: TestPool;
  let v1: string;
  let v2: string;

  beforeAll(async () => {
    origin = await makeTestPool({ sizeMiB: 512, prefix: "protoctl-origin-" });
    target = await makeTestPool({ sizeMiB: 512, prefix: "protoctl-target-" });
    v1 = await makeBaseSubvolume(origin.mountpoint, "demo@1", [32]);
    v2 = join(origin.mountpoint, "demo@2");
    await run("btrfs", ["subvolume", "snapshot", v1, v2]);
    await writeRandomFile(join(v2, "data", "new"), 8);
    await appendFile(join(v2, "etc/motd"), "updated\n");
    await rm(join(v2, "bin/vi"));
    await writeFile(join(v2, "etc/hostname"), "v2\n");
    await run("btrfs", ["property", "set", "-ts", v2, "ro", "true"]);
  });
  afterAll(async () => {
    await target?.cleanup();
    await origin?.cleanup();
  });

  it("carries a full version, then only the delta to a pool holding the parent", async () => {
    const full = sendSubvolume({ subvolume: v1 });
    const r1 = await receiveSubvolume({ dir: target.mountpoint, stream: full.stream });
    await full.done;
    expect(r1).toMatchObject({ name: "demo@1", kind: "full", path: join(target.mountpoint, "demo@1") });

    let bytes = 0;
    const delta = sendSubvolume({ subvolume: v2, parent: v1 });
    delta.stream.on("data", (b: Buffer) => {
      bytes += b.length;
    });
    const started = performance.now();
    const r2 = await receiveSubvolume({ dir: target.mountpoint, stream: delta.stream });
    await delta.done;
    const ms = performance.now() - started;
    expect(r2).toMatchObject({ name: "demo@2", kind: "incremental" });
    // Only the change travelled (8 MiB of new data plus metadata), not the 32 MiB file again.
    expect(bytes).toBeLessThan(12 * 1024 * 1024);
    expect(await treeDigest(r2.path)).toEqual(await treeDigest(v2));
    expect(await output("btrfs", ["property", "get", "-ts", r2.path, "ro"])).toBe("ro=true");
    console.log(`send -p delta: ${bytes} bytes in ${ms.toFixed(0)} ms`);
  });

  it("fails cleanly: missing parent on the target, truncated stream", async () => {
    const dir = join(target.mountpoint, "other");
    await run("btrfs", ["subvolume", "create", dir]);
    // A parent the target never received (its UUID is unknown there):
    const orphan = join(origin.mountpoint, "orphan@1");
    await run("btrfs", ["subvolume", "snapshot", "-r", v1, orphan]);
    const d = sendSubvolume({ subvolume: v2, parent: orphan });
    const err = await receiveSubvolume({ dir, stream: d.stream }).catch((e) => e);
    await d.done.catch(() => undefined);
    expect(err.code).toBe(Code.FAILED_PRECONDITION);
    expect(err.reason).toBe("PARENT_MISSING");

    // A stream cut in the middle: the half-received subvolume is deleted.
    const full = sendSubvolume({ subvolume: v1 });
    const chunks: Buffer[] = [];
    for await (const c of full.stream) chunks.push(c as Buffer);
    const all = Buffer.concat(chunks);
    const cut = Readable.from([all.subarray(0, Math.floor(all.length / 2))]);
    const e2 = await receiveSubvolume({ dir, stream: cut }).catch((e) => e);
    expect(e2.code).toBe(Code.INTERNAL);
    expect(await output("ls", [dir])).toBe("");
  });
});
