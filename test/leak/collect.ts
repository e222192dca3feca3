/**
 * Leak check, live part: reads the machine into a `Snapshot` (see snapshot.ts
 * for the parsing and the diff).
 */
import { readdir, readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { run } from "../../common/exec.js";
import {
  describeProcess,
  environValue,
  type ProcessEntry,
  parseCmdline,
  parseIpLinkJson,
  parseIptablesSave,
  parseLosetupJson,
  parseMountinfo,
  parseNbdDevices,
  parseNetnsList,
  parseStatStartTime,
  processKind,
  RUN_MARKER_ENV,
  type Snapshot,
} from "./snapshot.js";

const CGROUP_ROOT = "/sys/fs/cgroup";
/**
 * How deep the cgroup walk goes: env cgroups sit below the agent's own cgroup
 * (`<hierarchy>/<agent's path>/protoctl/<node>/<env>/payload`), and the
 * agent's path can itself be deep (a service manager's slices).
 */
const CGROUP_DEPTH = 24;

async function stdout(cmd: string, args: string[]): Promise<string> {
  return (await run(cmd, args, { timeoutMs: 10_000 })).stdout;
}

async function readOr(path: string, fallback: string): Promise<string> {
  try {
    return await readFile(path, "utf8");
  } catch {
    return fallback;
  }
}

/**
 * Processes that carry a test run's marker (whatever they run), and processes
 * of the kinds the tests spawn (etcd, nspawn, NBD tools, protoctl daemons).
 */
export async function listWatchedProcesses(): Promise<ProcessEntry[]> {
  const out: ProcessEntry[] = [];
  for (const name of await readdir("/proc")) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    const argv = parseCmdline(await readOr(`/proc/${name}/cmdline`, ""));
    if (argv.length === 0) continue; // kernel thread, or exited meanwhile
    const marker = environValue(await readOr(`/proc/${name}/environ`, ""), RUN_MARKER_ENV);
    const kind = processKind(argv) ?? (marker !== undefined ? describeProcess(argv) : undefined);
    if (!kind) continue;
    const stat = await readOr(`/proc/${name}/stat`, "");
    if (!stat) continue; // exited meanwhile
    out.push({ key: `${name}:${parseStatStartTime(stat)}`, pid: Number(name), kind, argv, marker });
  }
  return out;
}

/** cgroup directories named protoctl*, and every directory below one, within CGROUP_DEPTH levels. */
export async function listProtoctlCgroups(root = CGROUP_ROOT): Promise<string[]> {
  const found: string[] = [];
  const walk = async (dir: string, depth: number, inside: boolean): Promise<void> => {
    let entries: import("node:fs").Dirent[];
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch {
      return; // removed meanwhile, or not a directory we may read
    }
    for (const e of entries) {
      if (!e.isDirectory()) continue;
      const p = join(dir, e.name);
      const ours = inside || e.name.startsWith("protoctl");
      if (ours) found.push(p);
      if (depth > 1) await walk(p, depth - 1, ours);
    }
  };
  await walk(root, CGROUP_DEPTH, false);
  return found.sort();
}

/** Connected kernel NBD devices (none where the nbd module is not loaded). */
export async function listNbdDevices(): Promise<string[]> {
  const names = (await readdir("/sys/block").catch(() => [] as string[])).filter((n) => n.startsWith("nbd"));
  const pairs = await Promise.all(
    names.map(
      async (n): Promise<[string, string | undefined]> => [
        n,
        await readFile(`/sys/block/${n}/pid`, "utf8").catch(() => undefined),
      ],
    ),
  );
  return parseNbdDevices(pairs);
}

/** iptables and ip6tables rules (nspawn's port forwards, anything the project adds). */
export async function listFirewallRules(): Promise<string[]> {
  const save = async (cmd: string) =>
    (await run(cmd, [], { timeoutMs: 10_000, allowFailure: true }).catch(() => undefined))?.stdout ?? "";
  const [v4, v6] = await Promise.all([save("iptables-save"), save("ip6tables-save")]);
  return [...parseIptablesSave(v4, "ip"), ...parseIptablesSave(v6, "ip6")];
}

/** protoctl* entries of the temp directory (what the tests' mkdtemp calls make). */
export async function listTempDirs(dir = tmpdir()): Promise<string[]> {
  return (await readdir(dir).catch(() => [] as string[]))
    .filter((n) => n.startsWith("protoctl"))
    .map((n) => join(dir, n))
    .sort();
}

export async function takeSnapshot(): Promise<Snapshot> {
  const [mountinfo, losetup, netns, links, processes, cgroups, nbd, rules, tmpdirs] = await Promise.all([
    readFile("/proc/self/mountinfo", "utf8"),
    stdout("losetup", ["-J"]),
    stdout("ip", ["netns", "list"]),
    stdout("ip", ["-j", "link", "show"]),
    listWatchedProcesses(),
    listProtoctlCgroups(),
    listNbdDevices(),
    listFirewallRules(),
    listTempDirs(),
  ]);
  return {
    mounts: parseMountinfo(mountinfo),
    loops: parseLosetupJson(losetup),
    netns: parseNetnsList(netns),
    links: parseIpLinkJson(links),
    processes,
    cgroups,
    nbd,
    rules,
    tmpdirs,
  };
}
