/**
 * Tool checks at driver load, like Incus's drivers ("Required tool 'btrfs' is
 * missing"): a missing binary fails early with the Debian package to install,
 * instead of a confusing ENOENT halfway through a multi-step operation.
 */
import { constants } from "node:fs";
import { access } from "node:fs/promises";
import { delimiter, join } from "node:path";
import { failedPrecondition } from "../../../common/errors.js";

/** Debian packages providing the tools the propagation drivers run. */
export const TOOL_PACKAGES: Readonly<Record<string, string>> = {
  btrfs: "btrfs-progs",
  "mkfs.btrfs": "btrfs-progs",
  btrfstune: "btrfs-progs",
  losetup: "mount",
  mount: "mount",
  umount: "mount",
  "qemu-nbd": "qemu-utils",
  nbdinfo: "libnbd-bin",
  nbdfuse: "libnbd-bin",
  nbdcopy: "libnbd-bin",
  fusermount3: "fuse3",
  "nbd-client": "nbd-client",
  nbdkit: "nbdkit",
  nsenter: "util-linux",
  python3: "python3",
};

/** Absolute path of `tool` on PATH, or undefined. */
export async function which(tool: string, env: NodeJS.ProcessEnv = process.env): Promise<string | undefined> {
  for (const dir of (env.PATH ?? "").split(delimiter)) {
    if (!dir) continue;
    const p = join(dir, tool);
    try {
      await access(p, constants.X_OK);
      return p;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** Throws FAILED_PRECONDITION naming the first missing tool and its package. */
export async function requireTools(tools: readonly string[]): Promise<void> {
  for (const t of tools) {
    if (await which(t)) continue;
    const pkg = TOOL_PACKAGES[t];
    throw failedPrecondition(`Required tool '${t}' is missing`, {
      reason: "TOOL_MISSING",
      subject: `tool/${t}`,
      hint: pkg ? `apt-get install ${pkg}` : `install ${t}`,
    });
  }
}
