/**
 * Helpers for AgentService tests and the env-create bench: a client, exec
 * over the bidi stream, base import, and a bundled `protoctl agent` entry to
 * run as a separate process (to SIGKILL it).
 */
import { mkdirSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { credentials, Metadata } from "@grpc/grpc-js";
import { type AgentConfig, agentDefaults } from "../../../agent/config.js";
import { type RunningAgent, startAgent } from "../../../agent/main.js";
import { callUnary, fromServiceError } from "../../../common/grpc.js";
import { silentLogger } from "../../../common/logger.js";
import { AgentServiceClient } from "../../../proto/gen/protoctl/v1/agent.js";
import type {
  BaseVersion,
  ExecInput,
  ExecOutput,
  ExecStart,
  OperationEvent,
} from "../../../proto/gen/protoctl/v1/types.js";
import { makeBusyboxRootfs } from "../../fixtures/rootfs.js";

export type AgentClient = InstanceType<typeof AgentServiceClient>;

export function agentClient(address: string): AgentClient {
  return new AgentServiceClient(address, credentials.createInsecure());
}

/** Unary call as a promise: `unary(client, "getEnv", { name })`. */
export function unary<Req, Res>(client: AgentClient, method: string, req: Req): Promise<Res> {
  const fn = (client as unknown as Record<string, (...a: unknown[]) => unknown>)[method]!.bind(client);
  return callUnary(fn as never, req) as Promise<Res>;
}

export interface ExecResult {
  pid: number;
  stdout: string;
  stderr: string;
  code: number;
}

/** Runs one exec over the bidi stream; `input` is sent then stdin closed; `onStarted` may drive the session. */
export function execOverGrpc(
  client: AgentClient,
  start: Partial<ExecStart> & { env: string; command: string[] },
  opts: { input?: string; onStarted?: (send: (m: ExecInput) => void) => void } = {},
): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    const call = client.exec(new Metadata());
    const res: ExecResult = { pid: 0, stdout: "", stderr: "", code: -1 };
    call.on("data", (m: ExecOutput) => {
      const o = m.output as { $case: string; [k: string]: unknown } | undefined;
      if (!o) return;
      if (o.$case === "startedPid") {
        res.pid = o.startedPid as number;
        opts.onStarted?.((msg) => call.write(msg));
        if (opts.input !== undefined)
          call.write({ input: { $case: "stdin", stdin: Buffer.from(opts.input) } });
        if (!start.tty) call.write({ input: { $case: "stdinEof", stdinEof: true } });
      } else if (o.$case === "stdout") res.stdout += (o.stdout as Buffer).toString();
      else if (o.$case === "stderr") res.stderr += (o.stderr as Buffer).toString();
      else if (o.$case === "exitCode") res.code = o.exitCode as number;
    });
    call.on("error", (err) => reject(fromServiceError(err)));
    call.on("end", () => {
      call.end();
      resolve(res);
    });
    call.write({
      input: {
        $case: "start",
        start: { tty: false, envVars: {}, workdir: "", user: "", rows: 0, cols: 0, login: false, ...start },
      },
    });
  });
}

/** Imports a directory as a base through ImportBase; resolves with the version made. */
export function importDirBase(client: AgentClient, name: string, dir: string): Promise<BaseVersion> {
  return new Promise((resolve, reject) => {
    const call = client.importBase(new Metadata());
    let result: BaseVersion | undefined;
    call.on("data", (e: OperationEvent) => {
      if (e.event?.$case === "result" && e.event.result.result?.$case === "baseVersion") {
        result = e.event.result.result.baseVersion;
      }
    });
    call.on("error", (err) => reject(fromServiceError(err)));
    call.on("end", () => (result ? resolve(result) : reject(new Error("import ended without a result"))));
    call.write({
      part: { $case: "header", header: { name, source: { source: { $case: "dir", dir } }, compression: "" } },
    });
    call.end();
  });
}

/**
 * Bundles test/support/agent/agent-process.ts (rolldown, dependencies left
 * external) under the repo's .state/ so node_modules resolve. Returns the
 * entry file: `node <entry> --name … --state-dir …`.
 */
export async function bundleAgentProcess(repoRoot: string, tag: string): Promise<string> {
  const { build } = await import("rolldown");
  const dir = join(repoRoot, ".state", `agent-bundle-${tag}`);
  mkdirSync(dir, { recursive: true });
  await build({
    input: join(repoRoot, "test/support/agent/agent-process.ts"),
    platform: "node",
    external: [/^[^./]/],
    logLevel: "silent",
    output: { dir, format: "esm" },
  });
  // exec's helper sits beside the driver module, here the bundle (enter-helper.ts)
  // @ts-expect-error plain JavaScript build script without types
  const { buildEnter } = await import("../../../agent/host/machines/enter/build.mjs");
  buildEnter(join(dir, "enter", "protoctl-enter"));
  return join(dir, "agent-process.js");
}

/**
 * An in-process agent for integration tests: loopback, plaintext said
 * explicitly (an agent without TLS material refuses otherwise), a tmpfs pool
 * of `poolMiB`, and any other settings in `over`.
 */
export async function startLoopbackAgent(o: {
  name: string;
  stateDir: string;
  poolMiB: number;
  over?: Partial<AgentConfig>;
}): Promise<RunningAgent> {
  const cfg = agentDefaults();
  Object.assign(cfg, {
    name: o.name,
    listen: "127.0.0.1:0",
    stateDir: o.stateDir,
    insecure: true,
    ...o.over,
  });
  cfg.pool.sizeBytes = o.poolMiB * 2 ** 20;
  return startAgent(cfg, silentLogger());
}

/** Deletes the agent's envs, stops it and destroys its pool. */
export async function stopLoopbackAgent(agent: RunningAgent | undefined): Promise<void> {
  if (!agent) return;
  for (const name of agent.ctx.envs.names()) await agent.ctx.envs.delete(name).catch(() => undefined);
  await agent.stop();
  await (agent.ctx.pool as unknown as { destroy(): Promise<void> }).destroy();
}

/** A loopback agent with a busybox base imported: what the agent service tests start from. */
export interface BusyboxAgent {
  agent: RunningAgent;
  client: AgentClient;
  stateDir: string;
  /** Deletes the envs, stops the agent, destroys its pool and removes the scratch dirs. */
  close(): Promise<void>;
}

export async function startBusyboxAgent(o: { name: string; poolMiB: number }): Promise<BusyboxAgent> {
  const stateDir = await mkdtemp(join(tmpdir(), "protoctl-agent-it-"));
  const rootfs = await mkdtemp(join(tmpdir(), "protoctl-rootfs-"));
  let agent: RunningAgent | undefined;
  let client: AgentClient | undefined;
  const close = async () => {
    client?.close();
    await stopLoopbackAgent(agent);
    for (const d of [stateDir, rootfs]) await rm(d, { recursive: true, force: true });
  };
  try {
    await makeBusyboxRootfs(rootfs);
    agent = await startLoopbackAgent({ name: o.name, stateDir, poolMiB: o.poolMiB });
    client = agentClient(agent.address);
    await importDirBase(client, "busybox", rootfs);
    return { agent, client, stateDir, close };
  } catch (err) {
    await close();
    throw err;
  }
}
