/**
 * Controllers as child processes (for SIGKILL tests and RSS measurements):
 * the TypeScript sources run through test/support/register.mjs.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { ControllerConfig, DeepPartial } from "../../../controller/config.js";

const here = dirname(fileURLToPath(import.meta.url));

/**
 * How to run one of our entry points (a path relative to this folder, without
 * extension) in a child process: compiled (this file runs from dist/, where
 * the build puts no TypeScript and no hooks: issue 17 item 7) as the `.js`
 * beside it; from the sources through the TypeScript hooks.
 */
export function entryArgv(rel: string): string[] {
  if (import.meta.url.endsWith(".js")) return [join(here, `${rel}.js`)];
  return ["--import", join(here, "../register.mjs"), join(here, `${rel}.ts`)];
}

export interface ControllerProcess {
  address: string;
  id: string;
  pid: number;
  child: ChildProcess;
  /** SIGKILL (no cleanup: the leader lease and stream leases just lapse). */
  kill(): Promise<void>;
  /** SIGTERM, then SIGKILL after 5 s. */
  stop(): Promise<void>;
  rssBytes(): Promise<number>;
}

export async function spawnController(
  config: DeepPartial<ControllerConfig>,
  nodeArgs: string[] = [],
): Promise<ControllerProcess> {
  // built (dist): run the compiled entry; from sources: through the TypeScript hooks
  const compiled = join(here, "run-controller.js");
  const args = existsSync(compiled)
    ? [...nodeArgs, compiled, JSON.stringify(config)]
    : [
        ...nodeArgs,
        "--import",
        join(here, "../register.mjs"),
        join(here, "run-controller.ts"),
        JSON.stringify(config),
      ];
  const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"], env: process.env });
  let stderr = "";
  child.stderr?.on("data", (b: Buffer) => {
    stderr = (stderr + b.toString()).slice(-8000);
    if (process.env.PROTOCTL_TEST_LOG) process.stderr.write(b);
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const ready = await new Promise<{ address: string; id: string; pid: number }>((resolve, reject) => {
    let out = "";
    const t = setTimeout(() => reject(new Error(`controller did not start within 30 s: ${stderr}`)), 30_000);
    child.stdout?.on("data", (b: Buffer) => {
      out += b.toString();
      const m = /READY (\{.*\})\n/.exec(out);
      if (m) {
        clearTimeout(t);
        resolve(JSON.parse(m[1]!));
      }
    });
    child.once("exit", (code) => {
      clearTimeout(t);
      reject(new Error(`controller exited with ${code}: ${stderr}`));
    });
  });
  const alive = () => child.exitCode === null && child.signalCode === null;
  return {
    ...ready,
    child,
    kill: async () => {
      if (alive()) child.kill("SIGKILL");
      await exited;
    },
    stop: async () => {
      if (!alive()) return;
      child.kill("SIGTERM");
      const t = setTimeout(() => child.kill("SIGKILL"), 5000);
      await exited;
      clearTimeout(t);
    },
    rssBytes: async () => {
      const { readFile } = await import("node:fs/promises");
      const status = await readFile(`/proc/${ready.pid}/status`, "utf8");
      const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
      return kb * 1024;
    },
  };
}

/**
 * Resolves with the first match of `re` in the child's stdout; rejects when
 * the child exits first (with its stderr tail when the caller keeps one as
 * `lastStderr()`) or after `ms`. Attach before the child can print: output
 * that arrives earlier is not seen.
 */
export function waitLine(c: ChildProcess, re: RegExp, ms = 30_000): Promise<RegExpExecArray> {
  return new Promise((resolve, reject) => {
    let out = "";
    const t = setTimeout(() => reject(new Error(`no ${re} within ${ms} ms`)), ms);
    c.stdout?.on("data", (b: Buffer) => {
      out += b.toString();
      const m = re.exec(out);
      if (m) {
        clearTimeout(t);
        resolve(m);
      }
    });
    c.once("exit", (code) => {
      clearTimeout(t);
      const tail = (c as ChildProcess & { lastStderr?: () => string }).lastStderr?.();
      reject(new Error(`exited with ${code}${tail ? `: ${tail}` : ""}`));
    });
  });
}

/** Command line of a controller run from the sources (it prints READY when serving). */
export function sourceControllerCommand(config: DeepPartial<ControllerConfig>): string[] {
  return [process.execPath, ...entryArgv("run-controller"), JSON.stringify(config)];
}

/** Command line of an agent run from the sources with a tmpfs pool, as the multi-host test clusters start them. */
export function sourceAgentCommand(o: {
  name: string;
  listen: string;
  /** Controller address(es), comma separated. */
  controller: string;
  token: string;
  stateDir: string;
  poolSize?: string;
  logLevel?: string;
  /** "k=v,k2=v2" */
  labels?: string;
}): string[] {
  return [
    process.execPath,
    ...entryArgv("../agent/agent-process"),
    "--name",
    o.name,
    "--listen",
    o.listen,
    "--controller",
    o.controller,
    "--join-token",
    o.token,
    "--state-dir",
    o.stateDir,
    "--pool-kind",
    "tmpfs",
    "--pool-size",
    o.poolSize ?? "512M",
    "--log-level",
    o.logLevel ?? "warn",
    ...(o.labels ? ["--labels", o.labels] : []),
  ];
}
