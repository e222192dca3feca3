/**
 * Loop devices for attachments, through losetup, and the one operation
 * losetup lacks: LOOP_CHANGE_FD (0x4C06), which swaps the backing file of a
 * read-only loop device for another file of the same size while the device
 * stays open and mounted. Node has no ioctl, so a fixed three-line python3
 * script does it (no input reaches it but two paths as arguments).
 */
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { basename } from "node:path";
import { failedPrecondition } from "../../../common/errors.js";
import { output, run } from "../../../common/exec.js";

/** Opens the loop device and the new file read-only and issues LOOP_CHANGE_FD. */
export const CHANGE_FD_SCRIPT = [
  "import fcntl, os, sys",
  "lo = os.open(sys.argv[1], os.O_RDONLY)",
  "f = os.open(sys.argv[2], os.O_RDONLY)",
  "fcntl.ioctl(lo, 0x4C06, f)",
].join("\n");

/**
 * The distribution's interpreter, isolated (-I) and without site packages
 * (-S): ~25 ms to start. A python3 found first on PATH may be a version
 * manager's shim (pyenv: ~240 ms here), which the hydration switch would wait on.
 */
const PYTHON = existsSync("/usr/bin/python3") ? "/usr/bin/python3" : "python3";

export interface LoopOptions {
  readOnly?: boolean;
  directIo?: boolean;
}

/** Attaches `file` to a free loop device; returns /dev/loopN. */
export async function attachLoop(file: string, o: LoopOptions = {}): Promise<string> {
  const args = ["--find", "--show"];
  if (o.readOnly) args.push("--read-only");
  if (o.directIo) args.push("--direct-io=on");
  args.push(file);
  return output("losetup", args);
}

/** Detaches a loop device; a device already gone is fine. */
export async function detachLoop(dev: string): Promise<void> {
  if (!(await loopBackingFile(dev))) return;
  await run("losetup", ["--detach", dev], { allowFailure: true });
}

/** The backing file of /dev/loopN, or undefined when the device is not bound. */
export async function loopBackingFile(dev: string): Promise<string | undefined> {
  try {
    return (await readFile(`/sys/block/${basename(dev)}/loop/backing_file`, "utf8")).trim();
  } catch {
    return undefined;
  }
}

/** Switches a read-only loop device to `file` (same size) without closing it. */
export async function changeLoopBacking(dev: string, file: string): Promise<void> {
  const ro = (await readFile(`/sys/block/${basename(dev)}/ro`, "utf8").catch(() => "")).trim();
  if (ro !== "1") {
    throw failedPrecondition(`${dev} is not a read-only loop device: LOOP_CHANGE_FD refuses it`, {
      reason: "LOOP_NOT_READ_ONLY",
      subject: dev,
    });
  }
  await run(PYTHON, ["-I", "-S", "-c", CHANGE_FD_SCRIPT, dev, file]);
}

/**
 * Runs `fn` with the filesystem at `mountpoint` frozen (all dirty data
 * written, new writes held back), then thaws it.
 *
 * Why: since 6.6 LOOP_CHANGE_FD announces a media change, and the kernel
 * treats it as a surprise removal for the filesystem holding the device
 * (bdev_mark_dead(surprise) → evict_inodes without a sync first): data
 * written to the sprout but not yet flushed is dropped. Measured here on
 * 6.18: a file written just before the switch read back empty. Freezing
 * flushes everything and keeps writers waiting for the few ms of the switch.
 */
export async function withFrozen<T>(mountpoint: string, fn: () => Promise<T>): Promise<T> {
  await run("fsfreeze", ["--freeze", mountpoint]);
  try {
    return await fn();
  } finally {
    await run("fsfreeze", ["--unfreeze", mountpoint]);
  }
}

/** Tells btrfs to forget a device it scanned, so a reused loop number is not mistaken for it. */
export async function forgetBtrfsDevice(dev: string): Promise<void> {
  await run("btrfs", ["device", "scan", "--forget", dev], { allowFailure: true });
}
