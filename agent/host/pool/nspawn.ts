/**
 * Runs one command inside a directory tree with systemd-nspawn, for base
 * updates and layer builds (not for envs: those are host/machines). There is
 * no system bus here, hence `--register=no --keep-unit`. Host network unless
 * `network: false`. The host's resolv.conf is bind-mounted, not copied, and
 * timezone/journal links are off, so the tree only changes by what the
 * command itself does (a layer must be exactly the recipe's diff).
 */
import { randomBytes } from "node:crypto";
import { runWithProgress } from "../../../common/progress-run.js";
import { lstatInRoot, removeFileInRoot } from "../../../common/root-path.js";
import type { ProgressFn } from "../interfaces.js";
import { isNspawnNoise } from "./nspawn-noise.js";

const MAX_OUTPUT = 256 * 1024;

export interface InRootResult {
  exitCode: number;
  /** stdout and stderr interleaved, the last 256 KiB. */
  output: string;
  noSpace: boolean;
}

export async function runInRoot(
  root: string,
  command: string[],
  opts: {
    network: boolean;
    /**
     * In a user namespace over an idmapped root (as envs run): only for
     * btrfs roots (base updates); layer builds run on an overlayfs, which
     * cannot be idmapped here (common/privilege.ts), so they stay privileged.
     */
    userns?: boolean;
    env?: Record<string, string>;
    binds?: Array<{ host: string; container: string; readonly?: boolean; idmap?: boolean }>;
    stdin?: Uint8Array;
    step?: string;
    progress?: ProgressFn;
    signal?: AbortSignal;
  },
): Promise<InRootResult> {
  const args = [
    "--register=no",
    "--keep-unit",
    "-q",
    "--pipe",
    `--machine=pb-${randomBytes(5).toString("hex")}`,
    "-D",
    root,
    "--resolv-conf=bind-host",
    "--timezone=off",
    "--link-journal=no",
  ];
  if (opts.userns) args.push("--private-users=pick", "--private-users-ownership=map");
  if (!opts.network) args.push("--private-network");
  for (const [k, v] of Object.entries(opts.env ?? {})) args.push(`--setenv=${k}=${v}`);
  for (const b of opts.binds ?? [])
    args.push(`${b.readonly ? "--bind-ro" : "--bind"}=${b.host}:${b.container}${b.idmap ? ":idmap" : ""}`);
  args.push("--", ...command);
  // nspawn starts inside: withoutNspawnTraces must look for resolv.conf before nspawn can make it
  return withoutNspawnTraces(root, () =>
    runWithProgress("systemd-nspawn", args, {
      input: opts.stdin,
      signal: opts.signal,
      onLines: (log) => opts.progress?.({ step: opts.step ?? "run", log }),
      hide: isNspawnNoise,
      keepChars: MAX_OUTPUT,
    }),
  );
}

/**
 * nspawn creates an empty /etc/resolv.conf to bind the host's over when the
 * tree has none; that file is nspawn's, not the command's, and must not end
 * up in a layer's diff or a base version. Runs `fn` and removes it after.
 */
export async function withoutNspawnTraces<T>(root: string, fn: () => Promise<T>): Promise<T> {
  // resolved inside the root: the command may have left /etc or the file a symlink to the host's
  const had = (await lstatInRoot(root, "etc/resolv.conf").catch(() => undefined)) !== undefined;
  try {
    return await fn();
  } finally {
    if (!had) {
      await removeFileInRoot(root, "etc/resolv.conf", (st) => !st.isFile() || st.size !== 0).catch(
        () => undefined,
      );
    }
  }
}
