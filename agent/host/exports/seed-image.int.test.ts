import { mkdtemp, readdir, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ProtoctlError } from "../../../common/errors.js";
import { output, run } from "../../../common/exec.js";
import { makeTestPool, type TestPool } from "../../../test/fixtures/pool.js";
import { makeBaseSubvolume, treeDigest } from "../../../test/support/agent/exports.js";
import { newHasher } from "./checksum.js";
import { publishSeedImage } from "./seed-image.js";

describe("publishSeedImage", () => {
  let pool: TestPool;
  let out: string;
  let base: string;

  beforeAll(async () => {
    pool = await makeTestPool({ sizeMiB: 512 });
    out = join(pool.tmpfs, "seeds");
    base = await makeBaseSubvolume(pool.mountpoint, "demo@1", [16]);
  });
  afterAll(async () => {
    await pool?.cleanup();
  });

  it("makes a sealed, checksummed, read-only image holding exactly the subvolume", async () => {
    const steps: string[] = [];
    const seed = await publishSeedImage(base, join(out, "demo@1.img"), {
      progress: (p) => steps.push(p.step),
    });
    expect(seed.subvolume).toBe("demo@1");
    expect(seed.fsid).toMatch(/^[0-9a-f-]{36}$/);
    const st = await stat(seed.path);
    expect(st.size).toBe(seed.sizeBytes);
    expect(st.mode & 0o777).toBe(0o444);
    const one = newHasher("blake3-4m");
    one.update(await readFile(seed.path));
    expect(seed.checksum).toBe(one.digest());
    expect(steps).toEqual(expect.arrayContaining(["measure", "format", "send", "seal", "checksum"]));
    // The seeding flag is set (btrfstune -S 1).
    expect(await output("btrfs", ["inspect-internal", "dump-super", seed.path])).toMatch(/SEEDING/);
    // No temporary files or mountpoints left beside it.
    expect(await readdir(out)).toEqual(["demo@1.img"]);

    const mnt = await mkdtemp(join(tmpdir(), "seed-check-"));
    await run("mount", ["-o", "ro,loop", seed.path, mnt]);
    try {
      expect(await readdir(mnt)).toEqual(["demo@1"]);
      expect(await treeDigest(join(mnt, "demo@1"))).toEqual(await treeDigest(base));
      expect(await output("btrfs", ["property", "get", "-ts", join(mnt, "demo@1"), "ro"])).toBe("ro=true");
    } finally {
      await run("umount", [mnt]);
      await rm(mnt, { recursive: true });
    }
  });

  it("refuses an existing image path and a writable subvolume, leaving nothing behind", async () => {
    await expect(publishSeedImage(base, join(out, "demo@1.img"))).rejects.toMatchObject({
      code: Code.ALREADY_EXISTS,
    });
    const rw = join(pool.mountpoint, "rw");
    await run("btrfs", ["subvolume", "create", rw]);
    const err = await publishSeedImage(rw, join(out, "rw.img")).catch((e) => e);
    expect(err).toBeInstanceOf(ProtoctlError);
    expect(err.code).toBe(Code.FAILED_PRECONDITION);
    expect(err.reason).toBe("NOT_READ_ONLY");
    expect(await readdir(out)).toEqual(["demo@1.img"]);
  });

  it("reverts a failed build: no image, no temporary file, no mount", async () => {
    // A seed directory on a full filesystem: the sparse image fits, mkfs/receive cannot write.
    const tiny = join(pool.tmpfs, "tiny");
    await run("mkdir", ["-p", tiny]);
    await run("mount", ["-t", "tmpfs", "-o", "size=1m", "tmpfs", tiny]);
    try {
      const err = await publishSeedImage(base, join(tiny, "x.img")).catch((e) => e);
      expect(err).toBeInstanceOf(ProtoctlError);
      expect(await readdir(tiny)).toEqual([]);
      const mounts = await output("cat", ["/proc/self/mountinfo"]);
      expect(mounts).not.toContain(".seed-mnt-");
    } finally {
      await run("umount", [tiny]);
    }
  });
});
