/**
 * The block storage under a pool: a loop file on a private tmpfs (default,
 * RAM speed, volatile on purpose), a loop file on disk, or an existing btrfs
 * mount. Attaching is idempotent so a restarted agent finds its pool: a
 * mounted pool is reused, an attached loop device is found by its backing
 * file (`losetup -j`), an existing image is mounted rather than formatted.
 *
 * Several agents can share one kernel, /run and the loop devices, so every
 * path lives under the agent's own state directory.
 */
import { mkdir, rm, statfs } from "node:fs/promises";
import { join, resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { failedPrecondition, invalidArgument } from "../../../common/errors.js";
import { output, run } from "../../../common/exec.js";
import type { Logger } from "../../../common/logger.js";
import { Revert } from "../../../common/revert.js";
import { attachLoop, detachWithLastMount } from "../attachments/loop.js";
import type { PoolConfig } from "../interfaces.js";
import { asPoolError } from "./btrfs.js";
import { exists } from "./files.js";
import { findMount } from "./mounts.js";
import { parseLosetupAssociations } from "./parsers.js";

const BTRFS_MAGIC = 0x9123683e;
/** mkfs.btrfs refuses smaller devices with its default profiles. */
const MIN_POOL_BYTES = 128 * 1024 * 1024;

export interface PoolStorage {
  kind: PoolConfig["kind"];
  mountpoint: string;
  image?: string;
  tmpfs?: string;
  loopDevice?: string;
}

export function storagePaths(cfg: PoolConfig): PoolStorage {
  const dir = join(resolve(cfg.stateDir), "pool");
  if (cfg.kind === "mount") {
    if (!cfg.path) throw invalidArgument('pool kind "mount" needs a path (an existing btrfs mount)');
    return { kind: "mount", mountpoint: resolve(cfg.path) };
  }
  if (cfg.kind === "file") {
    return { kind: "file", mountpoint: join(dir, "mnt"), image: resolve(cfg.path ?? join(dir, "pool.img")) };
  }
  const tmpfs = join(dir, "tmpfs");
  return { kind: "tmpfs", mountpoint: join(dir, "mnt"), tmpfs, image: join(tmpfs, "pool.img") };
}

async function isBtrfs(path: string): Promise<boolean> {
  try {
    return (await statfs(path)).type === BTRFS_MAGIC;
  } catch {
    return false;
  }
}

/** Finds or attaches the loop device of `image`. */
async function loopDeviceFor(image: string, r: Revert): Promise<string> {
  const existing = parseLosetupAssociations(await output("losetup", ["-j", image]));
  if (existing[0]) return existing[0].device;
  const dev = await attachLoop(image);
  r.add(() => run("losetup", ["-d", dev]));
  return dev;
}

/** Opens (attaching and formatting as needed) the storage described by `cfg`. */
export async function attachStorage(cfg: PoolConfig, log: Logger): Promise<PoolStorage> {
  const s = storagePaths(cfg);
  if (s.kind === "mount") {
    if (!(await isBtrfs(s.mountpoint))) {
      throw failedPrecondition(`${s.mountpoint} is not a mounted btrfs filesystem`, {
        reason: "POOL_NOT_BTRFS",
        hint: 'mount a btrfs filesystem there, or use pool kind "tmpfs" or "file"',
      });
    }
    return s;
  }
  if ((await findMount(s.mountpoint))?.fstype === "btrfs") {
    const loop = s.image ? parseLosetupAssociations(await output("losetup", ["-j", s.image]))[0] : undefined;
    // a pool mounted by an older agent may not have its loop tied to the mount yet
    if (loop) await detachWithLastMount(loop.device);
    log.info({ mountpoint: s.mountpoint }, "pool already mounted, reusing it");
    return { ...s, loopDevice: loop?.device };
  }
  if (cfg.sizeBytes < MIN_POOL_BYTES) {
    throw invalidArgument(`pool size ${cfg.sizeBytes} is below the minimum of ${MIN_POOL_BYTES} bytes`);
  }
  return Revert.run(async (r) => {
    await mkdir(s.mountpoint, { recursive: true });
    if (s.kind === "tmpfs") {
      await mkdir(s.tmpfs!, { recursive: true });
      if ((await findMount(s.tmpfs!))?.fstype !== "tmpfs") {
        // Sized for the image plus a little room for tmpfs's own bookkeeping.
        const size = cfg.sizeBytes + 16 * 1024 * 1024;
        await run("mount", ["-t", "tmpfs", "-o", `size=${size},mode=0700`, "tmpfs", s.tmpfs!]);
        r.add(() => run("umount", ["-l", s.tmpfs!]));
      }
    }
    const image = s.image!;
    if (!(await exists(image))) {
      await mkdir(join(image, ".."), { recursive: true });
      await run("truncate", ["-s", String(cfg.sizeBytes), image]);
      r.add(() => rm(image, { force: true }));
      await run("mkfs.btrfs", ["-q", "-f", image]).catch((err) => {
        throw asPoolError(err, "mkfs.btrfs");
      });
      log.info({ image, sizeBytes: cfg.sizeBytes }, "created pool image");
    }
    const loopDevice = await loopDeviceFor(image, r);
    await run("mount", ["-t", "btrfs", "-o", "noatime", loopDevice, s.mountpoint]);
    r.add(() => run("umount", ["-l", s.mountpoint]));
    if (!(await detachWithLastMount(loopDevice))) {
      log.warn({ loopDevice }, "the pool's loop device is not set to go with its mount (autoclear)");
    }
    log.info({ mountpoint: s.mountpoint, loopDevice, kind: s.kind }, "pool mounted");
    return { ...s, loopDevice };
  });
}

/**
 * Tears the storage down for good: unmounts the pool, detaches the loop
 * device, drops the tmpfs and the image. For "mount" pools nothing of the
 * filesystem itself is touched. Not part of a normal agent stop: running
 * envs outlive the agent.
 */
export async function destroyStorage(s: PoolStorage): Promise<void> {
  if (s.kind === "mount") return;
  if (await findMount(s.mountpoint)) {
    const r = await run("umount", [s.mountpoint], { allowFailure: true });
    if (r.exitCode !== 0) await run("umount", ["-l", s.mountpoint], { allowFailure: true });
  }
  // The pool's loop device goes with its mount (autoclear, attachStorage); the kernel lets it go
  // a moment after the unmount. Only one still bound then (a pool from an older agent) is detached.
  const bound = async () => parseLosetupAssociations(await output("losetup", ["-j", s.image!]));
  for (let i = 0; i < 50 && (await bound()).length > 0; i++) await sleep(100);
  for (const a of await bound()) await run("losetup", ["-d", a.device], { allowFailure: true });
  if (await findMount(s.mountpoint)) return; // still busy: keep the files rather than delete below a mount
  if (s.kind === "tmpfs") {
    if (await findMount(s.tmpfs!)) await run("umount", ["-l", s.tmpfs!], { allowFailure: true });
    await rm(join(s.tmpfs!, ".."), { recursive: true, force: true });
  } else {
    await rm(s.image!, { force: true });
    await rm(s.mountpoint, { recursive: true, force: true });
  }
}
