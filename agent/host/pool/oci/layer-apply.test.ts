import { lstat, mkdir, mkdtemp, readFile, readlink, rm, stat, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { pack } from "tar-stream";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ProtoctlError } from "../../../../common/errors.js";
import { entryParts, LayerApplier } from "./layer-apply.js";

type E = {
  name: string;
  type?: "file" | "directory" | "symlink" | "link" | "fifo";
  body?: string;
  linkname?: string;
  mode?: number;
};

/** A tar stream holding `entries` in order. */
function layer(entries: E[]): Readable {
  const p = pack();
  for (const e of entries) {
    const type = e.type ?? "file";
    const mode = e.mode ?? (type === "directory" ? 0o755 : 0o644);
    if (type === "file") p.entry({ name: e.name, mode, uid: 0, gid: 0 }, e.body ?? "");
    else p.entry({ name: e.name, type, mode, linkname: e.linkname, uid: 0, gid: 0 });
  }
  p.finalize();
  return Readable.from(p as unknown as AsyncIterable<Buffer>);
}

let dir: string;
let root: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "layer-apply-"));
  root = join(dir, "root");
  await mkdir(root);
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const present = (rel: string) =>
  lstat(join(root, rel)).then(
    () => true,
    () => false,
  );

describe("entryParts", () => {
  it("drops ./ and empty parts, refuses absolute and ..", () => {
    expect(entryParts("./usr//bin/x")).toEqual(["usr", "bin", "x"]);
    expect(entryParts("./")).toEqual([]);
    expect(() => entryParts("/etc/passwd")).toThrow(/absolute/);
    expect(() => entryParts("a/../../etc")).toThrow(/\.\./);
  });
});

describe("LayerApplier", () => {
  it("extracts files, dirs, symlinks and hard links with their modes", async () => {
    const a = new LayerApplier(root);
    await a.apply(
      layer([
        { name: "bin/", type: "directory" },
        { name: "bin/tool", body: "#!/bin/sh\n", mode: 0o4755 },
        { name: "bin/alias", type: "symlink", linkname: "tool" },
        { name: "bin/hard", type: "link", linkname: "bin/tool" },
        { name: "dev/null", type: "fifo" },
      ]),
    );
    await a.finish();
    expect(await readFile(join(root, "bin/tool"), "utf8")).toBe("#!/bin/sh\n");
    expect((await stat(join(root, "bin/tool"))).mode & 0o7777).toBe(0o4755);
    expect(await readlink(join(root, "bin/alias"))).toBe("tool");
    expect((await stat(join(root, "bin/hard"))).ino).toBe((await stat(join(root, "bin/tool"))).ino);
    expect(a.stats).toEqual({ entries: 4, whiteouts: 0, skipped: 1 });
  });

  it("a whiteout removes a lower layer's entry; a later layer replaces a dir with a file", async () => {
    const a = new LayerApplier(root);
    await a.apply(
      layer([
        { name: "etc/", type: "directory" },
        { name: "etc/secret", body: "s" },
        { name: "etc/keep", body: "k" },
        { name: "srv/", type: "directory" },
        { name: "srv/x", body: "x" },
      ]),
    );
    await a.apply(layer([{ name: "etc/.wh.secret" }, { name: "srv", body: "now a file" }]));
    expect(await present("etc/secret")).toBe(false);
    expect(await present("etc/.wh.secret")).toBe(false);
    expect(await readFile(join(root, "etc/keep"), "utf8")).toBe("k");
    expect(await readFile(join(root, "srv"), "utf8")).toBe("now a file");
    expect(a.stats.whiteouts).toBe(1);
  });

  it("a whiteout spares what the same layer adds, in either order", async () => {
    const a = new LayerApplier(root);
    await a.apply(layer([{ name: "f", body: "old" }]));
    await a.apply(layer([{ name: "f", body: "new" }, { name: ".wh.f" }]));
    expect(await readFile(join(root, "f"), "utf8")).toBe("new");
  });

  it("an opaque whiteout empties the directory of lower content only", async () => {
    const a = new LayerApplier(root);
    await a.apply(
      layer([
        { name: "d/", type: "directory" },
        { name: "d/old", body: "o" },
        { name: "d/sub/", type: "directory" },
        { name: "d/sub/deep", body: "o" },
      ]),
    );
    await a.apply(
      layer([
        { name: "d/", type: "directory" },
        { name: "d/sub/new", body: "n" },
        { name: "d/.wh..wh..opq" },
        { name: "d/fresh", body: "f" },
      ]),
    );
    expect(await present("d/old")).toBe(false);
    expect(await present("d/sub/deep")).toBe(false);
    expect(await readFile(join(root, "d/sub/new"), "utf8")).toBe("n");
    expect(await readFile(join(root, "d/fresh"), "utf8")).toBe("f");
    expect(await present("d/.wh..wh..opq")).toBe(false);
  });

  it("follows an absolute symlink in a directory component inside the root", async () => {
    const a = new LayerApplier(root);
    await a.apply(
      layer([
        { name: "usr/lib/", type: "directory" },
        { name: "lib", type: "symlink", linkname: "/usr/lib" },
        { name: "lib/libx.so", body: "x" },
      ]),
    );
    expect(await readFile(join(root, "usr/lib/libx.so"), "utf8")).toBe("x");
  });

  it("replaces a symlink at the entry's own name instead of writing through it", async () => {
    const outside = join(dir, "outside");
    await writeFile(outside, "untouched");
    await symlink(outside, join(root, "f"));
    await new LayerApplier(root).apply(layer([{ name: "f", body: "mine" }]));
    expect(await readFile(outside, "utf8")).toBe("untouched");
    expect(await readFile(join(root, "f"), "utf8")).toBe("mine");
  });

  const refusals: Array<[string, E[]]> = [
    ["a .. path", [{ name: "../escape", body: "x" }]],
    ["an absolute path", [{ name: "/etc/escape", body: "x" }]],
    [
      "a symlink in a directory component climbing out",
      [
        { name: "up", type: "symlink", linkname: "../../.." },
        { name: "up/escape", body: "x" },
      ],
    ],
    ["a hard link to an absolute path", [{ name: "h", type: "link", linkname: "/etc/passwd" }]],
    ["a hard link climbing out", [{ name: "h", type: "link", linkname: "../outside" }]],
    ["a hard link to nothing", [{ name: "h", type: "link", linkname: "missing" }]],
  ];
  for (const [what, entries] of refusals) {
    it(`refuses ${what} and writes nothing outside the root`, async () => {
      await writeFile(join(dir, "outside"), "o");
      const err = await new LayerApplier(root).apply(layer(entries)).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ProtoctlError);
      expect((err as ProtoctlError).message).toMatch(/refused|out of the root/);
      expect(await present("../escape")).toBe(false);
      expect(await readFile(join(dir, "outside"), "utf8")).toBe("o");
      expect(await present("h")).toBe(false);
    });
  }

  it("rejects a truncated layer", async () => {
    const full = Buffer.concat(await layer([{ name: "big", body: "y".repeat(5000) }]).toArray());
    const err = await new LayerApplier(root)
      .apply(Readable.from([full.subarray(0, 1024)]))
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
  });
});
