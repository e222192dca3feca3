/**
 * A `protoctl up` cluster for the per-group CLI e2e files (cli-*.int.test.ts):
 * the built `protoctl` (dist/cli/main.js) run as a subprocess, its own state
 * dir under /tmp, free loopback ports and its own config dir, so it never
 * touches a developer's `protoctl up`. `close()` runs `protoctl down` and
 * reports what is left under the state dir (mounts, loop devices).
 *
 * Set PROTOCTL_E2E_SKIP_BUILD=1 to reuse an existing dist/.
 */
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { execa, type ResultPromise } from "execa";
import { loopsUnder } from "../../common/state-cleanup.js";
import { freePorts, freeUpPorts, upPortArgs } from "../fixtures/ports.js";
import { makeBusyboxRootfs } from "../fixtures/rootfs.js";

export const ROOT = resolve(import.meta.dirname, "../..");
export const CLI = join(ROOT, "dist/cli/main.js");

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface CliCluster {
  node: string;
  work: string;
  stateDir: string;
  /** A busybox rootfs directory, for `base import --dir`. */
  rootfs: string;
  /** The controller's loopback address (for a second agent to join). */
  controller: string;
  cli(args: string[], opts?: { input?: string; timeoutMs?: number }): Promise<CliResult>;
  /** A long-running CLI command (e.g. `events`, `env logs -f`); the caller ends it. */
  spawnCli(args: string[]): ResultPromise<{ stdin: "ignore"; reject: false; stripFinalNewline: false }>;
  /**
   * A second node: `protoctl agent` joined with a `node token`, its own state dir,
   * tmpfs pool and ports; Ready on return. Stopped and torn down by `close()` unless
   * the test did it (see `stopAgent`).
   */
  joinAgent(name: string): Promise<void>;
  /** SIGTERM a joined agent (its node then goes NotReady) and tear its state down from the host. */
  stopAgent(name: string): Promise<void>;
  /** The pool's mount point: the btrfs mount under the state dir. */
  poolMount(): string;
  /** `protoctl down`, then mounts and loop devices still under the state dir (should be none). */
  close(): Promise<string[]>;
}

/**
 * Builds dist (unless skipped), then `protoctl up` with a 1G tmpfs pool; the node is Ready on return.
 * With `base`, the busybox rootfs is imported under that name first.
 */
export async function startCliCluster(tag: string, opts: { base?: string } = {}): Promise<CliCluster> {
  if (process.env.PROTOCTL_E2E_SKIP_BUILD !== "1") {
    // tsc emits even when other work in progress has type errors; the bundle step is the CLI's own.
    await execa("npx", ["tsc", "-p", "tsconfig.build.json"], { cwd: ROOT, reject: false });
    await execa(process.execPath, ["cli/build/bundle.mjs"], { cwd: ROOT });
  }
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run npm run build`);
  const work = await mkdtemp(join(tmpdir(), `protoctl-e2e-${tag}-`));
  const stateDir = join(work, "state");
  const configHome = join(work, "config");
  const node = `e2e-${tag}-${randomBytes(3).toString("hex")}`;
  const cliEnv = {
    XDG_CONFIG_HOME: configHome,
    PROTOCTL_PLAIN: "1",
    PROTOCTL_CONTEXT: undefined,
    PROTOCTL_CONTROLLER: undefined,
  };
  const cli = async (args: string[], opts: { input?: string; timeoutMs?: number } = {}) => {
    const r = await execa(process.execPath, [CLI, ...args], {
      env: cliEnv,
      extendEnv: true,
      input: opts.input,
      stdin: opts.input === undefined ? "ignore" : "pipe",
      reject: false,
      stripFinalNewline: false,
      timeout: opts.timeoutMs ?? 120_000,
    });
    return { code: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
  };
  const leftovers = async () => {
    const out: string[] = [];
    for (const line of readFileSync("/proc/self/mountinfo", "utf8").split("\n")) {
      const mp = line.split(" ")[4];
      if (mp?.startsWith(stateDir)) out.push(`mount ${mp}`);
    }
    const losetup = String((await execa("losetup", ["-J", "-l"], { reject: false })).stdout);
    for (const l of loopsUnder(stateDir, losetup)) out.push(`loop ${l}`);
    return out;
  };
  const spawnCli = (args: string[]) =>
    execa(process.execPath, [CLI, ...args], {
      env: cliEnv,
      extendEnv: true,
      stdin: "ignore",
      reject: false,
      stripFinalNewline: false,
    });
  let controller = "";
  const agents = new Map<string, { proc: ResultPromise; dir: string }>();
  const stopAgent = async (name: string) => {
    const a = agents.get(name);
    if (!a) return;
    agents.delete(name);
    a.proc.kill("SIGTERM");
    await a.proc.catch(() => undefined);
    const td = await cli(["agent", "teardown", "--state-dir", a.dir, "--name", name, "--force"], {
      timeoutMs: 120_000,
    });
    if (td.code !== 0) throw new Error(`agent teardown ${name} exited ${td.code}: ${td.stderr}`);
  };
  const joinAgent = async (name: string) => {
    const tok = await cli(["node", "token", "--node", name, "--ttl", "10m", "-o", "json"]);
    if (tok.code !== 0) throw new Error(`node token exited ${tok.code}: ${tok.stderr}`);
    const { token } = JSON.parse(tok.stdout) as { token: string };
    const dir = join(work, `agent-${name}`);
    const [listen, metrics] = await freePorts(2);
    const proc = execa(
      process.execPath,
      [
        CLI,
        "agent",
        "--name",
        name,
        "--listen",
        `127.0.0.1:${listen}`,
        "--metrics-listen",
        `127.0.0.1:${metrics}`,
        "--controller",
        controller,
        "--state-dir",
        dir,
        "--pool-size",
        "512M",
      ],
      // the token by environment, as the docs advise: argv is world-readable in /proc
      {
        env: { PROTOCTL_AGENT_JOIN_TOKEN: token },
        extendEnv: true,
        stdin: "ignore",
        reject: false,
        all: true,
      },
    );
    agents.set(name, { proc, dir });
    const deadline = Date.now() + 90_000;
    for (;;) {
      const ls = await cli(["node", "ls", "-o", "json"]);
      const nodes = ls.code === 0 ? (JSON.parse(ls.stdout) as Array<{ name: string; state: string }>) : [];
      if (nodes.some((n) => n.name === name && n.state === "NODE_STATE_READY")) return;
      if (proc.exitCode !== null || Date.now() > deadline) {
        await stopAgent(name);
        const out = await proc;
        throw new Error(`agent ${name} did not become Ready: ${String(out.all).slice(-2000)}`);
      }
      await new Promise((r) => setTimeout(r, 250));
    }
  };
  const close = async () => {
    for (const name of [...agents.keys()]) await stopAgent(name).catch(() => undefined);
    if (existsSync(stateDir)) await cli(["down", "--state-dir", stateDir], { timeoutMs: 180_000 });
    const left = await leftovers();
    await rm(work, { recursive: true, force: true });
    return left;
  };
  try {
    const rootfs = await makeBusyboxRootfs(join(work, "rootfs"));
    // every port, the console's and the metrics' too: their defaults may be taken by another `protoctl up`
    const ports = await freeUpPorts();
    controller = `127.0.0.1:${ports.controller}`;
    const up = await cli(
      ["up", "--state-dir", stateDir, ...upPortArgs(ports), "--node-name", node, "--pool-size", "1G"],
      { timeoutMs: 180_000 },
    );
    if (up.code !== 0) throw new Error(`protoctl up exited ${up.code}: ${up.stderr}${up.stdout}`);
    if (opts.base) {
      const imp = await cli(["base", "import", opts.base, "--dir", rootfs]);
      if (imp.code !== 0) throw new Error(`base import: ${imp.stderr}`);
    }
    return {
      node,
      work,
      stateDir,
      rootfs,
      controller,
      cli,
      spawnCli,
      joinAgent,
      stopAgent,
      poolMount: () => {
        for (const line of readFileSync("/proc/self/mountinfo", "utf8").split("\n")) {
          const f = line.split(" ");
          const fstype = f[f.indexOf("-") + 1];
          if (f[4]?.startsWith(stateDir) && fstype === "btrfs") return f[4];
        }
        throw new Error(`no btrfs pool mounted under ${stateDir}`);
      },
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}
