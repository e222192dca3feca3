import { mkdir, mkdtemp, readdir, readFile, rm, stat, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { isArchive, isListFile, mergeNewer, pruneOldest } from "./package-cache.js";

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "protoctl-pkgcache-unit-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function put(path: string, content: string, mtimeSec: number): Promise<void> {
  await writeFile(path, content);
  await utimes(path, mtimeSec, mtimeSec);
}

describe("pruneOldest", () => {
  it("removes the oldest archives until enough bytes are gone, and nothing else", async () => {
    await put(join(dir, "a_1.deb"), "x".repeat(100), 1000);
    await put(join(dir, "b_1.deb"), "x".repeat(100), 3000);
    await put(join(dir, "c_1.deb"), "x".repeat(100), 2000);
    await put(join(dir, "lock"), "", 500);
    await mkdir(join(dir, "partial"));
    expect(await pruneOldest(dir, 150)).toEqual(["a_1.deb", "c_1.deb"]);
    expect((await readdir(dir)).sort()).toEqual(["b_1.deb", "lock", "partial"]);
    expect(await pruneOldest(dir, 0)).toEqual([]);
  });
});

describe("mergeNewer", () => {
  it("copies what the target lacks or holds older, keeps times, skips the rest", async () => {
    const from = join(dir, "from");
    const to = join(dir, "to");
    await mkdir(from);
    await mkdir(to);
    await put(join(from, "new_1.deb"), "new", 2000);
    await put(join(from, "same_1.deb"), "from", 2000);
    await put(join(to, "same_1.deb"), "kept", 2000);
    await put(join(from, "lock"), "", 3000);
    await put(join(from, "dists_Packages"), "fresh", 3000);
    await put(join(to, "dists_Packages"), "stale", 1000);
    await mergeNewer(from, to, isArchive);
    expect(await readFile(join(to, "new_1.deb"), "utf8")).toBe("new");
    expect((await stat(join(to, "new_1.deb"))).mtimeMs).toBe(2_000_000);
    expect(await readFile(join(to, "same_1.deb"), "utf8")).toBe("kept"); // same size and time: not copied
    expect(await readFile(join(to, "dists_Packages"), "utf8")).toBe("stale"); // not an archive
    await mergeNewer(from, to, isListFile);
    expect(await readFile(join(to, "dists_Packages"), "utf8")).toBe("fresh");
    expect((await readdir(to)).sort()).toEqual(["dists_Packages", "new_1.deb", "same_1.deb"]); // no lock, no temp
  });
});
