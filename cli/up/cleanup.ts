/**
 * What `protoctl down` removes after the processes stopped, so that nothing
 * of the one-machine cluster is left: processes still naming the state dir
 * (nspawn machines the agent did not stop), mounts under it (deepest first),
 * loop devices backed by files under it, then the directory itself. The
 * agent normally cleans its pool on shutdown; this is the safety net.
 */
import { readdirSync, readFileSync } from "node:fs";
import { rm } from "node:fs/promises";
import { run } from "../../common/exec.js";

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

export interface CleanupReport {
  killed: number;
  unmounted: string[];
  detached: string[];
  removed: boolean;
}

/** Removes every trace of the cluster under `root`; `keepFiles` stops before deleting the directory. */
export async function cleanupState(root: string, keepFiles = false): Promise<CleanupReport> {
  const report: CleanupReport = { killed: 0, unmounted: [], detached: [], removed: false };
  const stray = processesNaming(root);
  if (stray.length) {
    await terminate(stray);
    report.killed = stray.length;
  }
  // Unmounting can reveal mounts below (stacked): repeat until nothing is left.
  for (let round = 0; round < 5; round++) {
    const mounts = mountsUnder(root);
    if (mounts.length === 0) break;
    for (const m of mounts) {
      const res = await run("umount", [m], { allowFailure: true });
      if (res.exitCode !== 0) await run("umount", ["-l", m], { allowFailure: true });
      report.unmounted.push(m);
    }
  }
  const lo = await run("losetup", ["-J", "-l"], { allowFailure: true });
  for (const dev of loopsUnder(root, lo.exitCode === 0 ? lo.stdout : "")) {
    await run("losetup", ["-d", dev], { allowFailure: true });
    report.detached.push(dev);
  }
  if (!keepFiles) {
    await rm(root, { recursive: true, force: true, maxRetries: 3 });
    report.removed = true;
  }
  return report;
}
