/**
 * Mount helpers: the mount table is read from /proc/self/mountinfo (no
 * process spawned), overlayfs is mounted with mount(8).
 */
import { readFile } from "node:fs/promises";
import { run } from "../../../common/exec.js";
import { poolCmd } from "./btrfs.js";
import { type MountEntry, parseMountinfo } from "./parsers.js";

export async function readMounts(): Promise<MountEntry[]> {
  return parseMountinfo(await readFile("/proc/self/mountinfo", "utf8"));
}

export async function findMount(mountpoint: string): Promise<MountEntry | undefined> {
  const all = await readMounts();
  // The last entry wins: a later mount over the same path hides the earlier ones.
  return all.filter((m) => m.mountpoint === mountpoint).at(-1);
}

/** Mounts below `prefix/` (not the prefix itself), deepest first, ready to unmount in order. */
export async function mountsUnder(prefix: string): Promise<MountEntry[]> {
  const p = prefix.endsWith("/") ? prefix : `${prefix}/`;
  return (await readMounts())
    .filter((m) => m.mountpoint.startsWith(p))
    .sort((a, b) => b.mountpoint.length - a.mountpoint.length);
}

/**
 * Mounts overlayfs. `lowers` is top first, as overlayfs wants it. Upper and
 * work must be in the same btrfs subvolume: overlayfs renames from work to
 * upper and btrfs refuses renames across subvolumes (EXDEV, measured here).
 */
export async function mountOverlay(
  target: string,
  lowers: string[],
  upper: string,
  work: string,
): Promise<void> {
  const opts = `lowerdir=${lowers.join(":")},upperdir=${upper},workdir=${work}`;
  await poolCmd("mount", ["-t", "overlay", "overlay", "-o", opts, target], "mount overlayfs");
}

/** Unmounts; tries a lazy unmount when busy. Not mounted is fine. */
export async function unmount(target: string): Promise<void> {
  if (!(await findMount(target))) return;
  const r = await run("umount", [target], { allowFailure: true });
  if (r.exitCode === 0) return;
  await run("umount", ["-l", target], { allowFailure: true });
}

/** Unmounts everything mounted below `prefix/`, deepest first. */
export async function unmountUnder(prefix: string): Promise<string[]> {
  const done: string[] = [];
  for (const m of await mountsUnder(prefix)) {
    await unmount(m.mountpoint);
    done.push(m.mountpoint);
  }
  return done;
}
