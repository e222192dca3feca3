import { mkdtemp, open, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code } from "../../../common/errors.js";
import {
  checksumAlgo,
  checksumFile,
  followingHasher,
  newHasher,
  PIECE_BYTES,
  pieceDigest,
  pieceRoot,
} from "./checksum.js";

// Published test vectors (BLAKE3 reference, NIST FIPS 180-2).
const BLAKE3_EMPTY = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262";
const BLAKE3_ABC = "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85";
const SHA256_ABC = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

describe("checksum", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "protoctl-checksum-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("hashes with BLAKE3 (flat) and sha256, and names the algorithm", () => {
    expect(newHasher("blake3").digest()).toBe(`blake3:${BLAKE3_EMPTY}`);
    expect(pieceDigest(Buffer.from("abc")).toString("hex")).toBe(BLAKE3_ABC);
    const h = newHasher("blake3");
    h.update(Buffer.from("a"));
    h.update(new Uint8Array(Buffer.from("xbcx")).subarray(1, 3));
    expect(h.digest()).toBe(`blake3:${BLAKE3_ABC}`);
    const s = newHasher("sha256");
    s.update(Buffer.from("abc"));
    expect(s.digest()).toBe(`sha256:${SHA256_ABC}`);
  });

  it("hashes by 4 MiB pieces by default: BLAKE3 of the pieces' BLAKE3 digests", () => {
    // An empty input is one empty piece.
    expect(newHasher().digest()).toBe(
      `blake3-4m:${pieceDigest(Buffer.from(BLAKE3_EMPTY, "hex")).toString("hex")}`,
    );
    const data = Buffer.alloc(2 * PIECE_BYTES + 5);
    for (let i = 0; i < data.length; i += 512) data.writeUInt32LE(i * 7, i);
    const byHand = Buffer.concat(
      [0, 1, 2].map((k) =>
        pieceDigest(data.subarray(k * PIECE_BYTES, Math.min(data.length, (k + 1) * PIECE_BYTES))),
      ),
    );
    const want = `blake3-4m:${pieceDigest(byHand).toString("hex")}`;
    expect(pieceRoot(byHand)).toBe(want);
    // Fed in pieces that straddle the piece boundaries.
    const h = newHasher("blake3-4m");
    for (let at = 0; at < data.length; at += 3_000_001) h.update(data.subarray(at, at + 3_000_001));
    expect(h.digest()).toBe(want);
    // Exactly one piece: no trailing empty piece.
    const one = newHasher("blake3-4m");
    one.update(data.subarray(0, PIECE_BYTES));
    expect(one.digest()).toBe(pieceRoot(pieceDigest(data.subarray(0, PIECE_BYTES))));
    // One changed byte changes the root.
    data[PIECE_BYTES + 9]! ^= 1;
    const c = newHasher("blake3-4m");
    c.update(data);
    expect(c.digest()).not.toBe(want);
  });

  it("hashes a file across chunk boundaries like a one-shot hash", async () => {
    const data = Buffer.alloc(9 * 1024 * 1024 + 17);
    for (let i = 0; i < data.length; i += 4096) data.writeUInt32LE(i, i);
    const path = join(dir, "f");
    await writeFile(path, data);
    const seen: number[] = [];
    const r = await checksumFile(path, { progress: (d) => seen.push(d) });
    const one = newHasher();
    one.update(data);
    expect(r).toEqual({ checksum: one.digest(), sizeBytes: data.length });
    expect(seen.at(-1)).toBe(data.length);
    const s = await checksumFile(path, { algo: "sha256" });
    expect(s.checksum).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(s.checksum).not.toBe(r.checksum.replace("blake3", "sha256"));
  });

  it("follows a growing file below the frontier only, its holes as zeros", async () => {
    const path = join(dir, "grow");
    const size = 21 * 1024 * 1024 + 5;
    const fh = await open(path, "w");
    const h = followingHasher(path, size, { growing: true });
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
  });

  it("reads the algorithm of a record and refuses anything else", () => {
    expect(checksumAlgo(`blake3:${BLAKE3_ABC}`)).toBe("blake3");
    expect(checksumAlgo(`blake3-4m:${BLAKE3_ABC}`)).toBe("blake3-4m");
    expect(checksumAlgo(`sha256:${SHA256_ABC}`)).toBe("sha256");
    for (const bad of [
      SHA256_ABC,
      "md5:abc",
      `blake3:${BLAKE3_ABC.toUpperCase()}`,
      `blake3-8m:${BLAKE3_ABC}`,
      "",
    ]) {
      expect(() => checksumAlgo(bad)).toThrow(expect.objectContaining({ code: Code.INVALID_ARGUMENT }));
    }
  });
});
