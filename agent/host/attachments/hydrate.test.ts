import { mkdtemp, open, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { checksumFile } from "../exports/checksum.js";
import { followingHasher, hashFrontier, NBDCOPY_WORK_BYTES, nbdcopyArgs, parseProgress } from "./hydrate.js";
import { validateKey } from "./seed-attachments.js";

describe("hydration helpers", () => {
  it("reads the last complete nbdcopy progress line", () => {
    expect(parseProgress("")).toBeUndefined();
    expect(parseProgress("0/100\n12/100\n")).toBe(12);
    expect(parseProgress("12/100\n5")).toBe(12);
    expect(parseProgress("100/100\n")).toBe(100);
  });
  it("copies with several connections and progress on fd 3", () => {
    expect(nbdcopyArgs({ uri: "nbd://h:1/x", dest: "/d/f", connections: 4 }, 4)).toEqual([
      "--connections=4",
      "--threads=4",
      "--progress=3",
      "nbd://h:1/x",
      "/d/f",
    ]);
  });
  it("hashes only below the segments nbdcopy may still be writing", () => {
    const W = NBDCOPY_WORK_BYTES;
    expect(hashFrontier(0, 10 * W, 4)).toBe(0);
    expect(hashFrontier(7 * W, 10 * W, 4)).toBe(0);
    // a thread's previous segment may still have requests pending: 2 * threads - 1 segments of slack
    expect(hashFrontier(9 * W, 10 * W, 4)).toBe(2 * W);
    expect(hashFrontier(5 * W, 10 * W, 2)).toBe(2 * W);
    expect(hashFrontier(10 * W, 10 * W, 4)).toBe(10 * W);
  });
  it("hashes a file as it grows, below the frontier only, holes as zeros", async () => {
    const dir = await mkdtemp(join(tmpdir(), "protoctl-hash-"));
    try {
      const path = join(dir, "f");
      const size = 21 * 1024 * 1024 + 5;
      const fh = await open(path, "w");
      const h = followingHasher(path, size);
      const block = Buffer.alloc(3 * 1024 * 1024);
      for (let at = 0; at < 15 * 1024 * 1024; at += block.length) {
        block.fill(at & 0xff);
        await fh.write(block, 0, block.length, at);
        h.advance(at + block.length);
        await new Promise((r) => setTimeout(r, 1));
      }
      expect(h.hashedBytes).toBeLessThanOrEqual(15 * 1024 * 1024);
      // The rest of the file stays a hole past 15 MiB: the hasher reads it as zeros.
      await fh.truncate(size);
      await fh.close();
      const digest = await h.finish();
      expect(digest).toBe((await checksumFile(path)).checksum);
      expect(h.hashedBytes).toBe(size);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
  it("validates attachment keys", () => {
    expect(() => validateKey("debian@3")).not.toThrow();
    expect(() => validateKey("../x")).toThrow();
  });
});
