/**
 * Controllers as child processes (for SIGKILL tests and RSS measurements):
 * the TypeScript sources run through controller/testing/register.mjs.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { ControllerConfig, DeepPartial } from "../config.js";

const here = dirname(fileURLToPath(import.meta.url));

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
        join(here, "register.mjs"),
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
