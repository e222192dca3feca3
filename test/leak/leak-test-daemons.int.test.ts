/**
 * The daemons the integration tests themselves start (not through `up`): an
 * agent run as `node --import register.mjs test/support/agent/agent-process.ts`
 * (test/faults, the multi-host and lab clusters) and a controller run as
 * `…/test/support/controller/run-controller.ts '<json>'` (HA tests, the fault
 * suite). A nested run that leaves one of each (and their etcd) must fail
 * the leak check, naming each by kind, with the agent's pool mount.
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { run } from "../../common/exec.js";
import { freePort } from "../fixtures/ports.js";
import { nestedVitestRun } from "./nested-run.js";

const REPO = resolve(import.meta.dirname, "../..");
const HOOKS = join(REPO, "test/support/register.mjs");
const undo: Array<() => Promise<unknown>> = [];

afterAll(async () => {
  for (const u of undo.splice(0).reverse()) await u().catch(() => undefined);
});

/** The nested test file (plain JS): starts etcd, a controller and an agent, detached, and leaves them. */
function leakingTestFile(o: { dir: string; ports: number[]; node: string }): string {
  const [etcd, peer, ctl, agent] = o.ports;
  const url = `http://127.0.0.1:${etcd}`;
  const controller = {
    id: "leak-ctl",
    listen: `127.0.0.1:${ctl}`,
    insecure: true,
    stateDir: join(o.dir, "ctl"),
    etcd: { endpoints: [url], prefix: "/leak/v1/" },
  };
  return `import { execFileSync, spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { connect } from "node:net";
const start = (cmd, args) => {
  const p = spawn(cmd, args, { detached: true, stdio: "ignore" });
  p.unref();
  return p.pid;
};
const listening = (port) => new Promise((r) => {
  const s = connect(port, "127.0.0.1");
  s.once("connect", () => { s.destroy(); r(true); });
  s.once("error", () => r(false));
});
const waitPort = async (port) => {
  for (let i = 0; i < 1200; i++) { if (await listening(port)) return; await new Promise((r) => setTimeout(r, 100)); }
  throw new Error("port " + port + " never listened");
};
test("starts etcd, a test controller and a test agent and leaves them", async () => {
  const pids = [];
  pids.push(start("etcd", ["--name", "leak", "--data-dir", ${JSON.stringify(join(o.dir, "etcd"))},
    "--listen-client-urls", ${JSON.stringify(url)}, "--advertise-client-urls", ${JSON.stringify(url)},
    "--listen-peer-urls", "http://127.0.0.1:${peer}", "--initial-advertise-peer-urls", "http://127.0.0.1:${peer}",
    "--initial-cluster", "leak=http://127.0.0.1:${peer}", "--log-level", "error"]));
  writeFileSync(${JSON.stringify(join(o.dir, "pids"))}, pids.join(" "));
  await waitPort(${etcd});
  pids.push(start(process.execPath, ["--import", ${JSON.stringify(HOOKS)},
    ${JSON.stringify(join(REPO, "test/support/controller/run-controller.ts"))}, ${JSON.stringify(JSON.stringify(controller))}]));
  pids.push(start(process.execPath, ["--import", ${JSON.stringify(HOOKS)},
    ${JSON.stringify(join(REPO, "test/support/agent/agent-process.ts"))}, "--name", ${JSON.stringify(o.node)},
    "--listen", "127.0.0.1:${agent}", "--state-dir", ${JSON.stringify(join(o.dir, "agent"))},
    "--pool-kind", "tmpfs", "--pool-size", "256M", "--insecure", "--log-level", "warn"]));
  writeFileSync(${JSON.stringify(join(o.dir, "pids"))}, pids.join(" "));
  await waitPort(${ctl});
  await waitPort(${agent});
}, 170000);
`;
}

describe("the leak check sees the daemons the tests start", () => {
  it("names a leaked agent-process.ts agent, run-controller.ts controller and their etcd", async () => {
    const dir = await mkdtemp(join(tmpdir(), "protoctl-nested-"));
    undo.push(() => rm(dir, { recursive: true, force: true }));
    const node = `lk${process.pid % 100000}`;
    const ports = [await freePort(), await freePort(), await freePort(), await freePort()];
    // cleanup in reverse: the daemons (by the pids the nested test wrote), then the agent's node
    undo.push(() =>
      run(
        process.execPath,
        [
          ...["--import", HOOKS, join(REPO, "cli/main.ts"), "agent", "teardown"],
          ...["--state-dir", join(dir, "agent"), "--name", node, "--force"],
        ],
        { allowFailure: true, timeoutMs: 120_000 },
      ),
    );
    undo.push(async () => {
      const pids = (await readFile(join(dir, "pids"), "utf8").catch(() => "")).split(" ").map(Number);
      for (const pid of pids.filter((p) => p > 0).reverse()) {
        try {
          process.kill(pid, "SIGKILL");
        } catch {
          // gone already
        }
      }
      // the agent's pool is torn down next; give the kernel a moment to reap them
      await new Promise((r) => setTimeout(r, 500));
    });

    const { code, out } = await nestedVitestRun(dir, leakingTestFile({ dir, ports, node }), 180_000);

    expect(out, out).toMatch(/1 passed/);
    expect(code).toBe(1);
    const report = out.slice(out.indexOf("leak check FAILED"));
    for (const kind of ["protoctl agent", "protoctl controller", "etcd"]) {
      expect(report, `a leaked ${kind} process`).toMatch(new RegExp(`process pid \\d+ \\(${kind}\\)`));
    }
    // the agent's pool: its tmpfs and btrfs mounts under the state dir, and the loop device
    expect(report).toContain(`mount   ${join(dir, "agent")}`);
    expect(report).toMatch(/loop\s+\/dev\/loop\d+ \S*agent/);
  }, 240_000);
});
