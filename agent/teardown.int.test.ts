/**
 * `protoctl agent teardown` on a real agent process that was SIGKILLed with an
 * env running on a private network: the machine, its cgroups, its veth, the
 * pool's mounts and loop devices and the state dir are all gone afterwards,
 * and a teardown under a live agent is refused without --force.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { run } from "../common/exec.js";
import { loopsUnder, mountsUnder, nodeCgroups, processesNaming } from "../common/state-cleanup.js";
import { EnvSpec, NetworkMode } from "../proto/gen/protoctl/v1/types.js";
import { freePort } from "../test/fixtures/ports.js";
import { makeBusyboxRootfs } from "../test/fixtures/rootfs.js";
import { agentClient, execOverGrpc, importDirBase, unary } from "../test/support/agent/agent-client.js";
import { vethHostName } from "./host/machines/naming.js";

const REPO = resolve(import.meta.dirname, "..");
const HOOKS = join(REPO, "test/support/register.mjs");
const NODE = `td${process.pid % 100000}`;
const undo: Array<() => Promise<unknown>> = [];

afterAll(async () => {
  for (const u of undo.splice(0).reverse()) await u().catch(() => undefined);
});

function startAgentProcess(stateDir: string, port: number): ChildProcess {
  return spawn(
    process.execPath,
    [
      ...["--import", HOOKS, join(REPO, "test/support/agent/agent-process.ts")],
      ...["--name", NODE, "--listen", `127.0.0.1:${port}`, "--state-dir", stateDir],
      ...["--pool-kind", "tmpfs", "--pool-size", "256M", "--insecure", "--log-level", "warn"],
    ],
    { stdio: "ignore" },
  );
}

function teardown(stateDir: string, force = false) {
  return run(
    process.execPath,
    [
      ...["--import", HOOKS, join(REPO, "cli/main.ts"), "agent", "teardown"],
      ...["--state-dir", stateDir, "--name", NODE, ...(force ? ["--force"] : [])],
    ],
    { allowFailure: true, timeoutMs: 120_000 },
  );
}

describe("agent teardown", () => {
  it("leaves nothing of a killed agent's node, and refuses under a live agent", async () => {
    const dir = await mkdtemp(join(tmpdir(), "protoctl-teardown-"));
    undo.push(() => rm(dir, { recursive: true, force: true }));
    const stateDir = join(dir, "agent");
    const port = await freePort();
    let agent = startAgentProcess(stateDir, port);
    // safety net if an assertion fails before the teardown under test runs
    undo.push(() => teardown(stateDir, true));
    const client = agentClient(`127.0.0.1:${port}`);
    for (let i = 0; ; i++) {
      try {
        await unary(client, "getInfo", {});
        break;
      } catch (err) {
        if (i > 300 || agent.exitCode !== null) throw err;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    await importDirBase(client, "busybox", await makeBusyboxRootfs(join(dir, "rootfs")));
    await unary(client, "createEnv", {
      spec: EnvSpec.fromPartial({
        name: "keep",
        base: { name: "busybox", version: 0 },
        start: true,
        network: { mode: NetworkMode.NETWORK_MODE_PRIVATE },
      }),
      generation: 1,
    });
    expect((await execOverGrpc(client, { env: "keep", command: ["true"] })).code).toBe(0);

    // a live agent is not torn down without --force
    const refused = await teardown(stateDir);
    expect(refused.exitCode).toBe(1);
    expect(refused.stderr).toMatch(/still runs/);
    expect(existsSync(stateDir)).toBe(true);

    const gone = new Promise((r) => agent.once("exit", r));
    agent.kill("SIGKILL");
    await gone;
    client.close();
    // by design the env outlives its agent
    expect(processesNaming(stateDir).length).toBeGreaterThan(0);
    expect(mountsUnder(stateDir).length).toBeGreaterThan(0);

    const done = await teardown(stateDir);
    expect(done.stderr).toBe("");
    expect(done.exitCode).toBe(0);
    expect(done.stdout).toMatch(new RegExp(`node ${NODE} torn down`));
    expect(processesNaming(stateDir)).toEqual([]);
    expect(mountsUnder(stateDir)).toEqual([]);
    expect(loopsUnder(stateDir, (await run("losetup", ["-J", "-l"])).stdout)).toEqual([]);
    expect(nodeCgroups(NODE)).toEqual([]);
    expect(readFileSync("/proc/self/net/dev", "utf8")).not.toContain(vethHostName(NODE, "keep"));
    expect(existsSync(stateDir)).toBe(false);

    // --force stops a running agent first
    agent = startAgentProcess(stateDir, port);
    const again = agentClient(`127.0.0.1:${port}`);
    for (let i = 0; ; i++) {
      try {
        await unary(again, "getInfo", {});
        break;
      } catch (err) {
        if (i > 300 || agent.exitCode !== null) throw err;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    again.close();
    const exited = new Promise((r) => agent.once("exit", r));
    expect((await teardown(stateDir, true)).exitCode).toBe(0);
    await exited;
    expect(mountsUnder(stateDir)).toEqual([]);
    expect(existsSync(stateDir)).toBe(false);
  });
});
