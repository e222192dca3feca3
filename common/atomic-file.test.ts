import { lstat, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { writeFileAtomic } from "./atomic-file.js";

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "protoctl-atomic-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("writeFileAtomic", () => {
  it("replaces a file whole with the mode asked, leaving no temporary file", async () => {
    const f = join(dir, "f");
    await writeFile(f, "old");
    await writeFileAtomic(f, "new", 0o600);
    expect(await readFile(f, "utf8")).toBe("new");
    expect((await stat(f)).mode & 0o777).toBe(0o600);
    await writeFileAtomic(f, "newer");
    expect((await stat(f)).mode & 0o777).toBe(0o644);
    expect(await readdir(dir)).toEqual(["f"]);
  });

  it("replaces a symlink at the path instead of writing through it", async () => {
    const target = join(dir, "target");
    await writeFile(target, "keep");
    await symlink(target, join(dir, "link"));
    await writeFileAtomic(join(dir, "link"), "x");
    expect((await lstat(join(dir, "link"))).isFile()).toBe(true);
    expect(await readFile(target, "utf8")).toBe("keep");
  });

  it("leaves nothing behind when the rename fails", async () => {
    const sub = join(dir, "sub");
    await writeFile(join(dir, "marker"), "");
    // a non-empty directory in the way: the rename fails
    await mkdir(sub);
    await writeFile(join(sub, "x"), "");
    await expect(writeFileAtomic(sub, "text")).rejects.toThrow();
    expect((await readdir(dir)).sort()).toEqual(["marker", "sub"]);
  });
});
