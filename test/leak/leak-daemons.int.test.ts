import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { vethHostName } from "../../agent/host/machines/naming.js";
import { run } from "../../common/exec.js";
import { freeUpPorts, type UpPorts, upPortArgs } from "../fixtures/ports.js";
import { nestedVitestRun } from "./nested-run.js";

const REPO = resolve(import.meta.dirname, "../..");
const CLI = join(REPO, "dist/cli/main.js");
const undo: Array<() => Promise<unknown>> = [];

afterAll(async () => {
  for (const u of undo.splice(0).reverse()) await u().catch(() => undefined);
});

/** The nested test file: plain JS, so it needs nothing but node and the built CLI. */
function leakingTestFile(o: {
  cli: string;
  state: string;
  env: NodeJS.ProcessEnv;
  ports: UpPorts;
  fuse: string;
}) {
  return `import { execFileSync, spawn } from "node:child_process";
const env = { ...process.env, ...${JSON.stringify(o.env)} };
const cli = (...args) => execFileSync(process.execPath, [${JSON.stringify(o.cli)}, ...args], { env, stdio: "inherit" });
test("starts a cluster, an env and an NBD attachment and leaves them", () => {
  cli("up", "--state-dir", ${JSON.stringify(o.state)}, "--pool-size", "512M", "--node-name", "leakn",
      ...${JSON.stringify(upPortArgs(o.ports))}, "--context-name", "leak");
  cli("base", "build", "bb", "--busybox");
  cli("env", "create", "lk1", "--base", "bb", "--network", "private");
  spawn("nbdfuse", [${JSON.stringify(o.fuse)}, "--command", "nbdkit", "-s", "memory", "1M"],
    { detached: true, stdio: "ignore", env }).unref();
  for (let i = 0; i < 200; i++) {
    try { execFileSync("test", ["-e", ${JSON.stringify(`${o.fuse}/nbd`)}]); break; } catch { execFileSync("sleep", ["0.05"]); }
  }
}, 180000);
`;
}

describe("the leak check sees everything a test run starts", () => {
  it("names a leaked agent, controller, etcd, supervisor, nspawn, env cgroup, veth and NBD attachment", async () => {
    const dir = await mkdtemp(join(tmpdir(), "protoctl-nested-"));
    undo.push(() => rm(dir, { recursive: true, force: true }));
    const state = join(dir, "state");
    const fuse = join(dir, "fuse");
    await mkdir(fuse);
    const env = { HOME: dir, XDG_CONFIG_HOME: join(dir, "config"), PROTOCTL_STATE_DIR: state };
    const ports = await freeUpPorts();
    // Cleanup in reverse: the FUSE attachment, then `down` (envs, daemons, pool, mounts, loops).
    undo.push(() =>
      run(process.execPath, [CLI, "down", "--state-dir", state], {
        env: { ...process.env, ...env },
        allowFailure: true,
        timeoutMs: 120_000,
      }),
    );
    undo.push(async () => {
      await run("fusermount3", ["-u", fuse], { allowFailure: true });
      await run("pkill", ["-f", "-x", `nbdfuse ${fuse} --command nbdkit -s memory 1M`], {
        allowFailure: true,
      });
    });

    const { code, out } = await nestedVitestRun(
      dir,
      leakingTestFile({ cli: CLI, state, env, ports, fuse }),
      180_000,
    );

    expect(out, out).toMatch(/1 passed/);
    expect(code).toBe(1);
    const report = out.slice(out.indexOf("leak check FAILED"));
    for (const kind of [
      "protoctl agent",
      "protoctl controller",
      "protoctl supervise",
      "etcd",
      "systemd-nspawn",
      "nbdfuse",
    ]) {
      expect(report, `a leaked ${kind} process`).toMatch(new RegExp(`process pid \\d+ \\(${kind}\\)`));
    }
    // The env's cgroups sit below the agent's own, several levels down: protoctl/<node>/<env>.
    expect(report).toMatch(/cgroup\s+\/sys\/fs\/cgroup\/\S+\/protoctl\/leakn\/lk1(\s|\/)/);
    // The env's veth (host side, by its name), the FUSE mount, the pool's loop device.
    expect(report).toContain(`link    ${vethHostName("leakn", "lk1")}`);
    expect(report).toContain(`mount   ${fuse} fuse`);
    expect(report).toMatch(/loop\s+\/dev\/loop\d+ \S*pool/);
  });
});
