/**
 * What really runs on the fault cluster's hosts, read from the kernel and the
 * agents' pools rather than from etcd: nspawn machines per node (by the
 * machine name, which carries a hash of the node), env subvolumes, env
 * cgroups, env veths and mounts. The fault cases count lost and duplicated
 * envs from this view and look for orphans in it.
 */
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { machineName, vethHostName } from "../../agent/host/machines/naming.js";
import { parseStat } from "../../agent/host/machines/proc.js";
import { listProtoctlCgroups } from "../leak/collect.js";
import { parseCmdline } from "../leak/snapshot.js";
import type { FaultCluster } from "./fault-cluster.js";

/** env name → nodes whose host runs a machine for it (one entry per machine). */
export type Placement = Map<string, string[]>;

async function readOr(path: string): Promise<string> {
  try {
    return await readFile(path, "utf8");
  } catch {
    return "";
  }
}

/**
 * nspawn machines of the cluster's nodes: one per outer systemd-nspawn
 * process (a forked nspawn child whose parent is the same machine's nspawn
 * is not counted twice).
 */
export async function machinesOnHosts(nodes: string[]): Promise<Placement> {
  // the 8-hex node hash every machine name of that node ends with
  const bySuffix = new Map(nodes.map((n) => [machineName(n, "x").slice(-9), n]));
  const procs = new Map<number, { ppid: number; machine: string }>();
  for (const name of await readdir("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    const argv = parseCmdline(await readOr(`/proc/${name}/cmdline`));
    if (!argv[0] || !/(^|\/)systemd-nspawn$/.test(argv[0])) continue;
    const machine = argv.find((a) => a.startsWith("--machine="))?.slice("--machine=".length);
    const st = parseStat(await readOr(`/proc/${name}/stat`));
    if (!machine || !st || st.state === "Z") continue;
    procs.set(Number(name), { ppid: st.ppid, machine });
  }
  const out: Placement = new Map();
  for (const p of procs.values()) {
    if (procs.get(p.ppid)?.machine === p.machine) continue;
    const node = bySuffix.get(p.machine.slice(-9));
    if (!node) continue;
    const env = p.machine.slice(0, -9);
    out.set(env, [...(out.get(env) ?? []), node]);
  }
  return out;
}

/** Envs (by name) that the hosts run more than once. */
export function duplicates(placed: Placement, envs: Iterable<string>): string[] {
  return [...envs].filter((e) => (placed.get(e)?.length ?? 0) > 1);
}

/** Envs (by name) that no host runs. */
export function missing(placed: Placement, envs: Iterable<string>): string[] {
  return [...envs].filter((e) => (placed.get(e)?.length ?? 0) === 0);
}

/** The btrfs pool mounted below a state dir, from mountinfo. */
async function poolMount(stateDir: string): Promise<string | undefined> {
  for (const line of (await readOr("/proc/self/mountinfo")).split("\n")) {
    const [pre, post] = line.split(" - ");
    const mp = pre?.split(" ")[4];
    if (mp?.startsWith(`${stateDir}/`) && post?.startsWith("btrfs ")) return mp;
  }
  return undefined;
}

/**
 * Everything the cluster's hosts hold for envs outside `expected` (node →
 * env names that should be there): machines, env directories in the pool
 * (and half-made `.tmp-*` ones), env cgroups, env veths and mounts below an
 * env's directory. One line per orphan; empty when clean.
 */
export async function orphans(cl: FaultCluster, expected: Map<string, Set<string>>): Promise<string[]> {
  const out: string[] = [];
  const want = (node: string, env: string) => expected.get(node)?.has(env) ?? false;
  for (const [env, on] of await machinesOnHosts(cl.nodes)) {
    for (const node of on) if (!want(node, env)) out.push(`machine ${env} on ${node}`);
  }
  const cgroups = await listProtoctlCgroups();
  const mountinfo = await readOr("/proc/self/mountinfo");
  for (const [i, node] of cl.nodes.entries()) {
    const stateDir = cl.agentDirs.get(node);
    const pool = stateDir ? await poolMount(stateDir) : undefined;
    if (pool) {
      for (const e of await readdir(join(pool, "@env")).catch(() => [] as string[])) {
        if (!want(node, e)) out.push(`env dir @env/${e} on ${node}`);
      }
      for (const line of mountinfo.split("\n")) {
        const mp = line.split(" ")[4];
        const m = mp && new RegExp(`^${pool}/@env/([^/]+)/`).exec(mp);
        if (m && !want(node, m[1]!)) out.push(`mount ${mp}`);
      }
    }
    for (const cg of cgroups) {
      const m = new RegExp(`/protoctl/${node}/([^/]+)$`).exec(cg);
      if (m && !want(node, m[1]!)) out.push(`cgroup ${cg}`);
    }
    const h = cl.hosts.hosts[i + 1]!;
    const links = (await cl.hosts.exec(h, "ip", ["-o", "link", "show"])).stdout;
    const names = new Set(links.split("\n").map((l) => /^\d+:\s+([^:@\s]+)/.exec(l)?.[1]));
    const known = new Set([...(expected.get(node) ?? [])].map((e) => vethHostName(node, e)));
    for (const l of names) if (l?.startsWith("vp") && !known.has(l)) out.push(`veth ${l} on ${node}`);
  }
  return out;
}
