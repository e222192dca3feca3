/**
 * Files inside an untrusted root (an env root, a base being updated, a layer's
 * merged tree), resolved the way a process chrooted there would see them and
 * never outside it.
 *
 * The root's content comes from bases, tar imports, recipes, other nodes and
 * the env's own processes, which may run while the agent writes: any
 * component can be a symlink (absolute, relative, climbing with `..`) and can
 * be swapped between a check and a use. So no path string below the root is
 * ever handed to the kernel whole. The walk holds each directory it reaches as
 * an `O_PATH` fd and opens the next component relative to it, with
 * `O_NOFOLLOW`, through `/proc/self/fd/N/NAME` (Node has no openat; the kernel
 * resolves the magic link `/proc/self/fd/N` to the very directory the fd
 * holds, so a rename or a symlink planted above it afterwards changes nothing).
 *
 * Symlinks met in a directory component are followed *inside* the root:
 * an absolute target restarts from the root, `..` pops one held directory and
 * stops at the root (like openat2's RESOLVE_IN_ROOT, or a chroot). The agent's
 * write then lands where the same write by root inside the env would land.
 * A path the caller gives may not hold `..` at all (refused, INVALID_ARGUMENT).
 * The last component is never followed: a write replaces it (a new file made
 * with O_CREAT|O_EXCL|O_NOFOLLOW next to it, then renamed over it, so a
 * symlink there is replaced, not written through, and readers see the old or
 * the new file); an lstat or a remove acts on the link itself.
 */

import { randomBytes } from "node:crypto";
import { constants as C, type Stats } from "node:fs";
import { type FileHandle, mkdir, open, readlink, rename, unlink } from "node:fs/promises";
import { failedPrecondition, invalidArgument, ProtoctlError } from "./errors.js";

/** Linux's O_PATH (not in fs.constants): an fd that only names an inode, to resolve relative to. */
const O_PATH = 0o10000000;
/** Same bound as the kernel's (ELOOP after 40 links in one lookup). */
const MAX_LINKS = 40;

/** A directory inside a root, held open so its path can no longer be redirected. */
export interface HeldDir {
  /** `/proc/self/fd/N`: a path to the held directory, valid in this process until `close`. */
  readonly path: string;
  /** The same directory for a child process (`/proc/PID/fd/N`). */
  readonly pathForChild: string;
  close(): Promise<void>;
}

/**
 * The components of a path inside a root ("etc/hosts", "/etc/hosts"): no
 * NUL, no `..`; `.` and empty parts dropped. Refused with INVALID_ARGUMENT.
 */
export function rootRelativeParts(rel: string): string[] {
  if (rel.includes("\0")) throw invalidPath(rel, "holds a NUL byte");
  const parts = rel.split("/").filter((p) => p !== "" && p !== ".");
  if (parts.includes("..")) throw invalidPath(rel, "must not hold '..'");
  return parts;
}

/**
 * Opens directory `rel` inside `root`, following symlinks only inside the
 * root. With `create`, missing directories are made (mode 0755, like
 * `mkdir -p` run inside the env). A component that is not a directory, or a
 * symlink loop, is refused with FAILED_PRECONDITION.
 */
export async function openDirInRoot(
  root: string,
  rel: string,
  opts: { create?: boolean; refuseEscape?: boolean } = {},
): Promise<HeldDir> {
  const parts = rootRelativeParts(rel);
  // The root itself is the agent's own path (pool layout), so it may be followed.
  const rootFh = await open(root, O_PATH | C.O_DIRECTORY);
  const stack: FileHandle[] = [rootFh];
  const closeAll = () => Promise.all(stack.map((h) => h.close().catch(() => undefined)));
  try {
    const queue = [...parts];
    let links = 0;
    const walked: string[] = [];
    while (queue.length > 0) {
      const name = queue.shift()!;
      if (name === "" || name === ".") continue;
      if (name === "..") {
        // only from a symlink's target: up one held directory, never above the root
        if (stack.length === 1 && opts.refuseEscape) {
          // `env cp` says so rather than clamping: the user meant a path outside the env
          throw failedPrecondition(`${show(rel)} leads out of the root through a symlink: refused`, {
            reason: "PATH_ESCAPES_ROOT",
            metadata: { path: rel },
          });
        }
        if (stack.length > 1) await stack.pop()!.close();
        walked.pop();
        continue;
      }
      const dir = stack[stack.length - 1]!;
      const child = await openChild(dir, name, opts.create === true);
      if (!child)
        throw failedPrecondition(`${show(rel)} in the root: /${[...walked, name].join("/")} does not exist`, {
          reason: "PATH_NOT_FOUND",
          metadata: { path: rel },
        });
      const st = await child.stat();
      if (st.isSymbolicLink()) {
        await child.close();
        if (++links > MAX_LINKS)
          throw failedPrecondition(`${show(rel)} in the root: too many symlinks (a loop?)`, {
            reason: "SYMLINK_LOOP",
            metadata: { path: rel },
          });
        const target = await readlink(`${procPath(dir)}/${name}`);
        if (target.startsWith("/")) {
          while (stack.length > 1) await stack.pop()!.close();
          walked.length = 0;
        }
        queue.unshift(...target.split("/"));
        continue;
      }
      if (!st.isDirectory()) {
        await child.close();
        throw failedPrecondition(
          `${show(rel)} in the root: /${[...walked, name].join("/")} is not a directory`,
          {
            reason: "PATH_NOT_DIRECTORY",
            metadata: { path: rel },
          },
        );
      }
      stack.push(child);
      walked.push(name);
    }
  } catch (err) {
    await closeAll();
    throw asRootError(err, rel);
  }
  const held = stack.pop()!;
  await closeAll();
  return {
    path: procPath(held),
    pathForChild: `/proc/${process.pid}/fd/${held.fd}`,
    close: () => held.close().catch(() => undefined),
  };
}

/**
 * Writes `data` to file `rel` inside `root` (parents made as needed): a new
 * file, then a rename over the old name, so a symlink or a hard link there is
 * replaced and never written through. Exactly `mode` (no umask); owner root.
 */
export async function writeFileInRoot(
  root: string,
  rel: string,
  data: Uint8Array | string,
  mode = 0o644,
): Promise<void> {
  const parts = rootRelativeParts(rel);
  const base = parts.pop();
  if (!base) throw invalidPath(rel, "names no file");
  const dir = await openDirInRoot(root, parts.join("/"), { create: true });
  const tmp = `${dir.path}/.protoctl-${randomBytes(6).toString("hex")}.tmp`;
  try {
    const fh = await open(tmp, C.O_WRONLY | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW, 0o600);
    try {
      await fh.writeFile(data);
      await fh.chmod(mode & 0o7777);
    } finally {
      await fh.close();
    }
    await rename(tmp, `${dir.path}/${base}`);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw asRootError(err, rel);
  } finally {
    await dir.close();
  }
}

/** lstat of `rel` inside `root` (the last component not followed); undefined when it does not exist. */
export async function lstatInRoot(root: string, rel: string): Promise<Stats | undefined> {
  const parts = rootRelativeParts(rel);
  const base = parts.pop();
  if (!base) throw invalidPath(rel, "names no file");
  const dir = await openDirInRoot(root, parts.join("/")).catch((err: unknown) => {
    if (err instanceof ProtoctlError && err.reason === "PATH_NOT_FOUND") return undefined;
    throw err;
  });
  if (!dir) return undefined;
  try {
    const fh = await open(`${dir.path}/${base}`, O_PATH | C.O_NOFOLLOW).catch(
      (err: NodeJS.ErrnoException) => {
        if (err.code === "ENOENT") return undefined;
        throw asRootError(err, rel);
      },
    );
    if (!fh) return undefined;
    try {
      return await fh.stat();
    } finally {
      await fh.close();
    }
  } finally {
    await dir.close();
  }
}

/**
 * Removes file (or symlink) `rel` inside `root` when `keep` does not veto it
 * (given its lstat); true when removed. Never follows the last component.
 */
export async function removeFileInRoot(
  root: string,
  rel: string,
  keep: (st: Stats) => boolean = () => false,
): Promise<boolean> {
  const parts = rootRelativeParts(rel);
  const base = parts.pop();
  if (!base) throw invalidPath(rel, "names no file");
  const dir = await openDirInRoot(root, parts.join("/")).catch(() => undefined);
  if (!dir) return false;
  try {
    const fh = await open(`${dir.path}/${base}`, O_PATH | C.O_NOFOLLOW).catch(() => undefined);
    if (!fh) return false;
    const st = await fh.stat().finally(() => fh.close());
    if (st.isDirectory() || keep(st)) return false;
    await unlink(`${dir.path}/${base}`);
    return true;
  } finally {
    await dir.close();
  }
}

/** Opens `name` in `dir` without following it; makes it a directory first when missing and `create`. */
async function openChild(dir: FileHandle, name: string, create: boolean): Promise<FileHandle | undefined> {
  const path = `${procPath(dir)}/${name}`;
  for (let attempt = 0; ; attempt++) {
    try {
      return await open(path, O_PATH | C.O_NOFOLLOW);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT" || !create || attempt > 0) {
        if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
        throw err;
      }
    }
    // mkdir never follows its last component; EEXIST means someone made it meanwhile: open that
    await mkdir(path, 0o755).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== "EEXIST") throw err;
    });
  }
}

function procPath(h: FileHandle): string {
  return `/proc/self/fd/${h.fd}`;
}

function show(rel: string): string {
  return `/${rel.replace(/^\/+/, "")}`;
}

function invalidPath(rel: string, why: string): ProtoctlError {
  return invalidArgument(`path ${JSON.stringify(rel)} inside the root ${why}`, {
    reason: "INVALID_PATH",
    metadata: { path: rel },
  });
}

/** System errors met inside the root as FAILED_PRECONDITION with the path (the root's content is at fault). */
function asRootError(err: unknown, rel: string): unknown {
  if (err instanceof ProtoctlError) return err;
  const code = (err as NodeJS.ErrnoException).code;
  const why: Record<string, string> = {
    EISDIR: "is a directory",
    ENOTDIR: "has a component that is not a directory",
    ELOOP: "is a symlink loop",
    EEXIST: "already exists",
    ENOTEMPTY: "is a non-empty directory",
  };
  if (code && why[code]) {
    return failedPrecondition(`${show(rel)} in the root ${why[code]}`, {
      reason: "PATH_REFUSED",
      metadata: { path: rel, errno: code },
    });
  }
  return err;
}
