/**
 * What a host needs to run protoctl: kernel features, system tools and their
 * versions, privileges and memory. `protoctl doctor` prints these checks; the
 * agent reports them as its node's capabilities.
 *
 * Tools are looked up on the PATH of the environment passed in (the process's
 * by default), the way the agent will find them when it runs them, so a PATH
 * without btrfs shows btrfs as missing. Like Incus's drivers ("Required tool
 * 'btrfs' is missing"), every failed check says which Debian package or
 * action fixes it.
 */
import { randomBytes } from "node:crypto";
import { access, readdir, readFile } from "node:fs/promises";
import { release } from "node:os";
import { join } from "node:path";
import {
  describeCgroupHost,
  detectCgroupMode,
  LIMIT_CONTROLLERS,
  LIMIT_FLAGS,
  systemdScopesUsable,
} from "./cgroup-mode.js";
import { run, succeeds } from "./exec.js";
import { findExecutable } from "./tools.js";

export type CheckGroup = "kernel" | "binary" | "privilege" | "resource" | "security";

export interface HostCheck {
  /** Stable identifier, e.g. "btrfs", "fs:overlay", "vxlan", "root". */
  name: string;
  group: CheckGroup;
  /** When false, a failure is a warning: some feature (not the core) will not work. */
  required: boolean;
  ok: boolean;
  /** What was found (path, devices, amount) or what is wrong. */
  detail: string;
  /** Tool version, when the tool reports one. */
  version?: string;
  /** Debian package or action that fixes a failure, e.g. "apt-get install btrfs-progs". */
  fix: string;
}

export interface HostCheckOptions {
  /** Environment whose PATH is searched; default process.env. */
  env?: NodeJS.ProcessEnv;
  /** Memory a tmpfs pool needs; default 1 GiB. */
  minPoolMemoryBytes?: number;
  /** Try `modprobe` for a missing filesystem before reporting it; default true (needs root). */
  modprobe?: boolean;
  /** Create and delete a vxlan link in a throwaway netns; default true (needs root). */
  probeVxlan?: boolean;
  /** Where /proc and /dev are (tests); default "/". */
  root?: string;
}

interface BinarySpec {
  /** Row name; equal to the binary unless there are alternatives. */
  name: string;
  /** Binaries that satisfy the check; the first found wins. */
  candidates: string[];
  pkg: string;
  required: boolean;
  versionArgs: string[] | null;
  versionPattern?: RegExp;
  /** What it is for, shown when missing. */
  purpose: string;
}

const GENERIC_VERSION = /(\d+\.\d+(?:\.\d+)*(?:[-+~][0-9A-Za-z.+~-]+)?)/;

export const BINARIES: readonly BinarySpec[] = [
  {
    name: "btrfs",
    candidates: ["btrfs"],
    pkg: "btrfs-progs",
    required: true,
    versionArgs: ["--version"],
    purpose: "pool and subvolumes",
  },
  {
    name: "mkfs.btrfs",
    candidates: ["mkfs.btrfs"],
    pkg: "btrfs-progs",
    required: true,
    versionArgs: ["--version"],
    purpose: "pool creation",
  },
  {
    name: "btrfstune",
    candidates: ["btrfstune"],
    pkg: "btrfs-progs",
    required: true,
    versionArgs: null,
    purpose: "seed images",
  },
  {
    name: "systemd-nspawn",
    candidates: ["systemd-nspawn"],
    pkg: "systemd-container",
    required: true,
    versionArgs: ["--version"],
    versionPattern: /systemd (\d+)/,
    purpose: "environments",
  },
  {
    name: "losetup",
    candidates: ["losetup"],
    pkg: "mount",
    required: true,
    versionArgs: ["--version"],
    purpose: "loop devices",
  },
  {
    name: "nsenter",
    candidates: ["nsenter"],
    pkg: "util-linux",
    required: true,
    versionArgs: ["--version"],
    purpose: "env exec",
  },
  {
    name: "ip",
    candidates: ["ip"],
    pkg: "iproute2",
    required: true,
    versionArgs: ["-V"],
    purpose: "networks",
  },
  {
    name: "qemu-nbd|nbdkit",
    candidates: ["qemu-nbd", "nbdkit"],
    pkg: "qemu-utils",
    required: true,
    versionArgs: ["--version"],
    purpose: "serving seed images over NBD",
  },
  {
    name: "nbdfuse",
    candidates: ["nbdfuse"],
    pkg: "libnbd-bin",
    required: true,
    versionArgs: ["--version"],
    purpose: "attaching NBD images without /dev/nbd",
  },
  {
    name: "nbdcopy",
    candidates: ["nbdcopy"],
    pkg: "libnbd-bin",
    required: true,
    versionArgs: ["--version"],
    purpose: "hydrating seed images",
  },
  {
    name: "etcd",
    candidates: ["etcd"],
    pkg: "etcd-server",
    required: true,
    versionArgs: ["--version"],
    purpose: "controller state (protoctl up)",
  },
  {
    name: "debootstrap",
    candidates: ["debootstrap"],
    pkg: "debootstrap",
    required: false,
    versionArgs: ["--version"],
    purpose: "base build --debootstrap",
  },
  {
    name: "busybox",
    candidates: ["busybox"],
    pkg: "busybox-static",
    required: false,
    versionArgs: [],
    purpose: "tiny test bases",
  },
];

/** First executable file called `name` on `pathVar` (colon-separated), like the shell's lookup. */
/** The version in a tool's `--version` output, or undefined. */
export function parseVersion(text: string, pattern: RegExp = GENERIC_VERSION): string | undefined {
  return pattern.exec(text)?.[1];
}

/** Filesystem types the kernel supports, from /proc/filesystems. */
export function parseProcFilesystems(text: string): Set<string> {
  const out = new Set<string>();
  for (const line of text.split("\n")) {
    const name = line.trim().split(/\s+/).at(-1);
    if (name) out.add(name);
  }
  return out;
}

/** MemAvailable in bytes from /proc/meminfo (undefined when absent). */
export function parseMemAvailable(meminfo: string): number | undefined {
  const m = /^MemAvailable:\s+(\d+)\s*kB/m.exec(meminfo);
  return m ? Number(m[1]) * 1024 : undefined;
}

/** Effective capability bits from /proc/self/status. */
export function parseCapEff(status: string): bigint {
  const m = /^CapEff:\s+([0-9a-f]+)/m.exec(status);
  return m ? BigInt(`0x${m[1]}`) : 0n;
}

export const CAPS = { CAP_NET_ADMIN: 12, CAP_SYS_CHROOT: 18, CAP_SYS_ADMIN: 21, CAP_MKNOD: 27 } as const;

export function formatBytes(n: number): string {
  const gib = n / 1024 ** 3;
  return gib >= 1 ? `${gib.toFixed(1)} GiB` : `${Math.round(n / 1024 ** 2)} MiB`;
}

async function readText(path: string): Promise<string> {
  return readFile(path, "utf8").catch(() => "");
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

async function checkBinary(spec: BinarySpec, env: NodeJS.ProcessEnv): Promise<HostCheck> {
  const base = { name: spec.name, group: "binary" as const, required: spec.required };
  for (const bin of spec.candidates) {
    const path = await findExecutable(bin, env.PATH);
    if (!path) continue;
    let version: string | undefined;
    if (spec.versionArgs) {
      const res = await run(path, spec.versionArgs, { allowFailure: true, timeoutMs: 10_000, env }).catch(
        () => undefined,
      );
      version = res ? parseVersion(res.stdout + res.stderr, spec.versionPattern) : undefined;
    }
    return { ...base, ok: true, detail: path, version, fix: "" };
  }
  const which = spec.candidates.join(" or ");
  return {
    ...base,
    ok: false,
    detail: `${which} not found on PATH (needed for ${spec.purpose})`,
    fix: `apt-get install ${spec.pkg}`,
  };
}

async function checkFilesystem(
  fs: string,
  opts: Required<Pick<HostCheckOptions, "modprobe" | "root">>,
  env: NodeJS.ProcessEnv,
): Promise<HostCheck> {
  const procFs = join(opts.root, "proc/filesystems");
  let have = parseProcFilesystems(await readText(procFs)).has(fs);
  let detail = have ? "in /proc/filesystems" : "not in /proc/filesystems";
  if (!have && opts.modprobe) {
    const modprobe = await findExecutable("modprobe", env.PATH);
    if (modprobe && (await succeeds(modprobe, [fs], { env, timeoutMs: 10_000 }))) {
      have = parseProcFilesystems(await readText(procFs)).has(fs);
      if (have) detail = "loaded with modprobe";
    }
  }
  return {
    name: `fs:${fs}`,
    group: "kernel",
    required: true,
    ok: have,
    detail,
    fix: have ? "" : `modprobe ${fs} (a kernel with ${fs} support; apt-get install kmod)`,
  };
}

async function checkDevice(name: string, path: string, fix: string, root: string): Promise<HostCheck> {
  const ok = await exists(join(root, path));
  return {
    name,
    group: "kernel",
    required: true,
    ok,
    detail: ok ? path : `${path} missing`,
    fix: ok ? "" : fix,
  };
}

/** Whether this kernel's module tree holds nbd.ko (plain or compressed). */
async function nbdModuleShipped(root: string): Promise<boolean> {
  const dir = join(root, "lib/modules", release(), "kernel/drivers/block");
  const names = await readdir(dir).catch(() => [] as string[]);
  return names.some((n) => n === "nbd.ko" || n.startsWith("nbd.ko."));
}

async function checkNbdAttach(root: string, env: NodeJS.ProcessEnv): Promise<HostCheck> {
  const base = { name: "nbd-attach", group: "kernel" as const, required: true };
  const kernel = await exists(join(root, "dev/nbd0"));
  const client = await findExecutable("nbd-client", env.PATH);
  if (kernel && client)
    return { ...base, ok: true, detail: "kernel nbd devices (/dev/nbd0) with nbd-client", fix: "" };
  const nbdfuse = await findExecutable("nbdfuse", env.PATH);
  if (nbdfuse) {
    const why = kernel ? "/dev/nbd0 but no nbd-client" : "no /dev/nbd*";
    // A stock Debian host ships nbd.ko unloaded: the kernel client is one modprobe away
    // (the agent's systemd unit loads it).
    const hint = !kernel && (await nbdModuleShipped(root)) ? " (`modprobe nbd` for the kernel client)" : "";
    return { ...base, ok: true, detail: `${why}: nbdfuse will be used${hint}`, fix: "" };
  }
  return {
    ...base,
    ok: false,
    detail: "neither /dev/nbd* nor nbdfuse",
    fix: "apt-get install libnbd-bin fuse3 (or modprobe nbd)",
  };
}

/** Creates and deletes a vxlan link inside a throwaway network namespace. */
async function checkVxlan(env: NodeJS.ProcessEnv, probe: boolean): Promise<HostCheck> {
  const base = { name: "vxlan", group: "kernel" as const, required: true };
  if (!probe) return { ...base, ok: true, detail: "not probed", fix: "" };
  const ip = await findExecutable("ip", env.PATH);
  if (!ip) return { ...base, ok: false, detail: "cannot probe without ip", fix: "apt-get install iproute2" };
  if (process.getuid?.() !== 0)
    return { ...base, ok: false, detail: "probing needs root", fix: "run as root" };
  const ns = `ptdoctor-${randomBytes(3).toString("hex")}`;
  try {
    await run(ip, ["netns", "add", ns], { env });
    const add = await run(
      ip,
      ["-n", ns, "link", "add", "vxprobe", "type", "vxlan", "id", "4242", "dstport", "4789"],
      {
        env,
        allowFailure: true,
      },
    );
    if (add.exitCode !== 0) {
      return {
        ...base,
        ok: false,
        detail: `cannot create a vxlan link: ${add.stderr.trim()}`,
        fix: "modprobe vxlan",
      };
    }
    await run(ip, ["-n", ns, "link", "del", "vxprobe"], { env, allowFailure: true });
    return { ...base, ok: true, detail: "created and deleted a vxlan link in a scratch netns", fix: "" };
  } catch (err) {
    return { ...base, ok: false, detail: `probe failed: ${(err as Error).message}`, fix: "modprobe vxlan" };
  } finally {
    await run(ip, ["netns", "del", ns], { env, allowFailure: true }).catch(() => undefined);
  }
}

async function checkPrivileges(root: string): Promise<HostCheck[]> {
  const uid = process.getuid?.();
  const isRoot = uid === 0;
  const caps = parseCapEff(await readText(join(root, "proc/self/status")));
  const missing = Object.entries(CAPS)
    .filter(([, bit]) => (caps & (1n << BigInt(bit))) === 0n)
    .map(([name]) => name);
  return [
    {
      name: "root",
      group: "privilege",
      required: true,
      ok: isRoot,
      detail: isRoot ? "uid 0" : `uid ${uid}`,
      fix: isRoot ? "" : "run as root (sudo protoctl …)",
    },
    {
      name: "capabilities",
      group: "privilege",
      required: true,
      ok: missing.length === 0,
      detail: missing.length === 0 ? Object.keys(CAPS).join(" ") : `missing ${missing.join(" ")}`,
      fix: missing.length === 0 ? "" : "run with full capabilities (not in an unprivileged container)",
    },
  ];
}

/**
 * Which cgroup mode the agent will use (common/cgroup-mode.ts), as seen from
 * this process's cgroup (the agent's, when it runs the check). Fails when a
 * limit controller is missing: `env create --memory/--cpus/--pids` is then
 * refused on this node.
 */
function checkCgroups(root: string): HostCheck {
  const host = detectCgroupMode(root);
  if (host.mode === "v2" && systemdScopesUsable(root)) host.scopes = true;
  const missing = LIMIT_CONTROLLERS.filter((c) => !host.available.includes(c));
  const ok = missing.length === 0;
  return {
    name: "cgroups",
    group: "kernel",
    required: false,
    ok,
    detail: ok
      ? describeCgroupHost(host)
      : `${describeCgroupHost(host)}; cannot enforce ${missing.map((c) => LIMIT_FLAGS[c]).join(" ")}`,
    fix: ok
      ? ""
      : host.mode === "v2"
        ? "delegate memory, cpu and pids to the agent's cgroup (systemd: Delegate=yes, see deploy/systemd/)"
        : "enable the memory, cpu and pids cgroup controllers (env limits need them)",
  };
}

async function checkMemory(root: string, min: number): Promise<HostCheck> {
  const avail = parseMemAvailable(await readText(join(root, "proc/meminfo")));
  const ok = avail !== undefined && avail >= min;
  return {
    name: "memory",
    group: "resource",
    required: true,
    ok,
    detail:
      avail === undefined
        ? "MemAvailable unknown"
        : `${formatBytes(avail)} available (tmpfs pool needs ${formatBytes(min)})`,
    fix: ok ? "" : "free memory, or use a disk-backed pool (pool.kind: file)",
  };
}

/** Runs every check; the order is stable (kernel, binaries, privileges, resources). */
export async function runHostChecks(opts: HostCheckOptions = {}): Promise<HostCheck[]> {
  const env = opts.env ?? process.env;
  const root = opts.root ?? "/";
  const isRoot = process.getuid?.() === 0;
  const fsOpts = { modprobe: (opts.modprobe ?? true) && isRoot, root };
  const results = await Promise.all([
    checkFilesystem("btrfs", fsOpts, env),
    checkFilesystem("overlay", fsOpts, env),
    checkDevice("loop-control", "/dev/loop-control", "modprobe loop", root),
    checkDevice("fuse", "/dev/fuse", "modprobe fuse; apt-get install fuse3", root),
    checkNbdAttach(root, env),
    checkVxlan(env, opts.probeVxlan ?? true),
    checkCgroups(root),
    ...BINARIES.map((b) => checkBinary(b, env)),
    checkPrivileges(root),
    checkMemory(root, opts.minPoolMemoryBytes ?? 1024 ** 3),
  ]);
  return results.flat();
}

/** True when every required check passed. */
export function requiredOk(checks: readonly HostCheck[]): boolean {
  return checks.every((c) => c.ok || !c.required);
}

/** Checks as node capabilities (the `Capability` message of the API: name, ok, detail). */
export function toCapabilities(
  checks: readonly HostCheck[],
): Array<{ name: string; ok: boolean; detail: string }> {
  return checks.map((c) => ({
    name: c.name,
    ok: c.ok,
    detail: c.version ? `${c.version} ${c.detail}` : c.detail,
  }));
}
