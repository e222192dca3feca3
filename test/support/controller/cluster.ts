/**
 * Test helpers: controllers in-process on one etcd under a unique prefix,
 * fake agents joined to them, a typed client, and polling.
 */
import { randomBytes } from "node:crypto";
import type { ChannelCredentials, ClientReadableStream } from "@grpc/grpc-js";
import { ProtoctlError } from "../../../common/errors.js";
import { callUnary } from "../../../common/grpc.js";
import { createLogger, silentLogger } from "../../../common/logger.js";
import { clientCredentials } from "../../../common/tls.js";
import { type ControllerConfig, controllerConfig, type DeepPartial } from "../../../controller/config.js";
import { type RunningController, startController } from "../../../controller/controller.js";
import {
  type ControlImportBaseRequest,
  ControlServiceClient,
} from "../../../proto/gen/protoctl/v1/control.js";
import {
  EnvSpec,
  type ExecOutput,
  ExecStart,
  type OperationEvent,
} from "../../../proto/gen/protoctl/v1/types.js";
import { type FakeAgent, type FakeAgentOptions, startFakeAgent } from "../../harness/fake-agent.js";

export function uniquePrefix(): string {
  return `/protoctl-test-${randomBytes(4).toString("hex")}/v1/`;
}

export function testConfig(
  etcd: string,
  prefix: string,
  over: DeepPartial<ControllerConfig> = {},
): ControllerConfig {
  return controllerConfig({
    listen: "127.0.0.1:0",
    insecure: true,
    etcd: { endpoints: [etcd], prefix },
    membership: { leaseTtlSeconds: 2, heartbeatIntervalMs: 500 },
    reconcile: { lostGraceSeconds: 2, electionTtlSeconds: 2, backoffBaseMs: 50, backoffMaxMs: 2000 },
    ...over,
  });
}

export async function startTestController(
  etcd: string,
  prefix: string,
  over: DeepPartial<ControllerConfig> = {},
): Promise<RunningController> {
  const log = process.env.PROTOCTL_TEST_LOG
    ? createLogger({ name: "controller", level: process.env.PROTOCTL_TEST_LOG, format: "json" })
    : silentLogger();
  return startController(testConfig(etcd, prefix, over), log);
}

export function client(
  address: string,
  creds: ChannelCredentials = clientCredentials(undefined),
): ControlServiceClient {
  return new ControlServiceClient(address, creds);
}

/** Promise form of a unary ControlService method: `await call(c, "getEnv", { name })`. */
export function call<K extends keyof ControlServiceClient>(
  c: ControlServiceClient,
  method: K,
  req: ControlServiceClient[K] extends (req: infer R, ...rest: never[]) => unknown ? R : never,
  deadlineMs = 30_000,
): Promise<
  ControlServiceClient[K] extends (
    req: never,
    md: never,
    opts: never,
    cb: (e: never, res: infer S) => void,
  ) => unknown
    ? S
    : never
> {
  const fn = (c[method] as (...a: unknown[]) => unknown).bind(c);
  return callUnary(fn as never, req as never, { deadlineMs }) as never;
}

export async function joinAgents(
  controllers: string | string[],
  token: string,
  specs: FakeAgentOptions[],
): Promise<FakeAgent[]> {
  const agents: FakeAgent[] = [];
  for (const s of specs) {
    const a = await startFakeAgent(s);
    await a.join(controllers, token);
    agents.push(a);
  }
  return agents;
}

export async function eventually<T>(
  fn: () => Promise<T | undefined | false>,
  timeoutMs = 15_000,
  stepMs = 50,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v as T;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline)
      throw new Error(
        `condition not met within ${timeoutMs} ms${last ? `: ${(last as Error).message}` : ""}`,
      );
    await new Promise((r) => setTimeout(r, stepMs));
  }
}

/** An env spec for tests: debian, latest version, started, placed anywhere, nothing else set; `over` replaces fields. */
export function testEnvSpec(name: string, over: Partial<EnvSpec> = {}): EnvSpec {
  return { ...EnvSpec.fromPartial({ name, base: { name: "debian", version: 0 }, start: true }), ...over };
}

/** Everything a server stream sends, once it ends (its error as a ProtoctlError). */
export function streamed<T>(s: ClientReadableStream<T>): Promise<T[]> {
  return new Promise((res, rej) => {
    const out: T[] = [];
    s.on("data", (m: T) => out.push(m));
    s.on("end", () => res(out));
    s.on("error", (e) => rej(ProtoctlError.from(e)));
  });
}

/** ImportBase of a directory on `node`'s host, collecting the progress stream. */
export function importBaseFromDir(
  c: ControlServiceClient,
  node: string,
  name: string,
  dir: string,
): Promise<OperationEvent[]> {
  return new Promise((res, rej) => {
    const s = c.importBase();
    const evs: OperationEvent[] = [];
    s.on("data", (e: OperationEvent) => evs.push(e));
    s.on("end", () => res(evs));
    s.on("error", (e) => rej(ProtoctlError.from(e)));
    const header: ControlImportBaseRequest = {
      part: {
        $case: "header",
        header: { name, source: { source: { $case: "dir", dir } }, compression: "", node },
      },
    };
    s.write(header);
    s.end();
  });
}

/** Runs a command in an env through the controller (no stdin): exit code (-1 if none) and output. */
export function execIn(
  c: ControlServiceClient,
  env: string,
  command: string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((res, rej) => {
    const x = c.execEnv();
    let stdout = "";
    let stderr = "";
    let code = -1;
    x.on("data", (m: ExecOutput) => {
      const o = m.output;
      if (o?.$case === "stdout") stdout += Buffer.from(o.stdout).toString();
      else if (o?.$case === "stderr") stderr += Buffer.from(o.stderr).toString();
      else if (o?.$case === "exitCode") code = o.exitCode;
      else if (o?.$case === "startedPid") {
        x.write({ input: { $case: "stdinEof", stdinEof: true } });
        x.end();
      }
    });
    x.on("end", () => res({ code, stdout, stderr }));
    x.on("error", (e) => rej(ProtoctlError.from(e)));
    x.write({ input: { $case: "start", start: ExecStart.fromPartial({ env, command }) } });
  });
}

/** CreateJoinToken fields for a token every agent of a test cluster joins with (tokens are single-use by default). */
export const REUSABLE = { uses: 0, reusable: true, node: "", replace: false };
