/**
 * Boot mode (`--boot`, systemd as PID 1) through AgentService: a Debian
 * bookworm minbase with systemd boots under `--register=no --keep-unit`,
 * reaches a running state, runs an exec, shows its journal in the logs,
 * powers off on stop (SIGRTMIN+3 via nspawn's --kill-signal) within the
 * timeout, and leaves nothing once deleted.
 *
 * The rootfs comes from debootstrap once and is cached (test/fixtures/debian-rootfs.ts).
 */
import { existsSync } from "node:fs";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { iterateStream } from "../../common/grpc.js";
import { silentLogger } from "../../common/logger.js";
import { type Env, EnvPhase, EnvSpec, type LogLine } from "../../proto/gen/protoctl/v1/types.js";
import { cachedDebianRootfs } from "../../test/fixtures/debian-rootfs.js";
import {
  type AgentClient,
  agentClient,
  execOverGrpc,
  importDirBase,
  unary,
} from "../../test/support/agent/agent-client.js";
import { agentDefaults } from "../config.js";
import { detectHierarchies, envCgroupSet } from "../host/machines/cgroups.js";
import { isAlive } from "../host/machines/proc.js";
import { type RunningAgent, startAgent } from "../main.js";

const NODE = `boot${process.pid}`;
let stateDir: string;
let agent: RunningAgent;
let client: AgentClient;

beforeAll(async () => {
  const rootfs = await cachedDebianRootfs();
  stateDir = await mkdtemp(join(tmpdir(), "protoctl-boot-it-"));
  const cfg = agentDefaults();
  // plaintext on loopback for the test client: explicit, as the agent requires
  Object.assign(cfg, { name: NODE, listen: "127.0.0.1:0", stateDir, insecure: true });
  cfg.pool.sizeBytes = 1536 * 2 ** 20;
  agent = await startAgent(cfg, silentLogger());
  client = agentClient(agent.address);
  await importDirBase(client, "deb", rootfs);
}, 900_000);

afterAll(async () => {
  client?.close();
  if (agent) {
    for (const name of agent.ctx.envs.names()) await agent.ctx.envs.delete(name).catch(() => undefined);
    await agent.stop();
    await (agent.ctx.pool as unknown as { destroy(): Promise<void> }).destroy();
  }
  if (stateDir) await rm(stateDir, { recursive: true, force: true });
});

const exec = (command: string[]) => execOverGrpc(client, { env: "sys", command });

describe("boot mode", () => {
  it("boots systemd, execs, shows the journal, powers off on stop, deletes clean", async () => {
    const spec = EnvSpec.fromPartial({
      name: "sys",
      base: { name: "deb", version: 0 },
      start: true,
      boot: true,
    });
    const env = await unary<object, Env>(client, "createEnv", { spec, generation: 1 });
    expect(env.status?.phase).toBe(EnvPhase.ENV_PHASE_RUNNING);
    const nspawnPid = (await agent.ctx.machines.state("sys")).nspawnPid!;

    // `--wait` blocks until boot finished; degraded (a unit that needs what a container lacks) is fine
    const state = await exec(["systemctl", "is-system-running", "--wait"]);
    expect(state.stdout.trim()).toMatch(/^(running|degraded)$/);
    expect((await exec(["cat", "/proc/1/comm"])).stdout.trim()).toBe("systemd");
    const hello = await exec(["sh", "-c", "echo hello from $(hostname); exit 7"]);
    expect(hello).toMatchObject({ stdout: "hello from sys\n", code: 7 });

    // a journal entry, flushed to /var/log/journal, shows in the logs after the console
    await exec(["systemd-cat", "-t", "protoctl-test", "echo", "marker-1234"]);
    await exec(["journalctl", "--flush"]);
    const lines: LogLine[] = [];
    for await (const l of iterateStream(client.logs({ env: "sys", follow: false, tailLines: 0 })))
      lines.push(l as LogLine);
    const system = lines
      .filter((l) => l.stream === "system")
      .map((l) => Buffer.from(l.data).toString())
      .join("");
    expect(system).toMatch(/protoctl-test.*marker-1234/);
    const consoleText = lines
      .filter((l) => l.stream !== "system")
      .map((l) => Buffer.from(l.data).toString())
      .join("");
    expect(consoleText).toMatch(/systemd/);

    // graceful: nspawn forwards SIGRTMIN+3, systemd powers off well within the timeout
    const t0 = Date.now();
    const stopped = await unary<object, Env>(client, "stopEnv", { name: "sys", timeoutMs: 30_000 });
    const took = Date.now() - t0;
    expect(stopped.status?.phase).toBe(EnvPhase.ENV_PHASE_STOPPED);
    expect(isAlive(nspawnPid)).toBe(false);
    const all = lines.length;
    const after: LogLine[] = [];
    for await (const l of iterateStream(client.logs({ env: "sys", follow: false, tailLines: 0 })))
      after.push(l as LogLine);
    const text = after.map((l) => Buffer.from(l.data).toString()).join("");
    // Graceful is shown by systemd's own shutdown lines, not by a time: SIGRTMIN+3 is systemd's
    // halt (in a container, halt and power-off both end it).
    expect(text).toMatch(/System Halt[\s\S]*Shutting down/);
    expect(after.length).toBeGreaterThanOrEqual(all);
    process.stderr.write(`boot env stopped gracefully in ${took} ms\n`);

    await unary(client, "deleteEnv", { name: "sys" });
    const set = envCgroupSet(detectHierarchies(), NODE, "sys");
    for (const d of Object.values(set.dirs)) expect(existsSync(d)).toBe(false);
    expect(await readdir(join(agent.ctx.pool.mountpoint, "@env"))).toEqual([]);
    expect(existsSync(join(stateDir, "machines", "sys.json"))).toBe(false);
  });
});
