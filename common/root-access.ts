/**
 * How `env cp` reaches a running env: through /proc/LEADER/root, so it sees
 * the env's own mounts (a tmpfs on /tmp), where ids are the host's and the
 * agent, the host's root, acts with every capability. Three rules keep that
 * no stronger than the env's own root:
 *  - ids go through the leader's uid/gid maps (`RootIds`);
 *  - new entries are made by a helper as the env's root (`EntryCreator`);
 *  - only plain data filesystems are read or written (`assertDataFs`): an
 *    env may mount proc, sysfs or cgroup2 itself, or bind-mount one of their
 *    files elsewhere, and the host's root must not read /proc/kcore or chmod
 *    a sysfs node on its behalf.
 */
import { statfs } from "node:fs/promises";
import { failedPrecondition } from "./errors.js";
import type { IdMap } from "./id-map.js";
import type { HeldDir } from "./root-path.js";

/** In-env ids against the ids seen through a running env's /proc/LEADER/root (the host's). */
export interface RootIds {
  uids: IdMap;
  gids: IdMap;
}

/** Makes new, empty entries in a held directory as the env's root; rejects with an errno `code`. */
export interface EntryCreator {
  file(dir: HeldDir, name: string): Promise<void>;
  dir(dir: HeldDir, name: string): Promise<void>;
  symlink(target: string, dir: HeldDir, name: string): Promise<void>;
  /** Renames temporary entry `tmp` over `name` in the same directory. */
  rename(dir: HeldDir, tmp: string, name: string): Promise<void>;
}

/** A running env's root: id maps, and who creates entries (none: the caller may). */
export interface RootAccess {
  ids: RootIds;
  creator?: EntryCreator;
}

/** statfs f_type of the filesystems a copy may touch in a running env (linux/magic.h). */
const DATA_FS = new Map<number, string>([
  [0x9123683e, "btrfs"],
  [0x794c7630, "overlayfs"],
  [0x01021994, "tmpfs"],
  [0x858458f6, "ramfs"],
  [0xef53, "ext4"],
  [0x58465342, "xfs"],
]);

/**
 * Refuses (FAILED_PRECONDITION) when `path` (a held fd's /proc/self/fd/N)
 * is on anything but a data filesystem: proc, sysfs, cgroup, devpts and the
 * like are the kernel's, not the env's files.
 */
export async function assertDataFs(path: string, shown: string): Promise<void> {
  const { type } = await statfs(path);
  if (DATA_FS.has(type)) return;
  throw failedPrecondition(
    `${shown} is on a kernel filesystem (type 0x${type.toString(16)}) inside the running env: env cp copies files only`,
    { reason: "PATH_REFUSED", metadata: { path: shown } },
  );
}
