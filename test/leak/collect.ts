/**
 * Leak check, live part: reads the machine into a `Snapshot` (see snapshot.ts
 * for the parsing and the diff).
 */
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { run } from "../../common/exec.js";
import {
  environValue,
  type ProcessEntry,
  parseCmdline,
  parseIpLinkJson,
  parseLosetupJson,
  parseMountinfo,
  parseNetnsList,
  parseStatStartTime,
  processKind,
  RUN_MARKER_ENV,
  type Snapshot,
} from "./snapshot.js";

const CGROUP_ROOT = "/sys/fs/cgroup";
/** Deep enough for protoctl/<node>/<env> under a hybrid hierarchy's controller dirs. */
const CGROUP_DEPTH = 5;

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

/** Processes of the kinds the tests spawn (etcd, nspawn, NBD tools, protoctl daemons). */
export async function listWatchedProcesses(): Promise<ProcessEntry[]> {
  const out: ProcessEntry[] = [];
  for (const name of await readdir("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    const argv = parseCmdline(await readOr(`/proc/${name}/cmdline`, ""));
    const kind = processKind(argv);
    if (!kind) continue;
    const stat = await readOr(`/proc/${name}/stat`, "");
    if (!stat) continue; // exited meanwhile
    const marker = environValue(await readOr(`/proc/${name}/environ`, ""), RUN_MARKER_ENV);
    out.push({ key: `${name}:${parseStatStartTime(stat)}`, pid: Number(name), kind, argv, marker });
  }
  return out;
}

/** cgroup directories named protoctl* anywhere within CGROUP_DEPTH levels. */
export async function listProtoctlCgroups(root = CGROUP_ROOT): Promise<string[]> {
  const found: string[] = [];
  const walk = async (dir: string, depth: number): Promise<void> => {
    let entries: import("node:fs").Dirent[];
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch {
      return; // removed meanwhile, or not a directory we may read
    }
    for (const e of entries) {
      if (!e.isDirectory()) continue;
      const p = join(dir, e.name);
      if (e.name.startsWith("protoctl")) found.push(p);
      if (depth > 1) await walk(p, depth - 1);
    }
  };
  await walk(root, CGROUP_DEPTH);
  return found.sort();
}

export async function takeSnapshot(): Promise<Snapshot> {
  const [mountinfo, losetup, netns, links, processes, cgroups] = await Promise.all([
    readFile("/proc/self/mountinfo", "utf8"),
    stdout("losetup", ["-J"]),
    stdout("ip", ["netns", "list"]),
    stdout("ip", ["-j", "link", "show"]),
    listWatchedProcesses(),
    listProtoctlCgroups(),
  ]);
  return {
    mounts: parseMountinfo(mountinfo),
    loops: parseLosetupJson(losetup),
    netns: parseNetnsList(netns),
    links: parseIpLinkJson(links),
    processes,
    cgroups,
  };
}
