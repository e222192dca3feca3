import { randomBytes } from "node:crypto";
import { mkdtemp, open, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code } from "../../../common/errors.js";
import { startTestNbdkit } from "../../../test/support/agent/attachments.js";
import { makeTmpfsDir } from "../../../test/support/agent/exports.js";
import { checksumFile } from "../exports/checksum.js";
import { serveImage } from "../exports/nbd-server.js";
import type { NbdExport } from "../exports/types.js";
import { copyAndHash, copyExport } from "./hydrate.js";

const MiB = 1024 * 1024;

describe("hydration copy", () => {
  let dir: string;
  let image: string;
  let exp: NbdExport;
  const size = 40 * MiB + 12_345;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "protoctl-copy-"));
    // Sparse: data in three places, one of them straddling a piece boundary, the tail short.
    image = join(dir, "seed.img");
    const fh = await open(image, "w");
    await fh.truncate(size);
    for (const [at, n] of [
      [0, 64 * 1024],
      [3 * MiB, 2 * MiB],
      [40 * MiB, 12_345],
    ] as const) {
      await fh.write(randomBytes(n), 0, n, at);
    }
    await fh.close();
    exp = await serveImage({ image, exportName: "seed", bindAddress: "127.0.0.1", stateDir: dir });
  });
  afterAll(async () => {
    await exp?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it("copies a blake3-4m image by pieces: same bytes, holes kept, the record's checksum", async () => {
    const want = await checksumFile(image, { algo: "blake3-4m" });
    const dest = join(dir, "pieces.img");
    const seen: number[] = [];
    const r = await copyAndHash({
      uri: exp.uri,
      dest,
      sizeBytes: size,
      connections: 4,
      algo: "blake3-4m",
      progress: (d) => seen.push(d),
    });
    expect(r.checksum).toBe(want.checksum);
    expect(r.tailMs).toBe(0);
    expect((await readFile(dest)).equals(await readFile(image))).toBe(true);
    // Only the data was written: about 2.1 MiB allocated of 40 MiB.
    expect((await stat(dest)).blocks * 512).toBeLessThan(4 * MiB);
    expect(seen.at(-1)).toBe(size);
    await rm(dest);
  });

  it("copies other checksums with nbdcopy and a hash that follows it", async () => {
    const want = await checksumFile(image, { algo: "sha256" });
    const dest = join(dir, "nbdcopy.img");
    const r = await copyAndHash({ uri: exp.uri, dest, sizeBytes: size, connections: 2, algo: "sha256" });
    expect(r.checksum).toBe(want.checksum);
    await rm(dest);
  });

  it("reports a full target as RESOURCE_EXHAUSTED", async () => {
    const small = await makeTmpfsDir(1);
    try {
      const err = await copyAndHash({
        uri: exp.uri,
        dest: join(small.path, "seed.img"),
        sizeBytes: size,
        connections: 2,
        algo: "blake3-4m",
      }).catch((e) => e);
      expect(err).toMatchObject({ code: Code.RESOURCE_EXHAUSTED, reason: "NO_ROOM" });
    } finally {
      await small.cleanup();
    }
  });

  for (const path of ["pieces", "nbdcopy"] as const) {
    it(`gives up on a source that stops answering, as the source's failure (${path})`, async () => {
      // A source that connects and then never answers a read: every read waits 600 s. One per
      // test: nbdkit 1.32's delay filter can abort once a client drops a delayed read.
      const stalling = await startTestNbdkit(["--filter=delay", "pattern", "64M", "rdelay=600"]);
      try {
        const o = {
          uri: stalling.uri,
          dest: join(dir, `stall-${path}.img`),
          sizeBytes: 64 * MiB,
          connections: 2,
          stallMs: 1500,
        };
        const err = await (path === "pieces"
          ? copyAndHash({ ...o, algo: "blake3-4m" })
          : copyExport(o)
        ).catch((e) => e);
        expect(err).toMatchObject({ code: Code.UNAVAILABLE, reason: "SOURCE_UNAVAILABLE" });
        expect(err.message).toMatch(/stalled/);
      } finally {
        await stalling.kill();
      }
    });
  }

  it("reports a source that is not there as UNAVAILABLE", async () => {
    const err = await copyAndHash({
      uri: "nbd://127.0.0.1:1/seed",
      dest: join(dir, "none.img"),
      sizeBytes: size,
      connections: 2,
      algo: "blake3-4m",
    }).catch((e) => e);
    expect(err).toMatchObject({ code: Code.UNAVAILABLE, reason: "SOURCE_UNAVAILABLE" });
  });
});
