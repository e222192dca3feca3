/**
 * env-create A/B: two agent builds against each other and against raw nspawn,
 * interleaved in one run, so both see the same machine load (on a shared,
 * loaded host, runs minutes apart are not comparable).
 *
 * Each build runs its own agent (own state dir and pool, AGENT_NODE_FLAGS,
 * AGENT_ENV) on the same busybox base. Per round, in alternating order: a
 * CreateEnv(start) → Exec `true` (create-to-first-exec, what index.ts
 * compares) → a second Exec → DeleteEnv on each agent, then raw `btrfs
 * subvolume snapshot` + `systemd-nspawn --private-users=pick
 * --private-users-ownership=map /bin/true` (index.ts's reference). Reports
 * p50s, each build's ratio to raw, the agent's own CPU per cycle (user +
 * system from /proc, less load-sensitive than wall time) and its RSS.
 *
 * With `--disk SIZE` (e.g. 64M) both builds create every env with that disk
 * limit (the pools get simple quotas at the first one, in a warm-up round);
 * raw stays unlimited, so the ratio is limited create against raw.
 *
 * Usage: npm run build && npm run build:bench, copy dist and dist-bench of the
 * other build somewhere (say /tmp/old), then
 *   node dist-bench/bench/env-create/ab.js --baseline /tmp/old/dist-bench [--runs 30] [--disk 64M]
 * Root only. Last stdout line is the JSON result. Not part of `npm run bench`.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { AGENT_ENV, AGENT_NODE_FLAGS } from "../../agent/config.js";
import { openPool } from "../../agent/host/pool/index.js";
import { parseSize } from "../../common/config.js";
import { run } from "../../common/exec.js";
import { silentLogger } from "../../common/logger.js";
import { EnvSpec, NetworkMode } from "../../proto/gen/protoctl/v1/types.js";
import { makeBusyboxRootfs } from "../../test/fixtures/rootfs.js";
import {
  type AgentClient,
  agentClient,
  execOverGrpc,
  importDirBase,
  unary,
} from "../../test/support/agent/agent-client.js";

const { values } = parseArgs({
  options: {
    baseline: { type: "string" },
    runs: { type: "string", default: "30" },
    disk: { type: "string" },
  },
});
if (!values.baseline) throw new Error("--baseline DIR (the other build's dist-bench) is required");
const RUNS = Number(values.runs);
const DISK_BYTES = values.disk === undefined ? 0 : parseSize(values.disk);
if (DISK_BYTES === undefined) throw new Error(`--disk ${values.disk}: a size such as 64M`);

interface Side {
  label: string;
  child: ChildProcess;
  client: AgentClient;
  stateDir: string;
  pool: string;
  create: number[];
  first: number[];
  second: number[];
  cpu0: number;
}

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((s.length - 1) * p))] ?? Number.NaN;
}

function procStat(pid: number): string[] {
  const st = readFileSync(`/proc/${pid}/stat`, "utf8");
  return st.slice(st.lastIndexOf(")") + 2).split(" ");
}

/** User + system CPU of a process, ms (clock ticks are 10 ms here). */
const cpuMs = (pid: number) => {
  const f = procStat(pid);
  return (Number(f[11]) + Number(f[12])) * 10;
};

const rssMb = (pid: number) =>
  Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? Number.NaN) / 1024;

const spec = (name: string) =>
  EnvSpec.fromPartial({
    name,
    base: { name: "busybox", version: 0 },
    start: true,
    network: { mode: NetworkMode.NETWORK_MODE_HOST },
    resources: { memoryBytes: 0, cpus: 0, pids: 0, diskBytes: DISK_BYTES },
  });

async function startSide(label: string, distBench: string, rootfs: string): Promise<Side> {
  const entry = join(distBench, "test/support/agent/agent-process.js");
  if (!existsSync(entry)) throw new Error(`${entry} is missing: build that side's bench first`);
  const stateDir = await mkdtemp(join(tmpdir(), `protoctl-bench-ab-${label}-`));
  const sock = join(stateDir, "agent.sock");
  const child = spawn(
    process.execPath,
    [
      ...AGENT_NODE_FLAGS,
      entry,
      ...["--name", `ab${label}${process.pid}`, "--listen", `unix://${sock}`],
      ...["--state-dir", stateDir, "--pool-size", "1G", "--insecure"],
    ],
    {
      stdio: ["ignore", "ignore", "ignore"],
      env: { ...process.env, ...AGENT_ENV, PROTOCTL_LOG_LEVEL: "warn" },
    },
  );
  const client = agentClient(`unix://${sock}`);
  const side: Side = { label, child, client, stateDir, pool: "", create: [], first: [], second: [], cpu0: 0 };
  for (let i = 0; ; i++) {
    try {
      if (existsSync(sock)) {
        await unary(client, "getInfo", {});
        break;
      }
    } catch {
      // starting
    }
    if (i > 600 || child.exitCode !== null) throw new Error(`agent ${label} did not start`);
    await new Promise((r) => setTimeout(r, 50));
  }
  await importDirBase(client, "busybox", rootfs);
  side.pool = (await unary<object, { path: string }>(client, "getPool", {})).path;
  return side;
}

async function cycle(s: Side, name: string, keep: boolean): Promise<void> {
  const t0 = performance.now();
  await unary(s.client, "createEnv", { spec: spec(name), generation: 1 });
  const t1 = performance.now();
  const r = await execOverGrpc(s.client, { env: name, command: ["true"] });
  const t2 = performance.now();
  await execOverGrpc(s.client, { env: name, command: ["true"] });
  const t3 = performance.now();
  if (r.code !== 0) throw new Error(`exec true exited ${r.code} (${s.label})`);
  await unary(s.client, "deleteEnv", { name });
  if (!keep) return;
  s.create.push(t1 - t0);
  s.first.push(t2 - t0);
  s.second.push(t3 - t2);
}

async function main(): Promise<void> {
  const here = dirname(fileURLToPath(import.meta.url));
  const builds: Array<[string, string]> = [
    ["baseline", resolve(values.baseline!)],
    ["this", resolve(here, "../..")],
  ];
  const rootfs = await mkdtemp(join(tmpdir(), "protoctl-bench-ab-rootfs-"));
  const sides: Side[] = [];
  let rawBase = "";
  try {
    await makeBusyboxRootfs(rootfs);
    for (const [label, dir] of builds) sides.push(await startSide(label, dir, rootfs));
    rawBase = join(sides[1]!.pool, "bench-ab-raw-base");
    await run("btrfs", ["subvolume", "create", rawBase]);
    await makeBusyboxRootfs(rawBase);
    const raw: number[] = [];
    // two warm-up rounds (not counted), then RUNS counted ones, the order alternating
    for (let i = -2; i < RUNS; i++) {
      if (i === 0) for (const s of sides) s.cpu0 = cpuMs(s.child.pid!);
      const order = i % 2 === 0 ? sides : [...sides].reverse();
      for (const s of order) await cycle(s, `ab-${i + 2}`, i >= 0);
      const dir = join(sides[1]!.pool, `bench-ab-raw-${i + 2}`);
      const t0 = performance.now();
      await run("btrfs", ["subvolume", "snapshot", rawBase, dir]);
      await run("systemd-nspawn", [
        ...["--register=no", "--keep-unit", "-q", "--private-users=pick", "--private-users-ownership=map"],
        ...["-D", dir, `--machine=bench-ab-raw-${process.pid}`, "/bin/true"],
      ]);
      if (i >= 0) raw.push(performance.now() - t0);
      await run("btrfs", ["subvolume", "delete", dir]);
    }
    const rawP50 = pct(raw, 0.5);
    const r1 = (n: number) => Math.round(n * 10) / 10;
    const result: Record<string, unknown> = {
      bench: "env-create-ab",
      runs: RUNS,
      warmup_rounds_excluded: 2,
      disk_bytes: DISK_BYTES,
      raw_p50_ms: r1(rawP50),
      raw_reference:
        "btrfs snapshot + systemd-nspawn --private-users=pick --private-users-ownership=map /bin/true",
      load_average_1m: Number(readFileSync("/proc/loadavg", "utf8").split(" ")[0]),
    };
    for (const s of sides) {
      result[s.label] = {
        dist_bench: builds.find(([l]) => l === s.label)![1],
        create_p50_ms: r1(pct(s.create, 0.5)),
        first_exec_p50_ms: r1(pct(s.first, 0.5)),
        ratio: Math.round((pct(s.first, 0.5) / rawP50) * 100) / 100,
        second_exec_p50_ms: r1(pct(s.second, 0.5)),
        agent_cpu_ms_per_cycle: Math.round((cpuMs(s.child.pid!) - s.cpu0) / RUNS),
        rss_mb: r1(rssMb(s.child.pid!)),
      };
    }
    console.log(JSON.stringify(result));
  } finally {
    if (rawBase) await run("btrfs", ["subvolume", "delete", rawBase], { allowFailure: true });
    for (const s of sides) {
      // machines outlive their agent by design: whatever a failed round left goes first
      if (s.child.exitCode === null) {
        const left = await unary<object, { envs: Array<{ spec?: { name: string } }> }>(
          s.client,
          "listEnvs",
          {},
        ).catch(() => ({ envs: [] }));
        for (const e of left.envs)
          await unary(s.client, "deleteEnv", { name: e.spec!.name }).catch(() => undefined);
      }
      s.client.close();
      if (s.child.exitCode === null) {
        const exited = new Promise((r) => s.child.once("exit", r));
        s.child.kill("SIGTERM");
        await exited;
      }
      const pool = await openPool(
        { kind: "tmpfs", stateDir: s.stateDir, sizeBytes: 2 ** 30 },
        silentLogger(),
      ).catch(() => undefined);
      await pool?.destroy();
      await rm(s.stateDir, { recursive: true, force: true });
    }
    await rm(rootfs, { recursive: true, force: true });
  }
}

await main();
