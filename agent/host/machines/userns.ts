/**
 * Small helpers for machines in a user namespace (nspawn --private-users=pick).
 */
import { chownSync, readFileSync } from "node:fs";

/** The host id that id 0 maps to in a /proc/PID/{uid,gid}_map, if mapped. */
export function hostIdOfRoot(map: string): number | undefined {
  for (const line of map.split("\n")) {
    const [inside, outside] = line.trim().split(/\s+/).map(Number);
    if (inside === 0 && Number.isInteger(outside)) return outside;
  }
  return undefined;
}

/**
 * Gives a host file (the console log) to the container's root, as PID 1
 * holds it open already: so `echo … > /proc/1/fd/1` works from an exec too.
 */
export function chownToContainerRoot(file: string, leaderPid: number): void {
  try {
    const uid = hostIdOfRoot(readFileSync(`/proc/${leaderPid}/uid_map`, "utf8"));
    const gid = hostIdOfRoot(readFileSync(`/proc/${leaderPid}/gid_map`, "utf8"));
    if (uid !== undefined && gid !== undefined && uid !== 0) chownSync(file, uid, gid);
  } catch {
    // the leader went away: the start fails on its own
  }
}
