import {
  chown,
  lstat,
  mkdir,
  mkdtemp,
  open,
  readFile,
  readlink,
  rename,
  rm,
  stat,
  symlink,
  writeFile,
} from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, expect, it } from "vitest";
import { type CopyChunk, CopyEntryType } from "../proto/gen/protoctl/v1/types.js";
import { ProtoctlError } from "./errors.js";
import { IdMap } from "./id-map.js";
import { assertDataFs, type EntryCreator } from "./root-access.js";
import { applyCopyStream, measureTree, readTree, TreeWriter } from "./tree-copy.js";

let src: string;
let dst: string;
const asRoot = process.getuid?.() === 0;

beforeEach(async () => {
  src = await mkdtemp(join(tmpdir(), "protoctl-cp-src-"));
  dst = await mkdtemp(join(tmpdir(), "protoctl-cp-dst-"));
});
afterEach(async () => {
  await rm(src, { recursive: true, force: true });
  await rm(dst, { recursive: true, force: true });
});

async function* stream(root: string, rel: string, header = true): AsyncGenerator<CopyChunk> {
  if (header)
    yield { part: { $case: "header", header: { env: "e", path: "", totalBytes: 0, totalEntries: 0 } } };
  for await (const p of readTree(root, rel)) yield { part: p };
}

const copy = (root: string, rel: string, destRoot: string, dest: string) =>
  applyCopyStream(stream(root, rel), () => new TreeWriter(destRoot, dest, asRoot));

it("copies a tree into an existing directory: contents, modes, mtimes and links kept", async () => {
  await mkdir(join(src, "site/sub"), { recursive: true, mode: 0o750 });
  await writeFile(join(src, "site/a.txt"), "alpha", { mode: 0o640 });
  await writeFile(join(src, "site/sub/big.bin"), Buffer.alloc(600_000, 7), { mode: 0o755 });
  await symlink("../a.txt", join(src, "site/sub/link"));
  await symlink("/etc/passwd", join(src, "site/abs"));
  const totals = await measureTree(src, "site");
  expect(totals).toEqual({ entries: 6, bytes: 600_005 });
  const r = await copy(src, "site", dst, "/");
  expect(r).toEqual({ entries: 6, bytes: 600_005 });
  expect(await readFile(join(dst, "site/a.txt"), "utf8")).toBe("alpha");
  expect((await stat(join(dst, "site/a.txt"))).mode & 0o7777).toBe(0o640);
  expect((await stat(join(dst, "site/sub/big.bin"))).size).toBe(600_000);
  expect((await stat(join(dst, "site/sub/big.bin"))).mode & 0o7777).toBe(0o755);
  expect((await stat(join(dst, "site/sub"))).mode & 0o7777).toBe(0o750);
  expect(await readlink(join(dst, "site/sub/link"))).toBe("../a.txt");
  expect(await readlink(join(dst, "site/abs"))).toBe("/etc/passwd");
  const before = await stat(join(src, "site/a.txt"));
  // ms precision on the wire
  expect(Math.abs((await stat(join(dst, "site/a.txt"))).mtimeMs - before.mtimeMs)).toBeLessThan(1);
});

it("a destination that does not exist names the copy (cp semantics); a missing parent is an error", async () => {
  await writeFile(join(src, "f"), "x");
  await copy(src, "f", dst, "renamed");
  expect(await readFile(join(dst, "renamed"), "utf8")).toBe("x");
  await expect(copy(src, "f", dst, "no/such/place")).rejects.toThrow(/does not exist/);
});

it("a symlink at the destination is replaced, never written through", async () => {
  await writeFile(join(src, "f"), "new");
  await writeFile(join(dst, "victim"), "keep");
  await symlink(join(dst, "victim"), join(dst, "f"));
  await copy(src, "f", dst, "/");
  expect(await readFile(join(dst, "victim"), "utf8")).toBe("keep");
  expect((await lstat(join(dst, "f"))).isFile()).toBe(true);
});

it("refuses a source or destination reached through a symlink that climbs out of the root", async () => {
  // the root is dst/inner; a link inside it that climbs out is refused both ways
  await mkdir(join(dst, "inner"));
  await mkdir(join(dst, "esc"));
  await writeFile(join(src, "f"), "x");
  await symlink("../..", join(dst, "inner/up"));
  const e1 = await copy(src, "f", join(dst, "inner"), "up/x").catch((e: unknown) => ProtoctlError.from(e));
  expect((e1 as ProtoctlError).reason).toBe("PATH_ESCAPES_ROOT");
  const e2 = await copy(join(dst, "inner"), "up/esc", src, "/").catch((e: unknown) => ProtoctlError.from(e));
  expect((e2 as ProtoctlError).reason).toBe("PATH_ESCAPES_ROOT");
});

it("refuses entries with '..' and a stream without its header, leaving no temporary file", async () => {
  async function* evil(): AsyncGenerator<CopyChunk> {
    yield { part: { $case: "header", header: { env: "e", path: "/", totalBytes: 0, totalEntries: 0 } } };
    yield {
      part: {
        $case: "entry",
        entry: {
          path: "ok",
          type: CopyEntryType.COPY_ENTRY_TYPE_FILE,
          mode: 0o644,
          uid: 0,
          gid: 0,
          mtimeMs: 0,
          size: 1,
          linkTarget: "",
        },
      },
    };
    yield { part: { $case: "data", data: Buffer.from("1") } };
    yield {
      part: {
        $case: "entry",
        entry: {
          path: "../../etc/evil",
          type: CopyEntryType.COPY_ENTRY_TYPE_FILE,
          mode: 0o644,
          uid: 0,
          gid: 0,
          mtimeMs: 0,
          size: 0,
          linkTarget: "",
        },
      },
    };
  }
  const err = await applyCopyStream(evil(), () => new TreeWriter(dst, "/", asRoot)).catch((e: unknown) =>
    ProtoctlError.from(e),
  );
  expect((err as ProtoctlError).reason).toBe("INVALID_PATH");
  const { readdir } = await import("node:fs/promises");
  expect((await readdir(dst)).filter((n) => n.startsWith(".protoctl-cp-"))).toEqual([]);
  await writeFile(join(src, "f"), "x");
  await expect(
    applyCopyStream(stream(src, "f", false), () => new TreeWriter(dst, "/", asRoot)),
  ).rejects.toThrow(/header/);
});

it("through a running env's root: owners mapped both ways, entries made by the creator, unmapped owners refused", async () => {
  // what /proc/LEADER/uid_map says for an nspawn --private-users=pick env
  const ids = { uids: IdMap.parse("0 200000 65536\n"), gids: IdMap.parse("0 300000 65536\n") };
  const made: string[] = [];
  const creator: EntryCreator = {
    file: async (d, n) => {
      made.push(`f ${n.startsWith(".protoctl-cp-") ? "tmp" : n}`);
      await (await open(`${d.path}/${n}`, "wx", 0o600)).close();
    },
    dir: async (d, n) => {
      made.push(`d ${n}`);
      await mkdir(`${d.path}/${n}`, 0o700);
    },
    symlink: async (t, d, n) => {
      made.push(`l ${t}`);
      await symlink(t, `${d.path}/${n}`);
    },
    rename: async (d, tmp, n) => {
      made.push(`r ${n}`);
      await rename(`${d.path}/${tmp}`, `${d.path}/${n}`);
    },
  };
  await mkdir(join(src, "t/sub"), { recursive: true });
  await writeFile(join(src, "t/sub/f"), "data");
  await chown(join(src, "t/sub/f"), 1000, 1001);
  await symlink("sub/f", join(src, "t/l"));
  const access = { ids, creator };
  await applyCopyStream(stream(src, "t"), () => new TreeWriter(dst, "/", true, access));
  expect(made).toEqual(["d t", "l sub/f", "r l", "d sub", "f tmp", "r f"]);
  const st = await stat(join(dst, "t/sub/f"));
  expect([st.uid, st.gid]).toEqual([201000, 301001]);
  expect((await stat(join(dst, "t"))).uid).toBe(200000);
  // read back through the same maps: the in-env owners again; a host id outside them is the overflow id
  await writeFile(join(dst, "t/stray"), "s");
  const owners = new Map<string, number>();
  for await (const p of readTree(dst, "t", ids))
    if (p.$case === "entry") owners.set(p.entry.path, p.entry.uid);
  expect(owners.get("t/sub/f")).toBe(1000);
  expect(owners.get("t")).toBe(0);
  expect(owners.get("t/stray")).toBe(65534);
  // an owner the env's namespace cannot hold
  await writeFile(join(src, "far"), "x");
  await chown(join(src, "far"), 70000, 0);
  const far = await applyCopyStream(stream(src, "far"), () => new TreeWriter(dst, "/", true, access)).catch(
    (e: unknown) => e,
  );
  expect((far as ProtoctlError).reason).toBe("COPY_UNMAPPED_OWNER");
  await expect(lstat(join(dst, "far"))).rejects.toThrow(/ENOENT/);
});

it("refuses kernel filesystems in a running env's root (proc), reads data filesystems", async () => {
  await expect(assertDataFs("/proc/self", "/proc/self")).rejects.toMatchObject({ reason: "PATH_REFUSED" });
  await expect(assertDataFs(src, "/src")).resolves.toBeUndefined();
});
