/** Small file helpers for the pool's records: JSON written atomically, trees removed with their subvolumes. */
import { readdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { deleteSubvolume, isSubvolume } from "./btrfs.js";
import { unmountUnder } from "./mounts.js";

/** Reads a JSON record; undefined when missing or unreadable (a half-written file counts as missing). */
export async function readJson<T>(path: string): Promise<T | undefined> {
  try {
    return JSON.parse(await readFile(path, "utf8")) as T;
  } catch {
    return undefined;
  }
}

/** Writes JSON through a temp file and a rename, so readers see the old or the new record, never half. */
export async function writeJsonAtomic(path: string, data: unknown): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}-${Math.random().toString(16).slice(2)}`;
  await writeFile(tmp, `${JSON.stringify(data, null, 2)}\n`);
  await rename(tmp, path);
}

export async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

export async function listDir(path: string): Promise<string[]> {
  try {
    return await readdir(path);
  } catch {
    return [];
  }
}

/**
 * Finds subvolumes at or below `dir`, deepest first. Only used when a plain
 * delete failed: boot-mode envs get nested subvolumes from systemd-tmpfiles
 * (e.g. /var/lib/machines) and btrfs will not delete a subvolume that holds one.
 */
async function nestedSubvolumes(dir: string): Promise<string[]> {
  const found: string[] = [];
  const walk = async (d: string, depth: number): Promise<void> => {
    let entries: import("node:fs").Dirent[];
    try {
      entries = await readdir(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      if (!e.isDirectory()) continue;
      const p = join(d, e.name);
      await walk(p, depth + 1);
      if (await isSubvolume(p)) found.push(p);
    }
  };
  await walk(dir, 0);
  return found;
}

/** Deletes a subvolume and any subvolumes nested inside it. Missing is fine. */
export async function deleteSubvolumeTree(path: string): Promise<void> {
  try {
    await deleteSubvolume(path);
  } catch (err) {
    const nested = await nestedSubvolumes(path);
    if (nested.length === 0) throw err;
    for (const n of nested) await deleteSubvolume(n);
    await deleteSubvolume(path);
  }
}

/**
 * Removes an object directory of the pool: unmounts what is mounted below
 * it, deletes the subvolumes it holds (direct children and itself), then the
 * rest. Idempotent.
 */
export async function removeObjectDir(dir: string): Promise<void> {
  if (!(await exists(dir))) return;
  await unmountUnder(dir);
  if (await isSubvolume(dir)) {
    await deleteSubvolumeTree(dir);
    return;
  }
  for (const e of await listDir(dir)) {
    const p = join(dir, e);
    if (await isSubvolume(p)) await deleteSubvolumeTree(p);
    else {
      // one more level: layer builds keep their subvolume at vol/
      for (const e2 of await listDir(p)) {
        const p2 = join(p, e2);
        if (await isSubvolume(p2)) await deleteSubvolumeTree(p2);
      }
    }
  }
  await rm(dir, { recursive: true, force: true });
}
