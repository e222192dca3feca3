/**
 * Per-env disk limits with btrfs simple quotas (kernel ≥ 6.7). Simple quotas
 * account each extent to the subvolume that wrote it, so a fresh snapshot of
 * a base starts near zero and only what the env writes counts; unlike full
 * qgroups they do no backref walks, so snapshots stay cheap (bench/env-create
 * measures both). A limit on the env's subvolume qgroup makes writes beyond
 * it fail inside the env (EDQUOT, "Disk quota exceeded") while the pool and
 * other envs keep their space.
 *
 * btrfs-progs before 6.7 cannot enable simple quotas (`quota enable
 * --simple`), so they are enabled with the ioctl itself (BTRFS_IOC_QUOTA_CTL,
 * cmd BTRFS_QUOTA_CTL_ENABLE_SIMPLE_QUOTA): Node has no ioctl, so the agent's
 * protoctl-spawner does it, or python3's fcntl where the spawner is missing
 * or refuses. A plain env's limit is set by the spawner in the same request
 * as its snapshot (BTRFS_IOC_QGROUP_LIMIT on the new subvolume's fd: no
 * process spawned on the create path, bench/env-create measures it); other
 * subvolumes, and hosts without the spawner, use `btrfs qgroup limit` (any
 * version). Quotas are enabled on a pool only when the first limited env is made.
 */
import { release } from "node:os";
import { failedPrecondition } from "../../../common/errors.js";
import { run } from "../../../common/exec.js";
import { SpawnerError, sharedSpawner } from "../machines/spawner.js";
import { isSubvolume, poolCmd, snapshotSubvolume } from "./btrfs.js";
import { parseQgroupShow, type QgroupUsage } from "./parsers.js";

/** _IOWR(0x94, 40, struct btrfs_ioctl_quota_ctl_args) */
const BTRFS_IOC_QUOTA_CTL = 0xc0109428;
const ENABLE_SIMPLE_QUOTA = 4;
const ENABLE_SCRIPT = [
  "import fcntl, os, struct, sys",
  "fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)",
  `fcntl.ioctl(fd, ${BTRFS_IOC_QUOTA_CTL}, struct.pack("QQ", ${ENABLE_SIMPLE_QUOTA}, 0))`,
].join("\n");

const enabled = new Set<string>();

/** Whether `btrfs qgroup show` works on the filesystem at `mountpoint` (quotas on). */
async function quotasOn(mountpoint: string): Promise<boolean> {
  const r = await run("btrfs", ["qgroup", "show", mountpoint], { allowFailure: true });
  return r.exitCode === 0;
}

/** Enables simple quotas on the filesystem of `mountpoint` once; an error says what the host lacks. */
export async function ensureSimpleQuotas(mountpoint: string): Promise<void> {
  if (enabled.has(mountpoint)) return;
  const spawner = sharedSpawner();
  if (spawner) {
    try {
      await spawner.enableSimpleQuotas(mountpoint);
      enabled.add(mountpoint);
      return;
    } catch (err) {
      // e.g. a kernel before 6.7 with full qgroups already on: the path below tells
      if (!(err instanceof SpawnerError)) throw err;
    }
  }
  if (!(await quotasOn(mountpoint))) {
    const r = await run("python3", ["-c", ENABLE_SCRIPT, mountpoint], { allowFailure: true });
    if (r.exitCode !== 0) {
      throw failedPrecondition(
        `cannot enable btrfs simple quotas on the pool: ${r.stderr.trim().split("\n").pop()}`,
        {
          reason: "DISK_LIMIT_UNSUPPORTED",
          hint: "disk limits need Linux ≥ 6.7 (btrfs simple quotas) and python3 on the node; create the env without --disk",
        },
      );
    }
  }
  enabled.add(mountpoint);
}

/** Caps what subvolume `path` may reference (its own extents, under simple quotas). */
export async function limitSubvolume(mountpoint: string, path: string, bytes: number): Promise<void> {
  await ensureSimpleQuotas(mountpoint);
  await poolCmd("btrfs", ["qgroup", "limit", String(bytes), path], `limit ${path} to ${bytes} bytes`);
}

/** Snapshots `src` as `dst` capped at `bytes` (one spawner request); no snapshot stays when the cap fails. */
export async function snapshotLimited(
  mountpoint: string,
  src: string,
  dst: string,
  bytes: number,
): Promise<void> {
  await ensureSimpleQuotas(mountpoint);
  await snapshotSubvolume(src, dst, { limitBytes: bytes });
}

/** Usage and limit of subvolume `path` (undefined when quotas are off or it has no qgroup). */
export async function subvolumeUsage(mountpoint: string, path: string): Promise<QgroupUsage | undefined> {
  const id = await run("btrfs", ["inspect-internal", "rootid", path], { allowFailure: true });
  if (id.exitCode !== 0) return undefined;
  const r = await run("btrfs", ["qgroup", "show", "-re", "--raw", mountpoint], { allowFailure: true });
  if (r.exitCode !== 0) return undefined;
  return parseQgroupShow(r.stdout).get(`0/${id.stdout.trim()}`);
}

/** The subvolume id of `path` when it is a subvolume's root (a plain dir answers undefined). */
export async function subvolumeIdOf(path: string): Promise<number | undefined> {
  if (!(await isSubvolume(path))) return undefined;
  const r = await run("btrfs", ["inspect-internal", "rootid", path], { allowFailure: true });
  return r.exitCode === 0 ? Number(r.stdout.trim()) : undefined;
}

/**
 * Drops the qgroups of subvolumes `ids`, already deleted from the filesystem
 * at `mountpoint`, so a pool with disk limits does not collect one stale
 * qgroup (with its limit) per env ever deleted. It waits for the cleaner to
 * drop them first (a qgroup with usage cannot go). Kernels from 6.10 remove
 * an emptied qgroup themselves (then destroy answers ENOENT: done); a
 * qgroup whose extents a snapshot still shares (an env kept as a base) keeps
 * its usage under simple quotas and stays until that snapshot goes (EBUSY).
 * Answers the qgroups left in place; nothing runs when quotas are off or the
 * kernel drops emptied qgroups itself.
 */
export async function releaseQgroups(mountpoint: string, ids: number[]): Promise<string[]> {
  // From 6.10 the kernel drops them itself: waiting here for the cleaner (up to a commit
  // interval, 30 s) would make every `env rm` on a pool with disk limits that slow.
  if (ids.length === 0 || kernelDropsEmptyQgroups() || !(await quotasOn(mountpoint))) return [];
  await run("btrfs", ["subvolume", "sync", mountpoint, ...ids.map(String)], { allowFailure: true });
  const held: string[] = [];
  for (const id of ids) {
    const r = await run("btrfs", ["qgroup", "destroy", `0/${id}`, mountpoint], { allowFailure: true });
    if (r.exitCode !== 0 && !/No such file/i.test(r.stderr)) held.push(`0/${id}`);
  }
  return held;
}

/** Whether this kernel (6.10 and later) removes a deleted subvolume's emptied qgroup itself. */
export function kernelDropsEmptyQgroups(rel = release()): boolean {
  const m = /^(\d+)\.(\d+)/.exec(rel);
  if (!m) return false;
  const [major, minor] = [Number(m[1]), Number(m[2])];
  return major > 6 || (major === 6 && minor >= 10);
}
