/**
 * Applies OCI image layers (plain tar streams, already decompressed) one
 * after the other onto a root being staged: the flattening of an image into
 * a base version.
 *
 * The archive is untrusted. Every entry's parent is resolved inside the root
 * through held directory fds (common/root-path.ts) with `refuseEscape`: a
 * symlink met in a directory component is followed inside the root (an
 * absolute target restarts at the root, as in a chroot), and one that climbs
 * above it refuses the import. Entry names that are absolute or hold `..`,
 * and hard links whose target is absolute, holds `..` or is missing, are
 * refused too. Nothing is ever written through an existing entry: what is
 * there is removed first and the new entry made with O_EXCL|O_NOFOLLOW.
 *
 * Whiteouts (OCI image spec, layer.md): `.wh.NAME` removes NAME as the lower
 * layers left it; `.wh..wh..opq` empties its directory of what the lower
 * layers put there. Both spare what the same layer adds (whatever the order
 * of entries), so the applier remembers the paths each layer wrote.
 *
 * Owners and modes are kept as numbers (uid 0 on disk, as every base; an
 * unprivileged env's root is idmapped at run time). Devices and fifos are
 * skipped (nspawn gives the env its own /dev); extended attributes are not
 * kept (Node has no setxattr).
 */
import { constants as C } from "node:fs";
import { lchown, link, lstat, lutimes, mkdir, open, readdir, rm, symlink } from "node:fs/promises";
import type { Readable } from "node:stream";
import { extract, type Header } from "tar-stream";
import { Code, invalidArgument, ProtoctlError } from "../../../../common/errors.js";
import { type HeldDir, openDirInRoot } from "../../../../common/root-path.js";

const WH = ".wh.";
const OPAQUE = ".wh..wh..opq";

export interface ApplyStats {
  entries: number;
  whiteouts: number;
  /** Devices, fifos and unknown entry types, not made. */
  skipped: number;
}

/** The components of an entry name ("./usr/bin/x" → ["usr","bin","x"]); refused when absolute or holding "..". */
export function entryParts(name: string, what = "entry"): string[] {
  if (name.startsWith("/")) throw badEntry(name, `${what} has an absolute path`);
  if (name.includes("\0")) throw badEntry(name, `${what} holds a NUL byte`);
  const parts = name.split("/").filter((p) => p !== "" && p !== ".");
  if (parts.includes("..")) throw badEntry(name, `${what} climbs out with ".."`);
  return parts;
}

function badEntry(name: string, why: string): ProtoctlError {
  return invalidArgument(`image layer entry ${JSON.stringify(name)}: ${why}; refused`, {
    reason: "PATH_ESCAPES_ROOT",
    metadata: { entry: name },
  });
}

export class LayerApplier {
  /** Directories made or changed, with their mtimes, set last (children change a directory's mtime). */
  private readonly dirTimes = new Map<string, number>();
  readonly stats: ApplyStats = { entries: 0, whiteouts: 0, skipped: 0 };

  constructor(private readonly root: string) {}

  /** Applies one layer (an uncompressed tar stream) on top of what is there. */
  async apply(tar: Readable): Promise<void> {
    const written = new Set<string>();
    const ex = extract();
    // a read error of the layer stops the parser; a refusal below ends the loop, which destroys it
    tar.on("error", (err) => ex.destroy(err));
    tar.pipe(ex);
    try {
      for await (const entry of ex) {
        try {
          await this.entry(entry.header, entry as unknown as AsyncIterable<Uint8Array>, written);
        } finally {
          entry.resume(); // drain what the handler did not read (skipped entries)
        }
      }
    } catch (err) {
      tar.unpipe(ex);
      tar.destroy();
      throw err;
    }
  }

  /** Sets directory mtimes (deepest first); call once after the last layer. */
  async finish(): Promise<void> {
    const dirs = [...this.dirTimes.entries()].sort((a, b) => b[0].length - a[0].length);
    for (const [rel, mtime] of dirs) {
      const d = await this.parentOf(rel.split("/"), false).catch(() => undefined);
      if (!d) continue;
      const base = rel.split("/").pop()!;
      await lutimes(`${d.path}/${base}`, mtime, mtime).catch(() => undefined);
      await d.close();
    }
  }

  private async entry(h: Header, body: AsyncIterable<Uint8Array>, written: Set<string>): Promise<void> {
    const parts = entryParts(h.name);
    if (parts.length === 0) return; // the root itself: keep the subvolume's own owner and mode
    const base = parts[parts.length - 1]!;
    const dirParts = parts.slice(0, -1);
    if (base === OPAQUE) {
      this.stats.whiteouts++;
      const dir = await this.parentOf(dirParts, true, h.name);
      try {
        await clearLower(dir.path, dirParts.join("/"), written);
      } finally {
        await dir.close();
      }
      return;
    }
    if (base.startsWith(WH)) {
      this.stats.whiteouts++;
      const victim = [...dirParts, base.slice(WH.length)];
      if (written.has(victim.join("/"))) return; // only lower layers' entries are hidden
      const dir = await this.parentOf(dirParts, false, h.name).catch(() => undefined);
      if (!dir) return; // nothing below to hide
      try {
        await rm(`${dir.path}/${base.slice(WH.length)}`, { recursive: true, force: true });
      } finally {
        await dir.close();
      }
      return;
    }
    const rel = parts.join("/");
    const mode = (h.mode ?? 0o644) & 0o7777;
    const uid = h.uid ?? 0;
    const gid = h.gid ?? 0;
    const mtime = (h.mtime ?? new Date(0)).getTime() / 1000;
    if (h.type === "link") {
      // resolved before anything at the new name is touched: a bad link changes nothing
      const target = await this.linkTarget(h);
      const dir = await this.parentOf(dirParts, true, h.name);
      try {
        await replace(`${dir.path}/${base}`, false);
        await link(target.path, `${dir.path}/${base}`);
      } finally {
        await target.close();
        await dir.close();
      }
      written.add(rel);
      this.stats.entries++;
      return;
    }
    const dir = await this.parentOf(dirParts, true, h.name);
    const path = `${dir.path}/${base}`;
    try {
      switch (h.type) {
        case "directory": {
          if (!(await replace(path, true))) await mkdir(path, 0o700);
          await lchown(path, uid, gid);
          await open(path, C.O_RDONLY | C.O_DIRECTORY | C.O_NOFOLLOW).then(async (fh) => {
            await fh.chmod(mode).finally(() => fh.close());
          });
          this.dirTimes.set(rel, mtime);
          break;
        }
        case "file":
        case "contiguous-file": {
          await replace(path, false);
          const fh = await open(path, C.O_WRONLY | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW, 0o600);
          try {
            for await (const chunk of body) await fh.write(chunk as Buffer);
            // chown before chmod: chown clears set-id bits
            await fh.chown(uid, gid);
            await fh.chmod(mode);
            await fh.utimes(mtime, mtime);
          } finally {
            await fh.close();
          }
          break;
        }
        case "symlink": {
          await replace(path, false);
          await symlink(h.linkname ?? "", path);
          await lchown(path, uid, gid);
          await lutimes(path, mtime, mtime);
          break;
        }
        default:
          this.stats.skipped++;
          return;
      }
    } catch (err) {
      throw inEntry(err, h.name);
    } finally {
      await dir.close();
    }
    written.add(rel);
    this.stats.entries++;
  }

  /** The held directory `parts` inside the root (made when `create`); an escape is refused. */
  private async parentOf(parts: string[], create: boolean, entry?: string): Promise<HeldDir> {
    try {
      return await openDirInRoot(this.root, parts.join("/"), { create, refuseEscape: true });
    } catch (err) {
      throw inEntry(err, entry ?? parts.join("/"));
    }
  }

  /** A hard link's target: an archive path already extracted, not a directory, inside the root. */
  private async linkTarget(h: Header): Promise<HeldDir> {
    const parts = entryParts(h.linkname ?? "", "hard link target");
    if (parts.length === 0) throw badEntry(h.name, "hard link without a target");
    const dir = await this.parentOf(parts.slice(0, -1), false, h.name);
    const path = `${dir.path}/${parts[parts.length - 1]}`;
    const st = await lstat(path).catch(() => undefined);
    if (!st || st.isDirectory()) {
      await dir.close();
      throw badEntry(
        h.name,
        `hard link target ${JSON.stringify(h.linkname)} is ${st ? "a directory" : "missing"}`,
      );
    }
    return { ...dir, path };
  }
}

/**
 * Makes room at `path` for a new entry: removes what is there unless it is
 * a directory and a directory is wanted (then true: keep it, merge into it).
 */
async function replace(path: string, wantDir: boolean): Promise<boolean> {
  const st = await lstat(path).catch(() => undefined);
  if (!st) return false;
  if (wantDir && st.isDirectory()) return true;
  await rm(path, { recursive: true, force: true });
  return false;
}

/** Opaque whiteout: removes from `dirPath` what this layer did not write (recursing into what it did). */
async function clearLower(dirPath: string, rel: string, written: Set<string>): Promise<void> {
  for (const name of await readdir(dirPath)) {
    const childRel = rel ? `${rel}/${name}` : name;
    const child = `${dirPath}/${name}`;
    const kept = written.has(childRel) || [...written].some((w) => w.startsWith(`${childRel}/`));
    if (!kept) {
      await rm(child, { recursive: true, force: true });
      continue;
    }
    const st = await lstat(child);
    if (st.isDirectory()) await clearLower(child, childRel, written);
  }
}

/**
 * Errors met while applying an entry name it. Path refusals (root-path.ts says
 * FAILED_PRECONDITION: a root's content at fault) are INVALID_ARGUMENT here:
 * the archive, the caller's input, holds that content.
 */
function inEntry(err: unknown, name: string): unknown {
  if (err instanceof ProtoctlError) {
    if (err.metadata.entry) return err;
    return new ProtoctlError(
      Code.INVALID_ARGUMENT,
      `image layer entry ${JSON.stringify(name)}: ${err.message}`,
      {
        reason: err.reason,
        hint: err.hint,
        metadata: { ...err.metadata, entry: name },
      },
    );
  }
  return err;
}
