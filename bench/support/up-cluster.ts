/**
 * A one-machine cluster made by the built CLI's own `protoctl up` (etcd with
 * client-certificate TLS, controller, agent, mTLS context), for the benches
 * that time the CLI as a user runs it (cli-startup, cli-exec, cli-cycle).
 * Its own state dir under /tmp, free loopback ports, its own config dir, so it
 * never meets a developer's `protoctl up` nor another engineer's.
 *
 * `timed` spawns a command with node's child_process directly and times it from
 * just before spawn to its exit: the same for protoctl and for the tools it is
 * compared with (lxc-*, node -e 0), so both pay the same spawn overhead.
 */
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { freeUpPorts, upPortArgs } from "../../test/fixtures/ports.js";

export interface Timed {
  code: number;
  ms: number;
  stdout: string;
  stderr: string;
}

/** Runs `cmd args`, stdin closed; resolves with its exit code, output and wall time. */
export function timed(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<Timed> {
  return new Promise((res, rej) => {
    const t0 = performance.now();
    const child = spawn(cmd, args, { env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (b: Buffer) => {
      stdout += b.toString();
    });
    child.stderr.on("data", (b: Buffer) => {
      stderr += b.toString();
    });
    child.on("error", rej);
    child.on("close", (code, signal) =>
      res({ code: code ?? (signal ? 129 : 1), ms: performance.now() - t0, stdout, stderr }),
    );
  });
}

/** Like `timed`, but a non-zero exit is an error naming the command and its output. */
export async function mustRun(cmd: string, args: string[], env?: NodeJS.ProcessEnv): Promise<Timed> {
  const r = await timed(cmd, args, env);
  if (r.code !== 0) {
    throw new Error(`${cmd} ${args.join(" ")} exited ${r.code}: ${(r.stderr || r.stdout).slice(-2000)}`);
  }
  return r;
}

export interface UpCluster {
  /** dist/cli/main.js (or PROTOCTL_BENCH_CLI). */
  cliPath: string;
  /** Environment every CLI run gets (its own config dir, plain output). */
  env: NodeJS.ProcessEnv;
  /** A scratch dir for the bench, removed by `down`. */
  work: string;
  node: string;
  /** Milliseconds `protoctl up` took. */
  upMs: number;
  /** `protoctl ARGS`, timed. */
  cli(args: string[]): Promise<Timed>;
  /** `protoctl ARGS`, timed; throws on a non-zero exit. */
  must(args: string[]): Promise<Timed>;
  /** `protoctl down` and the scratch dir removed; safe to call twice. */
  down(): Promise<void>;
}

/** The repository root from dist/bench/support/ (or bench/support/). */
export function repoRoot(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const up = resolve(here, "../..");
  return existsSync(join(up, "package.json")) ? up : resolve(here, "../../..");
}

export async function upCluster(opts: { poolSize?: string } = {}): Promise<UpCluster> {
  // PROTOCTL_BENCH_CLI: another build's dist/cli/main.js, for a before/after comparison with the
  // same bench (the JSON names it).
  const cliPath = process.env.PROTOCTL_BENCH_CLI || join(repoRoot(), "dist/cli/main.js");
  if (!existsSync(cliPath)) throw new Error(`${cliPath} is missing: run npm run build`);
  const work = await mkdtemp(join(tmpdir(), "protoctl-bench-up-"));
  const stateDir = join(work, "state");
  const node = `bench-${process.pid}`;
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    XDG_CONFIG_HOME: join(work, "config"),
    PROTOCTL_PLAIN: "1",
  };
  delete env.PROTOCTL_CONTEXT;
  delete env.PROTOCTL_CONTROLLER;
  delete env.PROTOCTL_TRACE_STARTUP;
  const cli = (args: string[]) => timed(process.execPath, [cliPath, ...args], env);
  const must = (args: string[]) => mustRun(process.execPath, [cliPath, ...args], env);
  let downed = false;
  const down = async () => {
    if (downed) return;
    downed = true;
    if (existsSync(stateDir)) await cli(["down", "--state-dir", stateDir]);
    await rm(work, { recursive: true, force: true });
  };
  try {
    const p = await freeUpPorts();
    // up also serves the console and both metrics endpoints: their default ports would collide
    // with a developer's `protoctl up` (or another bench) on the same machine. An older build
    // (PROTOCTL_BENCH_CLI) may have neither: then only the first four ports are given.
    const portArgs = upPortArgs(p);
    const up = await must([
      "up",
      "--state-dir",
      stateDir,
      ...((await cli(["up", "--help"])).stdout.includes("--console-port") ? portArgs : portArgs.slice(0, 8)),
      "--node-name",
      node,
      "--pool-size",
      opts.poolSize ?? "1G",
    ]);
    return { cliPath, env, work, node, upMs: up.ms, cli, must, down };
  } catch (err) {
    await down();
    throw err;
  }
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

export const round = (n: number) => Math.round(n * 10) / 10;
