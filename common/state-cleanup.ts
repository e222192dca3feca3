/**
 * What `protoctl down` and `protoctl agent teardown` remove once the daemons
 * stopped, so that nothing of a cluster or a node is left: processes still
 * naming the state dir (nspawn machines the agent did not stop, NBD helpers),
 * the node's env cgroups, mounts under the dir (deepest first), loop devices
 * backed by files under it, then the directory itself.
 */
import { readdirSync, readFileSync, rmdirSync } from "node:fs";
import { rm } from "node:fs/promises";
import { run } from "./exec.js";

/** Mount points at or under `root`, deepest first (from /proc/self/mountinfo). */
export function mountsUnder(
  root: string,
  mountinfo = readFileSync("/proc/self/mountinfo", "utf8"),
): string[] {
  const out: string[] = [];
  for (const line of mountinfo.split("\n")) {
    const f = line.split(" ");
    const mp = f[4] ? unescapeMount(f[4]) : undefined;
    if (mp && (mp === root || mp.startsWith(`${root}/`))) out.push(mp);
  }
  return [...new Set(out)].sort((a, b) => b.split("/").length - a.split("/").length || b.length - a.length);
}

function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(Number.parseInt(o, 8)));
}

/** Loop devices whose backing file is under `root` (from `losetup -J -l` output). */
export function loopsUnder(root: string, losetupJson: string): string[] {
  if (!losetupJson.trim()) return [];
  const doc = JSON.parse(losetupJson) as {
    loopdevices?: Array<{ name: string; "back-file"?: string | null }>;
  };
  return (doc.loopdevices ?? [])
    .filter((d) => {
      const f = (d["back-file"] ?? "").replace(/ \(deleted\)$/, "");
      return f === root || f.startsWith(`${root}/`);
    })
    .map((d) => d.name);
}

/** Programs the cluster runs; only these are killed, never an editor that has a log file open. */
const OURS = new Set([
  "etcd",
  "node",
  "systemd-nspawn",
  "qemu-nbd",
  "nbdkit",
  "nbdfuse",
  "nbdcopy",
  "protoctl",
]);

/** Pids (other than ours and our parent's) of the cluster's programs whose command line mentions `root`. */
export function processesNaming(root: string): number[] {
  const out: number[] = [];
  for (const e of readdirSync("/proc")) {
    if (!/^[0-9]+$/.test(e)) continue;
    const pid = Number(e);
    if (pid === process.pid || pid === process.ppid) continue;
    try {
      const comm = readFileSync(`/proc/${e}/comm`, "utf8").trim();
      if (!OURS.has(comm) && !comm.startsWith("node")) continue;
      const args = readFileSync(`/proc/${e}/cmdline`, "utf8").split("\0");
      if (args.some((a) => a === root || a.includes(`${root}/`) || a.endsWith(`=${root}`))) out.push(pid);
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** SIGTERM, wait up to `graceMs`, then SIGKILL whatever is left. */
export async function terminate(pids: number[], graceMs = 5000): Promise<void> {
  for (const p of pids) {
    try {
      process.kill(p, "SIGTERM");
    } catch {
      // already gone
    }
  }
  const deadline = Date.now() + graceMs;
  while (pids.some(alive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  for (const p of pids.filter(alive)) {
    try {
      process.kill(p, "SIGKILL");
    } catch {
      // already gone
    }
  }
  const hard = Date.now() + 3000;
  while (pids.some(alive) && Date.now() < hard) await new Promise((r) => setTimeout(r, 50));
}

/** Cgroup dirs `<...>/protoctl/<node>` in every mounted hierarchy (searched a few levels deep). */
export function nodeCgroups(node: string, root = "/sys/fs/cgroup", maxDepth = 6): string[] {
  const out: string[] = [];
  const walk = (dir: string, depth: number) => {
    let entries: import("node:fs").Dirent[];
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      if (!e.isDirectory()) continue;
      const p = `${dir}/${e.name}`;
      if (e.name === "protoctl") {
        try {
          if (readdirSync(p).includes(node)) out.push(`${p}/${node}`);
        } catch {
          // raced with removal
        }
      } else if (depth < maxDepth) walk(p, depth + 1);
    }
  };
  walk(root, 0);
  return out;
}

/** Kills what is left in a node's env cgroups and removes the dirs, deepest first. */
export async function removeNodeCgroups(node: string): Promise<number> {
  let removed = 0;
  for (const base of nodeCgroups(node)) {
    const dirs: string[] = [];
    const walk = (d: string) => {
      dirs.push(d);
      try {
        for (const e of readdirSync(d, { withFileTypes: true })) if (e.isDirectory()) walk(`${d}/${e.name}`);
      } catch {
        // gone
      }
    };
    walk(base);
    const pids = new Set<number>();
    for (const d of dirs) {
      try {
        for (const p of readFileSync(`${d}/cgroup.procs`, "utf8").split("\n")) if (p) pids.add(Number(p));
      } catch {
        // no procs file
      }
    }
    if (pids.size) await terminate([...pids], 2000);
    for (const d of dirs.sort((a, b) => b.length - a.length)) {
      try {
        rmdirSync(d);
        removed++;
      } catch {
        // busy or gone
      }
    }
    // the shared `protoctl` parent goes too once empty
    try {
      rmdirSync(base.slice(0, base.lastIndexOf("/")));
    } catch {
      // another node still uses it
    }
  }
  return removed;
}

export interface CleanupReport {
  killed: number;
  unmounted: string[];
  detached: string[];
  cgroups: number;
  removed: boolean;
}

export interface CleanupOptions {
  /** Keep the directory (only processes, mounts and loop devices go). */
  keepFiles?: boolean;
  /** Delete everything but these entries of the state dir (e.g. "logs" after a failed `up`). */
  spare?: string[];
  /** The node's name, to remove its leftover env cgroups. */
  node?: string;
}

/** Removes every trace of the cluster under `root`. */
export async function cleanupState(root: string, opts: CleanupOptions = {}): Promise<CleanupReport> {
  const report: CleanupReport = { killed: 0, unmounted: [], detached: [], cgroups: 0, removed: false };
  const stray = processesNaming(root);
  if (stray.length) {
    await terminate(stray);
    report.killed = stray.length;
  }
  if (opts.node) report.cgroups = await removeNodeCgroups(opts.node);
  // Order matters: the btrfs pool must be unmounted before its loop device can go, and the
  // tmpfs holding the image only unmounts once the loop device let go of the image. A lazy
  // unmount too early would hide the image's path and strand the loop device.
  const detach = async () => {
    const lo = await run("losetup", ["-J", "-l"], { allowFailure: true });
    for (const dev of loopsUnder(root, lo.exitCode === 0 ? lo.stdout : "")) {
      const r = await run("losetup", ["-d", dev], { allowFailure: true });
      if (r.exitCode === 0 && !report.detached.includes(dev)) report.detached.push(dev);
    }
  };
  for (let round = 0; round < 5; round++) {
    const mounts = mountsUnder(root);
    if (mounts.length === 0) break;
    for (const m of mounts) {
      const res = await run("umount", [m], { allowFailure: true });
      if (res.exitCode === 0) report.unmounted.push(m);
    }
    await detach();
  }
  for (const m of mountsUnder(root)) {
    await run("umount", ["-l", m], { allowFailure: true });
    report.unmounted.push(m);
  }
  await detach();
  if (!opts.keepFiles) {
    const spare = new Set(opts.spare ?? []);
    if (spare.size === 0) await rm(root, { recursive: true, force: true, maxRetries: 3 });
    else {
      for (const e of readdirSync(root)) {
        if (!spare.has(e)) await rm(`${root}/${e}`, { recursive: true, force: true, maxRetries: 3 });
      }
    }
    report.removed = true;
  }
  return report;
}
