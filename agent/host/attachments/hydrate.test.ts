import { tmpdir } from "node:os";
import { describe, expect, it } from "vitest";
import { Code, ProtoctlError } from "../../../common/errors.js";
import {
  freeBytes,
  hashFrontier,
  NBDCOPY_WORK_BYTES,
  nbdcopyArgs,
  parseProgress,
  requireRoom,
} from "./hydrate.js";
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
  it("validates attachment keys", () => {
    expect(() => validateKey("debian@3")).not.toThrow();
    expect(() => validateKey("../x")).toThrow();
  });
  it("counts room promised to other hydrations as taken, and says the pool is full", async () => {
    const free = await freeBytes(tmpdir());
    await requireRoom(tmpdir(), 1024, "x");
    const err = await requireRoom(tmpdir(), 1024, "the hydrated image of b@1", free + 2 ** 30).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ProtoctlError);
    expect(err).toMatchObject({ code: Code.RESOURCE_EXHAUSTED, reason: "NO_ROOM" });
    expect((err as ProtoctlError).message).toMatch(
      /^the pool is full: no room for the hydrated image of b@1 \(needs 1 MiB, \d+ MiB free in .*, \d+ MiB of it promised to versions still hydrating\)$/,
    );
  });
});
