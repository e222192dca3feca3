/**
 * Loop devices for attachments, through losetup, and the one operation
 * losetup lacks: LOOP_CHANGE_FD (0x4C06), which swaps the backing file of a
 * read-only loop device for another file of the same size while the device
 * stays open and mounted. Node has no ioctl, so a fixed python3 script does
 * it (syscall-helper.ts; no input reaches it but paths the agent made).
 */
import { readFile } from "node:fs/promises";
import { basename } from "node:path";
import { failedPrecondition } from "../../../common/errors.js";
import { output, run } from "../../../common/exec.js";
import { withHostLock } from "./host-lock.js";
import { startHelper } from "./syscall-helper.js";

/**
 * Waits for one line on stdin naming a file; then freezes the filesystem at
 * argv[2], points the read-only loop device argv[1] at that file
 * (LOOP_CHANGE_FD, 0x4C06) and thaws (FIFREEZE/FITHAW, 0xC0045877/
 * 0xC0045878). An empty line or end of input: exits touching nothing.
 * Started ahead of time, the switch costs the ioctls, not an interpreter's
 * start (~25 ms, more under load).
 *
 * Expedited RCU for the switch: the first freeze of a filesystem waits for
 * RCU grace periods (its per-cpu write locks switch to their slow mode), and
 * a fresh sprout has never been frozen: 35-43 ms here, 0.9 ms with
 * /sys/kernel/rcu_expedited set. The script sets it for the switch only,
 * and only when it was 0 (an operator's 1 is left alone); two switches at
 * once may end one's expedited window early, which costs time, not
 * correctness, and it always ends at 0. Where sysfs is read-only the switch
 * runs at the normal speed.
 */
export const SWITCH_SCRIPT = [
  "import fcntl, os, signal, sys",
  "path = sys.stdin.readline().rstrip('\\n')",
  "if not path: sys.exit(0)",
  // a SIGTERM between freeze and thaw (an agent's process group stopped) would leave it frozen
  "for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP): signal.signal(s, signal.SIG_IGN)",
  "mnt = os.open(sys.argv[2], os.O_RDONLY)",
  "lo = os.open(sys.argv[1], os.O_RDONLY)",
  "f = os.open(path, os.O_RDONLY)",
  "RCU = '/sys/kernel/rcu_expedited'",
  "def rcu(v):",
  "    try:",
  "        with open(RCU, 'w') as w: w.write(v)",
  "        return True",
  "    except OSError: return False",
  "try:",
  "    with open(RCU) as r: fast = r.read().strip() == '0' and rcu('1')",
  "except OSError: fast = False",
  "try:",
  "    fcntl.ioctl(mnt, 0xC0045877, 0)",
  "    try: fcntl.ioctl(lo, 0x4C06, f)",
  "    finally: fcntl.ioctl(mnt, 0xC0045878, 0)",
  "finally:",
  "    if fast: rcu('0')",
  "print('switched', flush=True)",
].join("\n");

export interface LoopOptions {
  readOnly?: boolean;
  directIo?: boolean;
}

/**
 * Attaches `file` to a free loop device; returns /dev/loopN. One at a time
 * per host: two `losetup --find` that pick the same free device race, and
 * the loser sleeps 200 ms before it retries (util-linux; measured here: 6 at
 * once, one took 209 ms against 7-12 ms). Agents on one kernel attaching
 * seeds together hit that on most attaches.
 */
export async function attachLoop(file: string, o: LoopOptions = {}): Promise<string> {
  const args = ["--find", "--show"];
  if (o.readOnly) args.push("--read-only");
  if (o.directIo) args.push("--direct-io=on");
  args.push(file);
  return withHostLock("loop-find", () => output("losetup", args));
}

/** Detaches a loop device; a device already gone is fine. */
export async function detachLoop(dev: string): Promise<void> {
  if (!(await loopBackingFile(dev))) return;
  await run("losetup", ["--detach", dev], { allowFailure: true });
}

/**
 * Ties a mounted loop device's life to its mount: detaching a busy device only sets the kernel's
 * autoclear flag, so the device goes by itself when its last mount goes, whichever way that
 * happens (umount, a lazy umount finishing, a mount namespace dying). Nothing can leave it
 * bound to an image on a filesystem that is already gone. Resolves to whether the flag is set.
 */
export async function detachWithLastMount(dev: string): Promise<boolean> {
  await run("losetup", ["--detach", dev], { allowFailure: true });
  const flag = await readFile(`/sys/block/${basename(dev)}/loop/autoclear`, "utf8").catch(() => "");
  return flag.trim() === "1";
}

/** The backing file of /dev/loopN, or undefined when the device is not bound. */
export async function loopBackingFile(dev: string): Promise<string | undefined> {
  try {
    return (await readFile(`/sys/block/${basename(dev)}/loop/backing_file`, "utf8")).trim();
  } catch {
    return undefined;
  }
}

/** A loop switch made ready ahead of time (prepareLoopSwitch). */
export interface LoopSwitch {
  /** Freezes, switches to `file`, thaws; rejects when any step failed (the filesystem is thawed). */
  go(file: string): Promise<void>;
  /** Drops the prepared switch without touching anything. */
  cancel(): Promise<void>;
}

/**
 * Prepares switching the read-only loop device `dev`, which backs part of
 * the filesystem mounted at `mountpoint`, to another file of the same size
 * without closing the device.
 *
 * Why the freeze: since 6.6 LOOP_CHANGE_FD announces a media change, and the
 * kernel treats it as a surprise removal for the filesystem holding the
 * device (bdev_mark_dead(surprise) → evict_inodes without a sync first):
 * data written to the sprout but not yet flushed is dropped. Measured here on
 * 6.18: a file written just before the switch read back empty. Freezing
 * flushes everything and keeps writers waiting for the few ms of the switch.
 */
export async function prepareLoopSwitch(dev: string, mountpoint: string): Promise<LoopSwitch> {
  const ro = (await readFile(`/sys/block/${basename(dev)}/ro`, "utf8").catch(() => "")).trim();
  if (ro !== "1") {
    throw failedPrecondition(`${dev} is not a read-only loop device: LOOP_CHANGE_FD refuses it`, {
      reason: "LOOP_NOT_READ_ONLY",
      subject: dev,
    });
  }
  const helper = startHelper(SWITCH_SCRIPT, [dev, mountpoint]);
  return {
    async go(file: string) {
      if (!file || file.includes("\n")) throw new Error(`cannot switch ${dev} to ${JSON.stringify(file)}`);
      await helper.run(`${file}\n`, "switched", () => "LOOP_CHANGE_FD", [dev, mountpoint, file]);
    },
    cancel: () => helper.cancel(),
  };
}

/** Tells btrfs to forget a device it scanned, so a reused loop number is not mistaken for it. */
export async function forgetBtrfsDevice(dev: string): Promise<void> {
  await run("btrfs", ["device", "scan", "--forget", dev], { allowFailure: true });
}
