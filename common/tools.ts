/**
 * Where protoctl finds the system tools it runs, in one place: `doctor`
 * (host-checks.ts), the pool, the propagation drivers and `up` all look
 * binaries up here, on the PATH the process will run them with. A missing
 * tool fails early with the Debian package to install (like Incus's
 * "Required tool 'btrfs' is missing"), not as an ENOENT halfway through a
 * multi-step operation.
 */
import { constants } from "node:fs";
import { access } from "node:fs/promises";
import { delimiter, join } from "node:path";
import { failedPrecondition } from "./errors.js";

/** Debian packages providing the tools protoctl runs. */
export const TOOL_PACKAGES: Readonly<Record<string, string>> = {
  btrfs: "btrfs-progs",
  "mkfs.btrfs": "btrfs-progs",
  btrfstune: "btrfs-progs",
  losetup: "mount",
  mount: "mount",
  umount: "mount",
  cp: "coreutils",
  tar: "tar",
  "systemd-nspawn": "systemd-container",
  "qemu-nbd": "qemu-utils",
  nbdinfo: "libnbd-bin",
  nbdfuse: "libnbd-bin",
  nbdcopy: "libnbd-bin",
  fusermount3: "fuse3",
  "nbd-client": "nbd-client",
  nbdkit: "nbdkit",
  nsenter: "util-linux",
  python3: "python3",
  etcd: "etcd-server",
};

/** Absolute path of `name` on `pathVar` (default: this process's PATH), or undefined; a path with "/" is checked as is. */
export async function findExecutable(
  name: string,
  pathVar: string | undefined = process.env.PATH,
): Promise<string | undefined> {
  if (name.includes("/")) return (await isExecutable(name)) ? name : undefined;
  for (const dir of (pathVar ?? "").split(delimiter)) {
    if (!dir) continue;
    const p = join(dir, name);
    if (await isExecutable(p)) return p;
  }
  return undefined;
}

async function isExecutable(p: string): Promise<boolean> {
  try {
    await access(p, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The fix for a missing tool: its Debian package when known. */
export function toolFix(tool: string): string {
  const pkg = TOOL_PACKAGES[tool];
  return pkg ? `apt-get install ${pkg}` : `install ${tool}`;
}

/** Throws FAILED_PRECONDITION (reason TOOL_MISSING) naming every missing tool and its package. */
export async function requireTools(tools: readonly string[], pathVar?: string): Promise<void> {
  const missing: string[] = [];
  for (const t of tools) if (!(await findExecutable(t, pathVar ?? process.env.PATH))) missing.push(t);
  if (missing.length === 0) return;
  const pkgs = [...new Set(missing.map((t) => TOOL_PACKAGES[t] ?? t))];
  throw failedPrecondition(
    missing.length === 1
      ? `Required tool '${missing[0]}' is missing`
      : `Required tools missing: ${missing.map((t) => `'${t}'`).join(", ")}`,
    {
      reason: "TOOL_MISSING",
      subject: `tool/${missing[0]}`,
      hint: `apt-get install ${pkgs.join(" ")}`,
      metadata: { tools: missing.join(",") },
    },
  );
}
