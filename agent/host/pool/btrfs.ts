/**
 * The few btrfs operations the pool needs, each one command through
 * common/exec.ts. A full filesystem becomes RESOURCE_EXHAUSTED here, so
 * callers never look at tool output themselves.
 */
import { lstat } from "node:fs/promises";
import { basename, dirname } from "node:path";
import { internal, ProtoctlError, resourceExhausted } from "../../../common/errors.js";
import { CommandError, run } from "../../../common/exec.js";
import { SpawnerError, sharedSpawner } from "../machines/spawner.js";
import { type DuEntry, parseFilesystemDu } from "./parsers.js";

/** Runs a pool command; ENOSPC becomes RESOURCE_EXHAUSTED, other failures INTERNAL with the output. */
export async function poolCmd(
  command: string,
  args: string[],
  what: string,
  signal?: AbortSignal,
): Promise<string> {
  try {
    return (await run(command, args, { signal })).stdout;
  } catch (err) {
    throw asPoolError(err, what);
  }
}

/** Maps anything thrown by a pool step to a ProtoctlError (ENOSPC → RESOURCE_EXHAUSTED). */
export function asPoolError(err: unknown, what: string): ProtoctlError {
  if (err instanceof CommandError) return err.toProtoctl(err.noSpace ? `the pool is full (${what})` : what);
  const pe = ProtoctlError.from(err);
  if (pe.reason === "NO_SPACE") {
    return resourceExhausted(`the pool is full (${what})`, {
      reason: "POOL_FULL",
      hint: "free space (delete envs or old base versions) or grow the pool",
      cause: err,
    });
  }
  return pe;
}

/** A failed spawner ioctl as a pool error: no space → POOL_FULL, else INTERNAL naming the step and errno. */
export function spawnerPoolError(err: SpawnerError, what: string): ProtoctlError {
  if (err.code === "ENOSPC" || err.code === "EDQUOT") return asPoolError(err, what);
  return internal(`${what}: ${err.message}`, {
    reason: "IOCTL_FAILED",
    metadata: { stage: err.stage, errno: err.code },
    cause: err,
  });
}

export async function createSubvolume(path: string): Promise<void> {
  await poolCmd("btrfs", ["-q", "subvolume", "create", path], "create subvolume");
}

/**
 * btrfs frees a deleted subvolume's extents in a background cleaner: right after an env or a
 * failed build is removed, a create can see ENOSPC for space that is already ours. On a full
 * pool, wait for the cleaner and a commit (`subvolume sync`, `filesystem sync`), then try once more.
 */
export async function retryOnceReclaimed<T>(dir: string, step: () => Promise<T>): Promise<T> {
  try {
    return await step();
  } catch (err) {
    if (ProtoctlError.from(err).reason !== "POOL_FULL") throw err;
    await run("btrfs", ["subvolume", "sync", dir]).catch(() => undefined);
    await run("btrfs", ["filesystem", "sync", dir]).catch(() => undefined);
    return await step();
  }
}

/**
 * `btrfs subvolume snapshot [-r] src dst`. With `limitBytes`, the new
 * subvolume's qgroup is then capped (quotas must be on: disk-limit.ts), and a
 * snapshot whose limit cannot be set is deleted again.
 */
export async function snapshotSubvolume(
  src: string,
  dst: string,
  opts: { readonly?: boolean; limitBytes?: number } = {},
): Promise<void> {
  const args = ["-q", "subvolume", "snapshot"];
  if (opts.readonly) args.push("-r");
  args.push(src, dst);
  const limitArgs = opts.limitBytes ? ["qgroup", "limit", String(opts.limitBytes), dst] : undefined;
  // the same ioctls as btrfs-progs, from the spawner: no fork of the agent on the create path
  const spawner = sharedSpawner();
  if (spawner) {
    const req = {
      source: src,
      parent: dirname(dst),
      name: basename(dst),
      readonly: !!opts.readonly,
      limitBytes: opts.limitBytes || undefined,
    };
    await spawner.snapshot(req).catch(async (err: unknown) => {
      if (!(err instanceof SpawnerError)) throw err;
      const limit = err.stage.startsWith("limit");
      // the helper could not destroy the snapshot it made for the limit: try once more here
      if (err.stage === "limit-undo") await deleteSubvolume(dst).catch(() => undefined);
      throw spawnerPoolError(err, limit ? `limit ${dst} to ${opts.limitBytes} bytes` : "snapshot subvolume");
    });
    return;
  }
  await poolCmd("btrfs", args, "snapshot subvolume");
  if (!limitArgs) return;
  try {
    await poolCmd("btrfs", limitArgs, `limit ${dst} to ${opts.limitBytes} bytes`);
  } catch (err) {
    await deleteSubvolume(dst).catch(() => undefined);
    throw err;
  }
}

/** Deletes a subvolume; missing is fine (idempotent). */
export async function deleteSubvolume(path: string): Promise<void> {
  if (!(await isSubvolume(path))) return;
  // the same ioctl as btrfs-progs, from the spawner: no fork of the agent on the rm path; where it
  // fails (nested subvolumes, say) it changed nothing, and the command says why as it always did
  const spawner = sharedSpawner();
  if (spawner) {
    const gone = await spawner.destroy(dirname(path), basename(path)).then(
      () => true,
      (err: unknown) => {
        if (err instanceof SpawnerError) return false;
        throw err;
      },
    );
    if (gone) return;
  }
  await poolCmd("btrfs", ["-q", "subvolume", "delete", path], "delete subvolume");
}

export async function setReadonly(path: string, ro: boolean): Promise<void> {
  await poolCmd(
    "btrfs",
    ["property", "set", "-ts", path, "ro", ro ? "true" : "false"],
    "set subvolume read-only",
  );
}

/** A btrfs subvolume's root directory always has inode number 256. */
export async function isSubvolume(path: string): Promise<boolean> {
  try {
    const st = await lstat(path);
    return st.isDirectory() && st.ino === 256;
  } catch {
    return false;
  }
}

/**
 * Total (referenced) and exclusive bytes of each path, from `btrfs filesystem
 * du -s --raw`: it walks the extents, needs no quota groups, and costs
 * nothing on the snapshot hot path (qgroups slow every snapshot down).
 * Exclusive here means "extents no other file shares", the same notion as
 * a qgroup's exclusive bytes for a snapshot of a base.
 */
export async function diskUsage(paths: string[]): Promise<DuEntry[]> {
  if (paths.length === 0) return [];
  // FIEMAP sees no extents for data still in the page cache: flush the filesystem first.
  await run("sync", ["-f", paths[0]!], { allowFailure: true });
  const r = await run("btrfs", ["filesystem", "du", "-s", "--raw", ...paths], { allowFailure: true });
  return parseFilesystemDu(r.stdout);
}
