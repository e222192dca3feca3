/**
 * `env cp`: a file tree read from, or written into, a root as a stream of
 * CopyChunk parts (proto: a header, then entries, each file's entry followed
 * by its bytes). The same code serves the agent (root: an env root, whose
 * content is untrusted) and the CLI (root: `/`, the user's own files; what
 * it receives came from an env, so it is written with the same care).
 *
 * Reading: the source is resolved inside the root (root-path.ts, refusing a
 * symlink that climbs out of it), then walked through held directory fds,
 * each child opened with O_NOFOLLOW: symlinks are copied as links, never
 * followed; devices, fifos and sockets are skipped.
 *
 * Writing: every entry's parent is resolved inside the root again (a link the
 * env plants meanwhile is followed only inside it); files and links are made
 * under a fresh temporary name (O_EXCL|O_NOFOLLOW) and renamed over the
 * target, so nothing is ever written through an existing link. Ownership and
 * modes are set on what was just made; directories get theirs last, children
 * first. Entry paths are relative and may not hold `..`.
 *
 * Ownership: an unprivileged env's root is idmapped by nspawn at run time
 * (`--private-users-ownership=map`), so the ids on disk are the ids inside the
 * env: copying them as they are maps them through the env's user namespace.
 * A running env is copied through /proc/LEADER/root instead (its own mounts,
 * a tmpfs on /tmp, are seen there), where ids are the host's: `RootAccess`
 * maps them through the leader's uid/gid maps, and its `creator` makes new
 * entries as the env's root (the host's root may not create an inode there).
 */
import { randomBytes } from "node:crypto";
import { constants as C, type Stats } from "node:fs";
import {
  chmod,
  chown,
  type FileHandle,
  lchown,
  lstat,
  lutimes,
  mkdir,
  open,
  readdir,
  readlink,
  rename,
  symlink,
  unlink,
  utimes,
} from "node:fs/promises";
import {
  type CopyChunk,
  type CopyEntry,
  CopyEntryType,
  type CopyResult,
} from "../proto/gen/protoctl/v1/types.js";
import { failedPrecondition, invalidArgument, ProtoctlError } from "./errors.js";
import { OVERFLOW_ID } from "./id-map.js";
import { assertDataFs, type RootAccess, type RootIds } from "./root-access.js";
import { type HeldDir, openDirInRoot, rootRelativeParts } from "./root-path.js";

/** One part of a copy stream (CopyChunk.part without the header). */
export type CopyPart = { $case: "entry"; entry: CopyEntry } | { $case: "data"; data: Buffer };

const CHUNK = 256 * 1024;

export interface TreeTotals {
  entries: number;
  bytes: number;
}

/**
 * Counts what `readTree` will send (entries and file bytes), for a progress
 * total. Best effort: a tree that changes meanwhile just ends early or late.
 */
export async function measureTree(root: string, rel: string, ids?: RootIds): Promise<TreeTotals> {
  const t = { entries: 0, bytes: 0 };
  for await (const p of walk(root, rel, false, ids)) {
    if (p.$case === "entry") {
      t.entries++;
      t.bytes += p.entry.size;
    }
  }
  return t;
}

/** The entries and bytes of `rel` inside `root` (the top entry named after rel's last component). */
export function readTree(root: string, rel: string, ids?: RootIds): AsyncGenerator<CopyPart> {
  return walk(root, rel, true, ids);
}

async function* walk(
  root: string,
  rel: string,
  withData: boolean,
  ids: RootIds | undefined,
): AsyncGenerator<CopyPart> {
  const parts = rootRelativeParts(rel);
  const name = parts.pop();
  if (!name)
    throw invalidArgument("copy a path below the root, not the root itself", { reason: "COPY_ROOT" });
  const parent = await openDirInRoot(root, parts.join("/"), { refuseEscape: true });
  try {
    if (ids) await assertDataFs(parent.path, `/${parts.join("/")}`);
    const st = await lstat(`${parent.path}/${name}`).catch((err: NodeJS.ErrnoException) => {
      if (err.code === "ENOENT")
        throw failedPrecondition(`${rel} does not exist`, {
          reason: "PATH_NOT_FOUND",
          metadata: { path: rel },
        });
      throw err;
    });
    yield* visit(parent.path, name, name, st, withData, ids);
  } finally {
    await parent.close();
  }
}

async function* visit(
  dir: string,
  name: string,
  out: string,
  st: Stats,
  withData: boolean,
  ids: RootIds | undefined,
): AsyncGenerator<CopyPart> {
  const base = {
    path: out,
    mode: st.mode & 0o7777,
    uid: ids ? (ids.uids.fromHost(st.uid) ?? OVERFLOW_ID) : st.uid,
    gid: ids ? (ids.gids.fromHost(st.gid) ?? OVERFLOW_ID) : st.gid,
    mtimeMs: Math.floor(st.mtimeMs),
  };
  const at = `${dir}/${name}`;
  if (st.isSymbolicLink()) {
    const linkTarget = await readlink(at);
    yield entry({ ...base, type: CopyEntryType.COPY_ENTRY_TYPE_SYMLINK, size: 0, linkTarget });
    return;
  }
  if (st.isFile()) {
    const fh = await open(at, C.O_RDONLY | C.O_NOFOLLOW | C.O_NONBLOCK);
    try {
      // a bind-mounted file (say the env's own /proc/kcore) is on its own filesystem
      if (ids) await assertDataFs(`/proc/self/fd/${fh.fd}`, out);
      const fst = await fh.stat();
      if (!fst.isFile()) return; // swapped meanwhile
      yield entry({ ...base, type: CopyEntryType.COPY_ENTRY_TYPE_FILE, size: fst.size, linkTarget: "" });
      if (!withData) return;
      for (;;) {
        const buf = Buffer.allocUnsafe(CHUNK);
        const { bytesRead } = await fh.read(buf, 0, CHUNK, null);
        if (bytesRead === 0) break;
        yield { $case: "data", data: buf.subarray(0, bytesRead) };
      }
    } finally {
      await fh.close();
    }
    return;
  }
  if (!st.isDirectory()) return; // devices, fifos, sockets: not copied
  const fh = await open(at, C.O_RDONLY | C.O_DIRECTORY | C.O_NOFOLLOW);
  try {
    const held = `/proc/self/fd/${fh.fd}`;
    if (ids) await assertDataFs(held, out);
    yield entry({ ...base, type: CopyEntryType.COPY_ENTRY_TYPE_DIR, size: 0, linkTarget: "" });
    const names = (await readdir(held)).sort();
    for (const child of names) {
      const cst = await lstat(`${held}/${child}`).catch(() => undefined);
      if (cst) yield* visit(held, child, `${out}/${child}`, cst, withData, ids);
    }
  } finally {
    await fh.close();
  }
}

function entry(e: CopyEntry): CopyPart {
  return { $case: "entry", entry: e };
}

interface OpenFile {
  fh: FileHandle;
  dir: HeldDir;
  tmp: string;
  name: string;
  e: CopyEntry;
}

/**
 * Writes a copy stream into `dest` inside `root`. When `dest` is an existing
 * directory the top entry lands inside it (`cp x dir/` → `dir/x`); otherwise
 * the top entry becomes `dest` itself, in dest's parent, which must exist.
 */
export class TreeWriter {
  private rename: string | undefined;
  private baseParts: string[] = [];
  private current: OpenFile | undefined;
  private cached: { key: string; dir: HeldDir } | undefined;
  private readonly dirs: { parts: string[]; e: CopyEntry }[] = [];
  readonly totals: TreeTotals = { entries: 0, bytes: 0 };

  constructor(
    private readonly root: string,
    private readonly dest: string,
    /** Set owners (false for a client not running as root: files become its own). */
    private readonly chownAll = true,
    /** A running env's root (/proc/LEADER/root): ids mapped, entries made by `creator`. */
    private readonly access?: RootAccess,
  ) {}

  /** The owner to set for entry `e`: its in-env ids, as seen through this root. */
  private owner(e: CopyEntry): [number, number] {
    if (!this.access) return [e.uid, e.gid];
    const uid = this.access.ids.uids.toHost(e.uid);
    const gid = this.access.ids.gids.toHost(e.gid);
    if (uid === undefined || gid === undefined)
      throw invalidArgument(`${e.path}: owner ${e.uid}:${e.gid} has no mapping in the env's user namespace`, {
        reason: "COPY_UNMAPPED_OWNER",
        metadata: { path: e.path },
      });
    return [uid, gid];
  }

  async begin(): Promise<void> {
    const parts = rootRelativeParts(this.dest);
    try {
      const d = await openDirInRoot(this.root, parts.join("/"), { refuseEscape: true });
      await d.close();
      this.baseParts = parts;
    } catch (err) {
      const reason = ProtoctlError.from(err).reason;
      if (reason !== "PATH_NOT_FOUND" && reason !== "PATH_NOT_DIRECTORY") throw err;
      const last = parts.pop();
      if (!last) throw err;
      this.rename = last;
      this.baseParts = parts;
      // the parent must exist: cp does not make missing parents either
      const p = await openDirInRoot(this.root, parts.join("/"), { refuseEscape: true });
      await p.close();
    }
  }

  async entry(e: CopyEntry): Promise<void> {
    await this.finishFile();
    const parts = rootRelativeParts(e.path);
    if (parts.length === 0) throw invalidArgument("copy entry without a path", { reason: "COPY_BAD_ENTRY" });
    if (this.rename) parts[0] = this.rename;
    const name = parts[parts.length - 1]!;
    const dir = await this.parent(parts.slice(0, -1));
    this.totals.entries++;
    switch (e.type) {
      case CopyEntryType.COPY_ENTRY_TYPE_DIR: {
        const made = this.access?.creator
          ? this.access.creator.dir(dir, name)
          : mkdir(`${dir.path}/${name}`, { mode: 0o700 });
        await made.catch(async (err: NodeJS.ErrnoException) => {
          if (err.code !== "EEXIST") throw err;
          const st = await lstat(`${dir.path}/${name}`);
          if (!st.isDirectory())
            throw failedPrecondition(`/${parts.join("/")} exists and is not a directory`, {
              reason: "PATH_NOT_DIRECTORY",
            });
        });
        this.dirs.push({ parts, e });
        return;
      }
      case CopyEntryType.COPY_ENTRY_TYPE_SYMLINK: {
        if (e.linkTarget.includes("\0") || e.linkTarget === "")
          throw invalidArgument("bad symlink target", { reason: "COPY_BAD_ENTRY" });
        const tmp = tmpName();
        if (this.access?.creator) await this.access.creator.symlink(e.linkTarget, dir, tmp);
        else await symlink(e.linkTarget, `${dir.path}/${tmp}`);
        try {
          if (this.chownAll) await lchown(`${dir.path}/${tmp}`, ...this.owner(e));
          const t = new Date(e.mtimeMs);
          await lutimes(`${dir.path}/${tmp}`, t, t).catch(() => undefined);
          await this.moveIntoPlace(dir, tmp, name);
        } catch (err) {
          await unlink(`${dir.path}/${tmp}`).catch(() => undefined);
          throw err;
        }
        return;
      }
      case CopyEntryType.COPY_ENTRY_TYPE_FILE: {
        const tmp = tmpName();
        const fh = await this.createFile(dir, tmp);
        this.current = { fh, dir, tmp, name, e };
        return;
      }
      default:
        throw invalidArgument(`copy entry ${e.path} has an unknown type`, { reason: "COPY_BAD_ENTRY" });
    }
  }

  /** A new, empty file `tmp` in `dir`, open for writing; never an existing one, never through a link. */
  private async createFile(dir: HeldDir, tmp: string): Promise<FileHandle> {
    const at = `${dir.path}/${tmp}`;
    if (!this.access?.creator) return open(at, C.O_WRONLY | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW, 0o600);
    await this.access.creator.file(dir, tmp);
    // the env runs meanwhile: whatever now has that name must still be a regular file (no link, no fifo)
    const fh = await open(at, C.O_WRONLY | C.O_NOFOLLOW | C.O_NONBLOCK).catch(async (err: unknown) => {
      await unlink(at).catch(() => undefined);
      throw err;
    });
    if (!(await fh.stat()).isFile()) {
      await fh.close();
      throw failedPrecondition(`${tmp} was replaced while it was written`, { reason: "PATH_REFUSED" });
    }
    return fh;
  }

  async data(b: Uint8Array): Promise<void> {
    if (!this.current) throw invalidArgument("copy data outside a file entry", { reason: "COPY_BAD_ENTRY" });
    await this.current.fh.write(b);
    this.totals.bytes += b.length;
  }

  /** Finishes the last file and sets directory metadata (deepest first). */
  async end(): Promise<TreeTotals> {
    await this.finishFile();
    this.dropCache();
    for (const { parts, e } of [...this.dirs].reverse()) {
      const d = await openDirInRoot(this.root, [...this.baseParts, ...parts].join("/"));
      try {
        if (this.access) await assertDataFs(d.path, `/${[...this.baseParts, ...parts].join("/")}`);
        if (this.chownAll) await chown(d.path, ...this.owner(e));
        await chmod(d.path, e.mode & 0o7777);
        const t = new Date(e.mtimeMs);
        await utimes(d.path, t, t);
      } finally {
        await d.close();
      }
    }
    return this.totals;
  }

  /** Leaves no temporary file behind after a failed or cancelled copy. */
  async abort(): Promise<void> {
    const c = this.current;
    this.current = undefined;
    if (c) {
      await c.fh.close().catch(() => undefined);
      await unlink(`${c.dir.path}/${c.tmp}`).catch(() => undefined);
    }
    this.dropCache();
  }

  private async finishFile(): Promise<void> {
    const c = this.current;
    if (!c) return;
    this.current = undefined;
    try {
      if (this.chownAll) await c.fh.chown(...this.owner(c.e));
      await c.fh.chmod(c.e.mode & 0o7777);
      const t = new Date(c.e.mtimeMs);
      await c.fh.utimes(t, t);
      await c.fh.close();
      await this.moveIntoPlace(c.dir, c.tmp, c.name);
    } catch (err) {
      await c.fh.close().catch(() => undefined);
      await unlink(`${c.dir.path}/${c.tmp}`).catch(() => undefined);
      throw err;
    }
  }

  /** Renames `tmp` over `name` in `dir` (the creator's ids in a running env: a new name is a create). */
  private moveIntoPlace(dir: HeldDir, tmp: string, name: string): Promise<void> {
    if (this.access?.creator) return this.access.creator.rename(dir, tmp, name);
    return rename(`${dir.path}/${tmp}`, `${dir.path}/${name}`);
  }

  /** The held parent directory of an entry; the last one is kept, entries come parent first. */
  private async parent(parts: string[]): Promise<HeldDir> {
    const key = parts.join("/");
    if (this.cached?.key === key) return this.cached.dir;
    this.dropCache();
    const dir = await openDirInRoot(this.root, [...this.baseParts, ...parts].join("/"), {
      refuseEscape: true,
    });
    if (this.access)
      await assertDataFs(dir.path, `/${[...this.baseParts, ...parts].join("/")}`).catch(async (err) => {
        await dir.close();
        throw err;
      });
    this.cached = { key, dir };
    return dir;
  }

  private dropCache(): void {
    if (this.cached) void this.cached.dir.close();
    this.cached = undefined;
  }
}

function tmpName(): string {
  return `.protoctl-cp-${randomBytes(6).toString("hex")}`;
}

/** Applies a copy stream to a TreeWriter: header first, then entries and data; aborts on any error. */
export async function applyCopyStream(
  chunks: AsyncIterable<CopyChunk>,
  writerFor: (env: string, path: string) => TreeWriter | Promise<TreeWriter>,
): Promise<CopyResult> {
  let writer: TreeWriter | undefined;
  try {
    for await (const c of chunks) {
      const p = c.part;
      if (!writer) {
        if (p?.$case !== "header")
          throw invalidArgument("a copy starts with its header", { reason: "COPY_NO_HEADER" });
        writer = await writerFor(p.header.env, p.header.path);
        await writer.begin();
      } else if (p?.$case === "entry") await writer.entry(p.entry);
      else if (p?.$case === "data") await writer.data(p.data);
    }
    if (!writer) throw invalidArgument("empty copy stream", { reason: "COPY_NO_HEADER" });
    const t = await writer.end();
    return { entries: t.entries, bytes: t.bytes };
  } catch (err) {
    await writer?.abort();
    throw err;
  }
}
