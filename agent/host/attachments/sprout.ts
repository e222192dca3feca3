/**
 * Mount a seed read-only and sprout it with a local device, by a helper
 * started ahead of time: mount(2) and BTRFS_IOC_ADD_DEV from one python3
 * process that waits for a line naming the devices.
 *
 * Why: on a host where several agents attach the same seed, those two steps
 * hold the host lock (host-lock.ts). Done with `mount` and `btrfs device add`
 * they were two process starts inside the lock, 100-160 ms of it under load
 * (six agents attaching on 2 cores), and the sixth node waited for five of
 * them. The helper's own start (~25 ms) happens before the lock, while the
 * NBD client connects.
 *
 * `btrfs device add -f -K` on a fresh sparse file adds nothing to the ioctl:
 * no signature to wipe, no TRIM. Nothing from the user reaches the script:
 * three paths the agent made, tab-separated, on stdin.
 */
import { startHelper } from "./syscall-helper.js";

/**
 * stdin: "SEED\tSPROUT\tMOUNTPOINT\n". mount -t btrfs -o ro,noatime SEED
 * MOUNTPOINT; then BTRFS_IOC_ADD_DEV (_IOW(0x94, 10, struct
 * btrfs_ioctl_vol_args), 4096 bytes: s64 fd, char name[4088]; a mutable buffer, as
 * python refuses an immutable one over 1024 bytes) with SPROUT;
 * "sprouted" on stdout. A failed add unmounts again. Empty input: exit.
 */
export const SPROUT_SCRIPT = [
  "import ctypes, fcntl, os, struct, sys",
  "line = sys.stdin.readline().rstrip('\\n')",
  "if not line: sys.exit(0)",
  "seed, sprout, mnt = line.split('\\t')",
  "libc = ctypes.CDLL(None, use_errno=True)",
  "if libc.mount(seed.encode(), mnt.encode(), b'btrfs', 1 | 1024, None) != 0:",
  "    e = ctypes.get_errno(); sys.stderr.write('mount %s: %s\\n' % (seed, os.strerror(e))); sys.exit(10)",
  "fd = os.open(mnt, os.O_RDONLY)",
  "try: fcntl.ioctl(fd, 0x5000940A, bytearray(struct.pack('q4088s', 0, sprout.encode())))",
  "except OSError as e:",
  "    os.close(fd); libc.umount2(mnt.encode(), 0)",
  "    sys.stderr.write('device add %s: %s\\n' % (sprout, e.strerror)); sys.exit(11)",
  "print('sprouted', flush=True)",
].join("\n");

export interface Sprouter {
  /** Mounts `seedLoop` read-only at `mountpoint` and adds `sproutLoop`; rejects with nothing mounted. */
  go(seedLoop: string, sproutLoop: string, mountpoint: string): Promise<void>;
  /** Drops the helper without doing anything. */
  cancel(): Promise<void>;
}

/** Starts the helper; it waits for go(). */
export function prepareSprout(): Sprouter {
  const helper = startHelper(SPROUT_SCRIPT);
  return {
    async go(seedLoop, sproutLoop, mountpoint) {
      const paths = [seedLoop, sproutLoop, mountpoint];
      if (paths.some((p) => !p.startsWith("/") || /[\t\n]/.test(p))) {
        throw new Error(`cannot sprout with ${JSON.stringify(paths)}`);
      }
      const name = (code?: number) => (code === 10 ? "mount" : "btrfs device add");
      await helper.run(`${paths.join("\t")}\n`, "sprouted", name, paths);
    },
    cancel: () => helper.cancel(),
  };
}
