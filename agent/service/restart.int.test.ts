/**
 * Restarts: the agent runs as its own process; SIGKILL in the middle of
 * creates, restart on the same state dir. Finished envs are still there and
 * running (re-adopted), half-made ones left nothing behind.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { silentLogger } from "../../common/logger.js";
import { type Env, EnvPhase, EnvSpec } from "../../proto/gen/protoctl/v1/types.js";
import { makeBusyboxRootfs } from "../../test/fixtures/rootfs.js";
import {
  type AgentClient,
  agentClient,
  bundleAgentProcess,
  execOverGrpc,
  importDirBase,
  unary,
} from "../../test/support/agent/agent-client.js";
import { detectHierarchies, envCgroupSet } from "../host/machines/cgroups.js";
import { machineName } from "../host/machines/naming.js";
import { openPool } from "../host/pool/index.js";

const NODE = `rs${process.pid}`;
const REPO = resolve(import.meta.dirname, "../..");
let stateDir: string;
let rootfs: string;
let entry: string;
let child: ChildProcess | undefined;

async function startChild(): Promise<AgentClient> {
  const sock = join(stateDir, "agent.sock");
  await rm(sock, { force: true });
  child = spawn(
    process.execPath,
    [
      entry,
      "--name",
      NODE,
      "--listen",
      `unix://${sock}`,
      "--state-dir",
      stateDir,
      "--pool-kind",
      "tmpfs",
      "--pool-size",
      "512M",
      "--insecure",
      "--log-level",
      "warn",
    ],
    { stdio: ["ignore", "inherit", "inherit"] },
  );
  const deadline = Date.now() + 30_000;
  const client = agentClient(`unix://${sock}`);
  for (;;) {
    if (existsSync(sock)) {
      try {
        await unary(client, "getInfo", {});
        return client;
      } catch {
        // not serving yet
      }
    }
    if (Date.now() > deadline || child.exitCode !== null) throw new Error("agent did not start");
    await new Promise((r) => setTimeout(r, 50));
  }
}

function stopChild(sig: NodeJS.Signals): Promise<void> {
  const c = child;
  if (!c || c.exitCode !== null || c.signalCode !== null) return Promise.resolve();
  return new Promise((r) => {
    c.once("exit", () => r());
    c.kill(sig);
  });
}

const spec = (name: string) =>
  EnvSpec.fromPartial({ name, base: { name: "busybox", version: 0 }, start: true });

beforeAll(async () => {
  stateDir = await mkdtemp(join(tmpdir(), "protoctl-restart-"));
  rootfs = await mkdtemp(join(tmpdir(), "protoctl-rootfs-"));
  await makeBusyboxRootfs(rootfs);
  entry = await bundleAgentProcess(REPO, `restart-${process.pid}`);
});

afterAll(async () => {
  await stopChild("SIGKILL");
  try {
    const client = await startChild();
    for (const e of (await unary<object, { envs: Env[] }>(client, "listEnvs", {})).envs) {
      await unary(client, "deleteEnv", { name: e.spec!.name });
    }
    client.close();
  } finally {
    await stopChild("SIGTERM");
    const cfg = { kind: "tmpfs" as const, stateDir, sizeBytes: 512 * 2 ** 20 };
    const pool = await openPool(cfg, silentLogger());
    await pool.destroy();
    await rm(stateDir, { recursive: true, force: true });
    await rm(rootfs, { recursive: true, force: true });
    await rm(join(REPO, ".state", `agent-bundle-restart-${process.pid}`), { recursive: true, force: true });
  }
});

it("SIGKILL mid-create: finished envs survive and run, half-made ones leave nothing", async () => {
  let client = await startChild();
  await importDirBase(client, "busybox", rootfs);
  const keep = await unary<object, Env>(client, "createEnv", { spec: spec("keep"), generation: 1 });

  const names = ["k1", "k2", "k3", "k4", "k5", "k6"];
  const pending = names.map((n) =>
    unary<object, Env>(client, "createEnv", { spec: spec(n), generation: 1 }).then(
      () => n,
      () => undefined,
    ),
  );
  // long enough for some creates to finish, short enough to catch others mid-way
  await new Promise((r) => setTimeout(r, 150));
  await stopChild("SIGKILL");
  const confirmed = (await Promise.all(pending)).filter(Boolean);
  client.close();

  // the machine of "keep" outlived the agent
  client = await startChild();
  const envs = (await unary<object, { envs: Env[] }>(client, "listEnvs", {})).envs;
  const have = envs.map((e) => e.spec!.name);
  console.log(`confirmed before kill: ${confirmed.join(",") || "none"}; after restart: ${have.join(",")}`);
  expect(have).toContain("keep");
  for (const n of confirmed) expect(have).toContain(n);
  const k = envs.find((e) => e.spec!.name === "keep")!;
  expect(k.status!.leaderPid).toBe(keep.status!.leaderPid);
  for (const n of have) {
    expect((await execOverGrpc(client, { env: n, command: ["hostname"] })).stdout).toBe(`${n}\n`);
  }

  const pool = (await unary<object, { path: string }>(client, "getPool", {})).path;
  const envDirs = readdirSync(join(pool, "@env"));
  const machineFiles = readdirSync(join(stateDir, "machines")).filter((f) => f.endsWith(".json"));
  const hier = detectHierarchies();
  for (const n of names.filter((x) => !have.includes(x))) {
    expect(envDirs).not.toContain(n);
    expect(machineFiles).not.toContain(`${n}.json`);
    for (const d of Object.values(envCgroupSet(hier, NODE, n).dirs)) expect(existsSync(d)).toBe(false);
    const m = machineName(NODE, n);
    const procs = readdirSync("/proc").filter((p) => /^\d+$/.test(p));
    const stray = procs.filter((p) => {
      try {
        return readFileSync(`/proc/${p}/cmdline`, "utf8").includes(`--machine=${m}`);
      } catch {
        return false;
      }
    });
    expect(stray).toEqual([]);
  }
  expect(envDirs.filter((d) => !d.startsWith(".")).sort()).toEqual([...have].sort());
  client.close();
});

it("SIGTERM (what systemctl restart sends): a running env survives, is adopted and runs execs", async () => {
  await stopChild("SIGKILL"); // the previous test's agent: one agent per state dir
  let client = await startChild();
  const before = await unary<object, Env>(client, "createEnv", { spec: spec("graceful"), generation: 1 });
  await stopChild("SIGTERM");
  client.close();
  client = await startChild();
  const env = (await unary<object, { envs: Env[] }>(client, "listEnvs", {})).envs.find(
    (e) => e.spec!.name === "graceful",
  );
  expect(env?.status?.phase).toBe(EnvPhase.ENV_PHASE_RUNNING);
  expect(env?.status?.leaderPid).toBe(before.status!.leaderPid);
  expect((await execOverGrpc(client, { env: "graceful", command: ["hostname"] })).stdout).toBe("graceful\n");
  await unary(client, "deleteEnv", { name: "graceful" });
  client.close();
});
