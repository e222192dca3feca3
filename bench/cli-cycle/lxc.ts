/**
 * LXC's CLI cycle for bench cli-cycle: a container `orig` whose rootfs is a
 * btrfs subvolume on a loop-mounted btrfs of the bench's own, then per round
 * `lxc-copy -s -B btrfs` (snapshot clone), `lxc-start`, `lxc-attach -- true`,
 * `lxc-stop -k`, `lxc-destroy`: the five commands a user types.
 *
 * Its cgroups: `lxc.cgroup.relative` plus dirs under a tag of this run, so
 * LXC makes them below the bench's own cgroup in every hierarchy (as the
 * agent does for envs), never at a hierarchy's root; `cleanup` removes them.
 * The container shares nothing but an empty network namespace (`empty`).
 */
import { readdirSync, readFileSync, rmdirSync, statSync } from "node:fs";
import { chmod, mkdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { run } from "../../common/exec.js";
import { makeBusyboxRootfs } from "../../test/fixtures/rootfs.js";
import { mustRun, timed } from "../support/up-cluster.js";

const INIT = '#!/bin/sh\ntrap "exit 0" TERM INT HUP\nwhile :; do sleep 86400 & wait; done\n';

export interface LxcSetup {
  /** The lxcpath (-P). */
  path: string;
  tag: string;
  mnt: string;
}

/** Makes the btrfs, the original container and its config under `work`. */
export async function setupLxc(work: string): Promise<LxcSetup> {
  const img = join(work, "lxc.img");
  const mnt = join(work, "lxc-mnt");
  const tag = `protoctl-bench-lxc-${process.pid}`;
  await run("truncate", ["-s", "512M", img]);
  await run("mkfs.btrfs", ["-q", img]);
  await mkdir(mnt);
  await run("mount", ["-o", "loop", img, mnt]);
  const path = join(mnt, "lxc");
  await mkdir(join(path, "orig"), { recursive: true });
  const rootfs = join(path, "orig", "rootfs");
  await run("btrfs", ["-q", "subvolume", "create", rootfs]);
  await makeBusyboxRootfs(rootfs);
  await writeFile(join(rootfs, "bench-init"), INIT);
  await chmod(join(rootfs, "bench-init"), 0o755);
  await writeFile(
    join(path, "orig", "config"),
    [
      "lxc.uts.name = orig",
      `lxc.rootfs.path = btrfs:${rootfs}`,
      "lxc.net.0.type = empty",
      "lxc.init.cmd = /bench-init",
      "lxc.apparmor.profile = unconfined",
      "lxc.mount.auto = proc:mixed sys:ro",
      "lxc.tty.max = 0",
      "lxc.pty.max = 4",
      "lxc.cgroup.relative = 1",
      `lxc.cgroup.dir.container = ${tag}/payload`,
      `lxc.cgroup.dir.monitor = ${tag}/monitor`,
      `lxc.cgroup.dir.monitor.pivot = ${tag}/pivot`,
      "",
    ].join("\n"),
  );
  return { path, tag, mnt };
}

/** One cycle on container `name`; per-step milliseconds. */
export async function lxcCycle(s: LxcSetup, name: string): Promise<Record<string, number>> {
  const P = ["-P", s.path, "-n"];
  const copy = await mustRun("lxc-copy", [...P, "orig", "-N", name, "-s", "-B", "btrfs"]);
  const start = await mustRun("lxc-start", [...P, name]);
  const attach = await mustRun("lxc-attach", [...P, name, "--", "/bin/true"]);
  const stop = await mustRun("lxc-stop", [...P, name, "-k"]);
  const destroy = await mustRun("lxc-destroy", [...P, name]);
  return { copy: copy.ms, start: start.ms, attach: attach.ms, stop: stop.ms, destroy: destroy.ms };
}

/** Empty cgroup dirs under `dir`, deepest first, then `dir` itself. */
function removeTree(dir: string): void {
  for (const e of readdirSync(dir)) {
    const p = join(dir, e);
    if (statSync(p).isDirectory()) removeTree(p);
  }
  rmdirSync(dir);
}

/** Stops what runs, removes LXC's cgroups of this run, unmounts and removes its btrfs. */
export async function cleanupLxc(s: LxcSetup | undefined, names: string[]): Promise<void> {
  if (!s) return;
  for (const n of names) {
    await timed("lxc-stop", ["-P", s.path, "-n", n, "-k"]);
    await timed("lxc-destroy", ["-P", s.path, "-n", n]);
  }
  const self = readSelfCgroups();
  for (const [mount, rel] of self) {
    const dir = join("/sys/fs/cgroup", mount, rel, s.tag);
    try {
      removeTree(dir);
    } catch {
      // not made in this hierarchy, or still busy: left for the leak check to name
    }
  }
  await run("umount", [s.mnt], { allowFailure: true });
  await rm(s.mnt, { recursive: true, force: true });
}

/** [mount dir under /sys/fs/cgroup, this process's path there] for each hierarchy. */
function readSelfCgroups(): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  const text = readFileSync("/proc/self/cgroup", "utf8");
  for (const line of text.split("\n")) {
    const [, ctrls, path] = line.split(":");
    if (ctrls === undefined || path === undefined) continue;
    const mount = ctrls === "" ? "unified" : ctrls.replace(/^name=/, "");
    for (const m of mount === "cpu,cpuacct" ? ["cpu", "cpuacct"] : [mount]) out.push([m, path]);
  }
  return out;
}
