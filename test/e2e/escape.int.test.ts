/**
 * The escape suite (issue 15): code running as root inside a default
 * (unprivileged) env tries to reach the host, from every way code gets in:
 * the env's own PID 1 side (a boot-mode env whose /sbin/init runs the
 * attempts), `env exec`, `lab exec` and a lab machine's `startup:`. A real
 * cluster (one network-namespace host, real controller and agent, real
 * systemd-nspawn), a busybox base carrying the attempt script
 * (escape-script.ts). Each attempt is its own assertion.
 *
 * What "cannot" means here:
 * - mknod/read/mount a host block device (the agent's pool loop device), write
 *   /proc/sysrq-trigger (also through a freshly mounted proc), a sysctl, the
 *   modprobe path or sysfs's uevent_helper, load a module: the command fails.
 * - ptrace a host process: none is addressable: every process visible inside
 *   is in the env's own PID namespace (checked against the leader's, from the host).
 * - ptrace an exec'd process: env root may attach to it (same user
 *   namespace, same ids), and that gains nothing: the exec'd process has the
 *   same bounding set, Seccomp 2, the same user namespace and a uid_map that
 *   is not the host's identity map, seen both from PID 1's side and the host's.
 * - leave its cgroup: whatever the attempts did, a process started after them
 *   is still in the env's cgroups, as the host sees /proc/PID/cgroup.
 */
import { execFileSync } from "node:child_process";
import { chmod, mkdir, mkdtemp, readdir, readFile, readlink, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { enterHelperPath } from "../../agent/host/machines/enter-helper.js";
import { EnvSpec } from "../../proto/gen/protoctl/v1/types.js";
import { makeBusyboxRootfs } from "../fixtures/rootfs.js";
import { call, eventually, importBaseFromDir } from "../support/controller/cluster.js";
import { ESCAPE_SCRIPT, type EscapeResult, escapeInit, parseEscape } from "./escape-script.js";
import { applyLab, execIn, type LabCluster, startLabCluster } from "./lab-cluster.js";

let cl: LabCluster;
let node: string;
let rootfs: string;
/** "MAJ MIN" of the agent's pool loop device. */
let dev: string;
const results = new Map<string, EscapeResult>();
/** Host pid of the sleeper each way in left behind, by way in. */
const sleepers = new Map<string, number>();
const SLEEP = { pid1: 6101, exec: 6102, lab: 6103, startup: 6104 } as const;
const ENV_OF = { pid1: "esc-boot", exec: "esc-exec", lab: "escl-m", startup: "escl-m" } as const;
type Way = keyof typeof SLEEP;
const WAYS = Object.keys(SLEEP) as Way[];

/** The block device under the agent's pool mount, as "major minor" (decimal). */
function poolDevice(agentDir: string): string {
  const rows = execFileSync("findmnt", ["-rn", "-o", "SOURCE,TARGET"], { encoding: "utf8" }).split("\n");
  const src = rows
    .map((r) => r.split(" "))
    .find(([s, t]) => s?.startsWith("/dev/") && t?.startsWith(agentDir))?.[0];
  if (!src) throw new Error(`no block device mounted under ${agentDir}`);
  const [maj, min] = execFileSync("stat", ["-c", "%t %T", src], { encoding: "utf8" }).trim().split(" ");
  // the host itself can read it: the attempts below aim at something real
  execFileSync("dd", [`if=${src}`, "of=/dev/null", "bs=512", "count=1"], { stdio: "ignore" });
  return `${Number.parseInt(maj!, 16)} ${Number.parseInt(min!, 16)}`;
}

async function findSleeper(seconds: number): Promise<number | undefined> {
  for (const p of await readdir("/proc")) {
    if (!/^\d+$/.test(p)) continue;
    const cmd = await readFile(`/proc/${p}/cmdline`, "utf8").catch(() => "");
    if (cmd === `sleep\0${seconds}\0`) return Number(p);
  }
  return undefined;
}

const statusField = (status: string, key: string) => new RegExp(`^${key}:\\s*(.*)$`, "m").exec(status)?.[1];

async function leaderOf(env: string): Promise<number> {
  const e = await call(cl.c, "getEnv", { name: env });
  const pid = e.status?.leaderPid ?? 0;
  expect(pid).toBeGreaterThan(0);
  return pid;
}

beforeAll(async () => {
  cl = await startLabCluster({ hosts: 1 });
  node = cl.nodes[0]!;
  dev = poolDevice(cl.agentDirs.get(node)!);
  rootfs = await mkdtemp(join(tmpdir(), "protoctl-escape-"));
  await makeBusyboxRootfs(rootfs);
  await writeFile(join(rootfs, "escape.sh"), ESCAPE_SCRIPT);
  await chmod(join(rootfs, "escape.sh"), 0o755);
  await mkdir(join(rootfs, "sbin"), { recursive: true });
  await rm(join(rootfs, "sbin/init"), { force: true });
  await writeFile(join(rootfs, "sbin/init"), escapeInit(dev, SLEEP.pid1));
  await chmod(join(rootfs, "sbin/init"), 0o755);
  await importBaseFromDir(cl.c, node, "escbox", rootfs);
  await eventually(async () => (await call(cl.c, "getBase", { name: "escbox" })).versions.length > 0, 30_000);

  const spec = (name: string, boot: boolean) =>
    EnvSpec.fromPartial({ name, base: { name: "escbox", version: 0 }, boot, start: true });
  await call(cl.c, "createEnv", { spec: spec("esc-boot", true), wait: true }, 120_000);
  await call(cl.c, "createEnv", { spec: spec("esc-exec", false), wait: true }, 120_000);
  await applyLab(
    cl.c,
    `name: escl
machines:
  m:
    base: escbox
    startup:
      - "/escape.sh '${dev}' ${SLEEP.startup} > /tmp/startup.out 2>&1; true"
`,
  );

  const pid1 = await eventually(async () => {
    const r = await execIn(cl.c, "esc-boot", ["cat", "/escape-pid1.out"]);
    return r.code === 0 && /^DONE$/m.test(r.stdout) ? r.stdout : undefined;
  }, 30_000);
  results.set("pid1", parseEscape(pid1!));
  const ex = await execIn(cl.c, "esc-exec", ["/bin/sh", "/escape.sh", dev, String(SLEEP.exec)]);
  results.set("exec", parseEscape(ex.stdout));
  const lab = await execIn(cl.c, "escl-m", ["/bin/sh", "/escape.sh", dev, String(SLEEP.lab)]);
  results.set("lab", parseEscape(lab.stdout));
  const st = await execIn(cl.c, "escl-m", ["cat", "/tmp/startup.out"]);
  results.set("startup", parseEscape(st.stdout));
  for (const w of WAYS) {
    const pid = await eventually(() => findSleeper(SLEEP[w]), 10_000);
    if (pid) sleepers.set(w, pid);
  }
}, 400_000);

afterAll(async () => {
  if (cl) {
    await call(cl.c, "deleteLab", { name: "escl", wait: true }, 60_000).catch(() => undefined);
    for (const e of ["esc-boot", "esc-exec"])
      await call(cl.c, "deleteEnv", { name: e, wait: true }, 60_000).catch(() => undefined);
    await cl.stop();
  }
  if (rootfs) await rm(rootfs, { recursive: true, force: true });
}, 180_000);

describe.each(WAYS)("root inside, started by %s", (way) => {
  const r = () => {
    const x = results.get(way);
    expect(x?.done, `${way}: the attempt script ran to its end`).toBe(true);
    return x!;
  };
  const failed = (name: string, pattern?: RegExp) => {
    const a = r().attempts.get(name);
    expect(a, `${way}: attempt ${name} ran`).toBeDefined();
    expect(a!.code, `${way}: ${name} must fail: ${a!.output}`).not.toBe(0);
    if (pattern) expect(a!.output).toMatch(pattern);
  };

  it("cannot mknod a host block device", () => failed("mknod", /Operation not permitted/));
  it("cannot read a host block device", () => failed("read-block"));
  it("cannot mount the host's disk", () => failed("mount-disk"));
  it("cannot write /proc/sysrq-trigger", () => failed("sysrq"));
  it("cannot write sysrq-trigger through a proc it mounts", () => failed("mount-proc-sysrq"));
  it("cannot write a host sysctl", () => failed("sysctl"));
  it("cannot change the kernel's modprobe path", () => failed("modprobe-path"));
  it("cannot set a uevent helper through a sysfs it mounts", () => failed("mount-sysfs-uevent"));
  it("cannot load a kernel module (EPERM)", () => failed("insmod", /Operation not permitted/));

  it("sees no host process to ptrace: one PID namespace inside, the env's", async () => {
    const leaderNs = await readlink(`/proc/${await leaderOf(ENV_OF[way])}/ns/pid`);
    expect(r().pidNamespaces).toEqual([leaderNs]);
  });

  it("stays in the env's cgroups whatever it writes (seen from the host)", async () => {
    const pid = sleepers.get(way);
    expect(pid, "the process left after the attempts").toBeDefined();
    const cg = await readFile(`/proc/${pid}/cgroup`, "utf8");
    const where = `/protoctl/${node}/${ENV_OF[way]}`;
    expect(/^\d+:memory:(.*)$/m.exec(cg)?.[1]).toContain(where);
    expect(/^\d+:pids:(.*)$/m.exec(cg)?.[1]).toContain(where);
    expect(/^\d+:name=systemd:(.*)$/m.exec(cg)?.[1]).toContain(`${where}/payload`);
  });

  it("runs with PID 1's bounding set, Seccomp 2 and its user namespace (seen from the host)", async () => {
    const pid = sleepers.get(way)!;
    const leader = await leaderOf(ENV_OF[way]);
    const mine = await readFile(`/proc/${pid}/status`, "utf8");
    const pid1 = await readFile(`/proc/${leader}/status`, "utf8");
    expect(statusField(mine, "CapBnd")).toBe(statusField(pid1, "CapBnd"));
    expect(statusField(mine, "CapBnd")).not.toBe("000001ffffffffff");
    expect(statusField(mine, "Seccomp")).toBe("2");
    expect(statusField(mine, "NoNewPrivs")).toBe(statusField(pid1, "NoNewPrivs"));
    expect(await readlink(`/proc/${pid}/ns/user`)).toBe(await readlink(`/proc/${leader}/ns/user`));
    // the very same filters, byte for byte (copied with the helper's own ptrace dump)
    const dir = await mkdtemp(join(tmpdir(), "protoctl-escape-filters-"));
    try {
      execFileSync(enterHelperPath(), ["dump", String(pid), join(dir, "exec")]);
      execFileSync(enterHelperPath(), ["dump", String(leader), join(dir, "pid1")]);
      const [a, b] = [await readFile(join(dir, "exec")), await readFile(join(dir, "pid1"))];
      expect(a.length).toBeGreaterThan(0);
      expect(a.equals(b)).toBe(true);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    const uidMap = (await readFile(`/proc/${pid}/uid_map`, "utf8")).trim().split(/\s+/).join(" ");
    expect(uidMap).not.toBe("0 0 4294967295");
    expect(uidMap.startsWith("0 ")).toBe(true);
  });
});

it("an env process that ptraces an exec'd process finds it no more privileged than itself", async () => {
  const r = await execIn(cl.c, "esc-boot", [
    "sh",
    "-c",
    "echo $$ > /tmp/peer; i=0; while [ ! -e /tmp/peer.out ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; cat /tmp/peer.out",
  ]);
  expect(r.code).toBe(0);
  const mine = /^MINE (\S+) CapBnd: (\S+)$/m.exec(r.stdout);
  const peer = /^PEER (\S+) CapBnd: (\S+)$/m.exec(r.stdout);
  expect(mine, r.stdout).not.toBeNull();
  expect(peer, r.stdout).not.toBeNull();
  expect(peer![1]).toBe(mine![1]); // the same user namespace
  expect(peer![2]).toBe(mine![2]); // the same bounding set
  expect(r.stdout).toMatch(/^PEERSECCOMP Seccomp: 2$/m);
  expect(r.stdout).not.toMatch(/^PEERUIDMAP\s+0\s+0\s+4294967295/m);
});

it("a privileged env (explicit opt-in) has no user namespace; its execs still get PID 1's bounding set and seccomp", async () => {
  const spec = EnvSpec.fromPartial({
    name: "esc-priv",
    base: { name: "escbox", version: 0 },
    start: true,
    privileged: true,
  });
  await call(cl.c, "createEnv", { spec, wait: true }, 120_000);
  try {
    expect((await call(cl.c, "getEnv", { name: "esc-priv" })).spec?.privileged).toBe(true);
    const r = await execIn(cl.c, "esc-priv", [
      "sh",
      "-c",
      "cat /proc/self/uid_map; grep -E '^(CapBnd|Seccomp):' /proc/self/status; cat /proc/1/status | grep -E '^CapBnd:'",
    ]);
    expect(r.code).toBe(0);
    // the identity map: what the default envs above must not have (the suite's checks can fail)
    expect(r.stdout.split("\n")[0]!.trim().split(/\s+/).join(" ")).toBe("0 0 4294967295");
    const bnd = [...r.stdout.matchAll(/^CapBnd:\s*(\S+)$/gm)].map((m) => m[1]);
    expect(bnd).toHaveLength(2);
    expect(bnd[0]).toBe(bnd[1]);
    expect(bnd[0]).not.toBe("000001ffffffffff");
    expect(r.stdout).toMatch(/^Seccomp:\s*2$/m);
  } finally {
    await call(cl.c, "deleteEnv", { name: "esc-priv", wait: true }, 60_000);
  }
});
